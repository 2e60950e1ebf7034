"""NEZHA against an independent reference of its attention formula (no HF implementation in transformers 5):
s_ij = q_i . (k_j + r_ij) / sqrt(D),  out_i = sum_j softmax(s)_ij (v_j + r_ij),
r_ij = [sin(p w_0), cos(p w_0), sin(p w_1), ...] with p = clip(j - i, -k, k) + k."""
from __future__ import annotations

import math

import torch

import kexue

CFG = dict(model_type="nezha", vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
           intermediate_size=24, max_relative_position=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def reference_relative(p: int, depth: int) -> torch.Tensor:
    r = torch.zeros(depth, dtype=torch.float64)
    for i in range(0, depth, 2):
        w = math.exp(-i * math.log(10000.0) / depth)
        r[i], r[i + 1] = math.sin(p * w), math.cos(p * w)
    return r


def reference_attention(attn, x: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Loops over heads, queries and keys in float64."""
    B, n, _ = x.shape
    H, D = attn.num_heads, attn.head_dim
    x = x.double()
    q = (x @ attn.q.weight.double().T + attn.q.bias.double()).view(B, n, H, D)
    kk = (x @ attn.k.weight.double().T + attn.k.bias.double()).view(B, n, H, D)
    v = (x @ attn.v.weight.double().T + attn.v.bias.double()).view(B, n, H, D)
    out = torch.zeros(B, n, H, D, dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            for i in range(n):
                js = [j for j in range(n) if allowed[b, j]]
                r = {j: reference_relative(max(-k, min(k, j - i)) + k, D) for j in js}
                s = torch.stack([q[b, i, h] @ (kk[b, j, h] + r[j]) / math.sqrt(D) for j in js])
                a = s.softmax(0)
                out[b, i, h] = sum(a[t] * (v[b, j, h] + r[j]) for t, j in enumerate(js))
    return out.reshape(B, n, H * D) @ attn.o.weight.double().T + attn.o.bias.double()


def test_nezha_attention_matches_reference():
    model = kexue.build_transformer_model(config=CFG).eval()
    attn = model.layer(0).attn
    x = torch.randn(2, 7, 16)                                   # 7 > 2k+1: clipping is exercised
    allowed = torch.ones(2, 7, dtype=torch.bool)
    allowed[1, 5:] = False
    bias = torch.zeros(2, 1, 1, 7).masked_fill(~allowed[:, None, None, :], torch.finfo(torch.float32).min / 2)
    with torch.no_grad():
        out, _ = attn(x, attention_bias=bias)
    ref = reference_attention(attn, x, allowed, k=3)
    assert (out.double() - ref).abs().max() <= 1e-5


def test_nezha_lm_cache_matches_full_forward():
    """Relative positions must line up when keys come from the cache (DialoGPT on NEZHA)."""
    model = kexue.build_transformer_model(config=CFG, application="lm", with_mlm=True).eval()
    assert model.embeddings.position is None
    ids = torch.randint(0, 60, (2, 9))
    cache = model.make_cache(2, 9)
    with torch.no_grad():
        full = model(ids).logits
        parts = [model(ids[:, :4], cache=cache).logits] + [model(ids[:, t:t + 1], cache=cache).logits
                                                           for t in range(4, 9)]
    assert (torch.cat(parts, 1) - full).abs().max() <= 1e-5
