"""project_spectral_norm_ on arbitrary weights: sigma 1 after (<= 1 with clip_only), zero stays zero, a
non-finite weight is a clear error naming the layer, never a NaN passed on (https://kexue.fm/archives/6051)."""
import math

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

from kexue.regularizers import project_spectral_norm_
from tests.property.clear_error import assert_finite, valid_or_clear_error

SPECIAL = st.sampled_from([0.0, 1e-30, 1e30, math.inf, -math.inf, math.nan])


@pytest.mark.timeout(60)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), scale=st.floats(1e-6, 1e6), seed=st.integers(0, 99),
       special=st.one_of(st.none(), SPECIAL), clip_only=st.booleans())
def test_projection_gives_unit_or_contracted_norms_or_a_clear_error(rows, cols, scale, seed, special, clip_only):
    layer = nn.Linear(cols, rows).double()
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed),
                                               dtype=torch.float64))
        if special is not None:
            layer.weight[0, 0] = special
    model = nn.Sequential(layer)
    sigma0 = torch.linalg.matrix_norm(layer.weight.detach(), ord=2) if torch.isfinite(layer.weight).all() else None
    with valid_or_clear_error("weight"):
        project_spectral_norm_(model, clip_only=clip_only)
        assert sigma0 is not None, "a non-finite weight must be refused"
        assert_finite(layer.weight)
        sigma = torch.linalg.matrix_norm(layer.weight.detach(), ord=2).item()
        if sigma0 == 0:
            assert sigma == 0
        elif clip_only and sigma0 <= 1:
            assert sigma == pytest.approx(sigma0.item(), rel=1e-12)
        else:
            assert sigma == pytest.approx(1.0, rel=1e-9)
