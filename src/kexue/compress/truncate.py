"""Successor initialisation for BERT-of-Theseus (https://kexue.fm/archives/7575): a copy of a backbone that
keeps n of its layers. Su takes the first layers of the pretrained model (`which="first"`, the same as
`build_transformer_model(ckpt, num_layers=n)`); "every_k" keeps layers 0, k, 2k, ... (k = L / n)."""
from __future__ import annotations

import copy

from torch import nn

__all__ = ["truncate_layers"]


def truncate_layers(backbone: nn.Module, n_layers: int, which: str = "first") -> nn.Module:
    """A deep copy of `backbone` (a kexue Transformer) with n_layers of its layers; the original is untouched."""
    L = backbone.num_layers
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= L:
        raise ValueError(f"n_layers must be an int in [1, {L}] (the backbone's num_layers), got {n_layers!r}")
    if which == "first":
        keep = list(range(n_layers))
    elif which == "every_k":
        if L % n_layers:
            raise ValueError(f"which='every_k' needs n_layers to divide num_layers={L}, got n_layers={n_layers}")
        keep = list(range(0, L, L // n_layers))
    else:
        raise ValueError(f"which={which!r} is not supported; expected 'first' or 'every_k'")
    new = copy.deepcopy(backbone)
    cfg = new.config
    groups = len(new.blocks)
    if groups == L:                                         # one block per layer
        new.blocks = nn.ModuleList([new.blocks[new.layer_map[i]] for i in keep])
        new.layer_map = list(range(n_layers))
        new_groups = None if cfg.num_hidden_groups is None else n_layers
    elif groups == 1:                                       # ALBERT with every layer sharing one block
        new.layer_map = [0] * n_layers
        new_groups = cfg.num_hidden_groups
    else:
        raise ValueError(f"cannot truncate a backbone whose {L} layers share {groups} blocks; expected "
                         "one block per layer or a single shared block")
    new.config = cfg.replace(num_layers=n_layers, num_hidden_groups=new_groups)
    return new
