"""Test-wide settings: one intra-op thread (the suite's shapes are tiny; on the shared 2-core machines one
thread is faster and steadier than two fighting for cores) and a fixed seed per test."""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
