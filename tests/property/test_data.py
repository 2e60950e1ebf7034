"""parallel_apply and the padding helpers on generated input (issue 8).

parallel_apply: generated failure positions and kinds (Exception, SystemExit, KeyboardInterrupt, an
exception that does not pickle back) in thread and process mode: it never hangs (each test bounded), gives
map() in order when nothing fails, and surfaces the failure otherwise. Padding: generated ragged rows of
several dtypes equal a brute-force nested-loop reference, dtype included."""
import math
import multiprocessing as mp

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data import collate_padded, parallel_apply, sequence_padding, sequence_padding_nd
from kexue.data.parallel import ParallelWorkerError
from tests.data import parallel_helpers as h
from tests.property.clear_error import valid_or_clear_error

KINDS = [None, "ValueError", "SystemExit", "KeyboardInterrupt", "TwoArgError"]


def _expected_error(kind: str, dummy: bool) -> type:
    if kind == "TwoArgError":  # threads re-raise the object itself; a process cannot pickle it back
        return h.TwoArgError if dummy else ParallelWorkerError
    return {"ValueError": ValueError, "SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[kind]


def _run_case(n, bad, kind, workers, max_queue_size, dummy, ordered, on_error):
    func = h.raise_kind_on(kind or "ValueError", bad if kind else set())
    call = lambda: parallel_apply(func, range(n), workers, max_queue_size, dummy=dummy, ordered=ordered,  # noqa: E731
                                  on_error=on_error)
    failing = sorted(bad) if kind else []
    if not failing:
        out = call()
        assert out == [x * 10 for x in range(n)] if ordered else sorted(out) == [x * 10 for x in range(n)]
    elif kind in ("SystemExit", "KeyboardInterrupt") or on_error == "raise":
        with pytest.raises(_expected_error(kind, dummy)) as info:
            call()
        notes = getattr(info.value, "__notes__", [])
        assert any(f"item #{i}: {i}" in note for i in failing for note in notes) or \
            getattr(info.value, "index", None) in failing
    else:  # an ordinary exception with on_error="skip": the other results, in order
        out = call()
        kept = [x * 10 for x in range(n) if x not in bad]
        assert out == kept if ordered else sorted(out) == kept
    assert mp.active_children() == []


case = dict(n=st.integers(0, 12), bad=st.sets(st.integers(0, 11), max_size=3), kind=st.sampled_from(KINDS),
            workers=st.integers(1, 3), max_queue_size=st.integers(1, 4), ordered=st.booleans(),
            on_error=st.sampled_from(["raise", "skip"]))


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(**case)
def test_parallel_apply_threads_never_hang_and_surface_failures(n, bad, kind, workers, max_queue_size, ordered,
                                                                on_error):
    _run_case(n, {b for b in bad if b < n}, kind, workers, max_queue_size, True, ordered, on_error)


@pytest.mark.timeout(120)
@settings(max_examples=15)
@given(**case)
def test_parallel_apply_processes_never_hang_and_surface_failures(n, bad, kind, workers, max_queue_size,
                                                                  ordered, on_error):
    _run_case(n, {b for b in bad if b < n}, kind, workers, max_queue_size, False, ordered, on_error)


@pytest.mark.timeout(60)
@settings(max_examples=40)
@given(workers=st.one_of(st.integers(-2, 3), st.sampled_from([2.0, "2", None, True])),
       max_queue_size=st.one_of(st.integers(-2, 3), st.sampled_from([1.5, "4", None])),
       on_error=st.sampled_from(["raise", "skip", "return", "ignore", None]))
def test_parallel_apply_bad_arguments_are_clear_errors(workers, max_queue_size, on_error):
    out = None
    with valid_or_clear_error("workers", "max_queue_size", "on_error"):
        out = parallel_apply(h.square, range(5), workers, max_queue_size, dummy=True, on_error=on_error)
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (workers, max_queue_size))
    assert (out is not None) == (ok and on_error in ("raise", "skip", "return"))
    if out is not None:
        assert out == [x * x for x in range(5)]


