"""State-dict surgery applied while loading: keep a subset of the vocabulary (bert4keras `keep_tokens`), add
tokens as weighted means of existing ones (`compound_tokens`) and keep the first layers (the `num_layers`
override). Pure functions of a checkpoint's HF-named state dict (https://kexue.fm/archives/7292)."""
from __future__ import annotations

import math
import numbers
from collections import Counter
from typing import Any

import torch
from torch import Tensor

from .loading import KeyMap

__all__ = ["VOCAB_KEYS", "check_vocab_args", "drop_layers", "vocab_surgery"]

VOCAB_KEYS = ("embeddings.word.weight", "mlm.bias", "mlm.decoder", "lm_head.weight", "shared.weight")


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


def check_vocab_args(keep_tokens, compound_tokens, vocab_size: int):
    """Validated (keep_tokens, compound_tokens as [(ids, weights)]) for `vocab_surgery`."""
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


def drop_layers(state: dict[str, Tensor], keymap: KeyMap, num_layers: int) -> dict[str, Tensor]:
    """Keep the first `num_layers` blocks of the checkpoint (the `num_layers` override)."""
    out = {}
    for k, v in state.items():
        kx = keymap.to_kexue(k)
        parts = kx.split(".") if kx else []
        if len(parts) > 1 and parts[0] in ("blocks", "encoder_blocks", "decoder_blocks") and int(parts[1]) >= num_layers:
            continue
        out[k] = v
    return out


def vocab_surgery(state, keymap, vocab_size, keep_tokens, compound_tokens):
    """Re-index every vocabulary-sized tensor (embeddings, MLM bias / decoder, LM head)."""
    out = dict(state)
    for k, v in state.items():
        kx = keymap.to_kexue(k) or ""
        if not kx.endswith(VOCAB_KEYS) or v.shape[0] != vocab_size:
            continue
        if keep_tokens is not None:
            v = v[torch.as_tensor(keep_tokens, dtype=torch.long)]
        rows = []
        for ids, weights in compound_tokens or ():       # validated by check_vocab_args
            w = torch.as_tensor(weights, dtype=torch.float64)
            rows.append((v[list(ids)].double() * w.view(-1, *[1] * (v.dim() - 1))).sum(0).div(w.sum()).to(v.dtype))
        out[k] = torch.cat([v, torch.stack(rows)]) if rows else v
    return out
