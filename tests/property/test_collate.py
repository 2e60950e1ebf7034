"""Property tests for nested batches (issue 9): `collate_padded` over generated structures of dicts and tuples
equals padding each leaf by hand; a Trainer splits generated tuple batches by the documented rule; generated
broken structures and pad paths give clear errors naming the field or `pad_values`."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.data import collate_padded
from kexue.train import Trainer
from tests.property.clear_error import CLEAR

# a structure: "leaf" or ("tuple", [children]) or ("dict", {key: child})
STRUCT = st.recursive(st.just("leaf"),
                      lambda kids: st.one_of(st.tuples(st.just("tuple"), st.lists(kids, min_size=1, max_size=3)),
                                             st.tuples(st.just("dict"), st.dictionaries(
                                                 st.sampled_from(["a", "b", "c"]), kids, min_size=1, max_size=3))),
                      max_leaves=5)


def _paths(struct, prefix=()):
    if struct == "leaf":
        return [prefix]
    kind, kids = struct
    items = enumerate(kids) if kind == "tuple" else kids.items()
    return [p for k, child in items for p in _paths(child, prefix + (k,))]


def _sample(struct, draw_len, path=()):
    if struct == "leaf":
        n = draw_len(path)
        return [hash((path, i)) % 50 + 1 for i in range(n)]
    kind, kids = struct
    if kind == "tuple":
        return tuple(_sample(c, draw_len, path + (k,)) for k, c in enumerate(kids))
    return {k: _sample(c, draw_len, path + (k,)) for k, c in kids.items()}


def _get(x, path):
    for k in path:
        x = x[k]
    return x


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(struct=STRUCT, lengths=st.lists(st.lists(st.integers(0, 4), min_size=8, max_size=8), min_size=1, max_size=4),
       pads=st.dictionaries(st.integers(0, 7), st.integers(-5, -1), max_size=3))
def test_collate_padded_equals_padding_each_leaf_by_hand(struct, lengths, pads):
    paths = _paths(struct)
    index = {p: k for k, p in enumerate(paths)}
    samples = [_sample(struct, lambda p, row=row: row[index[p] % 8]) for row in lengths]
    if struct == "leaf":
        pad_values = {}
    else:
        pad_values = {paths[k % len(paths)]: v for k, v in pads.items()}
    out = collate_padded(samples, pad_values=pad_values)
    for p in paths:
        rows = [_get(s, p) for s in samples]
        n = max(len(r) for r in rows)
        value = pad_values.get(p, 0)
        expected = [r + [value] * (n - len(r)) for r in rows]
        got = _get(out, p)
        assert got.shape == (len(samples), n) and got.tolist() == expected


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(struct=STRUCT, broken=st.sampled_from(["drop", "retype", "pad_path", "ragged"]), k=st.integers(0, 7))
def test_broken_samples_and_pad_paths_give_clear_errors(struct, broken, k):
    paths = _paths(struct)
    samples = [_sample(struct, lambda p: 2), _sample(struct, lambda p: 3)]
    pad_values = {}
    target = paths[k % len(paths)]
    if broken == "pad_path":
        pad_values = {target + ("zz",): 1}
    elif broken == "drop":                                      # one field fewer in sample 1 (root: a dict)
        samples[1] = _replace(samples[1], target[:-1], lambda parent: (
            {k: v for k, v in parent.items() if k != target[-1]} if isinstance(parent, dict)
            else tuple(v for i, v in enumerate(parent) if i != target[-1]))) if target else {"x": [1]}
    else:
        bad = {"ragged": [[1, 2], [3]], "retype": "text"}[broken]
        samples[1] = _replace(samples[1], target, lambda _: bad)
    with pytest.raises(CLEAR) as err:                           # every broken batch is refused, never padded
        collate_padded(samples, pad_values=pad_values)
    assert any(w in str(err.value) for w in ("field", "sample", "pad_values")), str(err.value)


def _replace(x, path, fn):
    """A copy of the structure x with fn applied to the node at path."""
    if not path:
        return fn(x)
    if isinstance(x, tuple):
        return tuple(_replace(v, path[1:], fn) if i == path[0] else v for i, v in enumerate(x))
    return {k: _replace(v, path[1:], fn) if k == path[0] else v for k, v in x.items()}


class _Sum(nn.Module):
    """model(*inputs) -> the sum of its positional inputs' means: counts how many it was given."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, *xs):
        self.seen = len(xs)
        return self.w * sum(x.double().mean() for x in xs)


@pytest.mark.timeout(60)
@settings(max_examples=30)
@given(n_items=st.integers(2, 5), nested=st.booleans())
def test_trainer_splits_tuple_batches_last_item_is_the_target(n_items, nested):
    xs = [torch.randn(3, 2) for _ in range(n_items - 1)]
    y = torch.randn(3)
    batch = ((tuple(xs), y) if nested else (*xs, y))
    got = {}

    def loss_fn(out, target):
        got["target"] = target
        return out * 0 + F.mse_loss(target, target)
    m = _Sum()
    Trainer(m, None, loss_fn).evaluate([batch])
    assert got["target"] is y or torch.equal(got["target"], y)
    assert m.seen == n_items - 1
