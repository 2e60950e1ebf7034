"""Reading and writing Hugging Face checkpoints, strictly.

- `read_state_dict(dir)`: model.safetensors, pytorch_model.bin (torch.load with weights_only=True), or a
  sharded `*.index.json`; safetensors preferred. Each key of a sharded checkpoint is read from the shard the
  index names; shard names that resolve outside the folder (`..`, absolute paths, symlinks) are refused.
  A file that cannot be read (empty, truncated, not a weights file) is a `CheckpointError` naming it;
  safetensors written by kexue carry a digest of their tensors, so flipped bytes are caught too.
- `KeyMap`: a family's bidirectional list of key templates ("encoder.layer.{i}.attention.self.query.weight"
  <-> "blocks.{i}.attn.q.weight"), plus the family prefix ("bert.") that may or may not be present.
- `load_into(model, hf_state, keymap, strict=True)`: every checkpoint key must map to a model key with the
  same shape and every model key must be filled; otherwise a `CheckpointError` names the keys and shapes.
  Keys of heads the model was built without (pooler, MLM, NSP) are skipped and reported, never silently
  used; `strict=False` loads what fits and reports the rest. Integer weights for float parameters are
  refused, and so are NaN / inf values unless `allow_nonfinite=True`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["CheckpointError", "KeyMap", "LoadReport", "read_state_dict", "load_into", "write_safetensors"]


HEAD_MODULES = ("pooler", "mlm", "lm_head")


DIGEST_KEY = "kexue_sha256"     # safetensors metadata: sha256 of every tensor (name, dtype, shape, bytes)


class CheckpointError(KeyError):
    """A checkpoint is unreadable or does not fit the model: a corrupt file, missing, unexpected, mis-shaped
    or non-finite weights."""

    def __str__(self) -> str:   # KeyError would repr() the message
        return str(self.args[0])


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)          # model keys filled from the checkpoint
    skipped_heads: list[str] = field(default_factory=list)   # checkpoint keys of heads not built
    ignored: list[str] = field(default_factory=list)         # buffers / known extras (position_ids, ...)
    missing: list[str] = field(default_factory=list)         # only with strict=False: left randomly initialised
    unexpected: list[str] = field(default_factory=list)      # only with strict=False
    mismatched: list[str] = field(default_factory=list)      # only with strict=False

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for name in ("skipped_heads", "ignored", "missing", "unexpected", "mismatched"):
            items = getattr(self, name)
            if items:
                label = "missing (randomly initialised)" if name == "missing" else name.replace("_", " ")
                parts.append(f"{label}: {', '.join(items)}")
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
            return _read_sharded(path, ipath)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(path, name)):
            return _read_file(os.path.join(path, name))
    raise FileNotFoundError(f"checkpoint: no model.safetensors, pytorch_model.bin or shard index in {path!r}")


def _read_index(folder: str, ipath: str) -> dict[str, str]:
    """The index's weight_map {key: shard file}, every shard resolved inside `folder`."""
    try:
        with open(ipath, encoding="utf-8") as f:
            index = json.load(f)
    except ValueError as e:
        raise CheckpointError(f"shard index {ipath!r} is not valid JSON ({e})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if (not isinstance(weight_map, dict) or not weight_map
            or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items())):
        raise CheckpointError(f"shard index {ipath!r} must hold {{'weight_map': {{weight name: shard file name}}}}, "
                              f"got {str(index)[:200]}")
    root = os.path.realpath(folder)
    roots = [root] + _hub_blobs(folder)
    for shard in sorted(set(weight_map.values())):
        lexical = os.path.normpath(os.path.join(root, shard))
        full = os.path.realpath(os.path.join(folder, shard))
        inside = lexical != root and os.path.commonpath([root, lexical]) == root
        if os.path.isabs(shard) or not inside or not any(os.path.commonpath([r, full]) == r for r in roots):
            raise CheckpointError(f"shard index {ipath!r} names shard {shard!r}, which resolves to {full!r}, "
                                  f"outside the checkpoint folder {root!r}; refusing to read it")
    return weight_map


def _hub_blobs(folder: str) -> list[str]:
    """The Hugging Face cache keeps a snapshot's files as symlinks into `<repo>/blobs`
    (`<repo>/snapshots/<revision>/<file>` -> `../../blobs/<sha>`): links there are not an escape."""
    snapshots = os.path.dirname(os.path.abspath(folder))
    if os.path.basename(snapshots) != "snapshots":
        return []
    return [os.path.realpath(os.path.join(os.path.dirname(snapshots), "blobs"))]


def _read_sharded(folder: str, ipath: str) -> dict[str, Tensor]:
    """Each key from the shard the index names; a key the index and its shards disagree on is an error."""
    weight_map = _read_index(folder, ipath)
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        spath = os.path.join(folder, shard)
        if not os.path.isfile(spath):
            raise CheckpointError(f"shard {shard!r} named by {ipath!r} does not exist")
        tensors = _read_file(spath)
        wanted = [k for k, v in weight_map.items() if v == shard]
        absent = [k for k in wanted if k not in tensors]
        if absent:
            raise CheckpointError(f"{ipath!r} maps {len(absent)} weights to {shard!r}, which lacks them: "
                                  + ", ".join(absent[:20]))
        unlisted = [k for k in tensors if k not in weight_map]
        if unlisted:
            raise CheckpointError(f"shard {shard!r} holds {len(unlisted)} weights that the index {ipath!r} does not "
                                  "list (a stale or foreign shard?): " + ", ".join(unlisted[:20]))
        state.update({k: tensors[k] for k in wanted})        # copies the index maps elsewhere are stale
    return state


