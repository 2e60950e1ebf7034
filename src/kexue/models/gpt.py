"""GPT (Radford et al. 2018, post-LN) and GPT-2 (Radford et al. 2019, "Language Models are Unsupervised
Multitask Learners", pre-LN with a final LayerNorm): decoder-only Transformers with a tied LM head. Segment ids,
when given, are embedded with the word table (CDial-GPT / https://kexue.fm/archives/7718).
HF stores their projections as Conv1D ([in, out], q/k/v fused in `c_attn`); `convert_in` splits and
transposes them into ordinary Linear weights and `convert_out` undoes it."""
from __future__ import annotations

import re

import torch
from torch import Tensor

from .._validate import check_bool
from .bert import wb
from .config import TransformerConfig
from .loading import KeyMap
from .registry import register_model
from .transformer import Transformer

__all__ = ["GPT", "GPT2"]

_CONV1D = re.compile(r"^(?P<p>(?:transformer\.)?h\.\d+\.)(?P<name>attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.(?P<t>weight|bias)$")


def conv1d_in(state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """c_attn [C, 3C] -> q/k/v Linear weights [C, C] (transposed); other Conv1D weights transposed."""
    out = {}
    for key, t in state.items():
        m = _CONV1D.match(key)
        if m is None:
            out[key] = t
            continue
        p, name, kind = m.group("p"), m.group("name"), m.group("t")
        if name == "attn.c_attn":
            for part, chunk in zip("qkv", t.chunk(3, dim=-1)):
                out[f"{p}attn.{part}.{kind}"] = chunk.t().contiguous() if kind == "weight" else chunk
        else:
            out[f"{p}{name}.{kind}"] = t.t().contiguous() if kind == "weight" else t
    return out


def conv1d_out(state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """Inverse of `conv1d_in`."""
    out = {}
    for key, t in state.items():
        m = re.match(r"^(?P<p>(?:transformer\.)?h\.\d+\.)attn\.(?P<part>[qkv])\.(?P<t>weight|bias)$", key)
        if m is not None:
            if m.group("part") == "q":
                p, kind = m.group("p"), m.group("t")
                parts = [state[f"{p}attn.{x}.{kind}"] for x in "qkv"]
                out[f"{p}attn.c_attn.{kind}"] = torch.cat([x.t() for x in parts], 1) if kind == "weight" else torch.cat(parts)
            continue
        if _CONV1D.match(key) and key.endswith(".weight"):
            t = t.t()
        out[key] = t.contiguous()
    return out


def _gpt_config(hf: dict, **kw) -> TransformerConfig:
    C = hf["n_embd"]
    return TransformerConfig(
        model_type=hf.get("model_type", "gpt2"), vocab_size=hf["vocab_size"], hidden_size=C,
        num_layers=hf["n_layer"], num_heads=hf["n_head"], intermediate_size=hf.get("n_inner") or 4 * C,
        max_position=hf["n_positions"], type_vocab_size=0, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        pad_token_id=hf.get("pad_token_id"), dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1), embedding_norm=False,
        tie_word_embeddings=hf.get("tie_word_embeddings", True), eos_token_id=hf.get("eos_token_id"), hf=hf, **kw)


def gpt2_config_from_hf(hf: dict) -> TransformerConfig:
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
        if hf.get(flag):
            raise ValueError(f"GPT-2 config option {flag}=True is not supported")
    return _gpt_config(hf, hidden_act=hf.get("activation_function", "gelu_new"), norm_first=True, final_norm=True)


def gpt_config_from_hf(hf: dict) -> TransformerConfig:
    # HF's OpenAI GPT maps afn "gelu" to the tanh approximation (gelu_new)
    act = {"gelu": "gelu_new"}.get(hf.get("afn", "gelu"), hf.get("afn", "gelu"))
    return _gpt_config(hf, hidden_act=act, norm_first=False, final_norm=False)


def _block_pairs(layer: str = "h.{i}") -> list[tuple[str, str]]:
    return (wb(f"{layer}.attn.q", "blocks.{i}.attn.q") + wb(f"{layer}.attn.k", "blocks.{i}.attn.k")
            + wb(f"{layer}.attn.v", "blocks.{i}.attn.v") + wb(f"{layer}.attn.c_proj", "blocks.{i}.attn.o")
            + wb(f"{layer}.ln_1", "blocks.{i}.attn_norm") + wb(f"{layer}.mlp.c_fc", "blocks.{i}.ffn.up")
            + wb(f"{layer}.mlp.c_proj", "blocks.{i}.ffn.down") + wb(f"{layer}.ln_2", "blocks.{i}.ffn_norm"))


def _keymap(cfg: TransformerConfig, word: str, position: str, final: bool) -> KeyMap:
    pairs = ([(f"{word}.weight", "embeddings.word.weight"), (f"{position}.weight", "embeddings.position.weight")]
             + _block_pairs() + (wb("ln_f", "final_norm") if final else []) + [("lm_head.weight", "mlm.decoder")])
    ignore = (r"attn\.bias$", r"attn\.masked_bias$", r"position_ids$")
    if cfg.tie_word_embeddings:
        ignore += (r"^lm_head\.weight$",)
    return KeyMap(pairs, prefix="transformer.", ignore=ignore, heads=("lm_head.",))


class _DecoderOnly(Transformer):
    """Decoder-only: causal by default, LM head always on (tied, no bias, no transform)."""

    segment_via_word = True
    mlm_transform = False
    mlm_bias = False

    def __init__(self, config: TransformerConfig, application: str = "lm", with_pool: bool = False,
                 with_mlm: bool = True):
        check_bool("with_mlm", with_mlm)                      # the LM head is always on
        super().__init__(config, application=application, with_pool=with_pool, with_mlm=True)

    @staticmethod
    def hf_config_updates(cfg: TransformerConfig) -> dict:
        out = {"model_type": cfg.model_type, "vocab_size": cfg.vocab_size, "n_embd": cfg.hidden_size,
               "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.intermediate_size,
               "n_positions": cfg.max_position, "layer_norm_epsilon": cfg.layer_norm_eps,
               "resid_pdrop": cfg.dropout, "attn_pdrop": cfg.attention_dropout,
               "tie_word_embeddings": cfg.tie_word_embeddings}
        if cfg.final_norm:      # GPT-2
            out["activation_function"] = cfg.hidden_act
        else:   # OpenAI GPT: HF's afn "gelu" is the tanh approximation kexue calls gelu_new
            out["afn"] = {"gelu_new": "gelu"}.get(cfg.hidden_act, cfg.hidden_act)
        return out


@register_model("gpt2", config_from_hf=gpt2_config_from_hf, convert_in=conv1d_in, convert_out=conv1d_out,
                keymap=lambda cfg: _keymap(cfg, "wte", "wpe", final=True))
class GPT2(_DecoderOnly):
    """GPT-2: pre-LN blocks and a final LayerNorm."""


@register_model("gpt", config_from_hf=gpt_config_from_hf, convert_in=conv1d_in, convert_out=conv1d_out,
                keymap=lambda cfg: _keymap(cfg, "tokens_embed", "positions_embed", final=False),
                aliases=("openai-gpt",))
class GPT(_DecoderOnly):
    """OpenAI GPT: post-LN blocks, no final LayerNorm."""
