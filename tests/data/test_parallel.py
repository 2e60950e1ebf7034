"""kexue.data.parallel_apply per spec core/18's "How to verify" (https://kexue.fm/archives/7031)."""
import collections
import multiprocessing as mp
import threading
import time

import numpy as np
import pytest

from kexue.data import batched, count_tokens, parallel_apply, parallel_apply_generator

from . import parallel_helpers as h

DATA = list(range(40))


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_processes_match_map_ordered_and_unordered(start_method):
    workers = 2 if start_method == "fork" else 1  # a spawned worker re-imports torch: keep it to one
    ordered = parallel_apply(h.square, DATA, workers, 4, start_method=start_method)
    assert ordered == list(map(h.square, DATA))
    if start_method == "fork":  # spawn start-up is slow; one spawn pool is enough
        unordered = parallel_apply(h.slow_square, DATA, 2, 4, ordered=False, start_method=start_method)
        assert sorted(unordered) == sorted(map(h.square, DATA))
    assert mp.active_children() == []


def test_threads_accept_lambdas_and_keep_order():
    assert parallel_apply(lambda x: x * x, DATA, 3, 2, dummy=True) == [x * x for x in DATA]
    out = parallel_apply(lambda x: (time.sleep(0.001 * (x % 3)), x)[1], DATA, 3, 2, dummy=True, unordered=True)
    assert sorted(out) == DATA
    with pytest.raises(ValueError, match="ordered=True contradicts unordered=True"):
        parallel_apply(abs, DATA, 2, 2, ordered=True, unordered=True)


@pytest.mark.parametrize("dummy", [True, False])
def test_callback_called_once_per_input(dummy):
    seen = []
    assert parallel_apply(h.square, DATA, 2, 3, seen.append, dummy=dummy, ordered=False) is None
    assert collections.Counter(seen) == collections.Counter(map(h.square, DATA))
    seen.clear()
    parallel_apply(h.slow_square, DATA, 2, 3, seen.append, dummy=dummy)  # ordered: input order
    assert seen == list(map(h.square, DATA))


def test_back_pressure_bounds_items_in_flight():
    workers, max_queue_size = 2, 3
    lock, state = threading.Lock(), {"pulled": 0, "done": 0, "max_in_flight": 0}

    def source():
        for x in range(60):
            with lock:
                state["pulled"] += 1
                state["max_in_flight"] = max(state["max_in_flight"], state["pulled"] - state["done"])
            yield x

    def func(x):
        time.sleep(0.002)
        with lock:
            state["done"] += 1
        return x

    assert parallel_apply(func, source(), workers, max_queue_size, dummy=True) == list(range(60))
    assert max_queue_size <= state["max_in_flight"] <= max_queue_size + workers + 1


@pytest.mark.parametrize("ordered", [False, True])
def test_generator_yields_permutation_and_close_stops_workers(ordered):
    pairs = list(parallel_apply_generator(h.slow_square, DATA, 2, 4, ordered=ordered))
    assert sorted(i for i, _ in pairs) == DATA and all(r == i * i for i, r in pairs)
    if ordered:
        assert [i for i, _ in pairs] == DATA
    gen = parallel_apply_generator(h.slow_square, range(10**6), 2, 4)
    first = [next(gen) for _ in range(5)]
    assert len(first) == 5 and len(mp.active_children()) == 2
    gen.close()
    assert mp.active_children() == []


@pytest.mark.parametrize("dummy", [True, False])
def test_worker_errors_propagate_with_item_named(dummy):
    with pytest.raises(KeyError, match="bad item 7") as info:
        parallel_apply(h.fail_on_seven, DATA, 2, 3, dummy=dummy)
    assert any("item #7: 7" in note for note in info.value.__notes__)
    assert "fail_on_seven" in str(info.value.__cause__)  # the worker's traceback
    assert mp.active_children() == []
    assert parallel_apply(h.fail_on_seven, DATA, 2, 3, dummy=dummy, on_error="skip") == [x for x in DATA if x != 7]
    out = parallel_apply(h.fail_on_seven, DATA, 2, 3, dummy=dummy, on_error="return")
    assert isinstance(out[7], KeyError) and out[:7] == DATA[:7] and out[8:] == DATA[8:]


