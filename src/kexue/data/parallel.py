"""parallel_apply (https://kexue.fm/archives/7031): map a function over a lazy iterable with workers.

Worker processes (or threads) are fed through a bounded queue, so a huge iterable is never materialised.

The article's lesson travels with it: batch the work and merge small per-batch results (`count_tokens`);
that alone beats a naive loop over one ever-growing dict, with or without parallelism. Improvements over
bert4keras: worker exceptions reach the caller (same type, worker traceback as the cause, failing item in a
note), SystemExit/KeyboardInterrupt included; an exception that does not survive pickling comes back as a
`ParallelWorkerError` (type name, message, input index); pools are always shut down, spawn works (func must
then be picklable), no `qsize()`, and a worker that dies (os._exit, a signal) is reported instead of hanging
the main loop: no input is ever waited on forever.
"""
from __future__ import annotations

import collections
import functools
import itertools
import multiprocessing as mp
import pickle
import queue
import random
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from kexue._validate import check_choice, check_int

__all__ = ["parallel_apply", "parallel_apply_generator", "batched", "count_tokens", "ParallelWorkerError"]

_POLL = 0.05  # seconds between liveness checks while blocked on a queue


class _RemoteTraceback(Exception):
    """Carries the worker's formatted traceback as the __cause__ of the re-raised exception."""

    def __str__(self) -> str:
        return self.args[0]


class ParallelWorkerError(RuntimeError):
    """A worker's exception that could not come back as itself (it does not survive pickling, e.g. an
    `__init__` with two arguments, or an attribute holding a lambda; or a StopIteration, which would end the
    result generator instead): its type name, message, the index of the failing input and the worker's
    traceback."""

    def __init__(self, type_name: str, message: str, index: int, remote_traceback: str = ""):
        super().__init__(f"{type_name}: {message} (raised by func on item #{index} in a parallel_apply worker; "
                         f"the exception itself could not be re-raised in the caller: it does not survive "
                         f"pickling, or is a StopIteration)")
        self.type_name, self.message, self.index = type_name, message, index
        self.remote_traceback = remote_traceback

    def __reduce__(self):
        return type(self), (self.type_name, self.message, self.index, self.remote_traceback)


class _Failure(tuple):
    """What a worker sends back for a failed input: (exc, type_name, message, traceback, where, index,
    is_exception); `exc` is the exception itself (threads), its pickle (processes) or None (no pickle)."""

    __slots__ = ()


def _safe(fn, default: str) -> str:
    try:
        return fn()
    except Exception:  # a broken __repr__/__str__ must not hide the original failure
        return default


def _failure(exc: BaseException, index: int, item: Any, cross_process: bool) -> _Failure:
    """Record `exc` raised by func on input `index`; across processes, keep the exception only when it
    survives a pickle round trip (an `__init__` taking two arguments passes dumps but fails loads)."""
    tb = traceback.format_exc()
    payload: Any = exc
    if cross_process:
        try:
            payload = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(payload)
        except Exception:
            payload = None
    type_name = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    where = f"item #{index}: " + _safe(lambda: repr(item)[:200], f"<{type(item).__name__} with a failing repr>")
    return _Failure((payload, type_name, _safe(lambda: str(exc), "<message not printable>"), tb, where, index,
                     isinstance(exc, Exception)))


def _rebuild(failure: _Failure) -> BaseException:
    """The worker's exception, with its traceback as __cause__ and the failing input in a note."""
    payload, type_name, message, tb, where, index, _ = failure
    exc = payload
    if isinstance(payload, bytes):
        try:
            exc = pickle.loads(payload)
        except Exception:  # e.g. its class cannot be imported in this process
            exc = None
    if exc is None or isinstance(exc, StopIteration):  # StopIteration would end the generator instead
        exc = ParallelWorkerError(type_name, message, index, tb)
    exc.__cause__ = _RemoteTraceback(f"\nin a parallel_apply worker, on {where}\n{tb}")
    if hasattr(exc, "add_note"):
        exc.add_note(f"raised by func in a parallel_apply worker on {where}")
    return exc


