"""ODEs solved as RNNs and fitted by backprop through the solver (https://kexue.fm/archives/5643)."""
import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from kexue.ode import ODEStepper, ParametricODE, fit_ode, masked_mse, observations_to_grid

TIMES = [0, 10, 15, 30, 36, 40, 42]
VALUES = torch.tensor([[100, 150], [165, 283], [197, 290], [280, 276], [305, 269], [318, 266], [324, 264]],
                      dtype=torch.float64)
TRUE = {"r1": 0.1, "r2": 0.3, "a1": 1e-4, "a2": 2e-4, "iN1": 0.002, "iN2": 0.003}
INIT = {"r1": 0.1, "r2": 0.1, "a1": 1e-3, "a2": 1e-3, "iN1": 1e-3, "iN2": 1e-3}


def competition(x, p):
    x1, x2 = x[..., 0], x[..., 1]
    return torch.stack([p["r1"] * x1 * (1 - p["iN1"] * x1) - p["a1"] * x1 * x2,
                        p["r2"] * x2 * (1 - p["iN2"] * x2) - p["a2"] * x1 * x2], -1)


def test_euler_is_exact_on_exponential_and_rk4_is_fourth_order():
    h = 0.1
    traj = ODEStepper(lambda x, t: x, h)(torch.ones(1, 1, dtype=torch.float64), 20)
    torch.testing.assert_close(traj[0, :, 0], (1 + h) ** torch.arange(1, 21, dtype=torch.float64))

    def err(method, h):
        steps = round(5 / h)
        x = ODEStepper(lambda x, t: -x, h, method)(torch.ones(1, 1, dtype=torch.float64), steps)
        return abs(x[0, -1, 0].item() - np.exp(-5))

    assert 16 * 0.8 < err("rk4", 0.1) / err("rk4", 0.05) < 16 * 1.2
    assert 2 * 0.8 < err("euler", 0.1) / err("euler", 0.05) < 2 * 1.2
    assert 4 * 0.8 < err("midpoint", 0.1) / err("midpoint", 0.05) < 4 * 1.2


def test_forward_solve_reproduces_the_article_table():
    ode = ParametricODE(competition, TRUE)
    traj = ODEStepper(ode, 0.1, deriv_clip=1e5)(VALUES[:1], 1000)[0]
    expected = {10: (165.0, 282.9), 15: (196.6, 289.9), 30: (280.0, 275.5), 36: (304.9, 269.4),
                40: (318.5, 265.9), 42: (324.4, 264.4)}
    for t, v in expected.items():
        torch.testing.assert_close(traj[round(t / 0.1) - 1], torch.tensor(v, dtype=torch.float64), atol=0.05, rtol=0)


def test_grid_mapping_and_masked_loss():
    target, mask = observations_to_grid(TIMES, VALUES, 1.0, 50)
    assert mask.nonzero()[:, 0].tolist() == [9, 14, 29, 35, 39, 41]
    torch.testing.assert_close(target[41], VALUES[-1])
    pred = torch.zeros(50, 2, dtype=torch.float64)
    torch.testing.assert_close(masked_mse(pred, target, mask), (VALUES[1:] ** 2).sum())
    with pytest.raises(ValueError, match="outside"):
        observations_to_grid([60], VALUES[:1], 1.0, 50)


def _scipy_optimum():
    """Least-squares optimum of the Euler h = 1, 50-step model with a NumPy simulator (spec checks/ode.py)."""
    init = np.array(list(INIT.values()))

    def residual(q):
        r1, r2, a1, a2, i1, i2 = q * init
        x, out = np.array([100.0, 150.0]), []
        for _ in range(50):
            d = np.array([r1 * x[0] * (1 - i1 * x[0]) - a1 * x[0] * x[1], r2 * x[1] * (1 - i2 * x[1]) - a2 * x[0] * x[1]])
            x = x + np.clip(d, -1e5, 1e5)
            out.append(x)
        return np.concatenate([out[t - 1] - VALUES[i + 1].numpy() for i, t in enumerate(TIMES[1:])])
    r = least_squares(residual, np.ones(6), x_scale="jac")
    return float((r.fun ** 2).sum()), r.x * init


