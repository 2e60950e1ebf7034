"""Sparse attention (https://kexue.fm/archives/6853): blocked kernels vs the dense-mask oracle, mask algebra,
closed-form pair counts, leakage, padding and cost."""
import importlib
import functools

import pytest
import torch

from kexue.nn.sparse_attention import (AtrousSelfAttention, LocalSelfAttention, SparseSelfAttention,
                                       StridedSelfAttention, allowed_pairs, sparse_attention, sparse_attention_mask)

CASES = [  # (pattern, kwargs)
    ("full", {}), ("atrous", {"rate": 3}), ("atrous", {"rate": 4}), ("local", {"window": 2}),
    ("local", {"window": 3, "dilation": 2}), ("local", {"window": 0}), ("strided", {"rate": 3}),
    ("strided", {"rate": 5}),
]


def _qkv(B, H, n, D, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, n, D, generator=g, dtype=dtype).requires_grad_() for _ in range(3)]


@pytest.mark.parametrize("pattern,kw", CASES)
@pytest.mark.parametrize("n", [2, 7, 17, 70])
@pytest.mark.parametrize("causal", [False, True])
def test_blocked_equals_dense_oracle_values_and_grads(pattern, kw, n, causal):
    q, k, v = _qkv(2, 2, n, 8)
    pad = torch.ones(2, n, dtype=torch.bool)
    pad[1, max(1, n - 3):] = False                                    # second row padded
    args = dict(pattern=pattern, causal=causal, attention_mask=pad, **kw)
    dense = sparse_attention(q, k, v, impl="dense_mask", **args)
    blocked = sparse_attention(q, k, v, impl="blocked", **args)
    torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(dense)
    for a, b in zip(torch.autograd.grad(dense, (q, k, v), g), torch.autograd.grad(blocked, (q, k, v), g)):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1024, 100])
def test_long_block_path_with_left_padding_and_window_larger_than_block(chunk, monkeypatch):
    # n spans several local blocks (block 64) and chunks of blocks; the window exceeds the minimum block size
    sa = importlib.import_module("kexue.nn.sparse_attention")   # the package attribute is the function
    monkeypatch.setattr(sa, "_CHUNK", chunk)
    q, k, v = _qkv(2, 2, 301, 16, seed=3)
    pad = torch.ones(2, 301, dtype=torch.bool)
    pad[0, :37] = False                                                # left padding: empty rows must be 0
    for pattern, kw in [("local", {"window": 70}), ("local", {"window": 5}), ("strided", {"rate": 13}),
                        ("atrous", {"rate": 8}), ("local", {"window": 9, "causal": True}),
                        ("local", {"window": 3, "dilation": 2})]:
        args = dict(pattern=pattern, attention_mask=pad, **kw)
        dense = sparse_attention(q, k, v, impl="dense_mask", **args)
        blocked = sparse_attention(q, k, v, impl="blocked", **args)
        torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=1e-5)
        assert torch.isfinite(blocked).all()


