"""Bad forward inputs found by the adversarial pass of issue 8: each is a clear error naming the argument, the
bad value and what was expected (not a silent wrong result, an IndexError from the embedding, or a broadcast)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import kexue

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
FAMILIES = {
    "bert": dict(model_type="bert"),
    "roberta": dict(model_type="roberta", pad_token_id=1, type_vocab_size=1),
    "albert": dict(model_type="albert", embedding_size=8),
    "electra": dict(model_type="electra", embedding_size=8),
    "nezha": dict(model_type="nezha"),
    "roformer": dict(model_type="roformer"),
    "gpt2": dict(model_type="gpt2", vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32),
    "gpt": dict(model_type="openai-gpt", vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32),
}
T5 = dict(model_type="t5", vocab_size=50, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, dropout_rate=0.0,
          pad_token_id=0, decoder_start_token_id=0, eos_token_id=1)


def build(family: str, **kw):
    torch.manual_seed(0)
    cfg = FAMILIES[family] if family.startswith("gpt") else {**TINY, **FAMILIES[family]}
    return kexue.build_transformer_model(config=cfg, **kw).eval()


def t5():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=T5).eval()


IDS = torch.tensor([[2, 3, 4, 5, 0], [6, 7, 8, 0, 0]])


# ---- attention-mask values (item: -1 or 0.4 treated as real tokens) ----------------------------------------
@pytest.mark.parametrize("bad", [-1, 2, 0.4, float("nan"), float("inf")])
def test_mask_values_other_than_0_1_are_refused(bad):
    model = build("bert")
    mask = torch.ones(2, 5, dtype=torch.float if isinstance(bad, float) else torch.long)
    mask[1, 2] = bad
    with pytest.raises(ValueError, match=rf"attention_mask must hold only 0 and 1.*got the value {bad!r}"):
        model(IDS, attention_mask=mask)


def test_t5_mask_values_are_checked():
    model = t5()
    dec = torch.tensor([[0, 3], [0, 4]])
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 and 1.*-1"):
        model(IDS, dec, attention_mask=torch.tensor([[1, 1, 1, 1, -1], [1, 1, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"decoder_attention_mask must hold only 0 and 1.*0.5"):
        model(IDS, dec, decoder_attention_mask=torch.tensor([[1.0, 0.5], [1.0, 1.0]]))


@pytest.mark.parametrize("dtype", [torch.bool, torch.int32, torch.long, torch.float16, torch.float32])
def test_bool_integer_and_float_0_1_masks_agree(dtype):
    model = build("bert")
    ref_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    with torch.no_grad():
        ref = model(IDS, attention_mask=ref_mask.bool()).last_hidden_state
        out = model(IDS, attention_mask=ref_mask.to(dtype)).last_hidden_state
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


# ---- shapes must equal the ids' shape (item: T5 decoder_attention_mask [1, 1] broadcast) --------------------
def test_t5_masks_must_have_the_shape_of_their_ids():
    model = t5()
    dec = torch.tensor([[0, 3, 4], [0, 4, 5]])
    with pytest.raises(ValueError, match=r"decoder_attention_mask has shape \(1, 1\); expected \[2, 3\]"):
        model(IDS, dec, decoder_attention_mask=torch.ones(1, 1))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 5\); expected \[2, 5\]"):
        model(IDS, dec, attention_mask=torch.ones(1, 5))
    enc = model.encode(IDS)
    with pytest.raises(ValueError, match=r"encoder_attention_mask has shape \(2, 4\); expected \[2, 5\]"):
        model.decode(dec, enc, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"decoder_input_ids has batch size 1 but input_ids has 2"):
        model(IDS, dec[:1])
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be a float tensor \[B, S, C\] = \[2, S >= 1, 16\]"):
        model.decode(dec, enc[..., :8])


@pytest.mark.parametrize("name", ["segment_ids", "position_ids", "attention_mask"])
def test_per_token_inputs_must_have_the_shape_of_the_ids(name):
    model = build("bert")
    with pytest.raises(ValueError, match=rf"{name} has shape \(1, 5\); expected"):
        model(IDS, **{name: torch.zeros(1, 5, dtype=torch.long)})


# ---- logits_to_keep (item: -1 returned n - 1 positions) ----------------------------------------------------
def test_logits_to_keep_must_be_a_non_negative_int():
    model = build("gpt2")
    with pytest.raises(ValueError, match=r"logits_to_keep must be an int >= 0, got -1"):
        model(IDS, logits_to_keep=-1)
    for bad in (1.0, True, "1"):
        with pytest.raises(TypeError, match="logits_to_keep must be an int"):
            model(IDS, logits_to_keep=bad)


def test_logits_to_keep_follows_transformers():
    """0 keeps every position, k keeps the last k, k > n keeps all n (transformers' slice(-k, None))."""
    model = build("gpt2")
    with torch.no_grad():
        full = model(IDS).logits
        torch.testing.assert_close(model(IDS, logits_to_keep=0).logits, full)
        torch.testing.assert_close(model(IDS, logits_to_keep=2).logits, full[:, -2:])
        torch.testing.assert_close(model(IDS, logits_to_keep=99).logits, full)


# ---- positions and tables (items: RoBERTa IndexError, position_ids and segment_ids beyond their table) -----
def test_roberta_length_limit_counts_its_position_offset():
    model = build("roberta")                                 # max_position 32, pad 1: positions 2..31
    ok = torch.randint(2, 50, (1, 30))
    with torch.no_grad():
        assert model(ok).last_hidden_state.shape == (1, 30, 16)
    with pytest.raises(ValueError, match=r"sequence length 31 of input_ids exceeds the position table max_position=32.*"
                                         r"pad_token_id \+ 1 = 2.*at most 30 tokens fit"):
        model(torch.randint(2, 50, (1, 31)))


@pytest.mark.parametrize("family", ["bert", "roformer", "gpt2"])
@pytest.mark.parametrize("bad", [32, -1])
def test_position_ids_outside_the_table(family, bad):
    model = build(family)
    pos = torch.tensor([[0, 1, 2, 3, bad]] * 2)
    with pytest.raises(ValueError, match=r"position_ids contain ids in .* outside the position table \[0, 32\)"):
        model(IDS, position_ids=pos)


@pytest.mark.parametrize("family,bad,table", [("gpt2", 50, "the vocabulary"), ("gpt2", -1, "the vocabulary"),
                                               ("bert", -1, "the segment table"), ("bert", 2, "the segment table")])
def test_segment_ids_outside_their_table(family, bad, table):
    model = build(family)
    seg = torch.zeros_like(IDS)
    seg[0, 1] = bad
    with pytest.raises(ValueError, match=rf"segment_ids contain ids in .* outside {table}"):
        model(IDS, segment_ids=seg)


def test_segment_ids_without_a_segment_table_are_refused():
    model = kexue.build_transformer_model(config={**TINY, "model_type": "bert", "type_vocab_size": 0}).eval()
    with pytest.raises(ValueError, match=r"segment_ids were given but this model has no segment embedding"):
        model(IDS, segment_ids=torch.zeros_like(IDS))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("bad", [50, -1])
def test_input_ids_outside_the_vocabulary_every_family(family, bad):
    model = build(family)
    ids = IDS.clone()
    ids[1, 0] = bad
    with pytest.raises(ValueError, match=r"input_ids contain ids in .* outside the vocabulary \[0, 50\)"):
        model(ids)


def test_t5_ids_outside_the_vocabulary():
    model = t5()
    with pytest.raises(ValueError, match=r"decoder_input_ids contain ids in \[0, 50\], outside the vocabulary"):
        model(IDS, torch.tensor([[0, 50], [0, 1]]))
    with pytest.raises(ValueError, match=r"input_ids contain ids in \[-1, 8\], outside the vocabulary"):
        model(torch.tensor([[-1, 2, 3, 4, 5], [6, 7, 8, 0, 0]]), torch.tensor([[0], [0]]))


# ---- the KV cache (item: wrong batch size or dtype) ---------------------------------------------------------
def test_cache_of_the_wrong_batch_dtype_or_model():
    model = build("gpt2")
    with pytest.raises(ValueError, match=r"cache was made for batch_size=3 but the input has batch size 2"):
        model(IDS, cache=model.make_cache(3, 8))
    with pytest.raises(ValueError, match=r"cache holds torch.float64 keys but attention computes in torch.float32"):
        model(IDS, cache=model.make_cache(2, 8, dtype=torch.float64))
    other = kexue.build_transformer_model(config=dict(FAMILIES["gpt2"], n_head=4)).eval()
    with pytest.raises(ValueError, match=r"cache holds \(layers, heads, head_dim\) = \(2, 4, 4\) but this model has "
                                         r"\(2, 2, 8\)"):
        model(IDS, cache=other.make_cache(2, 8))
    with pytest.raises(TypeError, match=r"cache must be a KVCache .* got dict"):
        model(IDS, cache={})
    with pytest.raises(ValueError, match=r"cache is for incremental decoding with application 'lm' or 'unilm'"):
        build("bert")(IDS, cache=build("bert").make_cache(2, 8))


def test_cache_dtype_follows_autocast():
    model = build("gpt2")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match=r"cache holds torch.float32 keys but attention computes in torch.bfloat16"):
            model(IDS, cache=model.make_cache(2, 8))
        out = model(IDS, cache=model.make_cache(2, 8, dtype=torch.bfloat16)).logits
    assert torch.isfinite(out).all()


