"""Optimization as dynamics: momentum's iteration counts and SGD's temperature lr/B
(https://kexue.fm/archives/5655; spec core/05).

1. Rates on a quadratic (κ = 100, 50-d diagonal, until ‖θ‖ < 1e-6‖θ0‖): GD at lr 2/(L+μ), heavy ball at its
   optimal (lr, β) and Nesterov (lr 1/L, β = (√κ−1)/(√κ+1)), run as torch SGD / `kexue.optim.HeavyBall`;
   the spec's numpy check counts 611 / 85 / 139.
2. Temperature: on L = ½λθ² with synthetic Gaussian gradient noise (many independent chains stepped as one
   tensor), the measured stationary variance of SGD and heavy ball vs the exact discrete formula
   (`quadratic_stationary_variance`), and B = 64 at lr η vs B = 32 at lr η/2 (same lr/B: same variance).
"""
from __future__ import annotations

import math

import torch

from kexue._validate import check_choice, check_int
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.optim import HeavyBall, quadratic_stationary_variance, sgd_temperature

KAPPA_L, KAPPA_MU, DIM, TOL = 100.0, 1.0, 50, 1e-6
SPEC_COUNTS = {"gd": 611, "heavy_ball": 85, "nesterov": 139}
# (chains, steps, burn-in) of the stationary-variance simulations
SIM = {"quick": (2000, 3000, 500), "full": (10_000, 10_000, 1000)}
TRADE_SIM = {"quick": (4000, 3000, 1000), "full": (10_000, 10_000, 2000)}
VAR_LR, VAR_CURVATURE, VAR_NOISE, HB_MOMENTUM = 0.1, 1.0, 1.0, 0.5
TRADE_LR, TRADE_NOISE_VAR = 0.01, 16.0          # ηλ = 0.01, per-sample noise variance σ²


def quadratic_counts(max_iters: int = 5000) -> tuple[dict[str, int], dict[str, list[float]]]:
    """Iterations until ‖θ‖ < TOL‖θ0‖ for GD / heavy ball / Nesterov, and their ‖θ‖/‖θ0‖ curves."""
    A = torch.diag(torch.linspace(KAPPA_MU, KAPPA_L, DIM, dtype=torch.float64))
    x0 = torch.ones(DIM, dtype=torch.float64)
    sk = math.sqrt(KAPPA_L / KAPPA_MU)
    r = (sk - 1) / (sk + 1)
    makers = {"gd": lambda p: torch.optim.SGD(p, lr=2 / (KAPPA_L + KAPPA_MU)),
              "heavy_ball": lambda p: HeavyBall(p, lr=4 / (math.sqrt(KAPPA_L) + math.sqrt(KAPPA_MU)) ** 2,
                                                momentum=r * r),
              "nesterov": lambda p: HeavyBall(p, lr=1 / KAPPA_L, momentum=r, nesterov=True)}
    counts, curves = {}, {}
    for name, make in makers.items():
        x = x0.clone().requires_grad_()
        opt, curve = make([x]), []
        counts[name] = max_iters
        for t in range(max_iters):
            rel = float(x.detach().norm() / x0.norm())
            curve.append(rel)
            if rel < TOL:
                counts[name] = t
                break
            x.grad = A @ x.detach()
            opt.step()
        curves[name] = curve
    return counts, curves


def stationary_variance(lr: float, curvature: float, noise_std: float, momentum: float, sim: tuple[int, int, int],
                        generator: torch.Generator) -> float:
    """Mean of θ² over chains and post-burn-in steps of torch SGD(lr, momentum) on ½λθ² with N(0, s²) noise."""
    chains, steps, burn = sim
    x = torch.zeros(chains, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=lr, momentum=momentum)
    total = torch.zeros((), dtype=torch.float64)
    for t in range(steps):
        x.grad = curvature * x.detach() + noise_std * torch.randn(chains, generator=generator, dtype=torch.float64)
        opt.step()
        if t >= burn:
            total += x.detach().square().mean()
    return float(total) / (steps - burn)