def test_fit_reaches_the_least_squares_optimum_and_rk4_is_less_biased():
    optimum, params = _scipy_optimum()
    assert optimum == pytest.approx(0.70, abs=0.05)
    np.testing.assert_allclose(params[:2], [0.0996, 0.280], rtol=0.02)
    euler = fit_ode(ParametricODE(competition, INIT, transform="scale"), VALUES[0], TIMES, VALUES, 1.0, 50,
                    optimizer="lbfgs", lr=1.0, epochs=6)
    assert euler["loss"] <= 1.1 * optimum
    rk4 = fit_ode(ParametricODE(competition, INIT, transform="scale"), VALUES[0], TIMES, VALUES, 1.0, 50,
                  optimizer="lbfgs", lr=1.0, epochs=6, method="rk4")
    rel = lambda p: np.abs(np.array([p[k] for k in TRUE]) / np.array(list(TRUE.values())) - 1).mean()  # noqa: E731
    assert rel(rk4["params"]) < rel(euler["params"])
    true_model = ParametricODE(competition, TRUE)                       # discretisation bias of Euler h = 1
    traj = ODEStepper(true_model, 1.0, deriv_clip=1e5)(VALUES[:1], 50)[0]
    target, mask = observations_to_grid(TIMES, VALUES, 1.0, 50)
    assert (traj - target)[mask].abs().max().item() == pytest.approx(3.55, abs=0.01)


def test_parameter_gradients_match_finite_differences():
    model = ParametricODE(competition, INIT, transform="scale")
    target, mask = observations_to_grid(TIMES, VALUES, 1.0, 50)
    stepper = ODEStepper(model, 1.0, deriv_clip=1e5)
    loss = lambda: masked_mse(stepper(VALUES[:1], 50)[0], target, mask)   # noqa: E731
    g, = torch.autograd.grad(loss(), model.theta)
    eps = 1e-6
    for i in range(6):
        with torch.no_grad():
            model.theta[i] += eps
            up = loss().item()
            model.theta[i] -= 2 * eps
            down = loss().item()
            model.theta[i] += eps
        assert (up - down) / (2 * eps) == pytest.approx(g[i].item(), rel=1e-5)


def test_adam_recipe_decreases_the_loss_and_bad_args_raise():
    out = fit_ode(ParametricODE(competition, INIT), VALUES[0], TIMES, VALUES, 1.0, 50, lr=1e-4, epochs=30)
    assert out["history"][-1] < out["history"][0]
    with pytest.raises(ValueError, match="method"):
        ODEStepper(lambda x, t: x, 0.1, method="heun")
    with pytest.raises(ValueError, match="transform"):
        ParametricODE(competition, INIT, transform="exp")
    with pytest.raises(ValueError, match="optimizer"):
        fit_ode(ParametricODE(competition, INIT), VALUES[0], TIMES, VALUES, 1.0, 50, optimizer="sgd", epochs=1)


@pytest.mark.slow
def test_article_adam_recipe_10k_epochs():
    out = fit_ode(ParametricODE(competition, INIT), VALUES[0], TIMES, VALUES, 1.0, 50, lr=1e-4, epochs=10_000)
    assert out["loss"] <= 100


@pytest.mark.parametrize("call, exc, name", [
    (lambda: ODEStepper(lambda x, t: x, h=float("inf")), ValueError, "h"),
    (lambda: ODEStepper(lambda x, t: x, h=float("nan")), ValueError, "h"),
    (lambda: ODEStepper(lambda x, t: x, h=0.1, deriv_clip=float("nan")), ValueError, "deriv_clip"),
    (lambda: ODEStepper(lambda x, t: x, h=0.1)(torch.zeros(1, 2), 2.5), TypeError, "steps"),
    (lambda: ODEStepper(lambda x, t: x, h=0.1)(torch.zeros(1, 2), 0), ValueError, "steps"),
    (lambda: masked_mse(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(3, dtype=torch.bool), "max"),
     ValueError, "reduction"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize("h, steps, exc, name", [(0.0, 5, ValueError, "h"), (float("nan"), 5, ValueError, "h"),
                                                 (0.1, 0, ValueError, "steps"), (0.1, 2.5, TypeError, "steps")])
def test_observations_to_grid_checks_step_and_size(h, steps, exc, name):
    """h = 0 was a bare ZeroDivisionError."""
    with pytest.raises(exc, match=name):
        observations_to_grid([0.0, 0.2], torch.ones(2, 1), h, steps)


@pytest.mark.parametrize("kw, exc, name", [(dict(epochs=1.5), TypeError, "epochs"), (dict(epochs=-1), ValueError, "epochs"),
                                           (dict(lr=float("nan")), ValueError, "lr"), (dict(lr=0.0), ValueError, "lr")])
def test_fit_ode_arguments_checked_by_name(kw, exc, name):
    model = ParametricODE(lambda x, p: -p["k"] * x, {"k": 1.0})
    with pytest.raises(exc, match=name):
        fit_ode(model, [1.0], [0.0, 0.5], torch.tensor([[1.0], [0.6]]), h=0.1, steps=5, **kw)
