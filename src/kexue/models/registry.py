"""`build_transformer_model`: the one place where family names ("bert", HF `model_type`) are looked up.

Families register themselves with `@register_model(name, ...)` (timm style); string names appear only here.
"""
from __future__ import annotations

import copy
from collections import Counter
import json
import math
import numbers
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from .._validate import check_bool
from .config import ConfigKeyError, TransformerConfig, check_hf_types, config_path, read_hf_config
from .loading import KeyMap, load_into, nonfinite_keys, read_state_dict, write_safetensors

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
        cls.family = fam             # a directly constructed model (BERT(cfg)) knows its family and saves
        return cls
    return wrap


def model_names() -> list[str]:
    return sorted(_FAMILIES)


def _family(name: str, label: str = "model") -> Family:
    import kexue.models  # noqa: F401  (importing the package registers every family)
    if not isinstance(name, str) or name not in _FAMILIES:
        raise ValueError(f"{label}={name!r} is not supported; expected one of {model_names()}")
    return _FAMILIES[name]


def build_transformer_model(checkpoint: str | os.PathLike | None = None, config: str | os.PathLike | dict | None = None,
                            model: str | None = None, application: str | None = None, with_pool: bool = False,
                            with_mlm: bool = False, keep_tokens: Sequence[int] | None = None,
                            compound_tokens: Sequence[Sequence[int] | tuple[Sequence[int], Sequence[float]]] | None = None,
                            strict: bool = True, allow_nonfinite: bool = False, **overrides: Any) -> nn.Module:
    """Build a model from a HF-format checkpoint dir (config.json + weights) or from a config alone.

    `model` defaults to the config's `model_type`; `application` ("encoder" | "lm" | "unilm") defaults to
    the family's own ("encoder" for BERT-likes, "lm" for GPTs; T5 is an encoder-decoder); `overrides` replace TransformerConfig fields (e.g.
    `num_layers=3` keeps the first three layers of the checkpoint, as BERT-of-Theseus successors do).
    `keep_tokens` shrinks the vocabulary to the listed ids; `compound_tokens` appends new tokens whose
    embedding is the (weighted) mean of the listed kept ids (bert4keras semantics).
    Every config value is validated before anything is allocated; checkpoint weights holding NaN / inf are
    refused unless `allow_nonfinite=True`."""
    if checkpoint is None and config is None:
        raise ValueError("build_transformer_model needs a checkpoint directory or a config")
    for flag, value in (("with_pool", with_pool), ("with_mlm", with_mlm), ("strict", strict),
                        ("allow_nonfinite", allow_nonfinite)):
        check_bool(flag, value)
    if checkpoint is not None:
        _check_checkpoint_arg(checkpoint, config)
    source = config if config is not None else checkpoint
    hf = read_hf_config(source)
    where = "the config dict" if isinstance(source, dict) else repr(config_path(source))
    name = model or hf.get("model_type")
    if name is None:
        raise ValueError("config has no 'model_type'; pass model='bert' (or another family)")
    fam = _family(name, "model" if model else f"model_type (in {where})")
    cfg = _config_from_hf(fam, hf, where)
    if "model_type" not in hf:          # a bare config dict: record the family under HF's name for it
        cfg = cfg.replace(model_type=HF_MODEL_TYPES.get(fam.name, fam.name))
    original_layers = cfg.num_layers
    cfg = cfg.replace(**overrides) if overrides else cfg
    original_vocab = cfg.vocab_size
    if keep_tokens is not None or compound_tokens is not None:
        keep_tokens, compound_tokens = _check_vocab_args(keep_tokens, compound_tokens, original_vocab)
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
        net.load_report = load_into(net, state, keymap, strict=strict, allow_nonfinite=allow_nonfinite)
    return net


def _check_checkpoint_arg(checkpoint: Any, config: Any) -> None:
    """A checkpoint is a directory; a weights file is accepted only together with `config=`."""
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a directory path, got {type(checkpoint).__name__}")
    path = os.fspath(checkpoint)
    if os.path.isfile(path) and (config is None or path.endswith(".json")):
        raise ValueError(f"checkpoint must be a directory holding config.json and the weights, got a file "
                         f"{os.path.basename(path)} ({path!r}); pass config=... or the directory")


def _config_from_hf(fam: Family, hf: dict, where: str) -> TransformerConfig:
    """The family's `config_from_hf`, with errors that say which config and which key."""
    check_hf_types(hf, where)
    try:
        return fam.config_from_hf(hf)
    except KeyError as e:
        key = e.args[0] if e.args else "?"
        raise ConfigKeyError(f"{where} has no {key!r}, which model {fam.name!r} requires") from None
    except (TypeError, ValueError) as e:
        if type(e) in (TypeError, ValueError):
            raise type(e)(f"{e} (in {where})") from None
        raise


