"""MLMSlotReader.answer(constrained=False): plain argmax per slot up to [SEP] (the ablation of
https://kexue.fm/archives/7148), against a hand-made slot table."""
import pytest
import torch

from kexue.generation import MLMSlotReader

PAD, CLS, SEP, MASK = 0, 1, 2, 3


class _TableMLM(torch.nn.Module):
    """An 'MLM' whose slot logits are a fixed table, the same for every passage."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, segment_ids=None, attention_mask=None):
        B, n = input_ids.shape
        logits = torch.full((B, n, self.table.shape[1]), -1e4)
        logits[:, 1:1 + self.table.shape[0]] = self.table.log()
        return logits


def _table():
    t = torch.full((4, 10), 0.01)
    for i, tok in enumerate([7, 7, 9, SEP]):                             # 7 7 9: absent from the passage
        t[i, tok] = 0.9
    return t / t.sum(-1, keepdim=True)


def test_unconstrained_answer_is_the_argmax_string_even_off_passage():
    reader = MLMSlotReader(_TableMLM(_table()), MASK, SEP, CLS, num_slots=4)
    passage = [5, 7, 6, 9]
    ans, score = reader.answer([4], [passage], constrained=False)
    probs = _table()
    assert ans == (7, 7, 9)
    expect = (probs[0, 7] + probs[1, 7] + probs[2, 9] + probs[3, SEP]) / 4          # S = s^2 / (s + 1)
    assert score == pytest.approx(float(expect ** 2 / (expect + 1)), rel=1e-5)
    constrained, _ = reader.answer([4], [passage])
    assert constrained != ans and all(t in passage for t in constrained)  # the constraint keeps it in the passage


def test_unconstrained_min_len_skips_an_early_end():
    t = torch.full((3, 10), 0.01)
    t[0, SEP], t[1, 8], t[2, SEP] = 0.9, 0.9, 0.9
    t[0, 6] = 0.5
    reader = MLMSlotReader(_TableMLM(t / t.sum(-1, keepdim=True)), MASK, SEP, CLS, num_slots=3)
    assert reader.answer([4], [[6, 8]], constrained=False)[0] == ()    # empty answers are not voted
    assert reader.answer([4], [[6, 8]], constrained=False, min_len=1)[0] == (6, 8)
    with pytest.raises(TypeError, match="constrained"):
        reader.answer([4], [[6, 8]], constrained="no")
