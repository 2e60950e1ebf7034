"""The BERT encoder forward compiles without graph breaks (issue 9, section 2): the data-dependent input checks
run as one host sync in eager mode and as in-graph `torch._assert_async` asserts under torch.compile, and the
no-padding shortcut of the attention mask is an eager-only optimisation."""
from __future__ import annotations

import pytest
import torch

import kexue

CFG = dict(model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=40, max_position_embeddings=64, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


def _padded_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0                                    # pad id 0 where the mask says padding
    return ids, mask


def _model():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=CFG, with_pool=True, with_mlm=True).eval()


def _breaks(model, *args, **kwargs):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(*args, **kwargs)
    return explained.graph_break_count, [str(r.reason).splitlines()[0] for r in explained.break_reasons]


@pytest.mark.timeout(300)
def test_bert_encoder_forward_has_no_graph_breaks():
    model = _model()
    ids, mask = _padded_batch()
    segs = torch.zeros_like(ids)
    with torch.no_grad():
        assert _breaks(model, ids, attention_mask=mask) == (0, [])                  # explicit 0/1 mask
        assert _breaks(model, ids, attention_mask=mask.bool()) == (0, [])           # explicit bool mask
        assert _breaks(model, ids) == (0, [])                                       # derived pad-id mask
        assert _breaks(model, torch.randint(1, 50, (2, 6)), segs[:2, :6]) == (0, [])   # no padding at all
        pos = torch.arange(10).expand(3, 10)
        assert _breaks(model, ids, segs, mask, pos) == (0, [])                      # position ids checked too
    torch._dynamo.reset()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", [
    "aot_eager",                                            # the traced graph, run by eager kernels (seconds)
    pytest.param("inductor", marks=pytest.mark.slow),       # generated code: ~2 min on a loaded 2-core CPU
])
def test_compiled_bert_equals_eager_and_still_checks_values(backend):
    model = _model()
    ids, mask = _padded_batch()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend)
    with torch.no_grad():
        for kw in ({"attention_mask": mask}, {}):
            ref, out = model(ids, **kw), compiled(ids, **kw)
            torch.testing.assert_close(out.last_hidden_state, ref.last_hidden_state, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.pooled, ref.pooled, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
        # the value checks stay on in the compiled graph: an id outside the vocabulary is refused, by name
        bad = ids.clone()
        bad[0, 0] = 50
        with pytest.raises(RuntimeError, match="input_ids"):
            compiled(bad, attention_mask=mask)
        with pytest.raises(RuntimeError, match="attention_mask"):
            compiled(ids, attention_mask=mask * 2)
    # eager mode keeps the issue-8 message with the bad value
    with pytest.raises(ValueError, match=r"input_ids contain ids in \[0, 50\], outside the vocabulary"):
        model(bad, attention_mask=mask)
    torch._dynamo.reset()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("model_type, extra, application", [
    ("roberta", {"pad_token_id": 1}, "encoder"), ("albert", {"embedding_size": 16}, "encoder"),
    ("roformer", {}, "encoder"), ("nezha", {}, "encoder"), ("bert", {}, "unilm"), ("gpt2", None, "lm")])
def test_other_families_forward_has_no_graph_breaks(model_type, extra, application):
    """The same holds for every family's padded forward (RoBERTa's counted positions, ALBERT's shared blocks,
    rotary and NEZHA's relative positions, the UniLM mask, GPT-2's causal mask)."""
    if extra is None:
        cfg = dict(model_type="gpt2", vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    else:
        cfg = {**CFG, "model_type": model_type, **extra}
    model = kexue.build_transformer_model(config=cfg, application=application).eval()
    ids, mask = _padded_batch()
    kw = {"attention_mask": mask}
    if application == "unilm":
        kw["segment_ids"] = (torch.arange(10) >= 5).long().expand(3, 10)
    with torch.no_grad():
        assert _breaks(model, ids.clamp_min(2), **kw) == (0, [])
    torch._dynamo.reset()