def _seed_worker(seed: int | None) -> None:
    """Reseed random, numpy (and torch when loaded); seed None draws fresh OS entropy."""
    random.seed(seed)
    np.random.seed(seed if seed is None else seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed if seed is not None else random.getrandbits(63))


def _run(func, i, item, cross_process: bool) -> tuple:
    try:
        return i, True, func(item)
    except BaseException as e:  # SystemExit/KeyboardInterrupt too: an input must never be waited on forever
        return i, False, _failure(e, i, item, cross_process)


def _process_worker(func, in_q, out_q, seeded: bool, seed: int | None, torch_threads: int | None) -> None:
    if torch_threads is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)  # no oversubscription of the cores
    if seeded:
        _seed_worker(seed)
    while True:
        msg = in_q.get()
        if msg is None:
            return
        i, data = msg
        try:
            item = pickle.loads(data)
        except Exception as e:  # e.g. the item's class cannot be imported in the worker
            out = i, False, _failure(TypeError(f"item #{i} cannot be unpickled in the worker: {e}"), i, "?", True)
        else:
            out = _run(func, i, item, True)
        try:
            data = pickle.dumps(out[2], protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # pickle here: an unpicklable result in the queue's thread would be lost
            out = i, False, _failure(TypeError(f"the result of func is not picklable: {e}"), i, item, True)
            data = pickle.dumps(out[2], protocol=pickle.HIGHEST_PROTOCOL)
        out_q.put((i, out[1], data))


def _thread_worker(func, in_q, out_q, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            msg = in_q.get(timeout=_POLL)
        except queue.Empty:
            continue
        if msg is None:
            return
        out_q.put(_run(func, *msg, False))


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"died: killed by signal {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            return f"died: killed by signal {-code} (exit code {code})"
    return f"died (exit code {code})"


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

    def pack(self, i, item) -> tuple[int, bytes]:
        try:
            return i, pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
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
            i, success, data = self.out_q.get(timeout=timeout) if timeout else self.out_q.get_nowait()
        except queue.Empty:
            if timeout:
                self.check_alive()
            return None
        try:
            return i, success, pickle.loads(data)
        except Exception as e:  # e.g. the result's class cannot be imported in this process
            raise TypeError(f"the result of func on item #{i} cannot be unpickled in the caller: {e}") from e

    def check_alive(self) -> None:
        for p in self.procs:
            if p.exitcode is not None:  # a worker only exits on the end sentinel, sent by close()
                raise RuntimeError(f"parallel_apply worker process {p.pid} {_exit_reason(p.exitcode)}; "
                                   "the items it held are lost")

    def close(self, ok: bool) -> None:
        deadline = time.monotonic() + 10
        if ok:  # ask each worker to finish; a dead one cannot take its sentinel, so never block on put
            for _ in self.procs:
                try:
                    self.in_q.put(None, timeout=max(0.01, deadline - time.monotonic()))
                except queue.Full:
                    break
            for p in self.procs:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():  # SIGTERM ignored by func: SIGKILL
                p.kill()
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
            self.check_alive()
            return False

    def get(self, timeout=None):
        try:
            return self.out_q.get(timeout=timeout) if timeout else self.out_q.get_nowait()
        except queue.Empty:
            if timeout:
                self.check_alive()
            return None

    def check_alive(self) -> None:
        dead = [t.name for t in self.threads if not t.is_alive()]
        if dead:  # _run catches everything: only a failure of the queue itself gets here
            raise RuntimeError(f"parallel_apply worker thread(s) {dead} stopped; the items they held are lost")

    def close(self, ok: bool) -> None:
        self.stop.set()  # threads cannot be killed: each stops after its current item
        deadline = time.monotonic() + (10 if ok else 1)
        for t in self.threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))