def test_t5_cache_of_the_wrong_batch():
    model = t5()
    enc = model.encode(IDS)
    with pytest.raises(ValueError, match=r"cache was made for batch_size=1 but the input has batch size 2"):
        model.decode(torch.tensor([[0], [0]]), enc, cache=model.make_cache(1, 4))


@pytest.mark.parametrize("kw,match", [(dict(batch_size=2.0), "batch_size must be an int"),
                                      (dict(max_len=0), "max_len must be an int >= 1, got 0")])
def test_make_cache_arguments(kw, match):
    model = build("gpt2")
    with pytest.raises((TypeError, ValueError), match=match):
        model.make_cache(**{"batch_size": 2, "max_len": 4, **kw})


# ---- degenerate inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ids,error,match", [
    (torch.zeros(0, 5, dtype=torch.long), ValueError, r"input_ids is empty: shape \(0, 5\)"),
    (torch.zeros(2, 0, dtype=torch.long), ValueError, r"input_ids is empty: shape \(2, 0\)"),
    (torch.zeros(2, 3, 4, dtype=torch.long), ValueError, r"input_ids must have shape \[B, n\], got \(2, 3, 4\)"),
    (torch.zeros(2, 3), TypeError, r"input_ids must hold integer ids .* got dtype torch.float32"),
    (torch.zeros(2, 3, dtype=torch.bool), TypeError, r"input_ids must hold integer ids .* got dtype torch.bool"),
    (np.zeros((2, 3), dtype=np.int64), TypeError, r"input_ids must be a torch.Tensor .* got numpy.ndarray"),
    ([[1, 2, 3]], TypeError, r"input_ids must be a torch.Tensor .* got list"),
])
def test_degenerate_input_ids(ids, error, match):
    model = build("bert")
    with pytest.raises(error, match=match):
        model(ids)


