"""parallel_apply (https://kexue.fm/archives/7031): map a function over a lazy iterable with workers.

Worker processes (or threads) are fed through a bounded queue, so a huge iterable is never materialised.

The article's lesson travels with it: batch the work and merge small per-batch results (`count_tokens`);
that alone beats a naive loop over one ever-growing dict, with or without parallelism. Improvements over
bert4keras: worker exceptions reach the caller (same type, worker traceback as the cause, failing item in a
note), pools are always shut down, spawn works (func must then be picklable), no `qsize()`, and a worker
that dies is reported instead of hanging the main loop.
"""
from __future__ import annotations

import collections
import functools
import itertools
import multiprocessing as mp
import pickle
import queue
import random
import sys
import threading
import traceback
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = ["parallel_apply", "parallel_apply_generator", "batched", "count_tokens"]

_POLL = 0.05  # seconds between liveness checks while blocked on a queue


class _RemoteTraceback(Exception):
    """Carries the worker's formatted traceback as the __cause__ of the re-raised exception."""

    def __str__(self) -> str:
        return self.args[0]


def _failure(exc: BaseException, index: int, item: Any) -> tuple:
    tb = traceback.format_exc()
    try:
        pickle.dumps(exc)
    except Exception:  # an exception that cannot cross a process boundary
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, tb, f"item #{index}: {repr(item)[:200]}"


def _seed_worker(seed: int | None) -> None:
    """Reseed random, numpy (and torch when loaded); seed None draws fresh OS entropy."""
    random.seed(seed)
    np.random.seed(seed if seed is None else seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed if seed is not None else random.getrandbits(63))


def _run(func, i, item) -> tuple:
    try:
        return i, True, func(item)
    except Exception as e:  # reported to the caller, who decides (raise / skip / return)
        return i, False, _failure(e, i, item)


def _process_worker(func, in_q, out_q, seeded: bool, seed: int | None, torch_threads: int | None) -> None:
    if torch_threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)  # no oversubscription of the cores
    if seeded:
        _seed_worker(seed)
    while True:
        msg = in_q.get()
        if msg is None:
            return
        i, item = pickle.loads(msg)
        out = _run(func, i, item)
        try:
            data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # pickle here: an unpicklable result in the queue's thread would be lost
            data = pickle.dumps((i, False, _failure(TypeError(f"the result of func is not picklable: {e}"), i, item)))
        out_q.put(data)


