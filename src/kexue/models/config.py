"""One configuration dataclass for every family, read from a Hugging Face `config.json`.

The family modules translate HF key names (`n_embd`, `d_model`, ...) into these fields with their
`config_from_hf`; the raw HF dict is kept in `hf` so `save_pretrained` writes it back unchanged.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TransformerConfig", "read_hf_config"]


@dataclass
class TransformerConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position: int = 512              # 0: no absolute position table
    type_vocab_size: int = 2             # 0: no segment embedding
    layer_norm_eps: float = 1e-12
    embedding_size: int | None = None    # != hidden_size: ALBERT / ELECTRA / RoFormer projection
    head_dim: int | None = None
    pad_token_id: int | None = 0
    dropout: float = 0.1
    attention_dropout: float = 0.1
    norm_first: bool = False             # pre-LN (GPT-2, T5) vs post-LN (BERT)
    embedding_norm: bool = True
    final_norm: bool = False
    position: str = "learned"            # "learned" | "rotary" | "nezha" | "relative_t5"
    qkv_bias: bool = True
    tie_word_embeddings: bool = True
    num_hidden_groups: int | None = None  # ALBERT layer sharing (None: one block per layer)
    max_relative_position: int = 64      # NEZHA
    rotary_value: bool = False           # RoFormer
    # T5
    num_decoder_layers: int = 0
    relative_buckets: int = 32
    relative_max_distance: int = 128
    gated_ffn: bool = False
    scale_logits: bool = True            # T5 1.0 scales the decoder output by d_model**-0.5 before the LM head
    decoder_start_token_id: int | None = None
    eos_token_id: int | None = None
    hf: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def embed_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    def replace(self, **changes: Any) -> "TransformerConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config overrides {sorted(unknown)}; "
                             f"valid names: {sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)


def read_hf_config(config: str | os.PathLike | dict) -> dict[str, Any]:
    """A config.json path, a checkpoint directory holding one, or a dict -> dict."""
    if isinstance(config, dict):
        return dict(config)
    path = os.fspath(config)
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config: no config.json at {path!r}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)
