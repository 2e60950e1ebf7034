"""The attention module (issue 9: one module, kernel injected in the constructor) on generated arguments.

Constructor arguments are drawn valid or bad (zero, negative, float, bool, string, NaN); inputs include B = 0
and n = 0, padding and all-padding rows.  The outcome must match an independent rule: valid arguments give a
finite output of the documented shape, equal across the "sdpa" and "eager" kernels, and anything else a
clear error naming the argument."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.models import CrossDirectionAttention
from kexue.nn.attention import KERNELS, MultiHeadAttention, mask_to_bias
from kexue.nn.sparse_attention import SparseSelfAttention
from tests.property.clear_error import CLEAR, assert_finite

BAD = [0, -2, 2.5, True, "4", float("nan"), None]


def _size(valid: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, valid, valid, st.sampled_from(BAD))


def _ok_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@given(embed=_size(st.integers(1, 12)), heads=_size(st.integers(1, 4)),
       head_dim=st.one_of(st.none(), _size(st.integers(1, 5))), key_dim=st.one_of(st.none(), _size(st.integers(1, 5))),
       kernel=st.sampled_from(["sdpa", "eager", "flash", 3, None]), out_proj=st.sampled_from([True, False, "no"]),
       B=st.integers(0, 2), n=st.integers(0, 5), pad=st.booleans())
def test_multihead_attention_valid_or_clear(embed, heads, head_dim, key_dim, kernel, out_proj, B, n, pad):
    named = {"hidden_size": embed, "num_heads": heads, "head_dim": head_dim, "key_dim": key_dim}
    valid = (all(_ok_int(v) for k, v in named.items() if v is not None or k in ("hidden_size", "num_heads"))
             and kernel in KERNELS and isinstance(out_proj, bool)
             and (head_dim is not None or (_ok_int(embed) and _ok_int(heads) and embed % heads == 0)))
    try:
        attn = MultiHeadAttention(embed, heads, head_dim, key_dim=key_dim, kernel=kernel, out_proj=out_proj).eval()
    except CLEAR as e:
        assert not valid, f"valid arguments refused: {e}"
        names = [k for k, v in named.items() if (v is not None or k in ("hidden_size", "num_heads")) and not _ok_int(v)]
        names = names or list(named)
        assert any(k in str(e) for k in names + ["kernel", "out_proj"]), str(e)
        return
    assert valid, "bad arguments accepted"
    x = torch.randn(B, n, embed)
    keep = torch.ones(B, n, dtype=torch.bool)
    if pad and n:
        keep[:, n // 2:] = False                                   # n = 1: every row sees nothing
    allowed = keep[:, None, None, :]
    bias, empty = mask_to_bias(allowed), ~allowed.any(-1, keepdim=True).expand(B, 1, n, 1)
    with torch.no_grad():
        out, _ = attn(x, attention_bias=bias, empty_rows=empty)
        other = "eager" if kernel == "sdpa" else "sdpa"
        twin = MultiHeadAttention(embed, heads, head_dim, key_dim=key_dim, kernel=other, out_proj=out_proj).eval()
        twin.load_state_dict(attn.state_dict())
        ref, _ = twin(x, attention_bias=bias, empty_rows=empty)
    width = embed if out_proj else heads * (head_dim or embed // heads)
    assert out.shape == (B, n, width)
    assert_finite(out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(60)
@settings(max_examples=40, deadline=None)
@given(hidden=st.integers(2, 8), heads=st.integers(1, 3), head=st.integers(1, 4), B=st.integers(0, 2),
       T=st.integers(0, 5), Tk=st.integers(0, 5), causal=st.booleans(), real=st.integers(0, 5))
def test_cross_direction_attention_is_finite_and_zero_where_nothing_is_seen(hidden, heads, head, B, T, Tk, causal,
                                                                            real):
    if causal:
        Tk = T
    att = CrossDirectionAttention(hidden, heads, head, causal=causal).eval()
    other = (torch.arange(Tk)[None] < real).expand(B, Tk).long()
    with torch.no_grad():
        out = att(torch.randn(B, T, hidden), torch.randn(B, Tk, hidden), other)
    assert out.shape == (B, T, heads * head)
    assert_finite(out)
    if min(real, Tk) == 0:
        assert (out == 0).all()


@pytest.mark.timeout(60)
@settings(max_examples=30, deadline=None)
@given(hidden=st.integers(1, 8), heads=st.integers(1, 3), n=st.integers(0, 12), B=st.integers(0, 2),
       pattern=st.sampled_from(["full", "atrous", "local", "strided"]), rate=st.integers(2, 5),
       impl=st.sampled_from(["auto", "dense_mask", "blocked"]))
def test_sparse_self_attention_is_the_module_with_zero_padding(hidden, heads, n, B, pattern, rate, impl):
    try:
        layer = SparseSelfAttention(hidden, heads, pattern=pattern, rate=rate, window=rate, impl=impl).eval()
    except CLEAR as e:
        assert hidden % heads and "num_heads" in str(e), str(e)
        return
    assert isinstance(layer, MultiHeadAttention) and layer.o is None
    keep = torch.arange(n)[None].expand(B, n) < max(1, n - 2)
    with torch.no_grad():
        out = layer(torch.randn(B, n, hidden), keep)
    assert out.shape == (B, n, hidden)
    assert_finite(out)
    assert (out[~keep] == 0).all()
    assert math.isclose(layer.scale, layer.key_dim ** -0.5)
