"""A cached decode step is one graph: `torch._dynamo.explain` finds no graph break for GPT-2 and UniLM (the
input checks run at prefill, the cache position is a tensor, shapes are those of the static cache), and
`generate(compile=True)` gives the same tokens as eager without recompiling between steps (slow: compiling on
CPU takes tens of seconds per graph)."""
from __future__ import annotations

import pytest
import torch

import kexue
from kexue.generation import generate

V = 50


def _gpt2():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=2, n_head=2,
                                                     n_positions=32, eos_token_id=3)).eval()


def _unilm():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(model_type="bert", vocab_size=V, hidden_size=16,
                                                     num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=16), application="unilm",
                                         with_mlm=True).eval()


def _prompt():
    ids = torch.randint(1, V, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0                                                            # a padded row
    return ids, mask


@pytest.mark.parametrize("kind", ["gpt2", "unilm"])
def test_one_cached_decode_step_has_no_graph_break(kind):
    model = _gpt2() if kind == "gpt2" else _unilm()
    ids, mask = _prompt()
    seg = torch.zeros_like(ids) if kind == "unilm" else None
    torch._dynamo.reset()
    with torch.inference_mode():
        prompt = model.prepare_decoding(ids, mask, seg, max_new_tokens=4)
        model.setup_caches(2, prompt.decoder_len + 4)
        first = model.prefill(prompt.rows, ids[:, :0], prompt.extra)
        tokens = first.argmax(-1, keepdim=True)                                # [2, 1]
        explained = torch._dynamo.explain(model.decode_step)(tokens)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("kind", ["gpt2", "unilm"])
def test_decode_step_equals_a_full_forward(kind):
    """The step (static cache, masks over every slot) gives the logits of recomputing the whole sequence."""
    model = _gpt2() if kind == "gpt2" else _unilm()
    ids, mask = _prompt()
    seg = torch.zeros_like(ids) if kind == "unilm" else None
    with torch.inference_mode():
        prompt = model.prepare_decoding(ids, mask, seg, max_new_tokens=3)
        model.setup_caches(2, prompt.decoder_len + 3)
        out = torch.zeros(2, 0, dtype=torch.long)
        logits = model.prefill(prompt.rows, out, prompt.extra)
        for _ in range(3):
            out = torch.cat([out, logits.argmax(-1, keepdim=True)], 1)
            logits = model.decode_step(out[:, -1:])
            full = model.logits_without_cache(prompt.rows, out, prompt.extra)
            torch.testing.assert_close(logits, full, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2", "unilm"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_compiled_generate_equals_eager(kind, num_beams):
    model = _gpt2() if kind == "gpt2" else _unilm()
    ids, mask = _prompt()
    seg = torch.zeros_like(ids) if kind == "unilm" else None
    kw = dict(attention_mask=mask, max_new_tokens=6, stop_at_eos=False, num_beams=num_beams)
    eager = generate(model, ids, seg, **kw)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):                  # compiled once for all steps
        compiled = generate(model, ids, seg, compile=True, **kw)
        again = generate(model, ids, seg, compile=True, **kw)                  # same shapes: no recompile
    assert torch.equal(compiled.sequences, eager.sequences) and torch.equal(again.sequences, eager.sequences)
    torch.testing.assert_close(compiled.scores, eager.scores, atol=1e-5, rtol=0)


def test_compile_needs_the_cache():
    with pytest.raises(ValueError, match="compile=True .* use_cache=True"):
        generate(_gpt2(), torch.tensor([[1, 2]]), compile=True, use_cache=False)
    with pytest.raises(TypeError, match="compile"):
        generate(_gpt2(), torch.tensor([[1, 2]]), compile="yes")