def _check_args(func, workers, max_queue_size, on_error, start_method, torch_threads) -> None:
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}: {func!r}")
    check_int("workers", workers, low=1)
    check_int("max_queue_size", max_queue_size, low=1)
    check_choice("on_error", on_error, ("raise", "skip", "return"))
    if start_method is not None:
        check_choice("start_method", start_method, mp.get_all_start_methods())
    if torch_threads is not None:
        check_int("torch_threads", torch_threads, low=1)


def _worker_seeds(random_seeds, workers) -> list | None:
    if random_seeds is True:
        return [None] * workers
    if random_seeds is False or random_seeds is None:
        return None
    if isinstance(random_seeds, (str, bytes)) or not isinstance(random_seeds, Iterable):
        raise TypeError(f"random_seeds must be True, False or one int seed per worker, got {random_seeds!r}")
    seeds = list(random_seeds)
    if len(seeds) != workers:
        raise ValueError(f"random_seeds must be True, False or one seed per worker ({workers}), got {len(seeds)} seeds")
    return [check_int(f"random_seeds[{k}]", s) for k, s in enumerate(seeds)]


def parallel_apply_generator(func: Callable, iterable: Iterable, workers: int, max_queue_size: int, *,
                             dummy: bool = False, ordered: bool = False, random_seeds: bool | Sequence = True,
                             start_method: str | None = None, on_error: str = "raise",
                             torch_threads: int | None = 1) -> Iterator[tuple[int, Any]]:
    """Yield (input_index, func(item)) as results complete (in input order with `ordered=True`).

    At most `max_queue_size` inputs wait in the input queue; `dummy=True` uses threads (any callable,
    no reseeding) instead of processes (picklable func under spawn). `random_seeds`: True = fresh seeds
    per worker process, a list = one explicit seed per worker, False = leave the RNGs alone.
    `on_error`: 'raise' the worker's exception, 'skip' the item, or 'return' the exception as its result;
    it governs ordinary exceptions only: a SystemExit, KeyboardInterrupt or other BaseException raised by
    func is always re-raised in the caller, with its own type. A worker process that dies (os._exit, a
    signal) is reported as a RuntimeError; an exception that cannot be pickled back (e.g. an `__init__`
    with two arguments) comes back as a `ParallelWorkerError` naming its type, message and input index.
    Arguments are checked here, before the first item is pulled from `iterable`.
    """
    _check_args(func, workers, max_queue_size, on_error, start_method, torch_threads)
    seeds = _worker_seeds(random_seeds, workers)
    try:
        items = iter(iterable)
    except TypeError as e:
        raise TypeError(f"iterable must be iterable, got {type(iterable).__name__}: {repr(iterable)[:60]}") from e
    return _generate(func, items, workers, max_queue_size, dummy, ordered, seeds, start_method, on_error,
                     torch_threads)


def _generate(func, items, workers, max_queue_size, dummy, ordered, seeds, start_method, on_error,
              torch_threads) -> Iterator[tuple[int, Any]]:
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
            exc = _rebuild(value)
            is_exception = value[6]
            if on_error == "raise" or not is_exception:  # SystemExit, KeyboardInterrupt: always stop
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
        for i, item in enumerate(items):
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
    try:
        if callback is None:
            return [r for _, r in gen]
        for _, r in gen:
            callback(r)
        return None
    finally:
        gen.close()  # a failing callback stops the workers now, not when the traceback is freed


def batched(iterable: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last may be shorter): send batches, not single items.
    `size` is checked at the call, not at the first next()."""
    check_int("size", size, low=1)
    return _batches(iter(iterable), size)


def _batches(it: Iterator, size: int) -> Iterator[list]:
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
    check_int("batch_size", batch_size, low=1)
    check_int("workers", workers, low=1)
    total = collections.Counter()
    job = functools.partial(_count_batch, tokenize)
    if workers == 1:
        for batch in batched(texts, batch_size):
            total.update(job(batch))
    else:
        parallel_apply(job, batched(texts, batch_size), workers, max_queue_size, callback=total.update,
                       ordered=False, dummy=dummy, random_seeds=False)
    return total