def _thread_worker(func, in_q, out_q, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            msg = in_q.get(timeout=_POLL)
        except queue.Empty:
            continue
        if msg is None:
            return
        out_q.put(_run(func, *msg))


class _ProcessPool:
    def __init__(self, func, workers, max_queue_size, seeds, start_method, torch_threads):
        ctx = mp.get_context(start_method)
        self.in_q, self.out_q = ctx.Queue(max_queue_size), ctx.Queue()
        self.procs = []
        try:
            for k in range(workers):
                p = ctx.Process(target=_process_worker, daemon=True,
                                args=(func, self.in_q, self.out_q, seeds is not None,
                                      None if seeds is None else seeds[k], torch_threads))
                p.start()
                self.procs.append(p)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            self.close(ok=False)
            raise TypeError(f"func={func!r} cannot be sent to worker processes (start method "
                            f"{ctx.get_start_method()!r}): {e}; use a top-level function or dummy=True") from e

    def pack(self, i, item) -> bytes:
        try:
            return pickle.dumps((i, item), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise TypeError(f"item #{i} of the iterable cannot be sent to a worker process: {e}") from e

    def put(self, msg, timeout) -> bool:
        try:
            self.in_q.put(msg, timeout=timeout)
            return True
        except queue.Full:
            self.check_alive()
            return False

    def get(self, timeout=None):
        try:
            data = self.out_q.get(timeout=timeout) if timeout else self.out_q.get_nowait()
        except queue.Empty:
            if timeout:
                self.check_alive()
            return None
        return pickle.loads(data)

    def check_alive(self) -> None:
        for p in self.procs:
            if p.exitcode is not None:
                raise RuntimeError(f"parallel_apply worker process {p.pid} died (exit code {p.exitcode})")

    def close(self, ok: bool) -> None:
        if ok:
            for _ in self.procs:
                self.in_q.put(None)
            for p in self.procs:
                p.join(timeout=10)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
            p.join()
        for q in (self.in_q, self.out_q):
            q.cancel_join_thread()  # never block interpreter exit on undelivered data
            q.close()


class _ThreadPool:
    def __init__(self, func, workers, max_queue_size):
        self.in_q, self.out_q, self.stop = queue.Queue(max_queue_size), queue.Queue(), threading.Event()
        self.threads = [threading.Thread(target=_thread_worker, args=(func, self.in_q, self.out_q, self.stop),
                                         daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    pack = staticmethod(lambda i, item: (i, item))

    def put(self, msg, timeout) -> bool:
        try:
            self.in_q.put(msg, timeout=timeout)
            return True
        except queue.Full:
            return False

    def get(self, timeout=None):
        try:
            return self.out_q.get(timeout=timeout) if timeout else self.out_q.get_nowait()
        except queue.Empty:
            return None

    def close(self, ok: bool) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


def _check_args(func, workers, max_queue_size, on_error) -> None:
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}: {func!r}")
    for name, v in (("workers", workers), ("max_queue_size", max_queue_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if on_error not in ("raise", "skip", "return"):
        raise ValueError(f"on_error must be 'raise', 'skip' or 'return', got {on_error!r}")


def _worker_seeds(random_seeds, workers) -> list | None:
    if random_seeds is True:
        return [None] * workers
    if random_seeds is False or random_seeds is None:
        return None
    seeds = list(random_seeds)
    if len(seeds) != workers:
        raise ValueError(f"random_seeds must be True, False or one seed per worker ({workers}), got {len(seeds)} seeds")
    return seeds


def parallel_apply_generator(func: Callable, iterable: Iterable, workers: int, max_queue_size: int, *,
                             dummy: bool = False, ordered: bool = False, random_seeds: bool | Sequence = True,
                             start_method: str | None = None, on_error: str = "raise",
                             torch_threads: int | None = 1) -> Iterator[tuple[int, Any]]:
    """Yield (input_index, func(item)) as results complete (in input order with `ordered=True`).

    At most `max_queue_size` inputs wait in the input queue; `dummy=True` uses threads (any callable,
    no reseeding) instead of processes (picklable func under spawn). `random_seeds`: True = fresh seeds
    per worker process, a list = one explicit seed per worker, False = leave the RNGs alone.
    `on_error`: 'raise' the worker's exception, 'skip' the item, or 'return' the exception as its result.
    """
    _check_args(func, workers, max_queue_size, on_error)
    seeds = _worker_seeds(random_seeds, workers)
    if dummy:
        pool = _ThreadPool(func, workers, max_queue_size)
    else:
        pool = _ProcessPool(func, workers, max_queue_size, seeds, start_method, torch_threads)
    pending: dict[int, Any] = {}  # ordered mode: finished results waiting for their turn
    skipped = object()
    next_index, n_sent, n_done, ok = 0, 0, 0, False

    def emit(out):  # -> list of (index, result) ready to be yielded
        nonlocal next_index
        i, success, value = out
        if not success:
            exc, tb, where = value
            if on_error == "raise":
                exc.__cause__ = _RemoteTraceback(f"\nin a parallel_apply worker, on {where}\n{tb}")
                if hasattr(exc, "add_note"):
                    exc.add_note(f"raised by func in a parallel_apply worker on {where}")
                raise exc
            value = skipped if on_error == "skip" else exc
        if not ordered:
            return [] if value is skipped else [(i, value)]
        pending[i] = value
        ready = []
        while next_index in pending:
            v = pending.pop(next_index)
            if v is not skipped:
                ready.append((next_index, v))
            next_index += 1
        return ready

    try:
        for i, item in enumerate(iterable):
            msg = pool.pack(i, item)
            while not pool.put(msg, timeout=_POLL):  # queue full: hand out finished results meanwhile
                while (out := pool.get()) is not None:
                    n_done += 1
                    yield from emit(out)
            n_sent += 1
            while (out := pool.get()) is not None:
                n_done += 1
                yield from emit(out)
        while n_done < n_sent:
            out = pool.get(timeout=_POLL)
            if out is not None:
                n_done += 1
                yield from emit(out)
        ok = True
    finally:
        pool.close(ok)


def parallel_apply(func: Callable, iterable: Iterable, workers: int, max_queue_size: int,
                   callback: Callable[[Any], Any] | None = None, *, ordered: bool | None = None,
                   unordered: bool | None = None, dummy: bool = False, random_seeds: bool | Sequence = True,
                   start_method: str | None = None, on_error: str = "raise") -> list | None:
    """bert4keras `parallel_apply`: [func(x) for x in iterable] computed by `workers` processes (threads
    with `dummy=True`), in input order unless `ordered=False`; with a `callback`, each result is passed to
    it instead (as it completes when `ordered=False`) and None is returned. `ordered` defaults to True;
    `unordered` is the spec's (and bert4keras's) spelling of `not ordered`."""
    if ordered is not None and unordered is not None and bool(ordered) == bool(unordered):
        raise ValueError(f"ordered={ordered} contradicts unordered={unordered}; pass only one of them")
    ordered = (not unordered if unordered is not None else True) if ordered is None else bool(ordered)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    gen = parallel_apply_generator(func, iterable, workers, max_queue_size, dummy=dummy, ordered=ordered,
                                   random_seeds=random_seeds, start_method=start_method, on_error=on_error)
    if callback is None:
        return [r for _, r in gen]
    for _, r in gen:
        callback(r)
    return None


def batched(iterable: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter): send batches, not single items."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    it = iter(iterable)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _count_batch(tokenize: Callable[[str], Iterable], texts: list) -> collections.Counter:
    counts = collections.Counter()
    for text in texts:
        counts.update(tokenize(text))
    return counts


def count_tokens(texts: Iterable[str], tokenize: Callable[[str], Iterable], batch_size: int = 1000,
                 workers: int = 1, max_queue_size: int = 200, dummy: bool = False) -> collections.Counter:
    """The article's batch-then-merge token count: a fresh Counter per batch of texts, merged into the
    total; `workers=1` runs it in this process (the fair baseline for any parallel speed-up)."""
    total = collections.Counter()
    job = functools.partial(_count_batch, tokenize)
    if workers == 1:
        for batch in batched(texts, batch_size):
            total.update(job(batch))
    else:
        parallel_apply(job, batched(texts, batch_size), workers, max_queue_size, callback=total.update,
                       ordered=False, dummy=dummy, random_seeds=False)
    return total
