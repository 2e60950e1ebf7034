"""Optimisation seen through sampling: searching the 0-1 loss directly (https://kexue.fm/archives/7521; spec core/06).

Toy of the spec: class 0 ~ N((-1, 0), 0.7²I), class 1 ~ N((1, 0), 0.7²I), 500 each, plus 40 class-1 outliers at
N((-8, 6), 0.3²I); a linear logistic model with bias. Cross-entropy (GD, lr 0.5, 3000 steps) lets the outliers
drag the boundary (0-1 error ~0.20). `kexue.optim.ParamSpaceSearch` on the 0-1 error itself, with the CE
gradient only placing the proposal (m = 64, α = 0.002, σ = 0.05, η = 0.5, mixture 0.5, 400 steps), reaches
~0.10 from zero init; from the CE optimum it barely moves (the 0-1 landscape is flat: the method is local).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kexue._validate import check_choice, check_int
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.optim import ParamSpaceSearch

N_PER_CLASS, N_OUTLIERS = 500, 40
CE_STEPS, CE_LR = 3000, 0.5
SEARCH = dict(num_samples=64, alpha=0.002, sigma=0.05, eta=0.5, mix=0.5, include_zero_candidate=False)
STEPS = {"quick": 400, "full": 400}
FROM_CE = {"quick": True, "full": True}      # also run the search started at the CE optimum


def make_data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(X [1040, 3] with a bias column, y [1040] in {0, 1}), float64."""
    def blob(center, std, n):
        return torch.tensor(center, dtype=torch.float64) + std * torch.randn(n, 2, generator=generator,
                                                                            dtype=torch.float64)
    x = torch.cat([blob([-1.0, 0.0], 0.7, N_PER_CLASS), blob([1.0, 0.0], 0.7, N_PER_CLASS),
                   blob([-8.0, 6.0], 0.3, N_OUTLIERS)])
    y = torch.cat([torch.zeros(N_PER_CLASS), torch.ones(N_PER_CLASS + N_OUTLIERS)]).double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1), y


def cross_entropy(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(x @ w, y)


def zero_one_error(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x @ w > 0).double() != y).double().mean())


def train_ce(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=CE_LR)
    for _ in range(CE_STEPS):
        opt.zero_grad()
        cross_entropy(w, x, y).backward()
        opt.step()
    return w.detach()


def search(w0: torch.Tensor, x: torch.Tensor, y: torch.Tensor, steps: int, generator: torch.Generator
           ) -> tuple[torch.Tensor, list[float], list[float]]:
    """ParamSpaceSearch on the 0-1 error with the CE gradient as the proposal's surrogate; (w, errors, ESS)."""
    w = w0.clone().requires_grad_()
    opt = ParamSpaceSearch([w], generator=generator, **SEARCH)
    errors, ess = [zero_one_error(w.detach(), x, y)], []
    for _ in range(steps):
        w.grad = None
        cross_entropy(w, x, y).backward()
        info = opt.step(lambda: zero_one_error(w, x, y))
        errors.append(zero_one_error(w.detach(), x, y))
        ess.append(info["ess"])
    return w.detach(), errors, ess


def run(mode: str, seed: int) -> Measurement:
    check_choice("mode", mode, tuple(STEPS))
    seed = check_int("seed", seed, low=0)
    gen = torch.Generator().manual_seed(seed)
    x, y = make_data(gen)
    w_ce = train_ce(x, y)
    steps = STEPS[mode]
    w_zero, curve_zero, ess = search(torch.zeros(3, dtype=torch.float64), x, y, steps, gen)
    metrics = {"ce_error": zero_one_error(w_ce, x, y), "search_error": curve_zero[-1],
               "search_ce": float(cross_entropy(w_zero, x, y)), "ce_ce": float(cross_entropy(w_ce, x, y)),
               "mean_ess": sum(ess) / len(ess)}
    lines = {"search from zero": (list(range(steps + 1)), curve_zero)}
    if FROM_CE[mode]:
        _, curve_ce, _ = search(w_ce, x, y, steps, gen)
        metrics["search_from_ce_error"] = curve_ce[-1]
        lines["search from the CE optimum"] = (list(range(steps + 1)), curve_ce)
    lines["CE-trained (reference)"] = ([0, steps], [metrics["ce_error"]] * 2)
    rows = [{"method": "cross-entropy GD (3000 steps)", "0-1 error": metrics["ce_error"], "CE": metrics["ce_ce"]},
            {"method": "ParamSpaceSearch on 0-1, zero init", "0-1 error": metrics["search_error"],
             "CE": metrics["search_ce"]}]
    if FROM_CE[mode]:
        rows.append({"method": "ParamSpaceSearch on 0-1, from the CE optimum",
                     "0-1 error": metrics["search_from_ce_error"], "CE": float("nan")})
    fig = Figure("zero_one_error", "0-1 training error during the sampling search", "search step", "0-1 error",
                 lines)
    return Measurement(metrics, {"errors": rows}, [fig])


EXPERIMENT = Experiment(
    name="sampling_search",
    title="从采样看优化：可导优化与不可导优化的统一视角 (Optimization seen through sampling)",
    url="https://kexue.fm/archives/7521",
    claim="Sampling the update in parameter space optimises the non-differentiable 0-1 loss: on the spec's "
          "outlier toy, cross-entropy training leaves a 0-1 error >= 0.19 (spec: 0.202) while ParamSpaceSearch "
          "with a CE-gradient proposal reaches <= 0.12 from zero init (spec: 0.104), over 5 seeds.",
    setup="Two 2-D Gaussians (500 each, std 0.7) plus 40 class-1 outliers at (-8, 6); linear logistic model with "
          "bias (float64). CE by GD (lr 0.5, 3000 steps); kexue.optim.ParamSpaceSearch on the training 0-1 error "
          "(m = 64, α = 0.002, σ = 0.05, η = 0.5, mix 0.5, no zero candidate as in the spec's script, 400 steps) "
          "from zero init, and from the CE optimum (reported, no target). Each seed draws its own data set.",
    checks=[Check("search_error", "<=", 0.12, "0-1 error after the search, zero init"),
            Check("ce_error", ">=", 0.19, "0-1 error of the CE-trained model")],
    run=run,
    seeds={"quick": 3, "full": 5},
    deviations={"quick": "3 seeds instead of the spec's 5; the optional digits softmax follow-up is not run.",
                "full": "The optional load_digits softmax follow-up (and its per-step wall clock) is not run."},
)
