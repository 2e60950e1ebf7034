"""DGCNN reader pieces (spec nlp/07): span extraction against brute force, the focal loss's closed forms and its
agreement with the logits form, the mixed char-word embedding's closed form, and the reader's masking."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from kexue.nn import binary_focal_loss
from kexue.tasks import (DGCNNReader, MixedCharWordEmbedding, PlainDilatedConv1d, align_word_ids, extract_spans,
                         span_answers, span_focal_loss)


@pytest.mark.parametrize("seed", range(5))
def test_extract_spans_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n, thr, max_len = 15, 0.3, 4
    s, e = torch.rand(n, generator=g), torch.rand(n, generator=g)
    brute = {(i, j): float(s[i]) * float(e[j]) for i, j in itertools.product(range(n), repeat=2)
             if i <= j < i + max_len and s[i] > thr and e[j] > thr}
    got = extract_spans(s, e, threshold=thr, max_len=max_len)
    assert got.keys() == brute.keys() and all(got[k] == pytest.approx(brute[k], rel=1e-6) for k in got)


def test_extract_spans_threshold_is_strict_and_empty_input_works():
    s = torch.tensor([0.1, 0.5]); e = torch.tensor([0.5, 0.1])
    assert extract_spans(s, e, threshold=0.1) == {}                      # (1, 0) is backwards, 0.1 is not > 0.1
    assert extract_spans(torch.zeros(0), torch.zeros(0)) == {}
    with pytest.raises(ValueError, match="p_start and p_end"):
        extract_spans(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="max_len"):
        extract_spans(s, e, max_len=0)


def test_span_answers_keep_the_max_per_string():
    got = span_answers({(0, 1): 0.2, (3, 4): 0.6, (2, 2): 0.1}, "abcab")
    assert got == {"ab": 0.6, "c": 0.1}
    with pytest.raises(ValueError, match="outside"):
        span_answers({(4, 5): 0.5}, "abcab")


def test_focal_loss_closed_forms():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 7, generator=g) * 0.98 + 0.01
    y = (torch.rand(3, 7, generator=g) > 0.5).float()
    half_bce = 0.5 * F.binary_cross_entropy(p, y)
    assert torch.allclose(span_focal_loss(p, y, alpha=0.5, gamma=0.0), half_bce, atol=1e-6)
    assert span_focal_loss(y, y) < 1e-10                                 # p = y: 0 up to the clipping
    assert torch.allclose(span_focal_loss(p, y, scale=100.0), 100 * span_focal_loss(p, y))
    # equals the logits form (torchvision's convention) when p = sigmoid(logits)
    logits = torch.randn(3, 7, generator=g, dtype=torch.float64)
    ref = binary_focal_loss(logits, y.double(), gamma=2.0, alpha=0.25)
    assert torch.allclose(span_focal_loss(logits.sigmoid(), y.double()), ref, atol=1e-10)


def test_focal_loss_ignores_masked_positions():
    p = torch.tensor([[0.3, 0.9, 0.5]]); y = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.tensor([[True, False, True]])
    p2 = p.clone(); p2[0, 1] = 0.01; y2 = y.clone(); y2[0, 1] = 1.0
    assert span_focal_loss(p, y, mask) == span_focal_loss(p2, y2, mask)
    ref = span_focal_loss(p[:, [0, 2]], y[:, [0, 2]])
    assert torch.allclose(span_focal_loss(p, y, mask), ref)
    with pytest.raises(ValueError, match="0/1"):
        span_focal_loss(p, y * 0.5)
    with pytest.raises(ValueError, match="shape"):
        span_focal_loss(p, y[:, :2])


def test_mixed_embedding_closed_form_and_unknown_word():
    torch.manual_seed(0)
    wv = torch.randn(4, 6)
    emb = MixedCharWordEmbedding(10, 8, wv)
    chars, words = torch.tensor([[1, 2, 3]]), torch.tensor([[2, 2, 0]])
    out = emb(chars, words)
    expect = emb.chars.weight[chars[0]] + torch.stack([wv[2], wv[2], torch.zeros(6)]) @ emb.word_proj.weight.T
    assert torch.allclose(out[0], expect, atol=1e-6)
    out.sum().backward()
    assert emb.words.weight.grad is None and emb.chars.weight.grad is not None      # frozen word2vec
    assert align_word_ids(["北京", "是", "首都"], {"北京": 3, "首都": 5}) == [3, 3, 0, 5, 5]
    with pytest.raises(ValueError, match="word_vectors"):
        MixedCharWordEmbedding(10, 8, torch.tensor([[float("nan")]]))


def _reader(block="gated"):
    torch.manual_seed(0)
    return DGCNNReader(torch.nn.Embedding(20, 16, padding_idx=0), dim=16, block=block).eval()


@pytest.mark.parametrize("block", ["gated", "plain"])
def test_reader_masks_pads_and_gates_by_answerability(block):
    reader = _reader(block)
    g = torch.Generator().manual_seed(1)
    q, p = torch.randint(1, 20, (2, 5), generator=g), torch.randint(1, 20, (2, 40), generator=g)
    q_mask, p_mask = torch.ones(2, 5, dtype=torch.bool), torch.ones(2, 40, dtype=torch.bool)
    q_mask[1, 3:] = False; p_mask[1, 30:] = False
    out = reader(q, q_mask, p, p_mask)
    assert out.start_probs.shape == out.end_probs.shape == (2, 40) and out.answerable.shape == (2,)
    assert (out.start_probs[1, 30:] == 0).all() and (out.end_probs[1, 30:] == 0).all()
    assert (out.start_probs <= out.answerable[:, None]).all()
    q2, p2 = q.clone(), p.clone()                                        # other tokens at pad positions
    q2[1, 3:], p2[1, 30:] = 7, 9
    out2 = reader(q2, q_mask, p2, p_mask)
    assert torch.allclose(out.start_probs, out2.start_probs, atol=1e-6)
    assert torch.allclose(out.answerable, out2.answerable, atol=1e-6)


def test_reader_loss_trains_the_heads():
    reader = _reader().train()
    q, p = torch.randint(1, 20, (2, 5)), torch.randint(1, 20, (2, 30))
    ones = torch.ones(2, 30, dtype=torch.bool)
    start = torch.zeros(2, 30); start[0, 4] = 1
    end = torch.zeros(2, 30); end[0, 6] = 1
    out = reader(q, torch.ones(2, 5, dtype=torch.bool), p, ones, start, end)
    out.loss.backward()
    assert torch.isfinite(out.loss) and reader.span_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="both"):
        reader(q, torch.ones(2, 5, dtype=torch.bool), p, ones, start)
    with pytest.raises(ValueError, match="block"):
        DGCNNReader(torch.nn.Embedding(5, 4), dim=4, block="relu")
    with pytest.raises(ValueError, match="dim=8"):
        DGCNNReader(torch.nn.Embedding(20, 4), dim=8)(q, torch.ones(2, 5), p, ones)


def test_plain_block_is_residual_relu_conv_and_masks():
    torch.manual_seed(0)
    blk = PlainDilatedConv1d(4, dilation=2)
    x = torch.randn(1, 9, 4); mask = torch.ones(1, 9, dtype=torch.bool); mask[0, 7:] = False
    y = blk(x, mask)
    xm = x * mask[..., None]
    expect = (xm + torch.relu(blk.conv(xm.transpose(1, 2)).transpose(1, 2))) * mask[..., None]
    assert torch.allclose(y, expect) and (y[0, 7:] == 0).all()
