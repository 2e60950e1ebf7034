"""Input checks and attention invariants: clear errors, no NaN on fully masked rows, bf16 masks, eager == SDPA."""
from __future__ import annotations

import pytest
import torch

import kexue
from kexue.nn.attention import MultiHeadAttention, mask_to_bias

CFG = dict(model_type="bert", vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=40, max_position_embeddings=16, hidden_dropout_prob=0.0,
           attention_probs_dropout_prob=0.0)


@pytest.fixture()
def model():
    return kexue.build_transformer_model(config=CFG, with_mlm=True).eval()


def test_ids_outside_vocab(model):
    with pytest.raises(ValueError, match=r"ids in \[0, 50\], outside the vocabulary \[0, 50\)"):
        model(torch.tensor([[0, 50]]))
    with pytest.raises(ValueError, match=r"outside the vocabulary"):
        model(torch.tensor([[-1, 3]]))


def test_sequence_longer_than_positions(model):
    with pytest.raises(ValueError, match=r"sequence length 17 of input_ids exceeds the position table max_position=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_mismatched_shapes_and_types(model):
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"segment_ids has shape \(2, 4\); expected \[B, n\] = \[2, 5\]"):
        model(ids, segment_ids=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 5\)"):
        model(ids, attention_mask=torch.ones(1, 5))
    with pytest.raises(TypeError, match=r"input_ids must hold integer ids .*got dtype torch.float32"):
        model(ids.float())
    with pytest.raises(ValueError, match=r"input_ids must have shape \[B, n\]"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(0, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"segment_ids contain ids in \[2, 2\], outside the segment table \[0, 2\)"):
        model(ids, segment_ids=torch.full((2, 5), 2))


def test_unilm_needs_segments():
    m = kexue.build_transformer_model(config=CFG, application="unilm")
    with pytest.raises(ValueError, match="needs segment_ids"):
        m(torch.zeros(1, 3, dtype=torch.long))


def test_fully_masked_rows_give_zeros_not_nan():
    attn = MultiHeadAttention(16, 2).eval()
    x = torch.randn(2, 4, 16, requires_grad=True)
    allowed = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    allowed[1, :, 2] = False                                  # query 2 of row 1 sees nothing
    empty = ~allowed.any(-1, keepdim=True)
    for eager in (False, True):
        attn.eager = eager
        out, _ = attn(x, attention_bias=mask_to_bias(allowed), empty_rows=empty)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        assert torch.equal(out[1, 2], attn.o.bias)            # zeros before the output projection
        x.grad = None


def test_whole_padding_row_in_model_is_finite(model):
    ids = torch.randint(0, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1] = 0
    out = model(ids, attention_mask=mask)
    assert torch.isfinite(out.last_hidden_state).all()


def test_eager_equals_sdpa_and_returns_weights(model):
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, 5:] = 0
    with torch.no_grad():
        fused = model(ids, attention_mask=mask).last_hidden_state
        out = model(ids, attention_mask=mask, output_attentions=True)
    assert (fused - out.last_hidden_state).abs().max() <= 1e-5
    w = out.attentions[0]                                      # [B, H, n, m]
    assert w.shape == (2, 4, 7, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))
    assert w[0, :, :, 5:].abs().max() == 0                     # padded keys get no weight


def test_bf16_autocast_masks_work(model):
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[0, 4:] = 0
    with torch.no_grad():
        ref = model(ids, attention_mask=mask).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(low).all()
    assert (low.float() - ref)[0, :4].abs().max() < 0.1       # bf16 keeps ~3 significant digits


def test_bf16_weights_lm_mode():
    m = kexue.build_transformer_model(config=CFG, application="lm", with_mlm=True).eval()
    ids = torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        ref = m(ids).logits
        low = m.to(torch.bfloat16)(ids).logits
    assert torch.isfinite(low).all() and (low.float() - ref).abs().max() < 0.1


def test_padding_does_not_change_real_positions(model):
    """Appending padding to a batch changes no output at real positions."""
    ids = torch.randint(1, 50, (2, 5))
    with torch.no_grad():
        short = model(ids).last_hidden_state
        long_ids = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
        mask = torch.cat([torch.ones(2, 5), torch.zeros(2, 3)], 1).long()
        long = model(long_ids, attention_mask=mask).last_hidden_state
    assert (long[:, :5] - short).abs().max() <= 1e-5


