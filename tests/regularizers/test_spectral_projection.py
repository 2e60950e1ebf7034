"""project_spectral_norm_: the post-step projection W <- W / sigma(W) (the Keras kernel_constraint of
https://kexue.fm/archives/6051), against torch.linalg.matrix_norm and against spectral normalisation."""
import pytest
import torch
from torch import nn

from kexue.regularizers import apply_spectral_norm, project_spectral_norm_


def _mlp(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))


def test_projection_sets_every_spectral_norm_to_one():
    model = _mlp(0).double()
    before = [m.weight.detach().clone() for m in model if isinstance(m, nn.Linear)]
    out = project_spectral_norm_(model)
    assert out is model
    for w0, m in zip(before, [m for m in model if isinstance(m, nn.Linear)]):
        sigma0 = torch.linalg.matrix_norm(w0, ord=2)
        assert torch.linalg.matrix_norm(m.weight, ord=2).item() == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(m.weight.detach(), w0 / sigma0)       # a rescaling, direction kept


def test_clip_only_leaves_contractions_alone():
    model = _mlp(1).double()
    with torch.no_grad():
        model[0].weight.mul_(0.5 / torch.linalg.matrix_norm(model[0].weight, ord=2))   # sigma 0.5
        model[2].weight.mul_(3.0 / torch.linalg.matrix_norm(model[2].weight, ord=2))   # sigma 3
    w0 = model[0].weight.detach().clone()
    project_spectral_norm_(model, clip_only=True)
    torch.testing.assert_close(model[0].weight.detach(), w0)
    assert torch.linalg.matrix_norm(model[2].weight, ord=2).item() == pytest.approx(1.0, abs=1e-12)


def test_projection_is_not_spectral_normalisation_gradients():
    """Same weights and forward output, different gradients: the article's bug in one assertion."""
    projected = project_spectral_norm_(_mlp(2).double())
    normalised = apply_spectral_norm(_mlp(2).double(), n_power_iterations=200)
    normalised.train()
    x = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    normalised(x)                                                    # converge u
    normalised.eval()
    torch.testing.assert_close(projected(x), normalised(x), atol=1e-8, rtol=1e-8)
    projected(x).sum().backward()
    normalised(x).sum().backward()
    g_proj = projected[0].weight.grad
    g_norm = normalised[0].parametrizations.weight.original.grad
    assert not torch.allclose(g_proj, g_norm, atol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="model"):
        project_spectral_norm_("not a module")
    with pytest.raises(TypeError, match="clip_only"):
        project_spectral_norm_(_mlp(0), clip_only=1)
