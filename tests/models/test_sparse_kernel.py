"""Sparse attention plugged into the Transformer core as an attention kernel equals the dense masked model."""
from __future__ import annotations

import functools

import torch

import kexue
from kexue.nn.sparse_attention import sparse_attention, sparse_attention_mask

CFG = dict(model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=40, max_position_embeddings=512, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


def test_local_kernel_in_bert_equals_explicit_band_mask():
    model = kexue.build_transformer_model(config=CFG).eval()
    n, window = 300, 8
    ids = torch.randint(0, 50, (2, n))
    pad = torch.ones(2, n, dtype=torch.long)
    pad[1, 250:] = 0                                                   # padding, and n not divisible by the window
    band = sparse_attention_mask(n, pattern="local", window=window)    # [n, n] bool
    with torch.no_grad():
        dense = model(ids, attention_mask=band[None].expand(2, n, n) & pad.bool()[:, None, :]).last_hidden_state
        for i in range(model.num_layers):
            model.layer(i).attn.kernel = functools.partial(sparse_attention, pattern="local", window=window,
                                                           impl="blocked")
        sparse = model(ids, attention_mask=pad).last_hidden_state
    real = pad.bool()
    assert (dense - sparse)[real].abs().max() <= 1e-5
