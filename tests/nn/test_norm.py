"""Conditional LayerNorm and ScaleShift (https://kexue.fm/archives/7124, https://kexue.fm/archives/6810)."""
import pytest
import torch

from kexue.nn.norm import ConditionalLayerNorm, ScaleShift


def test_conditional_ln_equals_layernorm_at_init():
    torch.manual_seed(0)
    cln = ConditionalLayerNorm(16, 5, eps=1e-6)
    ln = torch.nn.LayerNorm(16, eps=1e-6)
    with torch.no_grad():                                 # non-trivial gamma / beta, copied to both
        ln.weight.normal_()
        ln.bias.normal_()
        cln.weight.copy_(ln.weight)
        cln.bias.copy_(ln.bias)
    x, c = torch.randn(3, 7, 16), torch.randn(3, 5)
    torch.testing.assert_close(cln(x, c), ln(x))
    hidden = ConditionalLayerNorm(16, 5, hidden_units=4, hidden_activation=torch.relu, eps=1e-6)
    torch.testing.assert_close(hidden(x, c), torch.nn.functional.layer_norm(x, (16,), eps=1e-6))


def test_conditional_ln_closed_form_and_gradients_reach_the_condition():
    torch.manual_seed(0)
    cln = ConditionalLayerNorm(8, 3)
    x, c = torch.randn(2, 4, 8), torch.randn(2, 3, requires_grad=True)
    cln(x, c).pow(2).sum().backward()
    assert cln.gamma_dense.weight.grad.abs().sum() > 0 and cln.beta_dense.weight.grad.abs().sum() > 0
    with torch.no_grad():
        cln.gamma_dense.weight.normal_()
        cln.beta_dense.weight.normal_()
    y = cln(x, c)
    ln0 = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-12)
    expected = ln0 * (1 + (c @ cln.gamma_dense.weight.T)[:, None]) + (c @ cln.beta_dense.weight.T)[:, None]
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    g, = torch.autograd.grad(y.sum(), c)
    assert g.abs().sum() > 0
    per_position = cln(x, c[:, None].expand(2, 4, 3))   # per-position condition = broadcast condition
    torch.testing.assert_close(per_position, y)


def test_scale_shift_identity_at_init_and_closed_form():
    s = ScaleShift(5)
    x = torch.randn(2, 3, 5)
    torch.testing.assert_close(s(x), x)
    with torch.no_grad():
        s.log_scale.copy_(torch.linspace(-1, 1, 5))
        s.shift.copy_(torch.arange(5.0))
    torch.testing.assert_close(s(x), x * torch.exp(torch.linspace(-1, 1, 5)) + torch.arange(5.0))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="cond_size"):
        ConditionalLayerNorm(8, 3)(torch.randn(2, 8), torch.randn(2, 4))
    with pytest.raises(ValueError, match="features"):
        ScaleShift(4)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="hidden_size"):
        ConditionalLayerNorm(0, 3)


@pytest.mark.parametrize("kw, exc, name", [
    (dict(eps=-1.0), ValueError, "eps"), (dict(eps=float("nan")), ValueError, "eps"), (dict(eps=0.0), ValueError, "eps"),
    (dict(hidden_units=0), ValueError, "hidden_units"), (dict(hidden_units=-1), ValueError, "hidden_units"),
    (dict(hidden_units=2.0), TypeError, "hidden_units"), (dict(hidden_size=4.0), TypeError, "hidden_size"),
    (dict(cond_size=True), TypeError, "cond_size"),
])
def test_conditional_ln_arguments_checked_by_name(kw, exc, name):
    """Issue 8 kind: eps=-1 gave NaN outputs (as layer_norm_eps=-1 in the configs); hidden_units=-1 a
    negative-dimension error."""
    with pytest.raises(exc, match=name):
        ConditionalLayerNorm(**{"hidden_size": 4, "cond_size": 3, **kw})


def test_empty_batch_and_sequence():
    cln = ConditionalLayerNorm(4, 3)
    assert cln(torch.zeros(0, 5, 4), torch.zeros(0, 3)).shape == (0, 5, 4)
    assert cln(torch.zeros(2, 0, 4), torch.zeros(2, 3)).shape == (2, 0, 4)
    assert ScaleShift(4)(torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(TypeError, match="features"):
        ScaleShift(4.0)


def test_conditional_ln_with_an_eps_that_rounds_to_zero_is_finite_on_a_constant_row():
    """eps=1e-300 is 0 in float32: a constant row gave 0 * rsqrt(0) = NaN."""
    cln = ConditionalLayerNorm(4, 3, eps=1e-300)
    x = torch.ones(2, 5, 4, requires_grad=True)
    y = cln(x, torch.randn(2, 3))
    assert torch.isfinite(y).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
