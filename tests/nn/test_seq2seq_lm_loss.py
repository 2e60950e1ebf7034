"""seq2seq_lm_loss (https://kexue.fm/archives/6933): the UniLM loss against a hand computation; only next
tokens of segment 1 are targets, padding and the source never are (gradient at those positions is zero)."""
import math

import pytest
import torch

from kexue.nn import seq2seq_lm_loss


def _hand_loss(logits, ids, seg, mask):
    """Loop over rows and positions: -log softmax(logits[b, t])[ids[b, t+1]] where token t+1 is a real target."""
    terms = []
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if seg[b, t + 1] == 1 and mask[b, t + 1] == 1:
                row = logits[b, t].double()
                terms.append(-(row[ids[b, t + 1]] - math.log(row.exp().sum())))
    return sum(terms) / len(terms), len(terms)


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3, 0, 0],          # [CLS] p p [SEP] a a [SEP] pad pad
                        [2, 5, 3, 9, 4, 4, 6, 3, 0]])
    seg = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0, 0],          # pads carry segment 0 (right padding)
                        [0, 0, 0, 1, 1, 1, 1, 1, 0]])
    mask = (ids != 0).long()
    logits = torch.randn(2, 9, 10, generator=g)
    return logits, ids, seg, mask


def test_equals_hand_computation_over_target_tokens():
    logits, ids, seg, mask = _batch()
    expected, count = _hand_loss(logits, ids, seg, mask)
    assert count == 3 + 5                                      # 7 8 [SEP] and 9 4 4 6 [SEP]
    assert seq2seq_lm_loss(logits, ids, seg, mask).item() == pytest.approx(float(expected), rel=1e-6)
    # targets are exactly input_ids[:, 1:] where segment_ids[:, 1:] == 1 (and real)
    per_token = seq2seq_lm_loss(logits, ids, seg, mask, reduction="none")
    assert per_token.shape == (2, 8)
    assert ((per_token != 0) == ((seg[:, 1:] == 1) & (mask[:, 1:] == 1))).all()


def test_gradient_is_zero_at_source_and_padding_positions():
    logits, ids, seg, mask = _batch()
    logits.requires_grad_(True)
    seq2seq_lm_loss(logits, ids, seg, mask).backward()
    predicts_target = torch.zeros(2, 9, dtype=torch.bool)
    predicts_target[:, :-1] = (seg[:, 1:] == 1) & (mask[:, 1:] == 1)
    norms = logits.grad.abs().sum(-1)                          # [B, n]
    assert (norms[~predicts_target] == 0).all() and (norms[predicts_target] > 0).all()


def test_padding_with_segment_one_is_still_excluded_by_the_mask():
    logits, ids, seg, mask = _batch()
    seg_pad1 = seg.clone()
    seg_pad1[0, 7:] = 1                                        # pads labelled target: the mask must drop them
    assert seq2seq_lm_loss(logits, ids, seg_pad1, mask).item() == pytest.approx(
        seq2seq_lm_loss(logits, ids, seg, mask).item(), rel=1e-7)


def test_bad_inputs_are_refused_by_name():
    logits, ids, seg, mask = _batch()
    with pytest.raises(ValueError, match="segment_ids must hold only 0"):
        seq2seq_lm_loss(logits, ids, seg * 2, mask)
    bad = seg.clone()
    bad[0, 5] = 0                                              # 1 -> 0 -> 1 among real tokens
    with pytest.raises(ValueError, match="0...0 then 1...1"):
        seq2seq_lm_loss(logits, ids, bad, mask)
    with pytest.raises(ValueError, match="attention_mask"):
        seq2seq_lm_loss(logits, ids, seg, mask[:, :-1])
    with pytest.raises(ValueError, match="expected logits"):
        seq2seq_lm_loss(logits[0], ids, seg, mask)
