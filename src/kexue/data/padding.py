"""Dynamic padding (https://kexue.fm/archives/6736): each batch padded to its own longest sequence."""
from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from kexue._pad_dtype import check_pad_value, common_numpy_dtype, common_torch_dtype
from kexue._validate import check_int
from kexue.ops import sequence_padding

__all__ = ["sequence_padding", "sequence_padding_nd", "collate_padded"]


def sequence_padding_nd(inputs: Sequence, length: int | Sequence[int] | None = None, value: Any = 0,
                        seq_dims: int = 1, mode: str = "post", dtype=None) -> np.ndarray:
    """bert4keras `sequence_padding` in numpy: pad (or cut to the first `length`) the leading `seq_dims`
    axes of every array to a common shape -> [B, *length, *rest]; `mode='pre'` pads on the left. The result
    keeps the inputs' dtype (mixed rows promoted, empty rows not counted) unless `dtype` is given; `value`
    must fit it."""
    if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__"):
        raise TypeError(f"inputs must be a sequence of rows (a list, tuple or array), got {type(inputs).__name__}")
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one sequence, got an empty list")
    if mode not in ("post", "pre"):
        raise ValueError(f"mode must be 'post' or 'pre', got {mode!r}")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError as e:
            raise TypeError(f"dtype must be a numpy dtype or None, got {dtype!r}") from e
    arrays = []
    for k, x in enumerate(inputs):
        try:
            arrays.append(np.asarray(x, dtype=dtype))
        except (ValueError, TypeError) as e:
            raise ValueError(f"inputs[{k}] is not a regular array of numbers: {e}") from e
    if isinstance(seq_dims, bool) or not isinstance(seq_dims, int) or not 1 <= seq_dims <= arrays[0].ndim:
        raise ValueError(f"seq_dims must be an int in [1, {arrays[0].ndim}] (the arrays' rank), got {seq_dims!r}")
    rest = arrays[0].shape[seq_dims:]
    for k, x in enumerate(arrays):
        if x.ndim != arrays[0].ndim or x.shape[seq_dims:] != rest:
            raise ValueError(f"inputs[{k}] has shape {x.shape}, expected rank {arrays[0].ndim} and trailing "
                             f"shape {rest} like inputs[0]")
    if length is None:
        length = [int(n) for n in np.max([x.shape[:seq_dims] for x in arrays], axis=0)]
    elif np.ndim(length) == 0:
        length = [check_int("length", length, low=0)] * seq_dims
    else:
        length = [check_int(f"length[{k}]", n, low=0) for k, n in enumerate(length)]
    if len(length) != seq_dims:
        raise ValueError(f"length must give {seq_dims} sizes (one per seq_dims axis), got {length}")
    dtype = common_numpy_dtype(inputs, arrays) if dtype is None else np.dtype(dtype)
    check_pad_value("value", value, dtype)
    out = np.full((len(arrays), *length, *rest), value, dtype=dtype)
    for k, x in enumerate(arrays):
        x = x[tuple(slice(0, n) for n in length)]
        if mode == "post":
            region = tuple(slice(0, s) for s in x.shape[:seq_dims])
        else:
            region = tuple(slice(n - s, n) for n, s in zip(length, x.shape[:seq_dims]))
        out[(k, *region)] = x
    return out


def _collate_field(values: list, pad_value, name: str, pad_name: str) -> Any:
    first = values[0]
    if isinstance(first, (str, bytes)) or first is None:
        return list(values)
    try:
        tensors = [torch.as_tensor(v) for v in values]
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"field {name}: holds values that are not numbers or sequences of numbers: {e}") from e
    dtype = common_torch_dtype(values, tensors)
    tensors = [t.to(dtype) for t in tensors]
    if tensors[0].dim() == 0:
        for k, t in enumerate(tensors):
            if t.dim() != 0:
                raise ValueError(f"field {name}: sample {k} has shape {tuple(t.shape)}, expected a scalar like "
                                 "sample 0")
        return torch.stack(tensors)                                                 # [B]
    for k, t in enumerate(tensors):
        if t.dim() != tensors[0].dim() or t.shape[1:] != tensors[0].shape[1:]:
            raise ValueError(f"field {name}: sample {k} has shape {tuple(t.shape)}, expected "
                             f"(n, {', '.join(map(str, tensors[0].shape[1:]))}) like sample 0".replace(", )", ")"))
    check_pad_value(pad_name, pad_value, dtype)
    return pad_sequence(tensors, batch_first=True, padding_value=pad_value)         # [B, n_max, ...]


def _is_number(x) -> bool:
    return isinstance(x, (numbers.Number, np.generic))