def tensor_digest(state: dict[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_file(path: str) -> dict[str, Tensor]:
    if path.endswith(".json"):
        raise CheckpointError(f"{path!r} is a JSON file, not a weights file (model.safetensors / pytorch_model.bin)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"weights file {path!r} is empty (0 bytes): an interrupted download or copy?")
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    _check_zip_crc(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # EOFError, zip / pickle errors, OSError on a zeroed tail, weights_only refusals
        raise CheckpointError(f"cannot read PyTorch weights file {path!r} (torch.load with weights_only=True): "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'}; the file "
                              "is truncated, corrupt, not a state dict, or pickles objects other than tensors") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path!r} does not hold a state dict (got {type(state).__name__})")
    bad = [f"{k!r} ({type(v).__name__})" for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path!r} must map weight names to tensors; these entries are not: " + ", ".join(bad[:20]))
    return state


def _check_zip_crc(path: str) -> None:
    """torch.save writes a zip whose members carry CRC-32s that torch.load never checks: check them, so a
    flipped or zeroed byte in the data is an error rather than a silently different weight."""
    if not zipfile.is_zipfile(path):
        return                                   # legacy format or damaged directory: torch.load reports it
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"PyTorch weights file {path!r} is corrupt: {type(e).__name__}: {e}") from e
    if bad is not None:
        raise CheckpointError(f"PyTorch weights file {path!r} is corrupt: member {bad!r} fails its CRC-32 check "
                              "(flipped or zeroed bytes)")


def _read_safetensors(path: str) -> dict[str, Tensor]:
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # SafetensorError: bad header, truncated data, ...
        raise CheckpointError(f"cannot read safetensors file {path!r}: {type(e).__name__}: {e}; the file is "
                              "truncated, corrupt or not a safetensors file") from e
    if DIGEST_KEY in meta and tensor_digest(state) != meta[DIGEST_KEY]:
        raise CheckpointError(f"safetensors file {path!r} is corrupt: its tensors do not match the sha256 digest "
                              "recorded when kexue saved it (flipped or zeroed bytes)")
    return state


def nonfinite_keys(state: dict[str, Tensor]) -> list[str]:
    """'key (count of numel)' for every float tensor holding NaN or inf."""
    out = []
    for k, t in state.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                out.append(f"{k} ({bad} of {t.numel()} values)")
    return out


def load_into(model: nn.Module, hf_state: dict[str, Tensor], keymap: KeyMap, strict: bool = True,
              allow_nonfinite: bool = False) -> LoadReport:
    """Copy a (renamed) HF state dict into `model`; see the module docstring for the rules."""
    own = model.state_dict()
    report, unexpected, mismatched, filled, source = LoadReport(), [], [], {}, {}
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
        if own[kx].is_floating_point() and not tensor.is_floating_point():
            mismatched.append(f"{hf_key} -> {kx}: checkpoint dtype {tensor.dtype}, expected a floating-point dtype "
                              f"(model {own[kx].dtype})")
            continue
        filled[kx], source[kx] = tensor, hf_key
    missing = [f"{k} {tuple(v.shape)}" for k, v in own.items() if k not in filled]
    if strict and (missing or unexpected or mismatched):
        lines = ["checkpoint does not fit the model (pass strict=False to load what fits):"]
        for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped or wrong dtype", mismatched)):
            if items:
                lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        heads = sorted({k.split(".")[0] for k in missing if k.split(".")[0] in HEAD_MODULES})
        if heads:
            lines.append(f"  the checkpoint has no weights for the {' / '.join(heads)} head the model was built with: "
                         "build without it (with_mlm=False / with_pool=False), or pass strict=False to start it "
                         "from a random initialisation (then train it before use)")
        raise CheckpointError("\n".join(lines))
    bad = [] if allow_nonfinite else nonfinite_keys({f"{source[k]} -> {k}": v for k, v in filled.items()})
    if bad:
        raise CheckpointError("checkpoint holds non-finite values (NaN / inf) in " + "; ".join(bad[:20])
                              + " (pass allow_nonfinite=True to load them anyway)")
    with torch.no_grad():
        for kx, tensor in filled.items():
            own[kx].copy_(tensor)
    report.loaded = sorted(filled)
    report.missing, report.unexpected, report.mismatched = missing, unexpected, mismatched
    if missing:
        warnings.warn(f"strict=False: {len(missing)} weights are not in the checkpoint and stay randomly initialised "
                      f"(train them before use): {'; '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""),
                      UserWarning, stacklevel=3)
    return report


def write_safetensors(state: dict[str, Tensor], path: str) -> None:
    """Atomic write (temp file + os.replace) with a digest of the tensors in the metadata."""
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"format": "pt", DIGEST_KEY: tensor_digest(state)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