def run(mode: str, seed: int) -> Measurement:
    check_choice("mode", mode, tuple(SIM))
    seed = check_int("seed", seed, low=0)
    gen = torch.Generator().manual_seed(seed)
    counts, curves = quadratic_counts()
    metrics = {f"{k}_iters": float(v) for k, v in counts.items()}

    rows = []
    for name, beta in (("sgd", 0.0), ("heavy_ball", HB_MOMENTUM)):
        measured = stationary_variance(VAR_LR, VAR_CURVATURE, VAR_NOISE, beta, SIM[mode], gen)
        exact = quadratic_stationary_variance(VAR_LR, VAR_CURVATURE, VAR_NOISE ** 2, beta)
        small_lr = sgd_temperature(VAR_LR, 1, VAR_NOISE ** 2, beta) / VAR_CURVATURE
        metrics[f"{name}_var_rel_err"] = abs(measured / exact - 1)
        rows.append({"optimizer": name, "momentum": beta, "measured var": measured, "exact formula": exact,
                     "T/λ (small-lr limit)": small_lr})

    trade = {}
    for batch, lr in ((64, TRADE_LR), (32, TRADE_LR / 2)):
        std = math.sqrt(TRADE_NOISE_VAR / batch)
        trade[batch] = stationary_variance(lr, VAR_CURVATURE, std, 0.0, TRADE_SIM[mode], gen)
        rows.append({"optimizer": f"sgd B={batch} lr={lr:g}", "momentum": 0.0, "measured var": trade[batch],
                     "exact formula": quadratic_stationary_variance(lr, VAR_CURVATURE, std ** 2),
                     "T/λ (small-lr limit)": sgd_temperature(lr, batch, TRADE_NOISE_VAR) / VAR_CURVATURE})
    metrics["batch_lr_trade_ratio"] = trade[64] / trade[32]

    count_rows = [{"method": k, "iterations": counts[k], "spec (numpy)": SPEC_COUNTS[k]} for k in counts]
    fig = Figure("quadratic_convergence", "κ = 100 quadratic: ‖θ‖/‖θ0‖", "iteration", "relative norm",
                 {k: (list(range(len(c))), c) for k, c in curves.items()}, logy=True)
    return Measurement(metrics, {"iterations": count_rows, "stationary_variance": rows}, [fig])


EXPERIMENT = Experiment(
    name="optimization_dynamics",
    title="从动力学角度看优化算法（一）：从SGD到动量加速 (Optimization from a dynamics viewpoint (1): from SGD to "
          "momentum)",
    url="https://kexue.fm/archives/5655",
    claim="Momentum is a damped particle: on a κ = 100 quadratic GD needs 611 iterations, heavy ball 85, "
          "Nesterov 139 (spec's numpy check); SGD noise has temperature ∝ lr/B: the stationary variance on a "
          "quadratic matches the exact discrete formula within 2 %, and B = 64 at lr η equals B = 32 at lr η/2 "
          "within 5 % (the article itself is conceptual; targets from the spec).",
    setup="Quadratic: 50-d diagonal spectrum linspace(1, 100), θ0 = 1, torch SGD / kexue.optim.HeavyBall in "
          "float64. Temperature: L = ½θ², synthetic N(0, s²/B) gradient noise, independent chains stepped as one "
          "tensor; SGD and heavy ball (β = 0.5) at lr 0.1 vs quadratic_stationary_variance; lr/B trade at ηλ = 0.01.",
    checks=[
        Check("gd_iters", "~", 611, "GD iterations (within 2 %)", tol=0.02 * 611),
        Check("heavy_ball_iters", "~", 85, "heavy-ball iterations (within 2 %)", tol=0.02 * 85),
        Check("nesterov_iters", "~", 139, "Nesterov iterations (within 2 %)", tol=0.02 * 139),
        Check("sgd_var_rel_err", "<=", 0.02, "SGD stationary variance vs exact"),
        Check("heavy_ball_var_rel_err", "<=", 0.02, "heavy-ball stationary variance vs exact"),
        Check("batch_lr_trade_ratio", "~", 1.0, "var(B=64, η) / var(B=32, η/2)", tol=0.05),
    ],
    run=run,
    seeds={"quick": 1, "full": 3},
    deviations={
        "quick": "Noise simulations with 2000-4000 chains x 3000 steps (5-12 million samples) instead of one "
                 "chain of 10^6 steps; the load_digits least-squares momentum comparison and the digits-MLP "
                 "runs (SGD vs momentum vs Nesterov at equal effective lr, batch 16/64 temperature) are not run; "
                 "Nesterov is torch's form, which tracks the look-ahead sequence (may differ by one step).",
        "full": "10^4 chains x 10^4 steps; the load_digits least-squares and digits-MLP parts are not run.",
    },
)