def _token_ids(name: str, ids: Any, size: int) -> list[int]:
    """A sequence of ints in [0, size) (numpy arrays and tensors accepted), else an error naming `name`."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"{name} must be a sequence of token ids, got {type(ids).__name__} {ids!r}"[:300])
    ids = list(ids)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, numbers.Integral)]
    if bad:
        raise TypeError(f"{name} must hold int token ids, got {bad[0]!r} ({type(bad[0]).__name__})")
    out = [int(i) for i in ids]
    outside = [i for i in out if not 0 <= i < size]
    if outside:
        raise ValueError(f"{name} holds ids {outside[:10]} outside the vocabulary [0, {size})")
    return out


def _check_vocab_args(keep_tokens, compound_tokens, vocab_size: int):
    """Validated (keep_tokens, compound_tokens as [(ids, weights)]) for `_vocab_surgery`."""
    if keep_tokens is not None:
        keep_tokens = _token_ids("keep_tokens", keep_tokens, vocab_size)
        if not keep_tokens:
            raise ValueError("keep_tokens is empty; it must list the token ids to keep")
        dups = [i for i, count in Counter(keep_tokens).items() if count > 1]
        if dups:
            raise ValueError(f"keep_tokens holds duplicate ids {sorted(set(dups))[:10]}; each kept token needs "
                             "its own id")
    if compound_tokens is None:
        return keep_tokens, None
    kept = len(keep_tokens) if keep_tokens is not None else vocab_size
    if isinstance(compound_tokens, (str, bytes)) or not hasattr(compound_tokens, "__iter__"):
        raise TypeError(f"compound_tokens must be a list of id lists or (ids, weights) tuples, "
                        f"got {type(compound_tokens).__name__}")
    out = []
    for j, item in enumerate(compound_tokens):
        name = f"compound_tokens[{j}]"
        ids, weights = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
        if weights is None and isinstance(item, list) and item and all(isinstance(x, (list, tuple)) for x in item):
            raise TypeError(f"{name} is a list of lists {str(item)[:80]}; write weighted entries as a tuple "
                            "(ids, weights) and plain entries as a list of ids")
        ids = _token_ids(f"{name} (ids of the kept vocabulary)", ids, kept)
        if not ids:
            raise ValueError(f"{name}: each entry needs at least one token id, got []")
        if weights is None:
            weights = [1.0] * len(ids)
        else:
            if isinstance(weights, Tensor):
                weights = weights.tolist()
            weights = list(weights)
            if len(weights) != len(ids) or not all(isinstance(w, numbers.Real) and not isinstance(w, bool)
                                                   for w in weights):
                raise ValueError(f"{name} has {len(ids)} ids but {len(weights)} weights {weights!r}; "
                                 "expected one real weight per id")
            weights = [float(w) for w in weights]
            if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"{name} weights {weights} must be finite and non-negative with a positive sum "
                                 "(the new embedding is their weighted mean)")
        out.append((ids, weights))
    return keep_tokens, out


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
            v = v[torch.as_tensor(keep_tokens, dtype=torch.long)]
        rows = []
        for ids, weights in compound_tokens or ():       # validated by _check_vocab_args
            w = torch.as_tensor(weights, dtype=torch.float64)
            rows.append((v[list(ids)].double() * w.view(-1, *[1] * (v.dim() - 1))).sum(0).div(w.sum()).to(v.dtype))
        out[k] = torch.cat([v, torch.stack(rows)]) if rows else v
    return out


def save_pretrained(net: nn.Module, directory: str | os.PathLike, allow_nonfinite: bool = False) -> None:
    """Write `config.json` + `model.safetensors` in HF format; `transformers` loads them back.
    Each file is written atomically; weights holding NaN / inf are refused unless `allow_nonfinite=True`."""
    fam: Family = net.family
    cfg: TransformerConfig = net.config
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"save_pretrained: {directory!r} exists and is not a directory")
    if not allow_nonfinite:
        bad = nonfinite_keys(net.state_dict())
        if bad:
            raise ValueError("save_pretrained: the model holds non-finite weights (NaN / inf) in "
                             + "; ".join(bad[:20]) + "; refusing to write a poisoned checkpoint "
                             "(pass allow_nonfinite=True to write it anyway)")
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):     # temp files of a save that was killed before its os.replace
        if name.startswith((".tmp-model.safetensors", ".tmp-config.json")):
            os.remove(os.path.join(directory, name))
    keymap = fam.keymap(cfg)
    state = {keymap.to_hf(k): v for k, v in net.state_dict().items()}
    if fam.convert_out is not None:
        state = fam.convert_out(state, cfg)
    hf = copy.deepcopy(cfg.hf) if cfg.hf else {}
    hf.update(fam.cls.hf_config_updates(cfg))
    write_safetensors(state, os.path.join(directory, "model.safetensors"))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-config.json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(hf, f, indent=2, sort_keys=True)
        os.replace(tmp, os.path.join(directory, "config.json"))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
