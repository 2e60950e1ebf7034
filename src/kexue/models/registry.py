"""`build_transformer_model`: the one place where family names ("bert", HF `model_type`) are looked up.

Families register themselves with `@register_model(name, ...)` (timm style); string names appear only here.
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .config import TransformerConfig, read_hf_config
from .loading import KeyMap, load_into, read_state_dict, write_safetensors

__all__ = ["register_model", "build_transformer_model", "save_pretrained", "model_names", "Family"]

HF_MODEL_TYPES = {"gpt": "openai-gpt"}
VOCAB_KEYS = ("embeddings.word.weight", "mlm.bias", "mlm.decoder", "lm_head.weight", "shared.weight")


@dataclass
class Family:
    name: str
    cls: type
    config_from_hf: Callable[[dict], TransformerConfig]
    keymap: Callable[[TransformerConfig], KeyMap]
    convert_in: Callable[[dict, TransformerConfig], dict] | None = None    # e.g. split GPT-2's fused c_attn
    convert_out: Callable[[dict, TransformerConfig], dict] | None = None


_FAMILIES: dict[str, Family] = {}


def register_model(name: str, *, config_from_hf, keymap, convert_in=None, convert_out=None, aliases=()):
    """Class decorator registering a model family under `name` (and HF `model_type` aliases)."""
    def wrap(cls: type) -> type:
        fam = Family(name, cls, config_from_hf, keymap, convert_in, convert_out)
        for n in (name, *aliases):
            if n in _FAMILIES:
                raise ValueError(f"model family {n!r} is registered twice")
            _FAMILIES[n] = fam
        return cls
    return wrap


def model_names() -> list[str]:
    return sorted(_FAMILIES)


def _family(name: str) -> Family:
    import kexue.models  # noqa: F401  (importing the package registers every family)
    if name not in _FAMILIES:
        raise ValueError(f"model={name!r} is not supported; expected one of {model_names()}")
    return _FAMILIES[name]


def build_transformer_model(checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | dict | None = None,
                            model: str | None = None, application: str | None = None, with_pool: bool = False,
                            with_mlm: bool = False, keep_tokens: Sequence[int] | None = None,
                            compound_tokens: Sequence[Sequence[int] | tuple[Sequence[int], Sequence[float]]] | None = None,
                            strict: bool = True, **overrides: Any) -> nn.Module:
    """Build a model from a HF-format checkpoint dir (config.json + weights) or from a config alone.

    `model` defaults to the config's `model_type`; `application` ("encoder" | "lm" | "unilm") defaults to
    the family's own ("encoder" for BERT-likes, "lm" for GPTs; T5 is an encoder-decoder); `overrides` replace TransformerConfig fields (e.g.
    `num_layers=3` keeps the first three layers of the checkpoint, as BERT-of-Theseus successors do).
    `keep_tokens` shrinks the vocabulary to the listed ids; `compound_tokens` appends new tokens whose
    embedding is the (weighted) mean of the listed kept ids (bert4keras semantics)."""
    if checkpoint is None and config is None:
        raise ValueError("build_transformer_model needs a checkpoint directory or a config")
    hf = read_hf_config(config if config is not None else checkpoint)
    name = model or hf.get("model_type")
    if name is None:
        raise ValueError("config has no 'model_type'; pass model='bert' (or another family)")
    fam = _family(name)
    cfg = fam.config_from_hf(hf)
    if "model_type" not in hf:          # a bare config dict: record the family under HF's name for it
        cfg = cfg.replace(model_type=HF_MODEL_TYPES.get(fam.name, fam.name))
    original_layers = cfg.num_layers
    cfg = cfg.replace(**overrides) if overrides else cfg
    original_vocab = cfg.vocab_size
    if keep_tokens is not None or compound_tokens is not None:
        kept = len(keep_tokens) if keep_tokens is not None else cfg.vocab_size
        cfg = cfg.replace(vocab_size=kept + len(compound_tokens or ()))
    mode = {} if application is None else {"application": application}   # None: the family's default
    net = fam.cls(cfg, with_pool=with_pool, with_mlm=with_mlm, **mode)
    net.family = fam
    net.load_report = None
    if checkpoint is not None:
        state = read_state_dict(checkpoint)
        if fam.convert_in is not None:
            state = fam.convert_in(state, cfg)
        keymap = fam.keymap(cfg)
        if cfg.num_layers < original_layers:
            state = _drop_layers(state, keymap, cfg.num_layers)
        if keep_tokens is not None or compound_tokens is not None:
            state = _vocab_surgery(state, keymap, original_vocab, keep_tokens, compound_tokens)
        net.load_report = load_into(net, state, keymap, strict=strict)
    return net


def _drop_layers(state: dict[str, Tensor], keymap: KeyMap, num_layers: int) -> dict[str, Tensor]:
    """Keep the first `num_layers` blocks of the checkpoint (the `num_layers` override)."""
    out = {}
    for k, v in state.items():
        kx = keymap.to_kexue(k)
        parts = kx.split(".") if kx else []
        if len(parts) > 1 and parts[0] in ("blocks", "encoder_blocks", "decoder_blocks") and int(parts[1]) >= num_layers:
            continue
        out[k] = v
    return out


def _vocab_surgery(state, keymap, vocab_size, keep_tokens, compound_tokens):
    """Re-index every vocabulary-sized tensor (embeddings, MLM bias / decoder, LM head)."""
    out = dict(state)
    for k, v in state.items():
        kx = keymap.to_kexue(k) or ""
        if not kx.endswith(VOCAB_KEYS) or v.shape[0] != vocab_size:
            continue
        if keep_tokens is not None:
            idx = torch.as_tensor(list(keep_tokens), dtype=torch.long)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
                raise ValueError(f"keep_tokens holds ids outside the checkpoint vocabulary [0, {vocab_size})")
            v = v[idx]
        rows = []
        for item in compound_tokens or ():
            ids, weights = (item if isinstance(item, tuple) else (item, [1.0] * len(item)))
            if not len(ids):
                raise ValueError("compound_tokens: each entry needs at least one token id, got []")
            w = torch.as_tensor(weights, dtype=torch.float64)
            rows.append((v[list(ids)].double() * w.view(-1, *[1] * (v.dim() - 1))).sum(0).div(w.sum()).to(v.dtype))
        out[k] = torch.cat([v, torch.stack(rows)]) if rows else v
    return out


def save_pretrained(net: nn.Module, directory: str | os.PathLike) -> None:
    """Write `config.json` + `model.safetensors` in HF format; `transformers` loads them back."""
    fam: Family = net.family
    cfg: TransformerConfig = net.config
    os.makedirs(directory, exist_ok=True)
    keymap = fam.keymap(cfg)
    state = {keymap.to_hf(k): v for k, v in net.state_dict().items()}
    if fam.convert_out is not None:
        state = fam.convert_out(state, cfg)
    hf = copy.deepcopy(cfg.hf) if cfg.hf else {}
    hf.update(fam.cls.hf_config_updates(cfg))
    write_safetensors(state, os.path.join(os.fspath(directory), "model.safetensors"))
    with open(os.path.join(os.fspath(directory), "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf, f, indent=2, sort_keys=True)
