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