def _is_node(x, top: bool) -> bool:
    """Mappings and tuples are structure; below the top level a tuple of plain numbers is one leaf (a span)."""
    if isinstance(x, Mapping):
        return True
    if isinstance(x, tuple):
        return top or not all(_is_number(v) for v in x)
    return False


def _field_name(path: tuple) -> str:
    return repr(path[0]) if len(path) == 1 else repr(path) if path else "0"


def _pad_for(path: tuple, pad_value, pad_values: dict, used: set) -> tuple[Any, str]:
    """The pad value of the leaf at `path`: the longest prefix of it in `pad_values` (a top-level key may be
    given bare: {"labels": -100} means {("labels",): -100}), else `pad_value`."""
    for n in range(len(path), 0, -1):
        for key in ((path[:n], path[0]) if n == 1 else (path[:n],)):
            if key in pad_values:
                used.add(key)
                return pad_values[key], f"pad_values[{key!r}]"
    return pad_value, "pad_value"


def _collate_tree(values: list, path: tuple, pad_value, pad_values: dict, used: set, leaves: list):
    first = values[0]
    where = f"at field {_field_name(path)} " if path else ""
    if _is_node(first, top=not path):
        if isinstance(first, Mapping):
            keys = list(first)
            for k, s in enumerate(values):
                if not isinstance(s, Mapping) or list(s) != keys:
                    got = list(s) if isinstance(s, Mapping) else type(s).__name__
                    raise ValueError(f"sample {k} {where}has keys {got}, expected {keys} like sample 0")
            return {key: _collate_tree([s[key] for s in values], path + (key,), pad_value, pad_values, used,
                                       leaves) for key in keys}
        for k, s in enumerate(values):
            if not isinstance(s, tuple) or len(s) != len(first):
                raise ValueError(f"sample {k} {where}is not a tuple of {len(first)} fields like sample 0: "
                                 f"{repr(s)[:60]}")
        fields = [_collate_tree([s[j] for s in values], path + (j,), pad_value, pad_values, used, leaves)
                  for j in range(len(first))]
        return type(first)(*fields) if hasattr(first, "_fields") else tuple(fields)
    leaves.append(path)
    value, pad_name = _pad_for(path, pad_value, pad_values, used)
    return _collate_field(values, value, _field_name(path), pad_name)


def collate_padded(batch: Sequence, pad_value: int | float = 0, pad_values: Mapping | None = None):
    """`collate_fn` for a torch DataLoader with dynamic padding (https://kexue.fm/archives/6736).

    A sample is a nested structure of dicts and tuples (namedtuples kept) whose leaves are sequences,
    scalars or strings: `((ids, segs), label)`, `{"inputs": (ids, segs), "labels": tags}`, dicts of dicts,
    or a single sequence. The batch has the same structure with every leaf collated on its own: sequences
    right-padded to the batch's longest (-> [B, n_max, ...]), scalars stacked (-> [B]), strings kept as
    lists. Lists, arrays and tensors are leaves; below the top level a tuple made only of numbers is a leaf
    too (a span `(start, end)` -> [B, 2]).

    `pad_values` overrides `pad_value` per field, addressed by its path of keys / tuple positions:
    `{"labels": -100}`, `{1: -100}` (a top-level key may be given bare), `{(0, 1): 0}` (the segments of
    `((ids, segs), y)`), `{("inputs", "mask"): 0}`; a path to a sub-structure applies to every leaf under
    it, and the longest matching path wins. A key that addresses no field is an error (a typo would
    otherwise pad silently with `pad_value`). Each field keeps its samples' dtype (promoted when they
    differ; an empty sequence does not count) and its pad value must fit it."""
    if len(batch) == 0:
        raise ValueError("batch must hold at least one sample, got an empty batch")
    if pad_values is not None and not isinstance(pad_values, Mapping):
        raise TypeError(f"pad_values must be a dict from field paths to pad values, got {type(pad_values).__name__}")
    pad_values = dict(pad_values or {})
    used: set = set()
    leaves: list = []
    out = _collate_tree(list(batch), (), pad_value, pad_values, used, leaves)
    unknown = [k for k in pad_values if k not in used and not _addresses_a_leaf(k, leaves)]
    if unknown:
        raise KeyError(f"pad_values key {unknown[0]!r} addresses no field of the samples; the fields are "
                       f"{[p[0] if len(p) == 1 else p for p in leaves]}")
    return out


def _addresses_a_leaf(key, leaves: list) -> bool:
    path = key if isinstance(key, tuple) else (key,)
    return any(leaf[:len(path)] == path for leaf in leaves)