def test_embedding_and_layer_access(model):
    ids = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        x = model.embed(ids)
        for i in range(model.num_layers):
            x, _ = model.layer(i)(x)
        full = model(ids).last_hidden_state
        via_embeds = model(inputs_embeds=model.embeddings.word(ids)).last_hidden_state
    assert (x - full).abs().max() <= 1e-6
    assert (via_embeds - full).abs().max() <= 1e-6


# ---- issue 8: more bad inputs of the same kind ----------------------------------------------------------------
@pytest.mark.parametrize("kw,error,match", [
    (dict(num_heads=0), ValueError, r"num_heads must be an int >= 1, got 0"),
    (dict(num_heads=-2), ValueError, r"num_heads must be an int >= 1, got -2"),
    (dict(num_heads=2.0), TypeError, r"num_heads must be an int"),
    (dict(num_heads=3), ValueError, r"hidden_size=16 is not divisible by num_heads=3"),
    (dict(dropout=1.5), ValueError, r"dropout must be a finite number in \[0.0, 1.0\)"),
    (dict(head_dim=0), ValueError, r"head_dim must be an int >= 1, got 0"),
])
def test_attention_constructor_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        MultiHeadAttention(**{"hidden_size": 16, "num_heads": 2, **kw})


def test_attention_input_widths():
    attn = MultiHeadAttention(16, 2, kv_size=8).eval()
    with pytest.raises(ValueError, match=r"x must have shape \[B, n, 16\], got \(2, 3, 8\)"):
        attn(torch.randn(2, 3, 8), context=torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"context must have shape \[B, m, 8\] with B = 2, got \(2, 4, 16\)"):
        attn(torch.randn(2, 3, 16), context=torch.randn(2, 4, 16))
    with pytest.raises(ValueError, match=r"context must have shape \[B, m, 8\] with B = 2, got \(1, 4, 8\)"):
        attn(torch.randn(2, 3, 16), context=torch.randn(1, 4, 8))


def test_t5_cache_from_another_source_is_refused(tmp_path):
    from .hf_factories import hf_model, save
    model = kexue.build_transformer_model(save(hf_model("t5"), tmp_path)).eval()
    cache = model.make_cache(1, 4)
    with torch.no_grad():
        model.decode(torch.tensor([[0]]), model.encode(torch.tensor([[5, 6, 7]])), cache=cache)
        with pytest.raises(ValueError, match=r"cache holds the cross-attention keys of an encoder output of length 3"):
            model.decode(torch.tensor([[4]]), model.encode(torch.tensor([[5, 6, 7, 8, 9]])), cache=cache)


def test_cache_reorder_index():
    cache = kexue.build_transformer_model(config=CFG, application="lm").make_cache(2, 4)
    with pytest.raises(ValueError, match=r"index must be a 1-D integer tensor of length batch_size=2, got"):
        cache.reorder(torch.tensor([0]))
    with pytest.raises(ValueError, match=r"index must be a 1-D integer tensor of length batch_size=2, got"):
        cache.reorder(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"index must hold rows in \[0, 2\), got \[0, 2\]"):
        cache.reorder(torch.tensor([0, 2]))


def test_embed_checks_its_inputs(model):
    with pytest.raises(ValueError, match=r"input_ids contain ids in \[0, 50\], outside the vocabulary"):
        model.embed(torch.tensor([[0, 50]]))
    with pytest.raises(ValueError, match=r"position_ids contain ids in \[0, 16\], outside the position table"):
        model.embed(torch.tensor([[0, 1]]), position_ids=torch.tensor([[0, 16]]))


@pytest.mark.parametrize("cfg", [CFG, dict(model_type="t5", vocab_size=20, d_model=16, d_kv=8, d_ff=24, num_layers=1,
                                            num_heads=2)])
@pytest.mark.parametrize("flag", ["with_pool", "with_mlm"])
def test_head_flags_must_be_bools(cfg, flag):
    with pytest.raises(TypeError, match=rf"{flag} must be a bool, got 'no'"):
        kexue.build_transformer_model(config=cfg, **{flag: "no"})
