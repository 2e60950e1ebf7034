"""Attention pooling and masked pools (https://kexue.fm/archives/5409)."""
import pytest
import torch

from kexue.nn.pooling import AttentionPooling1d, MaskedAvgPool1d, MaskedMaxPool1d


def _batch():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 4)
    mask = torch.arange(6) < torch.tensor([[6], [3], [1]])
    return x, mask


def test_attention_weights_are_a_distribution_over_real_tokens():
    x, mask = _batch()
    pool = AttentionPooling1d(4, inner=5)
    pooled, alpha = pool(x, mask, return_weights=True)
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    assert (alpha[~mask] == 0).all()
    ref = torch.softmax(pool.score(torch.tanh(pool.proj(x[1, :3])))[:, 0], 0) @ x[1, :3]   # unpadded row alone
    torch.testing.assert_close(pooled[1], ref)


def test_attention_pooling_permutation_and_padding_invariance():
    x, mask = _batch()
    pool = AttentionPooling1d(4)
    pooled, alpha = pool(x, mask, return_weights=True)
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    p2, a2 = pool(x[:1, perm], None, return_weights=True)
    torch.testing.assert_close(a2[0], alpha[0, perm])
    torch.testing.assert_close(p2[0], pooled[0])
    garbage = x.clone()
    garbage[~mask] = 1e3
    torch.testing.assert_close(pool(garbage, mask), pooled)


def test_masked_pools_ignore_pads():
    x, mask = _batch()
    x = x.masked_fill(~mask[..., None], 1e4)              # pads are the largest values
    mx, avg = MaskedMaxPool1d()(x, mask), MaskedAvgPool1d()(x, mask)
    for b, L in enumerate([6, 3, 1]):
        torch.testing.assert_close(mx[b], x[b, :L].amax(0))
        torch.testing.assert_close(avg[b], x[b, :L].mean(0), atol=1e-5, rtol=1e-5)


def test_empty_row_pools_to_zero_and_bad_mask_raises():
    x = torch.randn(1, 4, 2)
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert (AttentionPooling1d(2)(x, empty) == 0).all()
    assert (MaskedMaxPool1d()(x, empty) == 0).all()
    with pytest.raises(ValueError, match="mask"):
        AttentionPooling1d(2)(x, torch.ones(1, 3, dtype=torch.bool))
