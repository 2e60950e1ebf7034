"""`build_transformer_model`: the one place where family names ("bert", HF `model_type`) are looked up.
State-dict surgery lives in `surgery.py` and saving in `saving.py`, beside `loading.py`.

Families register themselves with `@register_model(name, ...)` (timm style); string names appear only here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch import nn

from .._validate import check_bool
from .config import ConfigKeyError, TransformerConfig, check_hf_types, config_path, read_hf_config
from .loading import KeyMap, load_into, read_state_dict
from .saving import save_pretrained
from .surgery import check_vocab_args, drop_layers, vocab_surgery

__all__ = ["register_model", "build_transformer_model", "save_pretrained", "model_names", "Family"]

HF_MODEL_TYPES = {"gpt": "openai-gpt"}


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
        keep_tokens, compound_tokens = check_vocab_args(keep_tokens, compound_tokens, original_vocab)
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
            state = drop_layers(state, keymap, cfg.num_layers)
        if keep_tokens is not None or compound_tokens is not None:
            state = vocab_surgery(state, keymap, original_vocab, keep_tokens, compound_tokens)
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
