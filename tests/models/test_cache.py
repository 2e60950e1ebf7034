"""The pre-allocated KV cache gives the same logits as full recomputation (lm, unilm, T5), and reorders rows."""
from __future__ import annotations

import pytest
import torch

import kexue

from .hf_factories import hf_model, save

BERT = dict(model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _stepwise(model, ids, cache, first, **kw):
    outs = [model(ids[:, :first], cache=cache, **{k: v[:, :first] for k, v in kw.items()}).logits]
    for t in range(first, ids.shape[1]):
        outs.append(model(ids[:, t:t + 1], cache=cache, **{k: v[:, t:t + 1] for k, v in kw.items()}).logits)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("family", ["gpt2", "gpt"])
def test_decoder_only_cache(tmp_path, family):
    model = kexue.build_transformer_model(save(hf_model(family), tmp_path)).eval()
    ids = torch.randint(0, 101, (3, 10))
    cache = model.make_cache(3, 16)
    with torch.no_grad():
        full = model(ids).logits
        inc = _stepwise(model, ids, cache, 4)
    assert cache.length == 10
    assert (inc - full).abs().max() <= 1e-5


@pytest.mark.parametrize("family", ["bert", "roformer", "nezha"])
def test_unilm_cache_matches_full(family):
    cfg = dict(BERT, model_type=family)
    model = kexue.build_transformer_model(config=cfg, application="unilm", with_mlm=True).eval()
    ids = torch.randint(0, 50, (2, 9))
    seg = torch.tensor([[0] * 4 + [1] * 5, [0] * 6 + [1] * 3])
    cache = model.make_cache(2, 9)
    with torch.no_grad():
        full = model(ids, segment_ids=seg).logits
        inc = _stepwise(model, ids, cache, 6, segment_ids=seg)
    assert (inc - full).abs().max() <= 1e-5


def test_cache_with_padding_and_reorder(tmp_path):
    model = kexue.build_transformer_model(save(hf_model("gpt2"), tmp_path)).eval()
    ids = torch.randint(0, 101, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0                                               # left padding in row 1
    pos = (mask.cumsum(1) - 1).clamp_min(0)
    cache = model.make_cache(2, 8)
    with torch.no_grad():
        model(ids, attention_mask=mask, position_ids=pos, cache=cache)
        cache.reorder(torch.tensor([1, 1]))                       # both rows now continue row 1
        nxt = torch.tensor([[7], [7]])
        step = model(nxt, position_ids=pos[[1, 1], -1:] + 1, cache=cache).logits
        full = model(torch.cat([ids[1:], nxt[:1]], 1), attention_mask=torch.cat([mask[1:], torch.ones(1, 1).long()], 1),
                     position_ids=torch.cat([pos[1:], pos[1:, -1:] + 1], 1)).logits
    assert (step[0] - full[0, -1:]).abs().max() <= 1e-5
    assert (step[1] - full[0, -1:]).abs().max() <= 1e-5


def test_t5_decoder_cache(tmp_path):
    model = kexue.build_transformer_model(save(hf_model("t5"), tmp_path)).eval()
    ids = torch.randint(2, 101, (2, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    dec = torch.randint(2, 101, (2, 6))
    cache = model.make_cache(2, 8)
    with torch.no_grad():
        enc = model.encode(ids, mask)
        full = model.decode(dec, enc, mask).logits
        inc = torch.cat([model.decode(dec[:, t:t + 1], enc, mask, cache=cache).logits for t in range(6)], 1)
    assert cache.has_cross(0) and cache.cross_length() == 7
    assert (inc - full).abs().max() <= 1e-5


def test_cache_overflow_is_an_error():
    model = kexue.build_transformer_model(config=BERT, application="lm").eval()
    cache = model.make_cache(1, 4)
    with pytest.raises(ValueError, match=r"max_len=4 positions; 0 are filled and 5 more were given"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_cache_is_a_module_with_static_buffers():
    """KVCache is an nn.Module: buffers allocated once, never saved, a tensor position updated in place."""
    model = kexue.build_transformer_model(config=BERT, application="lm").eval()
    cache = model.make_cache(2, 8)
    assert isinstance(cache, torch.nn.Module) and cache.state_dict() == {}
    before = {name: (buf.data_ptr(), tuple(buf.shape)) for name, buf in cache.named_buffers()}
    pos = cache.cache_pos
    with torch.no_grad():
        model(torch.randint(0, 50, (2, 3)), cache=cache)
        model(torch.randint(0, 50, (2, 1)), cache=cache)
    after = {name: (buf.data_ptr(), tuple(buf.shape)) for name, buf in cache.named_buffers()}
    assert after == before                                        # same storage, same shapes
    assert cache.cache_pos is pos and int(pos) == 4 and cache.length == 4
    assert cache.valid[:, :4].all() and not cache.valid[:, 4:].any()
    cache.reset()
    assert int(cache.cache_pos) == 0 and not cache.valid.any()
    k, v = cache.update(0, torch.ones(2, 4, 1, 8), torch.ones(2, 4, 1, 8))
    assert k.shape == (2, 4, 8, 8)                                # the full buffer, not a growing view
