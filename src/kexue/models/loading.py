"""Reading and writing Hugging Face checkpoints, strictly.

- `read_state_dict(dir)`: model.safetensors, pytorch_model.bin (torch.load with weights_only=True), or a
  sharded `*.index.json`; safetensors preferred.
- `KeyMap`: a family's bidirectional list of key templates ("encoder.layer.{i}.attention.self.query.weight"
  <-> "blocks.{i}.attn.q.weight"), plus the family prefix ("bert.") that may or may not be present.
- `load_into(model, hf_state, keymap, strict=True)`: every checkpoint key must map to a model key with the
  same shape and every model key must be filled; otherwise a `CheckpointError` names the keys and shapes.
  Keys of heads the model was built without (pooler, MLM, NSP) are skipped and reported, never silently
  used; `strict=False` loads what fits and reports the rest.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["CheckpointError", "KeyMap", "LoadReport", "read_state_dict", "load_into", "write_safetensors"]


HEAD_MODULES = ("pooler", "mlm", "lm_head")


class CheckpointError(KeyError):
    """A checkpoint does not fit the model: missing, unexpected or mis-shaped weights."""

    def __str__(self) -> str:   # KeyError would repr() the message
        return str(self.args[0])


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)          # model keys filled from the checkpoint
    skipped_heads: list[str] = field(default_factory=list)   # checkpoint keys of heads not built
    ignored: list[str] = field(default_factory=list)         # buffers / known extras (position_ids, ...)
    missing: list[str] = field(default_factory=list)         # only with strict=False
    unexpected: list[str] = field(default_factory=list)      # only with strict=False
    mismatched: list[str] = field(default_factory=list)      # only with strict=False

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for name in ("skipped_heads", "ignored", "missing", "unexpected", "mismatched"):
            items = getattr(self, name)
            if items:
                parts.append(f"{name.replace('_', ' ')}: {', '.join(items)}")
        return "; ".join(parts)


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


class KeyMap:
    """Bidirectional key renaming between a family's HF checkpoint and kexue modules."""

    def __init__(self, pairs: list[tuple[str, str]], prefix: str | tuple[str, ...] = "",
                 ignore: tuple[str, ...] = (), heads: tuple[str, ...] = ()):
        self.pairs = [(hf, kx, _template_regex(hf), _template_regex(kx)) for hf, kx in pairs]
        self.prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)   # first one is written
        self.prefix = self.prefixes[0]
        self.ignore = [re.compile(p) for p in ignore]      # regexes of checkpoint keys to drop silently
        self.heads = heads                                 # checkpoint prefixes of heads (outside `prefix`)

    @staticmethod
    def _rename(key: str, src: re.Pattern, dst: str) -> str | None:
        m = src.match(key)
        if m is None:
            return None
        return dst.replace("{i}", m.group("i")) if "{i}" in dst else dst

    def to_kexue(self, hf_key: str) -> str | None:
        for prefix in self.prefixes:
            if prefix and hf_key.startswith(prefix):
                hf_key = hf_key[len(prefix):]
                break
        for _, kx, hf_re, _ in self.pairs:
            out = self._rename(hf_key, hf_re, kx)
            if out is not None:
                return out
        return None

    def to_hf(self, kx_key: str) -> str:
        for hf, _, _, kx_re in self.pairs:
            out = self._rename(kx_key, kx_re, hf)
            if out is not None:
                return out if self.heads and out.startswith(self.heads) else self.prefix + out
        raise CheckpointError(f"no Hugging Face name for kexue weight {kx_key!r}")

    def ignored(self, hf_key: str) -> bool:
        return any(p.search(hf_key) for p in self.ignore)


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """All tensors of a checkpoint directory (or a single weights file)."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return _read_file(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint: {path!r} is neither a directory nor a weights file")
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        ipath = os.path.join(path, index)
        if os.path.isfile(ipath):
            with open(ipath, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update(_read_file(os.path.join(path, shard)))
            return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(path, name)):
            return _read_file(os.path.join(path, name))
    raise FileNotFoundError(f"checkpoint: no model.safetensors, pytorch_model.bin or shard index in {path!r}")


def _read_file(path: str) -> dict[str, Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r} does not hold a state dict (got {type(state).__name__})")
    return state


def load_into(model: nn.Module, hf_state: dict[str, Tensor], keymap: KeyMap, strict: bool = True) -> LoadReport:
    """Copy a (renamed) HF state dict into `model`; see the module docstring for the rules."""
    own = model.state_dict()
    report, unexpected, mismatched, filled = LoadReport(), [], [], {}
    for hf_key, tensor in hf_state.items():
        kx = keymap.to_kexue(hf_key)
        if kx is None:
            if keymap.ignored(hf_key):
                report.ignored.append(hf_key)
            else:
                unexpected.append(f"{hf_key} {tuple(tensor.shape)}")
            continue
        if kx not in own:
            if keymap.ignored(hf_key):
                report.ignored.append(hf_key)
            elif kx.split(".")[0] in HEAD_MODULES:
                report.skipped_heads.append(hf_key)       # a head the model was built without
            else:
                unexpected.append(f"{hf_key} {tuple(tensor.shape)} (no {kx} in the model)")
            continue
        if own[kx].shape != tensor.shape:
            mismatched.append(f"{hf_key} -> {kx}: checkpoint {tuple(tensor.shape)} vs model {tuple(own[kx].shape)}")
            continue
        filled[kx] = tensor
    missing = [f"{k} {tuple(v.shape)}" for k, v in own.items() if k not in filled]
    if strict and (missing or unexpected or mismatched):
        lines = ["checkpoint does not fit the model (pass strict=False to load what fits):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for kx, tensor in filled.items():
            own[kx].copy_(tensor)
    report.loaded = sorted(filled)
    report.missing, report.unexpected, report.mismatched = missing, unexpected, mismatched
    return report


def write_safetensors(state: dict[str, Tensor], path: str) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata={"format": "pt"})