def test_module_weight_gradients_match_between_impls():
    torch.manual_seed(0)
    dense = StridedSelfAttention(16, 2, rate=3, impl="dense_mask")
    blocked = StridedSelfAttention(16, 2, rate=3, impl="blocked")
    blocked.load_state_dict(dense.state_dict())
    x = torch.randn(2, 23, 16)
    mask = torch.ones(2, 23, dtype=torch.bool)
    mask[0, 19:] = False
    dense(x, mask).pow(2).sum().backward()
    blocked(x, mask).pow(2).sum().backward()
    for (name, a), b in zip(dense.named_parameters(), blocked.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_mask_algebra():
    n = 19
    full = sparse_attention_mask(n, "full")
    assert torch.equal(sparse_attention_mask(n, "atrous", rate=1), full)
    assert torch.equal(sparse_attention_mask(n, "local", window=n), full)
    for r in (2, 3, 5):
        assert torch.equal(sparse_attention_mask(n, "strided", rate=r),
                           sparse_attention_mask(n, "atrous", rate=r) | sparse_attention_mask(n, "local", window=r - 1))
    for pattern, kw in CASES:
        assert torch.equal(sparse_attention_mask(n, pattern, causal=True, **kw),
                           sparse_attention_mask(n, pattern, **kw) & torch.ones(n, n, dtype=torch.bool).tril())


@pytest.mark.parametrize("n", [1, 4, 12, 13, 31])
@pytest.mark.parametrize("causal", [False, True])
def test_allowed_pairs_closed_form(n, causal):
    for pattern, kw in CASES + [("local", {"window": 4, "dilation": 3}), ("atrous", {"rate": 1})]:
        assert allowed_pairs(n, pattern, causal=causal, **kw) == int(
            sparse_attention_mask(n, pattern, causal=causal, **kw).sum())
    assert allowed_pairs(12, "atrous", rate=4) == 12 ** 2 // 4
    assert allowed_pairs(12, "local", window=2) == 12 * 5 - 2 * 3
    assert allowed_pairs(12, "strided", rate=3) == allowed_pairs(12, "atrous", rate=3) + \
        allowed_pairs(12, "local", window=2) - 12


def test_atrous_residue_class_is_plain_attention():
    q, k, v = _qkv(1, 2, 22, 8)
    out = sparse_attention(q, k, v, pattern="atrous", rate=4, impl="blocked")
    for r0 in range(4):
        sub = torch.nn.functional.scaled_dot_product_attention(q[:, :, r0::4], k[:, :, r0::4], v[:, :, r0::4])
        torch.testing.assert_close(out[:, :, r0::4], sub, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("pattern,kw", CASES)
def test_no_leakage_outside_the_pattern(pattern, kw):
    n = 11
    for causal in (False, True):
        x = torch.randn(1, 1, n, 4, dtype=torch.float64)
        f = functools.partial(sparse_attention, pattern=pattern, causal=causal, impl="blocked", **kw)
        jac = torch.autograd.functional.jacobian(lambda t: f(t, t, t), x)     # [1,1,n,4, 1,1,n,4]
        dep = jac.abs().sum((0, 1, 3, 4, 5, 7)) > 0                            # [n_out, n_in]
        allowed = sparse_attention_mask(n, pattern, causal=causal, **kw)
        assert not (dep & ~allowed).any()


def test_padding_invariance_and_zero_pad_outputs():
    torch.manual_seed(0)
    for cls, kw in [(LocalSelfAttention, {"window": 2}), (AtrousSelfAttention, {"rate": 3}),
                    (StridedSelfAttention, {"rate": 4})]:
        m = cls(12, 3, impl="blocked", **kw)
        x = torch.randn(1, 10, 12)
        ref = m(x)
        xp = torch.cat([x, 100 * torch.randn(1, 5, 12)], 1)
        mask = torch.arange(15)[None] < 10
        out = m(xp, mask)
        torch.testing.assert_close(out[:, :10], ref, atol=1e-5, rtol=1e-5)
        assert (out[:, 10:] == 0).all()


def test_blocked_path_never_forms_an_n_by_n_tensor():
    n = 1024
    q, k, v = (torch.randn(1, 1, n, 8) for _ in range(3))
    for pattern, kw, bound in [("atrous", {"rate": 16}, n * n / 16), ("local", {"window": 64}, n * 3 * 64),
                               ("strided", {"rate": 23}, n * n / 23 + n * 3 * 64)]:
        shapes = []
        sparse_attention(q, k, v, pattern=pattern, impl="blocked", score_shapes=shapes, **kw)
        assert all(s[-2] * s[-1] < n * n for s in shapes)
        total = sum(torch.Size(s).numel() for s in shapes)
        assert allowed_pairs(n, pattern, **kw) <= total <= 1.1 * bound


def test_pluggable_kernel_signature_and_masks():
    q, k, v = _qkv(2, 2, 600, 8)                                      # long enough for impl="auto" -> blocked
    pad = torch.ones(2, 600, dtype=torch.bool)
    pad[1, 500:] = False
    kernel = functools.partial(sparse_attention, pattern="local", window=3)
    ref = sparse_attention(q, k, v, pattern="local", window=3, attention_mask=pad, impl="dense_mask")
    torch.testing.assert_close(kernel(q, k, v, pad[:, None, None, :]), ref, atol=1e-5, rtol=1e-5)
    additive = torch.zeros(2, 1, 1, 600).masked_fill(~pad[:, None, None, :], torch.finfo(torch.float32).min)
    torch.testing.assert_close(kernel(q, k, v, additive), ref, atol=1e-5, rtol=1e-5)
    shapes = []
    kernel(q, k, v, pad[:, None, None, :], score_shapes=shapes)
    assert max(s[-2] * s[-1] for s in shapes) < 600 * 600               # stayed on the blocked path
    # a full [n, n] bool mask is combined with the pattern on the dense path
    causal = torch.ones(600, 600, dtype=torch.bool).tril()
    torch.testing.assert_close(kernel(q, k, v, causal), sparse_attention(q, k, v, pattern="local", window=3,
                                                                        causal=True), atol=1e-5, rtol=1e-5)


def test_incremental_queries_equal_last_rows():
    q, k, v = _qkv(1, 2, 40, 8)
    full = sparse_attention(q, k, v, pattern="strided", rate=5, causal=True)
    last = sparse_attention(q[:, :, -3:], k, v, pattern="strided", rate=5, causal=True)
    torch.testing.assert_close(last, full[:, :, -3:], atol=1e-6, rtol=1e-6)


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v = _qkv(1, 1, 9, 4)
    pad = torch.zeros(1, 9, dtype=torch.bool)
    for impl in ("dense_mask", "blocked"):
        out = sparse_attention(q, k, v, pattern="strided", rate=3, attention_mask=pad, impl=impl)
        assert (out == 0).all()
        out.sum().backward()
        assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def test_output_attentions_are_a_masked_distribution():
    m = SparseSelfAttention(8, 2, pattern="strided", rate=3)
    mask = torch.arange(10)[None] < torch.tensor([[10], [6]])
    _, w = m(torch.randn(2, 10, 8), mask, output_attentions=True)
    allowed = sparse_attention_mask(10, "strided", rate=3) & mask[:, None, None, :]
    assert (w[~allowed.expand_as(w)] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 10))


def test_bad_arguments_raise_with_names():
    q, k, v = _qkv(1, 1, 5, 4)
    with pytest.raises(ValueError, match="pattern"):
        sparse_attention(q, k, v, pattern="banded")
    with pytest.raises(ValueError, match="rate"):
        sparse_attention(q, k, v, pattern="strided", rate=1)
    with pytest.raises(ValueError, match="impl"):
        sparse_attention(q, k, v, impl="flex")
    with pytest.raises(TypeError, match="pattern="):
        sparse_attention(q, k, v, "local")
    with pytest.raises(ValueError, match="attention_mask"):
        sparse_attention(q, k, v, attention_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="blocked"):
        sparse_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool), impl="blocked")
    with pytest.raises(ValueError, match="seq_len"):
        sparse_attention_mask(0, "full")


