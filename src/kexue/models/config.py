"""One configuration dataclass for every family, read from a Hugging Face `config.json`.

The family modules translate HF key names (`n_embd`, `d_model`, ...) into these fields with their
`config_from_hf`; the raw HF dict is kept in `hf` so `save_pretrained` writes it back unchanged.
Every field is validated when the dataclass is made (and on `replace`), before any tensor is allocated: a bad
value is a TypeError / ValueError naming the field, the HF key it came from, the value and what was expected;
sizes whose parameters would not fit in memory are refused with the count they would allocate.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .._validate import check_bool, check_choice, check_float, check_int

__all__ = ["TransformerConfig", "read_hf_config", "ConfigKeyError", "MAX_TENSOR_ELEMENTS", "MAX_PARAMETERS",
           "MAX_LAYERS"]

POSITIONS = ("learned", "rotary", "nezha", "relative_t5")
MAX_TENSOR_ELEMENTS = 2 ** 31     # one weight matrix / table (mT5-XXL's embedding is 1.0e9)
MAX_PARAMETERS = 2 ** 34          # the whole model, 64 GiB in float32 (T5-XXL has 1.1e10)
MAX_LAYERS = 10_000

# The Hugging Face keys each field is read from (by some family), so an error can name the key the user wrote.
HF_KEYS: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "d_ff"),
    "hidden_act": ("hidden_act", "activation_function", "afn", "feed_forward_proj"),
    "max_position": ("max_position_embeddings", "n_positions"),
    "layer_norm_eps": ("layer_norm_eps", "layer_norm_epsilon"),
    "head_dim": ("d_kv", "head_dim"),
    "dropout": ("hidden_dropout_prob", "resid_pdrop", "dropout_rate"),
    "attention_dropout": ("attention_probs_dropout_prob", "attn_pdrop"),
    "relative_buckets": ("relative_attention_num_buckets",),
    "relative_max_distance": ("relative_attention_max_distance",),
    "scale_logits": ("scale_decoder_outputs",),
}


STRING_KEYS = ("model_type", "hidden_act", "activation_function", "afn", "feed_forward_proj", "position_embedding_type")


def check_hf_types(hf: dict, where: str) -> None:
    """Before a family reads the raw dict: string settings are strings and every known setting is a single
    value (a list where a number belongs would otherwise surface as "unhashable type" or "can't multiply")."""
    for key in STRING_KEYS:
        if key in hf and hf[key] is not None and not isinstance(hf[key], str):
            raise TypeError(f"config key {key!r} must be a str, got {hf[key]!r} ({type(hf[key]).__name__}) in {where}")
    known = {k for keys in HF_KEYS.values() for k in keys} | {f.name for f in dataclasses.fields(TransformerConfig)}
    for key in sorted(known & set(hf)):
        if key != "hf" and isinstance(hf[key], (list, dict, tuple, set)):
            raise TypeError(f"config key {key!r} must be a single value, got {type(hf[key]).__name__} "
                            f"{str(hf[key])[:80]} in {where}")


class ConfigKeyError(KeyError):
    """A required config key is missing (a KeyError whose message reads as a sentence)."""

    def __str__(self) -> str:
        return str(self.args[0])


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

    def __post_init__(self) -> None:
        self.validate()

    def _name(self, name: str, value: Any) -> str:
        """`name`, plus the HF key holding `value` when it differs ("num_layers (config key 'n_layer')")."""
        for key in HF_KEYS.get(name, ()):
            raw = self.hf.get(key, _MISSING) if isinstance(self.hf, dict) else _MISSING
            if raw is _MISSING:
                continue
            same = raw is value or (type(raw) is type(value) and raw == value) or (
                isinstance(raw, str) and isinstance(value, str) and value in raw)
            if same:
                return name if key == name else f"{name} (config key {key!r})"
        keys = [k for k in HF_KEYS.get(name, ()) if k != name]
        if self.hf and keys and not any(k in self.hf for k in keys) and name not in self.hf:
            return f"{name} (default; config key {' / '.join(map(repr, keys))})"
        return name

    def validate(self) -> "TransformerConfig":
        """Check every field (types, ranges, divisibility, memory); normalises numpy ints to int."""
        def integer(name, low=None, high=None, optional=False):
            value = getattr(self, name)
            if optional and value is None:
                return
            setattr(self, name, check_int(self._name(name, value), value, low, high))

        def real(name, low=None, high=None, **kw):
            value = getattr(self, name)
            setattr(self, name, check_float(self._name(name, value), value, low, high, **kw))

        if not isinstance(self.model_type, str):
            raise TypeError(f"model_type must be a str, got {self.model_type!r} ({type(self.model_type).__name__})")
        if not isinstance(self.hf, dict):
            raise TypeError(f"hf must be a dict (the raw config.json), got {type(self.hf).__name__}")
        for name in ("vocab_size", "hidden_size", "num_heads", "intermediate_size"):
            integer(name, 1)
        integer("num_layers", 1, MAX_LAYERS)
        integer("max_position", 1 if self.position == "rotary" else 0)
        integer("type_vocab_size", 0)
        integer("embedding_size", 1, optional=True)
        integer("head_dim", 1, optional=True)
        integer("num_hidden_groups", 1, optional=True)
        integer("max_relative_position", 1)
        integer("num_decoder_layers", 1 if self.position == "relative_t5" else 0, MAX_LAYERS)
        integer("relative_buckets", 4 if self.position == "relative_t5" else 1)   # T5 halves them twice
        integer("relative_max_distance", 1)
        if self.position == "relative_t5" and self.relative_max_distance <= self.relative_buckets // 2:
            # the log-spaced buckets start at buckets // 2 (decoder) and end at max_distance
            raise ValueError(f"{self._name('relative_max_distance', self.relative_max_distance)}="
                             f"{self.relative_max_distance} must exceed {self._name('relative_buckets', self.relative_buckets)}"
                             f" // 2 = {self.relative_buckets // 2} (the exact buckets come first)")
        integer("pad_token_id", 0, self.vocab_size - 1, optional=True)
        integer("decoder_start_token_id", 0, optional=True)
        integer("eos_token_id", 0, optional=True)
        real("layer_norm_eps", 0.0, low_open=True)
        real("dropout", 0.0, 1.0, high_open=True)
        real("attention_dropout", 0.0, 1.0, high_open=True)
        for name in ("norm_first", "embedding_norm", "final_norm", "qkv_bias", "tie_word_embeddings",
                     "rotary_value", "gated_ffn", "scale_logits"):
            check_bool(self._name(name, getattr(self, name)), getattr(self, name))
        check_choice("position", self.position, POSITIONS)
        from ..nn.feedforward import _ACTIVATIONS
        if not isinstance(self.hidden_act, str) or self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"{self._name('hidden_act', self.hidden_act)} must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.hidden_act!r}")
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(f"{self._name('hidden_size', self.hidden_size)}={self.hidden_size} is not divisible by "
                             f"{self._name('num_heads', self.num_heads)}={self.num_heads} (num_attention_heads); "
                             "pass head_dim or choose sizes that divide")
        head_dim = self.head_dim or self.hidden_size // self.num_heads
        if self.position == "rotary" and head_dim % 2:
            raise ValueError(f"rotary positions need an even head dim: hidden_size={self.hidden_size} / "
                             f"num_heads={self.num_heads} (num_attention_heads) gives {head_dim}")
        if self.num_hidden_groups is not None and self.num_layers % self.num_hidden_groups:
            raise ValueError(f"num_hidden_groups={self.num_hidden_groups} must divide "
                             f"{self._name('num_layers', self.num_layers)}={self.num_layers}")
        self._check_memory()
        return self

    def _check_memory(self) -> None:
        """Refuse sizes whose weights would not fit, before `nn.Embedding` / `nn.Linear` try to allocate them."""
        E, C, I = self.input_embedding_size, self.hidden_size, self.intermediate_size
        inner = self.num_heads * (self.head_dim or C // self.num_heads)
        tables = {"vocab_size": (self.vocab_size, E), "intermediate_size": (I, C), "hidden_size": (C, max(C, inner)),
                  "num_heads": (inner, C), "max_position": (self.max_position if self.position in ("learned", "rotary") else 0, E),
                  "type_vocab_size": (self.type_vocab_size, E), "relative_buckets": (self.relative_buckets, self.num_heads),
                  "max_relative_position": ((2 * self.max_relative_position + 1) if self.position == "nezha" else 0,
                                            inner // self.num_heads)}
        for name, (rows, cols) in tables.items():
            if rows * cols > MAX_TENSOR_ELEMENTS:
                value = getattr(self, name)
                raise ValueError(f"{self._name(name, value)}={value} gives a [{rows}, {cols}] weight of "
                                 f"{rows * cols:,} parameters ({rows * cols * 4 / 2 ** 30:.1f} GiB in float32), "
                                 f"more than the {MAX_TENSOR_ELEMENTS:,} allowed for one tensor")
        per_block = 4 * C * inner + (3 if self.gated_ffn else 2) * C * I
        blocks = (self.num_hidden_groups or self.num_layers) * per_block + self.num_decoder_layers * (per_block + 4 * C * inner)
        total = (self.vocab_size + self.max_position + self.type_vocab_size) * E + blocks
        if total > MAX_PARAMETERS:
            raise ValueError(f"this config would allocate about {total:,} parameters in total "
                             f"({total * 4 / 2 ** 30:.0f} GiB in float32), more than {MAX_PARAMETERS:,}; check "
                             f"num_layers={self.num_layers}, hidden_size={C}, intermediate_size={I}, "
                             f"vocab_size={self.vocab_size}")

    @property
    def input_embedding_size(self) -> int:
        """E, the width of the token-embedding table: `embedding_size`, or hidden_size when that is None."""
        return self.embedding_size or self.hidden_size

    def replace(self, **changes: Any) -> "TransformerConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config overrides {sorted(unknown)}; "
                             f"valid names: {sorted(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)


_MISSING = object()


def config_path(config: str | os.PathLike) -> str:
    """The config.json a config argument (a file or a checkpoint directory) points to."""
    path = os.fspath(config)
    return os.path.join(path, "config.json") if os.path.isdir(path) else path


def read_hf_config(config: str | os.PathLike | dict) -> dict[str, Any]:
    """A config.json path, a checkpoint directory holding one, or a dict -> dict."""
    if isinstance(config, dict):
        return dict(config)
    if not isinstance(config, (str, os.PathLike)):
        raise TypeError(f"config must be a dict, a config.json path or a checkpoint directory, "
                        f"got {type(config).__name__}")
    path = config_path(config)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config: no config.json at {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            hf = json.load(f)
    except ValueError as e:       # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"config: {path!r} is not a valid JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(hf, dict):
        raise ValueError(f"config: {path!r} must hold a JSON object (a dict of settings), "
                         f"got a {type(hf).__name__}")
    return hf