def test_dead_worker_unpicklable_values_and_bad_arguments_raise():
    with pytest.raises(RuntimeError, match="worker process .* died \\(exit code 3\\)"):
        parallel_apply(h.die_on_three, range(10), 2, 2)
    assert mp.active_children() == []
    with pytest.raises(TypeError, match="result of func is not picklable"):
        parallel_apply(h.unpicklable_result, range(3), 2, 2)
    with pytest.raises(TypeError, match="item #1 of the iterable cannot be sent"):
        parallel_apply(h.square, [1, lambda: 2], 2, 2)
    with pytest.raises(TypeError, match="cannot be sent to worker processes .*'spawn'.*dummy=True"):
        parallel_apply(lambda x: x, range(3), 1, 2, start_method="spawn")
    with pytest.raises(ValueError, match="workers must be an int >= 1, got 0"):
        parallel_apply(h.square, DATA, 0, 2)
    with pytest.raises(ValueError, match="max_queue_size must be an int >= 1, got -1"):
        parallel_apply(h.square, DATA, 1, -1)
    with pytest.raises(ValueError, match="on_error must be"):
        parallel_apply(h.square, DATA, 1, 1, on_error="ignore")
    with pytest.raises(ValueError, match="one seed per worker \\(2\\), got 1 seeds"):
        parallel_apply(h.square, DATA, 2, 1, random_seeds=[1])
    assert mp.active_children() == []


def _streams(results):
    """{pid: draws in the order the worker made them} (a worker handles its items in input order)."""
    streams = collections.defaultdict(list)
    for _, pid, draw in sorted(results):
        streams[pid].append(draw)
    return streams


def test_random_seeds_per_worker():
    np.random.seed(123)  # forked workers inherit this state
    same = _streams(parallel_apply(h.pid_and_draw, range(16), 2, 2, random_seeds=False))
    assert len(same) == 2 and len({s[0] for s in same.values()}) == 1  # the pitfall: identical streams
    fresh = _streams(parallel_apply(h.pid_and_draw, range(16), 2, 2, random_seeds=True))
    assert len(fresh) == 2 and len({s[0] for s in fresh.values()}) == 2
    seeded = _streams(parallel_apply(h.pid_and_draw, range(16), 2, 2, random_seeds=[7, 8]))
    expected = {s: np.random.RandomState(s).rand(16).tolist() for s in (7, 8)}
    matched = sorted(next(s for s, ref in expected.items() if ref[:len(d)] == d) for d in seeded.values())
    assert matched == [7, 8]


def test_count_tokens_batch_then_merge_equals_counter():
    rng = np.random.default_rng(0)
    texts = [" ".join(map(str, rng.zipf(1.5, size=20) % 500)) for _ in range(300)]
    reference = collections.Counter(tok for t in texts for tok in t.split())
    assert count_tokens(texts, str.split, batch_size=64, workers=1) == reference
    assert count_tokens(iter(texts), str.split, batch_size=64, workers=2) == reference
    assert count_tokens(texts, str.split, batch_size=64, workers=2, dummy=True) == reference


def test_batched():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError, match="size must be an int >= 1, got 0"):
        list(batched(range(3), 0))


# ---- issue 8: no hang on BaseException, dead workers detected, exceptions that do not pickle -------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("dummy", [True, False])
@pytest.mark.parametrize("kind, expected", [("SystemExit", SystemExit), ("KeyboardInterrupt", KeyboardInterrupt),
                                            ("Stop", h.Stop)])
def test_base_exception_in_a_worker_surfaces_with_its_type(dummy, kind, expected):
    with pytest.raises(expected) as info:
        parallel_apply(h.raise_kind_on(kind, {6}), range(20), 3, 4, dummy=dummy)
    assert any("item #6: 6" in note for note in info.value.__notes__)
    assert mp.active_children() == []
    # on_error governs ordinary exceptions only: a SystemExit/KeyboardInterrupt still stops the run
    with pytest.raises(expected):
        parallel_apply(h.raise_kind_on(kind, {6}), range(20), 3, 4, dummy=dummy, on_error="skip")


