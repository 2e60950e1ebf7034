"""The default padding mask (issue 8): with no attention_mask, encoder and UniLM models mask the configured
pad id (bert4keras masks token 0 the same way); causal LMs and inputs_embeds treat every token as real; an
explicit mask always wins."""
from __future__ import annotations

import pytest
import torch

import kexue

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
ENCODERS = {
    "bert": dict(model_type="bert"),
    "roberta": dict(model_type="roberta", pad_token_id=1, type_vocab_size=1),
    "albert": dict(model_type="albert", embedding_size=8),
    "electra": dict(model_type="electra", embedding_size=8),
    "nezha": dict(model_type="nezha"),
    "roformer": dict(model_type="roformer"),
}


def _padded_batch(pad: int, lengths=(7, 4, 2), low: int = 2):
    """Right-padded ids [B, n] with no pad id among the real tokens, and the matching 0/1 mask."""
    g = torch.Generator().manual_seed(0)
    n = max(lengths)
    ids = torch.full((len(lengths), n), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for b, L in enumerate(lengths):
        ids[b, :L] = torch.randint(low, 50, (L,), generator=g)
        mask[b, :L] = 1
    return ids, mask


def _build(family: str, **kw):
    torch.manual_seed(0)
    return kexue.build_transformer_model(config={**TINY, **ENCODERS[family]}, **kw).eval()


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_padded_batch_without_mask_equals_explicit_mask_and_each_alone(family):
    model = _build(family, with_pool=True)
    pad = model.config.pad_token_id
    ids, mask = _padded_batch(pad)
    with torch.no_grad():
        implicit = model(ids)
        explicit = model(ids, attention_mask=mask)
        for b in range(ids.shape[0]):
            L = int(mask[b].sum())
            alone = model(ids[b:b + 1, :L])
            torch.testing.assert_close(implicit.last_hidden_state[b, :L], alone.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(implicit.pooled[b], alone.pooled[0], atol=1e-5, rtol=0)   # the CLS vector
    torch.testing.assert_close(implicit.last_hidden_state, explicit.last_hidden_state, atol=1e-5, rtol=0)


def test_unilm_masks_padding_by_default():
    model = _build("bert", application="unilm", with_mlm=True)
    ids, mask = _padded_batch(0, lengths=(7, 5))
    seg = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        implicit = model(ids, segment_ids=seg).logits
        explicit = model(ids, segment_ids=seg, attention_mask=mask).logits
        alone = model(ids[1:, :5], segment_ids=seg[1:, :5]).logits
    torch.testing.assert_close(implicit, explicit, atol=1e-5, rtol=0)
    torch.testing.assert_close(implicit[1, :5], alone[0], atol=1e-5, rtol=0)


def test_explicit_mask_wins_over_the_pad_id():
    """attention_mask of ones makes pad-id tokens real: the same as feeding their embeddings (no ids)."""
    model = _build("bert")
    ids, _ = _padded_batch(0)
    with torch.no_grad():
        real = model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        implicit = model(ids).last_hidden_state
        via_embeds = model(inputs_embeds=model.embeddings.word(ids)).last_hidden_state   # no ids: all real
    torch.testing.assert_close(real, via_embeds, atol=1e-5, rtol=0)
    assert (real - implicit).abs().max() > 1e-3                 # the pads change the real positions when seen


def test_causal_lm_treats_pad_ids_as_real():
    model = _build("bert", application="lm", with_mlm=True)
    ids = torch.tensor([[5, 0, 7, 0, 9]])
    with torch.no_grad():
        implicit = model(ids).logits
        real = model(ids, attention_mask=torch.ones_like(ids)).logits
    torch.testing.assert_close(implicit, real, atol=0, rtol=0)


def test_no_pad_id_means_no_default_mask():
    model = kexue.build_transformer_model(config={**TINY, "model_type": "bert", "pad_token_id": None}).eval()
    ids = torch.tensor([[5, 0, 7, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state,
                                   model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state, atol=0, rtol=0)


def test_default_attention_mask_is_public():
    enc, lm = _build("bert"), _build("bert", application="lm")
    ids = torch.tensor([[3, 4, 0]])
    assert torch.equal(enc.default_attention_mask(ids), torch.tensor([[True, True, False]]))
    assert lm.default_attention_mask(ids) is None


def test_t5_encoder_masks_padding_by_default():
    torch.manual_seed(0)
    model = kexue.build_transformer_model(config=dict(
        model_type="t5", vocab_size=50, d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, dropout_rate=0.0,
        pad_token_id=0, decoder_start_token_id=0, eos_token_id=1)).eval()
    ids, mask = _padded_batch(0, lengths=(6, 3))
    dec = torch.tensor([[0, 5, 6], [0, 7, 8]])                  # starts with the pad id, still a real token
    with torch.no_grad():
        implicit = model(ids, dec).logits
        explicit = model(ids, dec, attention_mask=mask, decoder_attention_mask=torch.ones_like(dec)).logits
        alone = model(ids[1:, :3], dec[1:]).logits
    torch.testing.assert_close(implicit, explicit, atol=1e-5, rtol=0)
    torch.testing.assert_close(implicit[1], alone[0], atol=1e-5, rtol=0)
