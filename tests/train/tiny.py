"""A tiny float64 classification problem shared by the checkpoint / resume tests."""
import torch
from torch import nn
from torch.utils.data import TensorDataset


def data(n=24, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())


def model(d=4, seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def snap(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def equal_trees(a, b, where="state"):
    """Bitwise equality of nested dicts / lists / tensors; AssertionError naming the first difference."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where}: max diff {(a.double() - b.double()).abs().max().item()}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), f"{where}: keys {list(a)} {list(b)}"
        for k in a:
            equal_trees(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            equal_trees(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"
