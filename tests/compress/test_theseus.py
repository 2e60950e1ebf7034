"""TheseusModel (spec nlp/11, https://kexue.fm/archives/7575): limits of p, per-draw composition against a
manual composition of the core's blocks, replacement statistics, freezing, strides, export."""
import pytest
import torch
from scipy.stats import binomtest
from torch import nn

import kexue
from kexue.compress import ConstantReplacement, SequenceClassifier, TheseusModel
from kexue.models.transformer import build_attention_bias


def _cfg(layers):
    return dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                intermediate_size=24, max_position_embeddings=16, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)


def _theseus(L=4, M=2, **kw):
    pred = kexue.build_transformer_model(config=_cfg(L), with_pool=True)
    succ = kexue.build_transformer_model(config=_cfg(M), with_pool=True)
    return TheseusModel(pred, succ, nn.Linear(16, 3), **kw)


def _batch(B=3, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (B, n), generator=g)
    mask = torch.ones(B, n, dtype=torch.long)
    mask[0, -2:] = 0
    return ids, mask


def _manual(model, ids, mask, path, pred_layers, succ_layers):
    """Reference composition from the core's public pieces: embed, block(i), pooler; path[0] = embeddings."""
    P, S = model.predecessor, model.successor
    B, n = ids.shape
    bias, empty = build_attention_bias("encoder", B, n, mask, None, None, ids.device)
    positions = torch.arange(n)[None]
    x = (S if path[0] else P).embed(ids)
    for use, p_idx, s_idx in zip(path[1:], pred_layers, succ_layers):
        net, idx = (S, s_idx) if use else (P, p_idx)
        for i in idx:
            x, _ = net.layer(i)(x, bias, empty, positions, None, i)
    top = S if path[-1] else P
    return model.head(torch.tanh(top.pooler(x[:, 0])))


def test_limits_of_p_and_eval_mode():
    model = _theseus().train()
    ids, mask = _batch()
    pred = SequenceClassifier(model.predecessor, head=model.head)
    succ = SequenceClassifier(model.successor, head=model.head)
    with torch.no_grad():
        out0 = model(ids, attention_mask=mask, replace_rate=0.0)
        out1 = model(ids, attention_mask=mask, replace_rate=1.0)
        torch.testing.assert_close(out0.logits, pred(ids, attention_mask=mask).logits, rtol=0, atol=0)
        torch.testing.assert_close(out1.logits, succ(ids, attention_mask=mask).logits, rtol=0, atol=0)
        assert not out0.path.any() and out1.path.all()
        model.eval()
        for p in (0.0, 0.5):
            torch.testing.assert_close(model(ids, attention_mask=mask, replace_rate=p).logits,
                                       succ(ids, attention_mask=mask).logits, rtol=0, atol=0)
        forced = model(ids, attention_mask=mask, path=torch.zeros(model.num_switches, dtype=torch.bool))
        torch.testing.assert_close(forced.logits, pred(ids, attention_mask=mask).logits, rtol=0, atol=0)


def test_per_draw_composition_with_a_12_to_4_stride():
    """Module i of a 12 -> 4 model runs predecessor layers 3i..3i+2 (the bert4keras example hard-coded 4i)."""
    model = _theseus(12, 4, generator=torch.Generator().manual_seed(3)).train()
    assert model.module_layers == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    ids, mask = _batch()
    pred_layers = [[3 * i + j for j in range(3)] for i in range(4)]
    seen = set()
    with torch.no_grad():
        for _ in range(12):
            out = model(ids, attention_mask=mask)
            path = out.path.tolist()
            seen.add(tuple(path))
            ref = _manual(model, ids, mask, path, pred_layers, [[i] for i in range(4)])
            torch.testing.assert_close(out.logits, ref, rtol=1e-6, atol=1e-6)
    assert len(seen) > 3 and out.path.shape == (5,)


def test_sample_granularity_mixes_paths_within_a_batch():
    model = _theseus(granularity="sample", generator=torch.Generator().manual_seed(4)).train()
    ids, mask = _batch(B=16)
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
    assert out.path.shape == (16, 3) and len({tuple(r) for r in out.path.tolist()}) > 2
    for b in range(16):
        ref = _manual(model, ids[b:b + 1], mask[b:b + 1], out.path[b].tolist(), [[0, 1], [2, 3]], [[0], [1]])
        torch.testing.assert_close(out.logits[b:b + 1], ref, rtol=1e-5, atol=1e-6)
    batch = _theseus(generator=torch.Generator().manual_seed(4)).train()
    assert batch(ids).path.shape == (3,)                     # one draw shared by the whole batch


