import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny shapes: one intra-op thread is faster and steadier on the shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
