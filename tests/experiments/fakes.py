"""Small fake experiments for the runner, report and command-line tests (each run takes milliseconds)."""
from __future__ import annotations

import torch

from kexue.experiments import Check, Experiment, Figure, Measurement


def gaussian_run(mode: str, seed: int) -> Measurement:
    """Sample mean and variance of 200 seeded normals, a table and a cumulative-mean figure."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(200, generator=g, dtype=torch.float64)             # [200]
    cum = x.cumsum(0) / torch.arange(1, 201, dtype=torch.float64)
    return Measurement({"mean": x.mean().item(), "var": x.var().item()},
                       {"moments": [{"moment": "mean", "value": x.mean().item()},
                                    {"moment": "var", "value": x.var().item()}]},
                       [Figure("cumulative_mean", "cumulative mean", "n", "mean",
                               {"cumulative": (list(range(1, 201)), cum.tolist())})])


def gaussian(name: str = "fake_gauss", **kw) -> Experiment:
    return Experiment(name, kw.pop("title", "假的 Gaussian <moments>"), "https://kexue.fm/archives/0",
                      kw.pop("claim", "the sample mean of N(0,1) is near 0 & the variance near 1"),
                      "200 standard normals per seed",
                      kw.pop("checks", [Check("mean", "~", 0.0, "mean", tol=0.3),
                                        Check("var", "~", 1.0, "var", tol=0.3)]),
                      kw.pop("run", gaussian_run), **kw)


def from_metrics(name: str, metrics_of_seed, checks, **kw) -> Experiment:
    """An experiment whose run(mode, seed) returns Measurement(metrics_of_seed(seed))."""
    return Experiment(name, name, "", "hand-made numbers", "none", checks,
                      lambda mode, seed: Measurement(metrics_of_seed(seed)), **kw)