def test_inputs_embeds_must_fit_the_embedding():
    model = build("albert")                                   # embedding width 8, hidden 16
    with torch.no_grad():
        ok = model(inputs_embeds=torch.randn(2, 3, 8)).last_hidden_state
    assert ok.shape == (2, 3, 16)
    with pytest.raises(ValueError, match=r"inputs_embeds must have shape \[B, n, 8\] .* got \(2, 3, 16\)"):
        model(inputs_embeds=torch.randn(2, 3, 16))
    with pytest.raises(TypeError, match=r"inputs_embeds must be a float tensor .* got dtype torch.int64"):
        model(inputs_embeds=torch.zeros(2, 3, 8, dtype=torch.long))


def test_attention_bias_must_broadcast_to_the_scores():
    model = build("bert")
    with pytest.raises(ValueError, match=r"attention_bias has shape \(2, 2, 5, 4\); expected a shape broadcastable"):
        model(IDS, attention_bias=torch.zeros(2, 2, 5, 4))
    with torch.no_grad():
        a = model(IDS, attention_bias=torch.zeros(1, 2, 5, 5)).last_hidden_state
        b = model(IDS).last_hidden_state
    torch.testing.assert_close(a, b)


def test_mask_on_another_device_is_named():
    model = build("bert")
    with pytest.raises(ValueError, match=r"attention_mask is on meta but the ids are on cpu"):
        model(IDS, attention_mask=torch.ones(2, 5, device="meta"))


def test_output_flags_must_be_bools():
    model = build("bert")
    with pytest.raises(TypeError, match=r"output_hidden_states must be a bool, got 'no'"):
        model(IDS, output_hidden_states="no")
