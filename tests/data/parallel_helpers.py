"""Top-level (picklable, torch-free) functions for the parallel_apply tests, importable under spawn."""
import os
import time

import numpy as np


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.005)
    return x * x


def pid_and_draw(x):
    time.sleep(0.02)  # long enough that every worker takes items
    return x, os.getpid(), float(np.random.rand())


def fail_on_seven(x):
    if x == 7:
        raise KeyError(f"bad item {x}")
    return x


def die_on_three(x):
    if x == 3:
        os._exit(3)
    time.sleep(0.01)
    return x


def unpicklable_result(x):
    return lambda: x


class Stop(BaseException):
    """A BaseException that is neither SystemExit nor KeyboardInterrupt."""


_KINDS = {"SystemExit": lambda x: SystemExit(1), "KeyboardInterrupt": lambda x: KeyboardInterrupt(),
          "Stop": lambda x: Stop(f"stop at {x}"), "ValueError": lambda x: ValueError(f"bad {x}"),
          "TwoArgError": lambda x: TwoArgError(x, "two-arg init")}


def raise_kind_on(kind, bad):
    """func that raises an instance of `kind` (a name in _KINDS) on the inputs in `bad`, else x * 10."""
    return _RaiseOn(kind, frozenset(bad))


class _RaiseOn:
    def __init__(self, kind, bad):
        self.kind, self.bad = kind, bad

    def __call__(self, x):
        if x in self.bad:
            raise _KINDS[self.kind](x)
        return x * 10


def exit_on_five(x):
    if x == 5:
        import sys
        sys.exit(1)
    return x


def sigkill_on_four(x):
    if x == 4:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
    return x


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"code {code}: {detail}")
        self.code, self.detail = code, detail


def two_arg_error_on_two(x):
    if x == 2:
        raise TwoArgError(41, "two-arg init")
    return x


class UnpicklableError(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.hook = lambda: msg  # a lambda cannot be pickled


def unpicklable_error_on_one(x):
    if x == 1:
        raise UnpicklableError("carries a lambda")
    return x


def items_then_fail(n):
    """A generator that yields 0..n-1, then raises: the iterable itself fails midway."""
    yield from range(n)
    raise OSError("source broke after item %d" % (n - 1))
