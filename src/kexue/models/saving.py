"""`save_pretrained`: a model's weights and config written in Hugging Face format, atomically, so that
`transformers` (and kexue) load them back; the inverse of loading through the family's key map."""
from __future__ import annotations

import copy
import json
import os
import tempfile

from torch import nn

from .loading import nonfinite_keys, write_safetensors

__all__ = ["save_pretrained"]


def save_pretrained(net: nn.Module, directory: str | os.PathLike, allow_nonfinite: bool = False) -> None:
    """Write `config.json` + `model.safetensors` in HF format; `transformers` loads them back.
    Each file is written atomically; weights holding NaN / inf are refused unless `allow_nonfinite=True`."""
    fam, cfg = net.family, net.config          # the registered Family and its TransformerConfig
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
