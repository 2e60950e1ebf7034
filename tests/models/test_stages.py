"""Transformer.forward is a composition of named stages (bert4keras's apply_embeddings / apply_main_layers /
apply_final_layers); TheseusModel and the classifier go through the same stages instead of copies of them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import kexue
from kexue.compress import SequenceClassifier, TheseusModel
from kexue.compress.classifier import cls_features

CFG = dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
           intermediate_size=24, max_position_embeddings=16, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


def _batch(B=3, n=7):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (B, n), generator=g)
    mask = torch.ones(B, n, dtype=torch.long)
    mask[0, -2:] = 0
    return ids, mask


@pytest.mark.parametrize("application", ["encoder", "lm", "unilm"])
def test_forward_equals_its_stages(application):
    torch.manual_seed(0)
    model = kexue.build_transformer_model(config=CFG, application=application, with_pool=True,
                                          with_mlm=True).eval()
    ids, mask = _batch()
    segs = torch.zeros_like(ids)
    segs[:, 4:] = 1
    with torch.no_grad():
        ref = model(ids, segment_ids=segs, attention_mask=mask, output_hidden_states=True)
        positions = model.default_positions(ids, ids.shape[1], 0, ids.device)
        x = model.apply_embeddings(ids, segs, positions)
        bias, empty = model.attention_bias(mask, segs, batch_size=3, length=7, device=ids.device)
        states = [x]
        for i in range(model.num_layers):
            x, _ = model.apply_block(i, x, attention_bias=bias, empty_rows=empty, positions=positions)
            states.append(x)
        out = model.apply_final_layers(x)
    torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(out.pooled, ref.pooled, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, ref.logits, rtol=0, atol=0)
    for a, b in zip(states[:-1], ref.hidden_states[:-1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_main_layers_run_a_chosen_subset_in_order():
    torch.manual_seed(0)
    model = kexue.build_transformer_model(config=CFG).eval()
    ids, mask = _batch()
    with torch.no_grad():
        positions = model.default_positions(ids, 7, 0, ids.device)
        x0 = model.apply_embeddings(ids, None, positions)
        bias, empty = model.attention_bias(mask, batch_size=3, length=7, device=ids.device)
        kw = dict(attention_bias=bias, empty_rows=empty, positions=positions)
        part, hidden, _ = model.apply_main_layers(x0, layers=[0, 2], output_hidden_states=True, **kw)
        x = x0
        for i in (0, 2):
            x, _ = model.layer(i)(x, bias, empty, positions, None, i)
    torch.testing.assert_close(part, x, rtol=0, atol=0)
    assert len(hidden) == 3
    with pytest.raises(ValueError, match="layers"):
        model.apply_main_layers(x0, layers=[0, 4], **kw)


class _Recorder:
    """Wraps a backbone's stage methods and records which ran."""

    def __init__(self, model, tag, log):
        for name in ("apply_embeddings", "apply_block", "apply_final_layers"):
            fn = getattr(model, name)
            setattr(model, name, self._wrap(fn, f"{tag}.{name}", log))

    @staticmethod
    def _wrap(fn, label, log):
        def run(*a, **k):
            log.append(label)
            return fn(*a, **k)
        return run


def test_theseus_and_classifier_run_the_backbone_stages():
    """A backbone that changes a stage (here: only records it) is followed by TheseusModel and the classifier:
    they call the stages rather than copies of the forward."""
    pred = kexue.build_transformer_model(config=CFG, with_pool=True)
    succ = kexue.build_transformer_model(config={**CFG, "num_hidden_layers": 2}, with_pool=True)
    log: list[str] = []
    _Recorder(pred, "P", log)
    _Recorder(succ, "S", log)
    model = TheseusModel(pred, succ, nn.Linear(16, 3)).eval()
    ids, mask = _batch()
    with torch.no_grad():
        model(ids, attention_mask=mask, path=torch.tensor([False, True, False]))
    assert log == ["P.apply_embeddings", "S.apply_block", "P.apply_block", "P.apply_block",
                   "P.apply_final_layers"]
    log.clear()
    clf = SequenceClassifier(succ, num_classes=3).eval()
    with torch.no_grad():
        clf(ids, attention_mask=mask)
        cls_features(succ, torch.randn(3, 7, 16))
    assert log[-1] == "S.apply_final_layers" and log.count("S.apply_block") == 2


def test_t5_stacks_run_the_shared_stages():
    """T5's encoder and decoder use the embedding stage and the shared main-layers loop (`run_layers`):
    the states equal a manual composition of its blocks."""
    from kexue.models.t5 import T5, t5_config_from_hf
    cfg = t5_config_from_hf(dict(vocab_size=40, d_model=16, num_layers=2, num_heads=2, d_ff=24, d_kv=8,
                                 dropout_rate=0.0))
    torch.manual_seed(0)
    model = T5(cfg).eval()
    ids, mask = _batch()
    dec = ids[:, :4]
    log = []
    embed = model.apply_embeddings
    model.apply_embeddings = lambda t: (log.append(tuple(t.shape)), embed(t))[1]
    with torch.no_grad():
        enc, states = model.encode(ids, mask, output_hidden_states=True)
        out = model.decode(dec, enc, mask, output_hidden_states=True)
        pos = torch.arange(7)
        bias, empty = kexue.models.transformer.build_attention_bias(
            "encoder", 3, 7, mask, None, None, ids.device, model.encoder_bias(pos, pos))
        x = model.shared(ids)
        for i, block in enumerate(model.encoder_blocks):
            torch.testing.assert_close(states[i], x, rtol=0, atol=0)
            x, _ = block(x, bias, empty)
    torch.testing.assert_close(enc, model.encoder_norm(x), rtol=0, atol=0)
    assert log == [(3, 7), (3, 4)] and len(out.hidden_states) == 3