def test_replacement_frequency_matches_p():
    p, n = 0.3, 400
    model = _theseus(scheduler=ConstantReplacement(p), generator=torch.Generator().manual_seed(5)).train()
    ids, _ = _batch(B=2, n=4)
    with torch.no_grad():
        picks = torch.stack([model(ids).path for _ in range(n)])            # [n, M]
    for count in picks.sum(0).tolist():
        assert binomtest(int(count), n, p).pvalue > 1e-3, count
    draws = torch.stack([model.draw_path(1, replace_rate=0.8) for _ in range(4000)]).float()
    for k in draws.sum(0).tolist():
        assert binomtest(int(k), 4000, 0.8).pvalue > 1e-3


@pytest.mark.parametrize("freeze_head", [True, False])
def test_only_successor_and_unfrozen_head_learn(freeze_head):
    model = _theseus(freeze_head=freeze_head, generator=torch.Generator().manual_seed(6)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ids, mask = _batch()
    path = torch.tensor([True, False, True])              # successor embeddings and module 2, predecessor module 1
    loss = model(ids, attention_mask=mask, labels=torch.tensor([0, 1, 2]), path=path).loss
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in model.predecessor.parameters())
    assert all(p.grad is None for p in model.successor.layer(0).parameters())       # its module did not run
    assert all(p.grad is not None for p in model.successor.layer(1).parameters())
    frozen = list(model.predecessor.parameters()) + (list(model.head.parameters()) if freeze_head else [])
    assert not any(p in opt.state for p in frozen)                          # no optimizer state either
    after = model.state_dict()
    for k, v in before.items():
        changed = not torch.equal(v, after[k])
        if k.startswith("predecessor.") or (freeze_head and k.startswith("head.")):
            assert not changed, k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("successor."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("head.")) == (not freeze_head)


def test_an_all_predecessor_draw_still_backpropagates_to_nothing():
    model = _theseus().train()
    ids, _ = _batch()
    out = model(ids, labels=torch.tensor([0, 1, 2]), path=torch.zeros(3, dtype=torch.bool))
    out.loss.backward()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("replace_embeddings", [True, False])
def test_export_successor_is_a_standalone_equal_model(replace_embeddings, tmp_path):
    model = _theseus(6, 2, replace_embeddings=replace_embeddings)
    assert model.num_switches == 2 + replace_embeddings
    exported = model.export_successor().eval()
    model.eval()
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(exported(ids, attention_mask=mask).logits,
                                   model(ids, attention_mask=mask).logits, rtol=0, atol=0)
    standalone = kexue.build_transformer_model(config=_cfg(2), with_pool=True)
    n_standalone = sum(p.numel() for p in standalone.parameters()) + 16 * 3 + 3
    assert exported.backbone.num_layers == 2
    assert sum(p.numel() for p in exported.parameters()) == n_standalone
    assert all(p.requires_grad for p in exported.parameters())
    exported.backbone.save_pretrained(tmp_path)
    reloaded = SequenceClassifier(kexue.build_transformer_model(tmp_path, with_pool=True), head=exported.head).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids, attention_mask=mask).logits, exported(ids, attention_mask=mask).logits,
                                   rtol=0, atol=0)
        next(exported.parameters()).add_(1.0)                              # a copy: the Theseus model is untouched
        assert not torch.equal(exported(ids).logits, model(ids).logits)


def test_bad_configurations_and_inputs():
    pred = kexue.build_transformer_model(config=_cfg(4), with_pool=True)
    with pytest.raises(ValueError, match="num_modules"):
        TheseusModel(pred, kexue.build_transformer_model(config=_cfg(3), with_pool=True), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="hidden sizes"):
        TheseusModel(pred, kexue.build_transformer_model(config=dict(_cfg(2), hidden_size=8), with_pool=True),
                     nn.Linear(16, 2))
    with pytest.raises(ValueError, match="pooler"):
        TheseusModel(pred, kexue.build_transformer_model(config=_cfg(2)), nn.Linear(16, 2))
    with pytest.raises(ValueError, match="granularity"):
        _theseus(granularity="token")
    with pytest.raises(TypeError, match="scheduler"):
        _theseus(scheduler="linear")
    model = _theseus().train()
    ids, _ = _batch()
    with pytest.raises(ValueError, match="replace_rate"):
        model(ids, replace_rate=1.5)
    with pytest.raises(ValueError, match="path"):
        model(ids, path=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="labels"):
        model(ids, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.full((1, 3), 99))
