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
    pool = AttentionPooling1d(4, intermediate_size=5)
    pooled, alpha = pool(x, mask, output_attentions=True)
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))
    assert (alpha[~mask] == 0).all()
    ref = torch.softmax(pool.score(torch.tanh(pool.proj(x[1, :3])))[:, 0], 0) @ x[1, :3]   # unpadded row alone
    torch.testing.assert_close(pooled[1], ref)


def test_attention_pooling_permutation_and_padding_invariance():
    x, mask = _batch()
    pool = AttentionPooling1d(4)
    pooled, alpha = pool(x, mask, output_attentions=True)
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    p2, a2 = pool(x[:1, perm], None, output_attentions=True)
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


@pytest.mark.parametrize("pool", [AttentionPooling1d(4), MaskedMaxPool1d(), MaskedAvgPool1d()])
def test_empty_sequences_and_all_padding_pool_to_zeros(pool):
    """"A row with no real token pools to zeros": n = 0 used to be NaN (avg) or an IndexError (max)."""
    for x, mask in ((torch.randn(2, 0, 4), None), (torch.randn(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool)),
                    (torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))):
        x.requires_grad_(True)
        out = pool(x, mask)
        assert torch.equal(out, torch.zeros(2, 4))
        out.sum().backward()
        assert torch.isfinite(x.grad).all()
    assert pool(torch.randn(0, 3, 4), torch.zeros(0, 3, dtype=torch.bool)).shape == (0, 4)


@pytest.mark.parametrize("pool", [AttentionPooling1d(4), MaskedMaxPool1d(), MaskedAvgPool1d()])
def test_mask_values_other_than_01_refused(pool):
    with pytest.raises(ValueError, match="mask"):
        pool(torch.randn(1, 2, 4), torch.tensor([[1.0, 0.5]]))


@pytest.mark.parametrize("call, exc, name", [
    (lambda: MaskedAvgPool1d(eps=0.0), ValueError, "eps"), (lambda: MaskedAvgPool1d(eps=-1.0), ValueError, "eps"),
    (lambda: MaskedAvgPool1d(eps=float("nan")), ValueError, "eps"),
    (lambda: AttentionPooling1d(4, intermediate_size=0), ValueError, "intermediate_size"),
    (lambda: AttentionPooling1d(4, intermediate_size=-1), ValueError, "intermediate_size"),
    (lambda: AttentionPooling1d(4.0), TypeError, "hidden_size"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_avg_pool_with_an_eps_below_the_dtype_tiny_is_finite_on_all_padding(dtype):
    """Found by the property suite: eps=3e-265 rounds to 0 in float32, and 0 / 0 gave NaN on an all-padding row."""
    x = torch.randn(2, 3, 4, dtype=dtype)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    out = MaskedAvgPool1d(eps=3e-265)(x, mask)
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(4, dtype=dtype))
    torch.testing.assert_close(out[0], x[0, 0], rtol=1e-2, atol=1e-3)