# ---- padding ---------------------------------------------------------------------------------------------
# name -> (make a row from Python ints, expected torch dtype, expected numpy dtype)
ROW_KINDS = {
    "int": (list, torch.int64, np.int64),
    "float": (lambda r: [x + 0.5 for x in r], torch.get_default_dtype(), np.float64),
    "np.int32": (lambda r: np.array(r, np.int32), torch.int32, np.int32),
    "np.uint8": (lambda r: np.array(r, np.uint8), torch.uint8, np.uint8),
    "np.float32": (lambda r: np.array(r, np.float32) + 0.25, torch.float32, np.float32),
    "np.bool": (lambda r: np.array(r, np.int64) % 2 == 1, torch.bool, np.bool_),
    "torch.int8": (lambda r: torch.tensor(r, dtype=torch.int8), torch.int8, None),
    "torch.float16": (lambda r: torch.tensor(r, dtype=torch.float16), torch.float16, None),
}


def _value_fits(value, torch_dtype) -> bool:
    if torch_dtype.is_floating_point:
        return True
    if torch_dtype == torch.bool:
        return value in (0, 1)
    info = torch.iinfo(torch_dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def _reference(rows, length, value):
    """Nested-loop padding: row k's first `length` values, then `value`."""
    length = max((len(r) for r in rows), default=0) if length is None else length
    return [[r[j] if j < len(r) else value for j in range(length)] for r in rows]


def _as_python(row):
    return row.tolist() if hasattr(row, "tolist") else list(row)


@pytest.mark.timeout(60)
@settings(max_examples=150)
@given(kind=st.sampled_from(sorted(ROW_KINDS)), lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
       length=st.one_of(st.none(), st.integers(0, 8), st.sampled_from([-1, 2.5])),
       value=st.sampled_from([0, 1, -1, 7, 0.5, 300, -100, math.inf]), data=st.data())
def test_padding_equals_a_nested_loop_reference(kind, lengths, length, value, data):
    make, torch_dtype, np_dtype = ROW_KINDS[kind]
    rows = [make(data.draw(st.lists(st.integers(0, 100), min_size=n, max_size=n))) for n in lengths]
    py_rows = [_as_python(r) for r in rows]
    if kind == "float" and not any(lengths):  # empty Python lists carry no dtype: the int64 default
        torch_dtype, np_dtype = torch.int64, np.int64
    ok_length = length is None or (isinstance(length, int) and length >= 0)
    fits = _value_fits(value, torch_dtype)

    out = None
    with valid_or_clear_error("length", "value"):
        out = sequence_padding(rows, length=length, value=value)
    assert (out is not None) == (ok_length and fits), (length, value, torch_dtype)
    if out is not None:
        assert out.dtype == torch_dtype
        ref = torch.tensor(_reference(py_rows, length, value), dtype=torch_dtype).reshape(len(rows), -1)
        assert torch.equal(out, ref)

    if np_dtype is not None:  # numpy flavour: the same values, the numpy dtype
        nd = None
        with valid_or_clear_error("length", "value"):
            nd = sequence_padding_nd(rows, length=length, value=value)
        assert (nd is not None) == (ok_length and fits)
        if nd is not None:
            ref = np.array(_reference(py_rows, length, value), dtype=np_dtype).reshape(len(rows), -1)
            assert nd.dtype == np_dtype and np.array_equal(nd, ref)

    if length is None:  # collate_padded pads to the longest row
        cp = None
        with valid_or_clear_error("pad_value"):
            cp = collate_padded(rows, pad_value=value)
        assert (cp is not None) == fits
        if cp is not None:
            ref = torch.tensor(_reference(py_rows, None, value), dtype=torch_dtype).reshape(len(rows), -1)
            assert cp.dtype == torch_dtype and torch.equal(cp, ref)


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(rows=st.lists(st.lists(st.one_of(st.integers(-5, 5), st.floats(-4, 4, width=32)), max_size=4),
                     min_size=1, max_size=4))
def test_mixed_int_and_float_rows_promote_to_float_without_loss(rows):
    out = sequence_padding(rows)
    has_float = any(isinstance(x, float) for r in rows for x in r)
    assert out.dtype == (torch.get_default_dtype() if has_float else torch.int64)
    ref = _reference(rows, None, 0)
    assert out.tolist() == [[float(x) if has_float else x for x in r] for r in ref]
