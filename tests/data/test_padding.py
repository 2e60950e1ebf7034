"""Dynamic padding helpers against closed forms and torch's DataLoader (https://kexue.fm/archives/6736)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kexue import ops
from kexue.data import DataGenerator, collate_padded, sequence_padding, sequence_padding_nd


def test_sequence_padding_is_the_ops_one():
    assert sequence_padding is ops.sequence_padding
    assert sequence_padding([[1, 2, 3], [4]]).tolist() == [[1, 2, 3], [4, 0, 0]]


def test_sequence_padding_nd_post_pre_and_multi_dim():
    seqs = [np.arange(1, 4), np.arange(1, 2), np.arange(1, 6)]
    assert sequence_padding_nd(seqs).tolist() == [[1, 2, 3, 0, 0], [1, 0, 0, 0, 0], [1, 2, 3, 4, 5]]
    assert sequence_padding_nd(seqs, length=4, value=-1, mode="pre").tolist() == [
        [-1, 1, 2, 3], [-1, -1, -1, 1], [1, 2, 3, 4]]  # cut keeps the first `length`, as bert4keras
    feats = [np.ones((2, 3)), np.ones((4, 3))]  # [n, d] features, pad the sequence axis only
    out = sequence_padding_nd(feats)
    assert out.shape == (2, 4, 3) and out[0, 2:].sum() == 0 and out[1].sum() == 12
    grids = [np.ones((2, 3)), np.ones((3, 1))]  # pad both axes (e.g. a pairwise label matrix)
    out = sequence_padding_nd(grids, seq_dims=2)
    assert out.shape == (2, 3, 3) and out.sum() == 6 + 3 and out[0, :2, :3].all() and out[1, :, :1].all()
    with pytest.raises(ValueError, match="mode must be 'post' or 'pre', got 'left'"):
        sequence_padding_nd(seqs, mode="left")
    with pytest.raises(ValueError, match="seq_dims must be an int in \\[1, 1\\]"):
        sequence_padding_nd(seqs, seq_dims=2)
    with pytest.raises(ValueError, match="inputs\\[1\\] has shape \\(4, 2\\)"):
        sequence_padding_nd([np.ones((2, 3)), np.ones((4, 2))])
    with pytest.raises(ValueError, match="at least one sequence"):
        sequence_padding_nd([])


def test_collate_padded_dicts_tuples_and_single_sequences():
    batch = [{"ids": [1, 2, 3], "label": 1, "text": "abc", "feat": torch.ones(3, 2)},
             {"ids": [4], "label": 0, "text": "d", "feat": torch.ones(1, 2)}]
    out = collate_padded(batch, pad_values={"ids": 7})
    assert out["ids"].tolist() == [[1, 2, 3], [4, 7, 7]] and out["ids"].dtype == torch.long
    assert out["label"].tolist() == [1, 0] and out["text"] == ["abc", "d"]
    assert out["feat"].shape == (2, 3, 2) and out["feat"][1, 1:].sum() == 0
    ids, labels = collate_padded([([1, 2], [0, 1]), ([3], [1])], pad_values={1: -100})
    assert ids.tolist() == [[1, 2], [3, 0]] and labels.tolist() == [[0, 1], [1, -100]]
    assert collate_padded([[1.5], [2.5, 3.5]]).tolist() == [[1.5, 0.0], [2.5, 3.5]]
    with pytest.raises(ValueError, match="sample 1 has keys \\['a'\\], expected \\['ids'\\]"):
        collate_padded([{"ids": [1]}, {"a": [1]}])
    with pytest.raises(ValueError, match="field 0: sample 1 has shape \\(1, 3\\), expected \\(n, 2\\)"):
        collate_padded([torch.ones(2, 2), torch.ones(1, 3)])
    with pytest.raises(ValueError, match="empty batch"):
        collate_padded([])


def test_collate_padded_in_a_dataloader_pads_to_each_batch_max():
    data = [{"ids": list(range(n))} for n in (5, 1, 2, 3, 8, 1)]
    lengths = [b["ids"].shape[1] for b in DataLoader(data, batch_size=2, collate_fn=collate_padded)]
    assert lengths == [5, 3, 8]


def test_data_generator_epochs_shuffle_and_buffer():
    data = [[i] * (1 + i % 4) for i in range(23)]
    gen = DataGenerator(data, batch_size=5, shuffle=True, seed=0)
    assert len(gen) == 5
    batches = list(gen)
    assert [b.shape[0] for b in batches] == [5, 5, 5, 5, 3]
    firsts = sorted(int(row[0]) for b in batches for row in b)
    assert firsts == list(range(23))  # every sample exactly once per epoch
    for b in batches:  # dynamic padding: each batch as wide as its longest sample
        assert b.shape[1] == max(1 + int(r[0]) % 4 for r in b)
    again = [r[0].item() for b in DataGenerator(data, 5, shuffle=True, seed=0) for r in b]
    assert again == [r[0].item() for b in batches for r in b]  # reproducible from the seed
    assert again != list(range(23))
    lazy = DataGenerator((x for x in data), batch_size=4, shuffle=True, buffer_size=6, seed=1,
                         encode=lambda s: None if s[0] % 5 == 0 else s)  # encode may drop samples
    got = sorted(int(r[0]) for b in lazy for r in b)
    assert got == [i for i in range(23) if i % 5]
    assert len(DataGenerator(data, 5, drop_last=True)) == 4
    assert [b.shape[0] for b in DataGenerator(data, 5, drop_last=True)] == [5, 5, 5, 5]
    endless = DataGenerator(data, batch_size=10).forfit()
    assert [next(endless).shape[0] for _ in range(4)] == [10, 10, 3, 10]
    assert [(e, s) for e, s in DataGenerator([1, 2, 3]).sample()] == [(False, 1), (False, 2), (True, 3)]
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        DataGenerator(data, 0)
    with pytest.raises(TypeError, match="len\\(\\) needs sized data"):
        len(DataGenerator(iter(data)))


# ---- issue 8: padding keeps the input's dtype ------------------------------------------------------------
def test_sequence_padding_keeps_float_input_float():
    out = sequence_padding([[0.5, 1.5], [2.5]])  # was int64 [[0, 1], [2, 0]]
    assert out.dtype == torch.get_default_dtype()
    assert out.tolist() == [[0.5, 1.5], [2.5, 0.0]]
    assert sequence_padding([[0.5], [1, 2]], value=-1).tolist() == [[0.5, -1.0], [1.0, 2.0]]  # promoted


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.float64, np.bool_, np.uint8])
def test_sequence_padding_keeps_array_and_tensor_dtypes(dtype):
    rows = [np.array([1, 0, 1], dtype=dtype), np.array([1], dtype=dtype)]
    expected = np.zeros((2, 3), dtype=dtype)
    expected[0], expected[1, :1] = rows[0], rows[1]
    out = sequence_padding(rows)
    assert out.dtype == torch.from_numpy(expected).dtype and np.array_equal(out.numpy(), expected)
    out = sequence_padding([torch.from_numpy(r) for r in rows])
    assert out.dtype == torch.from_numpy(expected).dtype and np.array_equal(out.numpy(), expected)
    nd = sequence_padding_nd(rows)
    assert nd.dtype == expected.dtype and np.array_equal(nd, expected)
    cp = collate_padded(rows)
    assert cp.dtype == torch.from_numpy(expected).dtype and np.array_equal(cp.numpy(), expected)


def test_int_input_still_gives_int64_and_empty_rows_do_not_promote():
    for pad in (sequence_padding, collate_padded):
        assert pad([[1, 2], [3]]).dtype == torch.int64
        out = pad([[], [1, 2]])  # an empty list has no dtype of its own (torch would call it float32)
        assert out.dtype == torch.int64 and out.tolist() == [[0, 0], [1, 2]]
    assert sequence_padding([[], []]).dtype == torch.int64 and sequence_padding([[], []]).shape == (2, 0)
    nd = sequence_padding_nd([[1, 2], []])  # numpy would call [] float64
    assert nd.dtype == np.int64 and nd.tolist() == [[1, 2], [0, 0]]
    assert sequence_padding([[1, 2], [3]], dtype=torch.float64).dtype == torch.float64  # explicit dtype wins


def test_collate_padded_promotes_instead_of_truncating():
    out = collate_padded([[1, 2], [1.5]])  # the first sample's dtype used to win: 1.5 -> 1
    assert out.dtype.is_floating_point and out.tolist() == [[1.0, 2.0], [1.5, 0.0]]
    out = collate_padded([{"x": np.array([1], np.int32)}, {"x": np.array([2.5, 3.5])}])["x"]
    assert out.dtype == torch.float64 and out.tolist() == [[1.0, 0.0], [2.5, 3.5]]


def test_pad_value_that_the_dtype_cannot_hold_is_refused():
    with pytest.raises(ValueError, match="value=0.5 .*int64"):
        sequence_padding([[1, 2], [3]], value=0.5)
    with pytest.raises(ValueError, match="value=300 .*uint8"):
        sequence_padding([np.array([1, 2], np.uint8)], length=4, value=300)
    with pytest.raises(ValueError, match="value=-1 .*uint8"):
        sequence_padding_nd([np.array([1, 2], np.uint8), np.array([1], np.uint8)], value=-1)
    with pytest.raises(ValueError, match="pad_value=0.5 .*int64"):
        collate_padded([[1, 2], [3]], pad_value=0.5)
    with pytest.raises(TypeError, match="value must be a number"):
        sequence_padding([[1]], value="0")
    assert sequence_padding([[0.5], []], value=0.25).tolist() == [[0.5], [0.25]]


def test_sequence_padding_bad_shapes_and_lengths_name_the_argument():
    with pytest.raises(ValueError, match="inputs\\[1\\] must be a 1-D sequence"):
        sequence_padding([[1, 2], [[3, 4]]])
    with pytest.raises(ValueError, match="inputs\\[0\\] must be a 1-D sequence"):
        sequence_padding([1, 2, 3])
    with pytest.raises(ValueError, match="length must be an int >= 0, got -1"):
        sequence_padding([[1]], length=-1)
    with pytest.raises(TypeError, match="length must be an int, got 2.5"):
        sequence_padding([[1]], length=2.5)
    with pytest.raises(TypeError, match="length must be an int, got 2.5"):
        sequence_padding_nd([[1]], length=2.5)
    assert sequence_padding([[1, 2, 3], [4]], length=2).tolist() == [[1, 2], [4, 0]]


def test_inputs_that_are_not_a_list_of_rows_name_inputs():
    with pytest.raises(TypeError, match="inputs must be a sequence of rows"):
        sequence_padding(iter([[1], [2]]))
    with pytest.raises(TypeError, match="inputs must be a sequence of rows"):
        sequence_padding_nd(x for x in [[1], [2]])
    with pytest.raises(ValueError, match="inputs\\[1\\] is not a regular array"):
        sequence_padding_nd([[1, 2], [3, [4, 5]]])


def test_dtype_argument_of_the_wrong_kind_is_named():
    with pytest.raises(TypeError, match="dtype must be a torch.dtype or None, got 'int64'"):
        sequence_padding([[1]], dtype="int64")
    with pytest.raises(TypeError, match="dtype must be a numpy dtype or None, got 'nope'"):
        sequence_padding_nd([[1]], dtype="nope")
    assert sequence_padding_nd([[1], [2, 3]], dtype="float32").dtype == np.float32


def _pad_by_hand(rows, value):
    """Right-pad lists of numbers to the longest, the closed form of one padded field."""
    n = max(len(r) for r in rows)
    return [list(r) + [value] * (n - len(r)) for r in rows]


def test_collate_padded_builds_nested_tuples_bert4keras_style():
    ids = [[101, 7, 102], [101, 102], [101, 5, 6, 102]]
    segs = [[0, 0, 0], [0, 0], [0, 0, 1, 1]]
    ys = [1, 0, 1]
    (b_ids, b_segs), b_y = collate_padded([((i, s), y) for i, s, y in zip(ids, segs, ys)],
                                          pad_values={(0, 1): 9})
    assert b_ids.tolist() == _pad_by_hand(ids, 0) and b_segs.tolist() == _pad_by_hand(segs, 9)
    assert b_y.tolist() == ys and b_ids.dtype == torch.long
    # a whole sub-structure addressed by its path: every leaf under it takes the value
    (b_ids, b_segs), _ = collate_padded([((i, s), y) for i, s, y in zip(ids, segs, ys)], pad_values={0: 4})
    assert b_ids.tolist() == _pad_by_hand(ids, 4) and b_segs.tolist() == _pad_by_hand(segs, 4)


def test_collate_padded_dicts_of_tuples_and_dicts_of_dicts():
    samples = [{"inputs": ([1, 2], {"mask": [1, 1]}), "labels": [3, 4], "span": (0, 1)},
               {"inputs": ([5], {"mask": [1]}), "labels": [6], "span": (1, 1)}]
    out = collate_padded(samples, pad_values={"labels": -100, ("inputs", 1, "mask"): 0, ("inputs", 0): 8})
    assert out["inputs"][0].tolist() == [[1, 2], [5, 8]]
    assert out["inputs"][1]["mask"].tolist() == [[1, 1], [1, 0]]
    assert out["labels"].tolist() == [[3, 4], [6, -100]]
    assert out["span"].tolist() == [[0, 1], [1, 1]]               # a tuple of numbers below the top is a leaf


def test_collate_padded_keeps_namedtuples():
    from collections import namedtuple
    Pair = namedtuple("Pair", "ids y")
    out = collate_padded([Pair([1, 2], 0), Pair([3], 1)], pad_values={0: 5})
    assert isinstance(out, Pair) and out.ids.tolist() == [[1, 2], [3, 5]] and out.y.tolist() == [0, 1]


def test_collate_padded_nested_errors_name_the_field_path():
    with pytest.raises(ValueError, match=r"field \(0, 1\): sample 1 has shape \(2, 3\), expected \(n, 4\)"):
        collate_padded([(([1], torch.ones(1, 4)), 0), (([2], torch.ones(2, 3)), 1)])
    with pytest.raises(ValueError, match=r"sample 1 at field 'inputs' has keys \['a'\], expected \['mask'\]"):
        collate_padded([{"inputs": {"mask": [1]}}, {"inputs": {"a": [1]}}])
    with pytest.raises(ValueError, match=r"sample 1 at field 0 is not a tuple of 2 fields"):
        collate_padded([(([1], [2]), 0), (([1], [2], [3]), 1)])
    with pytest.raises(KeyError, match=r"pad_values key 'label' addresses no field.*'labels'"):
        collate_padded([{"ids": [1], "labels": [2]}], pad_values={"label": -100})
    with pytest.raises(ValueError, match=r"pad_values\[\(0, 1\)\]=0.5 .*int64"):
        collate_padded([(([1], [2]), 0)], pad_values={(0, 1): 0.5})
    with pytest.raises(TypeError, match="pad_values must be a dict"):
        collate_padded([[1]], pad_values=[(0, 1)])
