"""Test-wide settings: one intra-op thread (the suite's shapes are tiny; on the shared 2-core machines one
thread is faster and steadier than two fighting for cores), a fixed seed per test, and a private cache
directory (`KEXUE_CACHE`) so the tests never read or write the user's cached checkpoints."""
import os
import tempfile

import pytest
import torch

torch.set_num_threads(1)
os.environ["KEXUE_CACHE"] = tempfile.mkdtemp(prefix="kexue-test-cache-")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