HUGE = 10**12


@pytest.mark.timeout(60)
@pytest.mark.parametrize("impl", ["dense_mask", "blocked"])
@pytest.mark.parametrize("pattern,kw,small", [
    ("local", {"window": HUGE}, {"window": 6}), ("local", {"window": 2, "dilation": HUGE}, {"window": 2, "dilation": 7}),
    ("local", {"window": HUGE, "dilation": HUGE}, {"window": 1, "dilation": 7}),
    ("atrous", {"rate": HUGE}, {"rate": 7}), ("strided", {"rate": HUGE}, {"rate": 7}),
])
def test_sizes_beyond_the_sequence_are_clipped_not_allocated(impl, pattern, kw, small):
    """Issue 8: window=10**6 on 5 tokens tried to allocate O(window) (blocked) or overflowed int64.  A window /
    rate / dilation past the sequence selects the same pairs as one at the sequence length, so the result
    equals the small-size oracle and nothing of size O(window) is built."""
    q, k, v = _qkv(2, 2, 7, 4)
    out = sparse_attention(q, k, v, pattern=pattern, impl=impl, **kw)
    ref = sparse_attention(q, k, v, pattern=pattern, impl="dense_mask", **small)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    m = sparse_attention_mask(7, pattern, **kw)
    assert torch.equal(m, sparse_attention_mask(7, pattern, **small))
    assert allowed_pairs(7, pattern, **kw) == int(m.sum())


@pytest.mark.parametrize("kw, exc, name", [
    ({"window": 1e6}, TypeError, "window"), ({"window": -1}, ValueError, "window"),
    ({"window": True}, TypeError, "window"), ({"dilation": 0}, ValueError, "dilation"),
    ({"dilation": 2.0}, TypeError, "dilation"), ({"rate": 0}, ValueError, "rate"),
    ({"rate": "2"}, TypeError, "rate"),
])
def test_window_rate_dilation_types_and_bounds_named(kw, exc, name):
    q, k, v = _qkv(1, 1, 5, 4)
    pattern = "local" if "rate" not in kw else "atrous"
    with pytest.raises(exc, match=name):
        sparse_attention(q, k, v, pattern=pattern, **kw)
    with pytest.raises(exc, match=name):
        LocalSelfAttention(8, 2, **kw) if pattern == "local" else AtrousSelfAttention(8, 2, **kw)


