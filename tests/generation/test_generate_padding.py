"""generate follows the models' padding rule (issue 8): without a mask, encoder-side and UniLM prompts mask the
config's pad id exactly as an explicit mask would; a generated token that happens to equal the pad id is a real
token, in the cached path as in the recomputing one."""
import pytest
import torch

import kexue
from kexue.generation import generate

V = 61


def _unilm():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(
        model_type="bert", vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=0, initializer_range=0.3), with_mlm=True, application="unilm").eval()


def test_padded_unilm_prompt_without_mask_equals_explicit_mask():
    model = _unilm()
    ids = torch.tensor([[5, 6, 7, 8, 9], [11, 12, 0, 0, 0]])          # row 1 right-padded with the pad id 0
    segs = torch.zeros_like(ids)
    mask = ids.ne(0).long()
    implicit = generate(model, ids, segs, max_new_tokens=6, stop_at_eos=False).trimmed()
    explicit = generate(model, ids, segs, attention_mask=mask, max_new_tokens=6, stop_at_eos=False).trimmed()
    alone = generate(model, ids[1:, :2], segs[1:, :2], max_new_tokens=6, stop_at_eos=False).trimmed()
    for a, b in zip(implicit, explicit):
        assert torch.equal(a, b)
    assert torch.equal(implicit[1], alone[0])


def test_generated_pad_id_is_a_real_token_in_the_cached_path():
    model = _unilm()
    ids, segs = torch.tensor([[5, 6, 7]]), torch.zeros(1, 3, dtype=torch.long)

    def pad_first(output_ids, batch_index):                            # force the pad id at steps 1 and 2
        allowed = torch.ones(output_ids.shape[0], V, dtype=torch.bool)
        if output_ids.shape[1] < 2:
            allowed[:, 1:] = False
        return allowed
    kw = dict(max_new_tokens=7, stop_at_eos=False, allowed_next=pad_first)
    a, b = generate(model, ids, segs, **kw), generate(model, ids, segs, use_cache=False, **kw)
    (cached,), (cached_score,) = a.trimmed(), a.scores
    (recomputed,), (recomputed_score,) = b.trimmed(), b.scores
    assert cached[:2].tolist() == [0, 0]
    assert torch.equal(cached, recomputed)
    torch.testing.assert_close(torch.as_tensor(cached_score), torch.as_tensor(recomputed_score), rtol=0, atol=1e-5)


def test_rotary_table_limits_max_new_tokens_before_any_cache():
    torch.manual_seed(0)
    model = kexue.build_transformer_model(config=dict(
        model_type="roformer", vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=16, pad_token_id=0), with_mlm=True, application="lm").eval()
    prompt = torch.tensor([[5, 6, 7]])
    out = generate(model, prompt, max_new_tokens=14, stop_at_eos=False)
    assert len(out.trimmed()[0]) == 14                                              # 3 + 14 - 1 = 16 fits
    with pytest.raises(ValueError, match=r"max_new_tokens=15 .* use max_new_tokens <= 14"):
        generate(model, prompt, max_new_tokens=15, stop_at_eos=False)
