"""`generate(new_segment=tensor [B])`: one segment id per row for the generated tokens (a dialogue's speaker flip,
https://kexue.fm/archives/7718) equals decoding each row alone with that row's int `new_segment`."""
import pytest
import torch

import kexue
from kexue.generation import generate

V, EOS = 40, 3


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return kexue.build_transformer_model(config=dict(vocab_size=V, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=4, intermediate_size=64,
                                                     max_position_embeddings=64, type_vocab_size=2,
                                                     eos_token_id=EOS),
                                         model="bert", application="lm", with_mlm=True).eval()


def _prompts():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, V, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0                                                   # row 1: left padding, row 2: right padding
    mask[2, 4:] = 0
    seg = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]])
    return ids, mask, seg


@pytest.mark.parametrize("use_cache", [True, False])
def test_per_row_new_segment_equals_each_row_alone(lm, use_cache):
    ids, mask, seg = _prompts()
    flip = torch.tensor([1, 0, 0])                                   # 1 - each row's last real segment
    both = generate(lm, ids, seg, mask, new_segment=flip, max_new_tokens=6, use_cache=use_cache)
    for b in range(3):
        real = mask[b].bool()
        alone = generate(lm, ids[b:b + 1, real], seg[b:b + 1, real], new_segment=int(flip[b]), max_new_tokens=6,
                         use_cache=use_cache)
        n = int(both.lengths[b])
        assert torch.equal(both.sequences[b, :n], alone.sequences[0, :n]) and n == int(alone.lengths[0])
        torch.testing.assert_close(both.scores[b], alone.scores[0], rtol=1e-5, atol=1e-5)


def test_per_row_segment_changes_the_scores_and_samples_follow_their_row(lm):
    ids, mask, seg = _prompts()
    a = generate(lm, ids, seg, mask, new_segment=torch.tensor([0, 0, 0]), max_new_tokens=4, stop_at_eos=False)
    b = generate(lm, ids, seg, mask, new_segment=torch.tensor([1, 1, 1]), max_new_tokens=4, stop_at_eos=False)
    mixed = generate(lm, ids, seg, mask, new_segment=torch.tensor([0, 1, 0]), max_new_tokens=4, stop_at_eos=False)
    assert not torch.allclose(a.scores, b.scores)                    # the segment of generated tokens matters
    torch.testing.assert_close(mixed.scores, torch.stack([a.scores[0], b.scores[1], a.scores[2]]))
    s = generate(lm, ids, seg, mask, new_segment=torch.tensor([0, 1, 0]), max_new_tokens=4, stop_at_eos=False,
                 do_sample=True, topk=1, num_samples=2)               # top-1 sampling == greedy, per row
    assert torch.equal(s.sequences, mixed.sequences.repeat_interleave(2, 0))


@pytest.mark.parametrize("bad,err,match", [
    (torch.tensor([0, 1]), ValueError, "shape"),
    (torch.tensor([0, 2, 0]), ValueError, "outside"),
    (torch.tensor([0.0, 1.0, 0.0]), TypeError, "integer"),
])
def test_bad_per_row_segments_are_refused_by_name(lm, bad, err, match):
    ids, mask, seg = _prompts()
    with pytest.raises(err, match=match) as info:
        generate(lm, ids, seg, mask, new_segment=bad, max_new_tokens=2)
    assert "new_segment" in str(info.value)


def test_per_row_segments_need_prompt_segments(lm):
    ids, mask, _ = _prompts()
    with pytest.raises(ValueError, match="new_segment.*segment_ids"):
        generate(lm, ids, None, mask, new_segment=torch.tensor([0, 1, 0]), max_new_tokens=2)