@pytest.mark.parametrize("impl", ["auto", "dense_mask", "blocked"])
@pytest.mark.parametrize("pattern,kw", CASES)
def test_empty_sequence_and_empty_batch_give_empty_outputs(impl, pattern, kw):
    """n = 0 (or B = 0) gives an empty output of the right shape, as SDPA does, not a reshape error."""
    for B, n in ((2, 0), (0, 5)):
        q, k, v = _qkv(B, 2, n, 4)
        out = sparse_attention(q, k, v, pattern=pattern, impl=impl, **kw)
        assert out.shape == (B, 2, n, 4)
        out.sum().backward()
    layer = SparseSelfAttention(8, 2, pattern=pattern, impl=impl, **kw)
    y, w = layer(torch.zeros(3, 0, 8), torch.zeros(3, 0, dtype=torch.bool), output_attentions=True)
    assert y.shape == (3, 0, 8) and w.shape == (3, 2, 0, 0)


@pytest.mark.parametrize("kw, exc, name", [
    ({"hidden_size": 0, "num_heads": 2}, ValueError, "hidden_size"),
    ({"hidden_size": 8, "num_heads": 0}, ValueError, "num_heads"),
    ({"hidden_size": 8, "num_heads": 3}, ValueError, "num_heads"),
    ({"hidden_size": 8.0, "num_heads": 2}, TypeError, "hidden_size"),
    ({"hidden_size": 8, "num_heads": 2, "head_dim": 0}, ValueError, "head_dim"),
    ({"hidden_size": 8, "num_heads": 2, "key_dim": -4}, ValueError, "key_dim"),
    ({"hidden_size": 8, "num_heads": 2, "head_size": 0}, ValueError, "head_size"),
    ({"hidden_size": 8, "num_heads": 2, "key_size": -4}, ValueError, "key_size"),
    ({"hidden_size": 8, "num_heads": 2, "head_dim": 4, "head_size": 4}, TypeError, "head_dim.*head_size"),
    ({"hidden_size": 8, "num_heads": 2, "key_dim": 4, "key_size": 4}, TypeError, "key_dim.*key_size"),
    ({"hidden_size": 8, "num_heads": 2, "attn_dropout": float("nan")}, ValueError, "attn_dropout"),
])
def test_module_sizes_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        SparseSelfAttention(**kw)


def test_score_shapes_are_recorded_per_call_not_in_module_state():
    """Issue 9: the score-shape log was a module-level global (`_score_log`) switched by a context manager; it
    is now a list passed to the one call it describes, and the module holds no mutable debug state."""
    sa = importlib.import_module("kexue.nn.sparse_attention")
    assert not hasattr(sa, "record_score_shapes")
    assert not [name for name, v in vars(sa).items() if isinstance(v, (list, dict, set)) and not name.startswith("__")]
    q, k, v = _qkv(1, 1, 600, 4)
    local, dense = [], []
    sparse_attention(q, k, v, pattern="local", window=3, impl="blocked", score_shapes=local)
    sparse_attention(q, k, v, pattern="local", window=3, impl="dense_mask", score_shapes=dense)
    assert dense == [(1, 1, 600, 600)]
    assert local and max(s[-2] * s[-1] for s in local) < 600 * 600


def test_bert4keras_head_size_and_key_size_are_aliases_of_head_dim_and_key_dim():
    """docs/naming.md: head_dim / key_dim are the names; bert4keras's head_size / key_size are accepted and mean
    the same thing (same weights, same output, same attributes)."""
    torch.manual_seed(0)
    canonical = SparseSelfAttention(16, 2, head_dim=4, key_dim=6, pattern="strided", rate=3).eval()
    alias = SparseSelfAttention(16, 2, head_size=4, key_size=6, pattern="strided", rate=3).eval()
    assert {k: v.shape for k, v in alias.state_dict().items()} == \
        {k: v.shape for k, v in canonical.state_dict().items()}
    alias.load_state_dict(canonical.state_dict())
    x, mask = torch.randn(2, 9, 16), torch.arange(9)[None] < torch.tensor([[9], [5]])
    torch.testing.assert_close(alias(x, attention_mask=mask), canonical(x, attention_mask=mask))
    for layer in (alias, canonical):
        assert (layer.head_dim, layer.key_dim, layer.head_size, layer.key_size) == (4, 6, 4, 6)
        assert layer(x).shape == (2, 9, 2 * 4)
    assert AtrousSelfAttention(16, 2, rate=2, head_size=3).head_dim == 3


def test_module_attention_mask_is_one_for_real_tokens():
    """attention_mask [B, n], 1 = real token (0/1 ints or bool): padded keys get no weight and padded outputs are 0,
    the same as dropping the padding."""
    torch.manual_seed(0)
    layer = StridedSelfAttention(8, 2, rate=3).eval()
    x = torch.randn(1, 7, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    out, w = layer(x, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(out[:, :5], layer(x[:, :5]), atol=1e-6, rtol=1e-6)
    assert (out[:, 5:] == 0).all() and (w[..., 5:] == 0).all()
