"""One attention module (issue 9, section 3): MultiHeadAttention takes its kernel in the constructor (SDPA by
default, "eager", or any function with SDPA's signature such as kexue.nn.sparse_attention); SparseSelfAttention
and CrossDirectionAttention are that module with a kernel / a mask, reusing its projections and head split."""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

import kexue
from kexue.models import BERT, CrossDirectionAttention
from kexue.nn.attention import MultiHeadAttention, mask_to_bias
from kexue.nn.sparse_attention import SparseSelfAttention, sparse_attention, sparse_attention_mask


def _x(B=2, n=9, C=16, seed=0):
    return torch.randn(B, n, C, generator=torch.Generator().manual_seed(seed))


def test_kernel_is_injected_through_the_constructor():
    torch.manual_seed(0)
    sdpa = MultiHeadAttention(16, 4).eval()
    x = _x()
    pad = torch.ones(2, 9, dtype=torch.bool)
    pad[1, 6:] = False
    bias = mask_to_bias(pad[:, None, None, :])
    ref, _ = sdpa(x, attention_bias=bias)
    for kernel in ("eager", functools.partial(sparse_attention, pattern="full")):
        other = MultiHeadAttention(16, 4, kernel=kernel).eval()
        other.load_state_dict(sdpa.state_dict())
        out, _ = other(x, attention_bias=bias)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    calls = []

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, scale=None):
        calls.append((tuple(q.shape), dropout_p, scale))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)

    spied = MultiHeadAttention(16, 4, kernel=spy, dropout=0.25).train()
    spied(x)
    assert calls == [((2, 4, 9, 4), 0.25, 0.5)]                  # SDPA's signature: dropout in training, scale


@pytest.mark.parametrize("kernel, exc", [("flash", ValueError), (3, TypeError), (None, TypeError)])
def test_bad_kernel_named(kernel, exc):
    with pytest.raises(exc, match="kernel"):
        MultiHeadAttention(16, 4, kernel=kernel)


def test_sparse_self_attention_is_the_attention_module_with_a_sparse_kernel():
    torch.manual_seed(0)
    layer = SparseSelfAttention(16, 2, key_dim=6, pattern="strided", rate=3).eval()
    assert isinstance(layer, MultiHeadAttention)
    assert sorted(layer.state_dict()) == ["k.weight", "q.weight", "v.weight"]     # bias-free, no output projection
    x = _x(n=11)
    pad = torch.arange(11)[None] < torch.tensor([[11], [7]])
    q = layer.q(x).view(2, 11, 2, 6).transpose(1, 2)
    k = layer.k(x).view(2, 11, 2, 6).transpose(1, 2)
    v = layer.v(x).view(2, 11, 2, 8).transpose(1, 2)
    allowed = sparse_attention_mask(11, "strided", rate=3) & pad[:, None, None, :]
    scores = (q @ k.transpose(-1, -2) / math.sqrt(6)).masked_fill(~allowed, float("-inf"))
    ref = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 11, 16) * pad[..., None]
    torch.testing.assert_close(layer(x, pad), ref, rtol=1e-5, atol=1e-5)
    # checkpoints saved with the old projection names still load
    old = {f"{p}_proj.weight": w for p, w in (("q", layer.q.weight), ("k", layer.k.weight), ("v", layer.v.weight))}
    fresh = SparseSelfAttention(16, 2, key_dim=6, pattern="strided", rate=3)
    fresh.load_state_dict(old)
    torch.testing.assert_close(fresh(x, pad), ref, rtol=1e-5, atol=1e-5)


def test_cross_direction_attention_is_the_attention_module():
    torch.manual_seed(0)
    att = CrossDirectionAttention(16, num_heads=2, head_dim=4)
    assert isinstance(att, MultiHeadAttention) and att.o is None
    a, b = _x(n=5), _x(n=5, seed=1)
    other = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    split = lambda t: t.view(2, 5, 2, 4).transpose(1, 2)           # noqa: E731
    mask = torch.ones(5, 5, dtype=torch.bool).tril() & other.bool()[:, None, None, :]
    ref = F.scaled_dot_product_attention(split(att.q(a)), split(att.k(b)), split(att.v(b)), attn_mask=mask)
    torch.testing.assert_close(att(a, b, other), ref.transpose(1, 2).reshape(2, 5, 8), rtol=1e-5, atol=1e-5)
    nothing = torch.zeros(2, 5, dtype=torch.long)                   # a partner that is all padding: zeros, not NaN
    assert torch.equal(att(a, b, nothing), torch.zeros(2, 5, 8))


class LocalBERT(BERT):
    """A family that injects a sparse kernel into every layer at construction (no assignment afterwards)."""
    attention_kernel = staticmethod(functools.partial(sparse_attention, pattern="local", window=4, impl="blocked"))


def test_model_family_injects_its_attention_kernel():
    cfg = kexue.models.config.TransformerConfig(model_type="bert", vocab_size=50, hidden_size=32, num_layers=2,
                                                num_heads=4, intermediate_size=40, max_position=128, dropout=0.0,
                                                attention_dropout=0.0)
    torch.manual_seed(0)
    dense = BERT(cfg).eval()
    local = LocalBERT(cfg).eval()
    local.load_state_dict(dense.state_dict())
    assert all(local.layer(i).attn.kernel is LocalBERT.attention_kernel for i in range(2))
    ids = torch.randint(1, 50, (2, 100))
    band = sparse_attention_mask(100, "local", window=4)
    with torch.no_grad():
        ref = dense(ids, attention_mask=band[None].expand(2, 100, 100)).last_hidden_state
        out = local(ids).last_hidden_state
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_nezha_refuses_a_kernel_it_cannot_use():
    from kexue.models import NEZHA

    class SparseNEZHA(NEZHA):
        attention_kernel = staticmethod(functools.partial(sparse_attention, pattern="local"))

    cfg = kexue.models.config.TransformerConfig(model_type="nezha", vocab_size=50, hidden_size=16, num_layers=1,
                                                num_heads=2, intermediate_size=20, max_position=0,
                                                position="nezha")
    with pytest.raises(ValueError, match="attention_kernel"):
        SparseNEZHA(cfg)


@pytest.mark.parametrize("kw, exc, name", [({"out_proj": "no"}, TypeError, "out_proj"),
                                           ({"key_dim": 0}, ValueError, "key_dim"),
                                           ({"key_dim": 2.0}, TypeError, "key_dim")])
def test_new_constructor_arguments_checked_by_name(kw, exc, name):
    with pytest.raises(exc, match=name):
        MultiHeadAttention(8, 2, **kw)
