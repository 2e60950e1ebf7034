"""Model forward on generated inputs (issue 8): tiny models of every family (hidden 16, 2 layers) get ids in and
out of range, masks with 0/1 and bad values, shapes that match and do not, lengths up to and beyond the
position table, and padded batches. Valid inputs give finite outputs equal, at the real positions, to each
example run alone; every corrupted input is a clear error naming the corrupted argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kexue
from tests.property.clear_error import CLEAR, assert_finite, valid_or_clear_error

V, P = 30, 12                                     # vocabulary, position table
BASE = dict(vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=P, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONFIGS = {
    "bert": (dict(BASE, model_type="bert"), {}),
    "roberta": (dict(BASE, model_type="roberta", pad_token_id=1, type_vocab_size=1), {}),
    "albert": (dict(BASE, model_type="albert", embedding_size=8), {}),
    "electra": (dict(BASE, model_type="electra", embedding_size=8), {}),
    "nezha": (dict(BASE, model_type="nezha"), {}),
    "roformer": (dict(BASE, model_type="roformer"), {}),
    "bert-unilm": (dict(BASE, model_type="bert"), dict(application="unilm")),
    "gpt2": (dict(model_type="gpt2", vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=P, resid_pdrop=0.0,
                  embd_pdrop=0.0, attn_pdrop=0.0), {}),
    "gpt": (dict(model_type="openai-gpt", vocab_size=V, n_embd=16, n_layer=2, n_head=2, n_positions=P,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0), {}),
    "t5": (dict(model_type="t5", vocab_size=V, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2,
                dropout_rate=0.0, pad_token_id=0, decoder_start_token_id=0, eos_token_id=1), {}),
}
_MODELS: dict[str, torch.nn.Module] = {}


def model_of(family: str):
    if family not in _MODELS:
        torch.manual_seed(0)
        cfg, kw = CONFIGS[family]
        _MODELS[family] = kexue.build_transformer_model(config=cfg, with_mlm=True, with_pool=family != "t5"
                                                        and not family.startswith("gpt"), **kw).eval()
    return _MODELS[family]


def limits(model):
    """(longest valid n, segment id table size or None, position table size or None)."""
    if model.application == "seq2seq":
        return 2 * P, None, None
    n_max = model.max_length() or 2 * P
    seg = V if model.segment_via_word else (model.config.type_vocab_size or None)
    return n_max, seg, model.position_table_size()


def padded_ids(draw, B: int, n: int, pad: int | None):
    """Right-padded ids [B, n] (no pad id among the real tokens, first token real) and lengths [B]."""
    lengths = [draw(st.integers(1, n)) for _ in range(B)]
    low = 0 if pad is None else pad + 1
    ids = torch.tensor([[draw(st.integers(low, V - 1)) for _ in range(n)] for _ in range(B)])
    for b, L in enumerate(lengths):
        ids[b, L:] = 0 if pad is None else pad
    return ids, lengths


CORRUPTIONS = ["none", "ids_range", "ids_dtype", "ids_shape", "empty", "numpy", "mask_value", "mask_shape",
               "seg_range", "seg_shape", "pos_range", "pos_shape", "too_long", "logits_to_keep", "cache_batch",
               "embeds_width"]


def transformer_call(draw, family: str):
    """kwargs for model(**kwargs) and the argument a clear error must name (None: the call is valid)."""
    model = model_of(family)
    n_max, seg_table, pos_table = limits(model)
    corruption = draw(st.sampled_from(CORRUPTIONS))
    B, n = draw(st.integers(1, 3)), draw(st.integers(1, min(n_max, P)))
    ids, lengths = padded_ids(draw, B, n, model.config.pad_token_id)
    mask = (torch.arange(n)[None] < torch.tensor(lengths)[:, None]).to(draw(st.sampled_from(
        [torch.bool, torch.long, torch.float32])))
    kw = dict(input_ids=ids)
    if draw(st.booleans()) or model.application == "lm":
        kw["attention_mask"] = mask
    if seg_table is not None and (model.application == "unilm" or draw(st.booleans())):
        kw["segment_ids"] = torch.tensor([[0] * (n // 2) + [1] * (n - n // 2)] * B).clamp_max(seg_table - 1)
    expect = None
    if corruption == "ids_range":
        kw["input_ids"] = ids.clone()
        kw["input_ids"][draw(st.integers(0, B - 1)), draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, V, 10**9]))
        expect = "input_ids"
    elif corruption == "ids_dtype":
        kw["input_ids"] = ids.to(draw(st.sampled_from([torch.float32, torch.bool, torch.float64])))
        expect = "input_ids"
    elif corruption == "ids_shape":
        kw["input_ids"] = draw(st.sampled_from([ids[0], ids[:, :, None]]))
        expect = "input_ids"
    elif corruption == "empty":
        kw = dict(input_ids=draw(st.sampled_from([ids[:0], ids[:, :0]])))
        expect = "input_ids"
    elif corruption == "numpy":
        kw["input_ids"] = ids.numpy()
        expect = "input_ids"
    elif corruption == "mask_value":
        kw["attention_mask"] = mask.float().clone()
        kw["attention_mask"][draw(st.integers(0, B - 1)), draw(st.integers(0, n - 1))] = draw(
            st.sampled_from([-1.0, 2.0, 0.5, float("nan"), float("inf")]))
        expect = "attention_mask"
    elif corruption == "mask_shape":
        shapes = [(B, n + 1), (B + 1, n), (n,), (B, n, n + 1)] + ([(1, 1)] if (B, n) != (1, 1) else [])
        kw["attention_mask"] = torch.ones(draw(st.sampled_from(shapes)))
        expect = "attention_mask"
    elif corruption == "seg_range" and seg_table is not None:
        seg = kw.get("segment_ids", torch.zeros_like(ids)).clone()
        seg[draw(st.integers(0, B - 1)), draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, seg_table]))
        kw["segment_ids"], expect = seg, "segment_ids"
    elif corruption == "seg_shape" and seg_table is not None:
        kw["segment_ids"], expect = torch.zeros(B, n + 1, dtype=torch.long), "segment_ids"
    elif corruption == "pos_range" and pos_table is not None:
        pos = torch.arange(n).expand(B, n).clone()
        pos[draw(st.integers(0, B - 1)), draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, pos_table, 10**6]))
        kw["position_ids"], expect = pos, "position_ids"
    elif corruption == "pos_shape":
        kw["position_ids"], expect = torch.arange(n)[None], ("position_ids" if B > 1 else None)
    elif corruption == "too_long" and model.max_length() is not None:
        L = model.max_length() + draw(st.integers(1, 3))
        kw = dict(input_ids=torch.full((B, L), V - 1), **({"segment_ids": torch.zeros(B, L, dtype=torch.long)}
                                                        if model.application == "unilm" else {}))
        expect = "input_ids"
    elif corruption == "logits_to_keep":
        kw["logits_to_keep"], expect = draw(st.sampled_from([-1, 1.5, "2", None])), "logits_to_keep"
    elif corruption == "cache_batch" and model.application != "encoder":
        kw["cache"], expect = model.make_cache(B + 1, 2 * P), "cache"
    elif corruption == "embeds_width":
        E = model.config.input_embedding_size
        kw = dict(inputs_embeds=torch.randn(B, n, E + draw(st.sampled_from([-1, 1]))))
        expect = "inputs_embeds"
    return kw, expect, lengths


T5_CORRUPTIONS = ["none", "ids_range", "dec_range", "mask_value", "dec_mask_value", "dec_mask_shape", "mask_shape",
                  "batch", "dtype"]


def t5_call(draw):
    model = model_of("t5")
    corruption = draw(st.sampled_from(T5_CORRUPTIONS))
    B, n, t = draw(st.integers(1, 3)), draw(st.integers(1, P)), draw(st.integers(1, 6))
    ids, lengths = padded_ids(draw, B, n, 0)
    dec = torch.tensor([[0] + [draw(st.integers(0, V - 1)) for _ in range(t - 1)] for _ in range(B)])
    mask = (torch.arange(n)[None] < torch.tensor(lengths)[:, None]).long()
    kw = dict(input_ids=ids, decoder_input_ids=dec)
    if draw(st.booleans()):
        kw["attention_mask"] = mask
    expect = None
    bad_value = draw(st.sampled_from([-1, 2, 0.5, float("nan")]))
    if corruption == "ids_range":
        kw["input_ids"] = ids.clone()
        kw["input_ids"][0, draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, V]))
        expect = "input_ids"
    elif corruption == "dec_range":
        kw["decoder_input_ids"] = dec.clone()
        kw["decoder_input_ids"][0, -1] = draw(st.sampled_from([-1, V]))
        expect = "decoder_input_ids"
    elif corruption == "mask_value":
        kw["attention_mask"] = mask.float()
        kw["attention_mask"][0, 0] = bad_value
        expect = "attention_mask"
    elif corruption == "dec_mask_value":
        kw["decoder_attention_mask"] = torch.ones(B, t)
        kw["decoder_attention_mask"][-1, -1] = bad_value
        expect = "decoder_attention_mask"
    elif corruption == "dec_mask_shape":
        shapes = [(B, t + 1), (t,), (B + 1, t)] + ([(1, 1)] if (B, t) != (1, 1) else [])
        kw["decoder_attention_mask"] = torch.ones(draw(st.sampled_from(shapes)))
        expect = "decoder_attention_mask"
    elif corruption == "mask_shape":
        kw["attention_mask"], expect = torch.ones(B, n + 1), "attention_mask"
    elif corruption == "batch":
        kw["decoder_input_ids"], expect = torch.zeros(B + 1, t, dtype=torch.long), "decoder_input_ids"
    elif corruption == "dtype":
        kw["input_ids"], expect = ids.float(), "input_ids"
    return kw, expect, lengths


def _outputs(out):
    return [out.last_hidden_state, out.logits, out.pooled]


@pytest.mark.timeout(120)
@settings(max_examples=300)
@given(data=st.data())
def test_forward_is_valid_or_a_clear_error_naming_the_argument(data):
    family = data.draw(st.sampled_from(sorted(CONFIGS)))
    model = model_of(family)
    kw, expect, _ = t5_call(data.draw) if family == "t5" else transformer_call(data.draw, family)
    if expect is None:
        with torch.no_grad():
            out = model(**kw)                    # a valid call must succeed
        assert_finite(*_outputs(out))
        return
    with pytest.raises(CLEAR) as info:
        with torch.no_grad():
            model(**kw)
    assert expect in str(info.value), f"{family}: error does not name {expect}: {info.value}"


@pytest.mark.timeout(120)
@settings(max_examples=80)
@given(data=st.data())
def test_padded_batch_equals_each_example_alone(data):
    """Right-padded batches, with the mask given or (encoders, UniLM, T5's encoder) derived from the pad id."""
    family = data.draw(st.sampled_from(sorted(CONFIGS)))
    model = model_of(family)
    n_max = limits(model)[0]
    B, n = data.draw(st.integers(1, 3)), data.draw(st.integers(1, min(n_max, P)))
    pad = model.config.pad_token_id
    ids, lengths = padded_ids(data.draw, B, n, pad)
    mask = (torch.arange(n)[None] < torch.tensor(lengths)[:, None]).long()
    implicit = family != "t5" and model.application != "lm" and pad is not None and data.draw(st.booleans())
    kw = {} if implicit else {"attention_mask": mask}
    with torch.no_grad():
        if family == "t5":
            dec = torch.tensor([[0, 5, 6]] * B)
            full = model(ids, dec, **kw).logits
            alone = [model(ids[b:b + 1, :L], dec[b:b + 1]).logits[0] for b, L in enumerate(lengths)]
            for b in range(B):
                torch.testing.assert_close(full[b], alone[b], atol=1e-5, rtol=0)
            return
        seg = None
        if model.application == "unilm":
            seg = torch.tensor([[0] * (n // 2) + [1] * (n - n // 2)] * B)
        out = model(ids, segment_ids=seg, **kw)
        assert_finite(*_outputs(out))
        for b, L in enumerate(lengths):
            one = model(ids[b:b + 1, :L], segment_ids=None if seg is None else seg[b:b + 1, :L])
            torch.testing.assert_close(out.last_hidden_state[b, :L], one.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(out.logits[b, :L], one.logits[0], atol=1e-5, rtol=0)
            if out.pooled is not None:
                torch.testing.assert_close(out.pooled[b], one.pooled[0], atol=1e-5, rtol=0)


@pytest.mark.timeout(60)
@settings(max_examples=40)
@given(data=st.data())
def test_incremental_decoding_equals_full_forward_or_clear_cache_error(data):
    """lm / unilm with a KV cache: step by step equals one full forward; a cache too short is a clear error."""
    family = data.draw(st.sampled_from(["gpt2", "gpt", "bert-unilm"]))
    model = model_of(family)
    B, n = data.draw(st.integers(1, 2)), data.draw(st.integers(2, 8))
    ids = torch.tensor([[data.draw(st.integers(1, V - 1)) for _ in range(n)] for _ in range(B)])
    seg = torch.tensor([[0] * (n // 2) + [1] * (n - n // 2)] * B) if model.application == "unilm" else None
    # UniLM: the prefill holds the whole source (source tokens see each other, later ones included)
    first = data.draw(st.integers(max(1, n // 2) if seg is not None else 1, n - 1))
    cache = model.make_cache(B, data.draw(st.integers(1, n + 2)))
    kw = lambda a, b: {} if seg is None else {"segment_ids": seg[:, a:b]}   # noqa: E731
    with torch.no_grad():
        full = model(ids, **kw(0, n)).logits
        with valid_or_clear_error("cache"):
            steps = [model(ids[:, :first], cache=cache, **kw(0, first)).logits]
            steps += [model(ids[:, t:t + 1], cache=cache, **kw(t, t + 1)).logits for t in range(first, n)]
            torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
            return
    assert cache.max_len < n                              # the error came only because the cache was too short