@pytest.mark.timeout(30)
def test_sys_exit_in_a_thread_worker_does_not_hang():
    with pytest.raises(SystemExit):  # the reproducer: hung forever before
        parallel_apply(h.exit_on_five, range(20), workers=3, max_queue_size=4, dummy=True)


@pytest.mark.timeout(30)
def test_worker_killed_by_a_signal_is_reported():
    with pytest.raises(RuntimeError, match="worker process .* killed by signal SIGKILL"):
        parallel_apply(h.sigkill_on_four, range(12), 2, 2)
    assert mp.active_children() == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dummy", [True, False])
def test_exception_with_two_arg_init_keeps_type_message_and_index(dummy):
    from kexue.data.parallel import ParallelWorkerError
    expected = h.TwoArgError if dummy else ParallelWorkerError  # threads: the very object; processes: a wrapper
    with pytest.raises(expected, match="code 41: two-arg init") as info:
        parallel_apply(h.two_arg_error_on_two, range(8), 2, 2, dummy=dummy)
    if not dummy:
        err = info.value
        assert err.type_name.endswith("TwoArgError") and err.index == 2 and "TwoArgError" in str(err)
        assert "two_arg_error_on_two" in err.remote_traceback
    assert mp.active_children() == []


@pytest.mark.timeout(30)
def test_unpicklable_exception_from_a_process_is_wrapped():
    from kexue.data.parallel import ParallelWorkerError
    with pytest.raises(ParallelWorkerError, match="UnpicklableError.*carries a lambda.*item #1"):
        parallel_apply(h.unpicklable_error_on_one, range(5), 2, 2)
    out = parallel_apply(h.unpicklable_error_on_one, range(5), 2, 2, on_error="return")
    assert isinstance(out[1], ParallelWorkerError) and out[1].index == 1 and out[2:] == [2, 3, 4]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dummy", [True, False])
def test_iterable_failing_midway_raises_its_error_and_stops_workers(dummy):
    with pytest.raises(OSError, match="source broke after item 9"):
        parallel_apply(h.slow_square, h.items_then_fail(10), 2, 3, dummy=dummy)
    assert mp.active_children() == []


@pytest.mark.timeout(30)
def test_callback_error_stops_workers_at_once():
    def callback(r):
        raise LookupError(f"callback refused {r}")

    with pytest.raises(LookupError, match="callback refused 0"):
        parallel_apply(h.slow_square, range(10**6), 2, 4, callback)
    assert mp.active_children() == []  # the pool is closed before the error reaches the caller


@pytest.mark.timeout(30)
def test_bad_sizes_seeds_and_start_method_are_clear_errors():
    with pytest.raises(TypeError, match="workers must be an int, got 2.0"):
        parallel_apply(h.square, DATA, 2.0, 2)
    with pytest.raises(ValueError, match="max_queue_size must be an int >= 1, got 0"):
        parallel_apply(h.square, DATA, 1, 0)
    with pytest.raises(TypeError, match="random_seeds\\[1\\] must be an int"):
        parallel_apply(h.square, DATA, 2, 1, random_seeds=[1, "x"])
    with pytest.raises(ValueError, match="start_method must be one of"):
        parallel_apply(h.square, DATA, 1, 1, start_method="threads")
    with pytest.raises(ValueError, match="torch_threads must be an int >= 1"):
        list(parallel_apply_generator(h.square, DATA, 1, 1, torch_threads=0))
    assert mp.active_children() == []


def test_count_tokens_and_batched_check_sizes_by_name_at_call_time():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        count_tokens(["a b"], str.split, batch_size=0)
    with pytest.raises(ValueError, match="size must be an int >= 1, got 0"):
        batched(range(3), 0)  # at the call, not at the first next()
