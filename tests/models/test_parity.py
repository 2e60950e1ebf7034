"""kexue models vs Hugging Face `transformers` on the same random weights (fp32, max abs diff <= 1e-5)."""
from __future__ import annotations

import pytest
import torch

import kexue

from .hf_factories import hf_model, save

TOL = 1e-5
ENCODERS = ["bert", "roberta", "albert", "electra", "roformer"]
SHAPES = [dict(), dict(hidden_size=48, num_attention_heads=3, num_hidden_layers=3, intermediate_size=64)]


def _inputs(family: str, B: int = 3, n: int = 11):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(3, 101, (B, n), generator=g)
    seg = torch.zeros(B, n, dtype=torch.long)
    seg[:, n // 2:] = 1
    mask = torch.ones(B, n, dtype=torch.long)
    mask[1, n - 4:] = 0                       # right padding in row 1
    if family == "roberta":
        ids[1, n - 4:] = 1                    # RoBERTa's pad id drives its positions
        seg.zero_()
    return ids, seg, mask


def _close(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    d = (a - b).abs()
    if mask is not None:                      # compare real positions only
        d = d[mask.bool()]
    return d.max().item()


@pytest.mark.parametrize("shape", SHAPES, ids=["small", "wide"])
@pytest.mark.parametrize("family", ENCODERS)
def test_encoder_hidden_states_and_mlm_logits(tmp_path, family, shape):
    hf = hf_model(family, "mlm", **shape)
    model = kexue.build_transformer_model(save(hf, tmp_path), with_mlm=True).eval()
    ids, seg, mask = _inputs(family)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask, output_hidden_states=True)
        out = model(ids, segment_ids=seg, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert _close(a, b, mask) <= TOL
    assert _close(out.logits, ref.logits, mask) <= TOL


@pytest.mark.parametrize("family", ["bert", "albert"])
def test_pooler_matches(tmp_path, family):
    hf = hf_model(family, "base")
    model = kexue.build_transformer_model(save(hf, tmp_path), with_pool=True).eval()
    ids, seg, mask = _inputs(family)
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask)
        out = model(ids, segment_ids=seg, attention_mask=mask)
    assert _close(out.pooled, ref.pooler_output) <= TOL


@pytest.mark.parametrize("groups", [1, 2], ids=["shared", "unshared"])
def test_albert_layer_sharing(tmp_path, groups):
    hf = hf_model("albert", "mlm", num_hidden_groups=groups)
    model = kexue.build_transformer_model(save(hf, tmp_path), with_mlm=True).eval()
    assert len(model.blocks) == groups and model.num_layers == 2
    ids, seg, mask = _inputs("albert")
    with torch.no_grad():
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=mask)
        out = model(ids, segment_ids=seg, attention_mask=mask)
    assert _close(out.logits, ref.logits, mask) <= TOL


def _unilm_mask(seg: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    c = seg.cumsum(1)
    return ((c[:, None, :] <= c[:, :, None]) & pad.bool()[:, None, :])[:, None]   # [B, 1, n, n]


@pytest.mark.parametrize("family", ["bert", "roformer", "electra", "albert"])
@pytest.mark.parametrize("application", ["lm", "unilm"])
def test_lm_and_unilm_against_explicit_mask(tmp_path, family, application):
    hf = hf_model(family, "mlm")
    model = kexue.build_transformer_model(save(hf, tmp_path), with_mlm=True, application=application).eval()
    ids, seg, mask = _inputs(family)
    if application == "lm":
        n = ids.shape[1]
        explicit = torch.ones(n, n, dtype=torch.bool).tril()[None, None] & mask.bool()[:, None, None, :]
    else:
        seg[0, :3] = 0
        seg[0, 3:] = 1
        explicit = _unilm_mask(seg, mask)
    additive = torch.zeros(explicit.shape).masked_fill(~explicit, torch.finfo(torch.float32).min)
    with torch.no_grad():   # an additive [B, 1, n, n] mask: the one form every HF family accepts
        ref = hf(input_ids=ids, token_type_ids=seg, attention_mask=additive)
        out = model(ids, segment_ids=seg, attention_mask=mask)
    assert _close(out.logits, ref.logits, mask) <= TOL


@pytest.mark.parametrize("family", ["gpt2", "gpt"])
@pytest.mark.parametrize("n_embd,n_layer", [(32, 2), (48, 3)])
def test_decoder_only_lm_logits(tmp_path, family, n_embd, n_layer):
    hf = hf_model(family, "mlm", n_embd=n_embd, n_layer=n_layer)
    model = kexue.build_transformer_model(save(hf, tmp_path)).eval()
    assert model.application == "lm"
    ids, _, mask = _inputs(family)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        out = model(ids, attention_mask=mask, output_hidden_states=True)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        assert _close(a, b, mask) <= TOL
    assert _close(out.logits, ref.logits, mask) <= TOL


@pytest.mark.parametrize("variant", [dict(), dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
                                     dict(d_model=48, num_heads=6, num_layers=3, num_decoder_layers=2)],
                         ids=["t5", "t5.1.1", "asymmetric"])
def test_t5_encoder_decoder(tmp_path, variant):
    hf = hf_model("t5", **variant)
    model = kexue.build_transformer_model(save(hf, tmp_path)).eval()
    ids, _, mask = _inputs("t5")
    dec = torch.randint(2, 101, (3, 6))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
        out = model(ids, dec, attention_mask=mask, output_hidden_states=True)
    assert _close(out.encoder_last_hidden_state, ref.encoder_last_hidden_state, mask) <= TOL
    for a, b in zip(out.hidden_states, ref.decoder_hidden_states):
        assert _close(a, b) <= TOL
    assert _close(out.logits, ref.logits) <= TOL


@pytest.mark.parametrize("family", ENCODERS + ["gpt2", "gpt"])
def test_save_pretrained_round_trip_through_transformers(tmp_path, family):
    """kexue -> save_pretrained -> transformers.from_pretrained gives the same outputs."""
    hf = hf_model(family, "mlm")
    model = kexue.build_transformer_model(save(hf, tmp_path / "a"), with_mlm=True).eval()
    with torch.no_grad():                      # change the weights so the test sees what kexue wrote
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(str(tmp_path / "b"))
    back = type(hf).from_pretrained(str(tmp_path / "b")).eval()
    ids, seg, mask = _inputs(family)
    kw = {} if family in ("gpt2", "gpt") else dict(token_type_ids=seg)
    with torch.no_grad():
        ref = back(input_ids=ids, attention_mask=mask, **kw)
        out = model(ids, attention_mask=mask, **({} if family in ("gpt2", "gpt") else dict(segment_ids=seg)))
    assert _close(out.logits, ref.logits, mask) <= TOL


def test_t5_save_round_trip(tmp_path):
    import transformers
    hf = hf_model("t5")
    model = kexue.build_transformer_model(save(hf, tmp_path / "a")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(str(tmp_path / "b"))
    back = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "b")).eval()
    ids, _, mask = _inputs("t5")
    dec = torch.randint(2, 101, (3, 4))
    with torch.no_grad():
        assert _close(model(ids, dec, attention_mask=mask).logits,
                      back(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits) <= TOL
