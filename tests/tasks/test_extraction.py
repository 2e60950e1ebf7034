"""Span and triple extraction (nlp/02, https://kexue.fm/archives/6736): SpanPointer's decode against a brute-force
enumeration of all spans, its loss against the closed form; the two-threshold nearest-end pairing on hand-made
tags (strict thresholds, shared ends); gold tag probabilities give back exactly the gold triples; the extractor's
conditioning, loss and padding against their definitions."""
import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F

import kexue
from kexue.tasks.extraction import (SpanPointer, SubjectObjectExtractor, decode_triples, pair_spans,
                                    spo_training_batch)

TINY = dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=24, max_position_embeddings=32, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


def brute_force_span(ls, le, mask, max_len, forbidden):
    best, arg = -math.inf, None
    n = len(ls)
    for s, e in itertools.product(range(n), range(n)):
        if e < s or not (mask[s] and mask[e]) or (max_len and e - s + 1 > max_len) or any(forbidden[s:e + 1]):
            continue
        if ls[s] + le[e] > best:
            best, arg = ls[s] + le[e], (s, e)
    return arg


@pytest.mark.parametrize("seed", range(6))
def test_span_decode_equals_brute_force_and_respects_every_constraint(seed):
    g = torch.Generator().manual_seed(seed)
    B, n = 5, 9
    start, end = torch.randn(B, n, generator=g) * 3, torch.randn(B, n, generator=g) * 3
    lengths = torch.randint(1, n + 1, (B,), generator=g)
    mask = torch.arange(n)[None] < lengths[:, None]
    forbidden = torch.rand(B, n, generator=g) < 0.2
    max_len = [None, 1, 3][seed % 3]
    got = SpanPointer.decode(start, end, mask, max_len=max_len, forbidden=forbidden)
    for b in range(B):
        ref = brute_force_span(start[b].log_softmax(-1).tolist(), end[b].log_softmax(-1).tolist(),
                               mask[b].tolist(), max_len, forbidden[b].tolist())
        assert got[b] == ref
        if got[b] is not None:
            s, e = got[b]
            assert s <= e and mask[b, e] and not forbidden[b, s:e + 1].any()


def test_gold_one_hot_logits_decode_to_the_gold_span():
    n = 8
    gold = [(0, 0), (2, 5), (7, 7), (3, 3)]
    start = torch.full((len(gold), n), -30.0)
    end = torch.full((len(gold), n), -30.0)
    for b, (s, e) in enumerate(gold):
        start[b, s] = end[b, e] = 30.0
    assert SpanPointer.decode(start, end, torch.ones(len(gold), n)) == gold
    # a start after the best end: the pointer picks the best pair with end >= start, never end < start
    start, end = torch.tensor([[0.0, 0, 5, 0]]), torch.tensor([[5.0, 0, 0, 1]])
    assert SpanPointer.decode(start, end, torch.ones(1, 4)) == [(2, 3)]
    assert SpanPointer.decode(start, end, torch.ones(1, 4), forbidden=torch.tensor([[False, False, True, True]])) \
        == [(0, 0)]
    assert SpanPointer.decode(start, end, torch.ones(1, 4), forbidden=torch.ones(1, 4, dtype=torch.bool)) == [None]
    with pytest.raises(ValueError, match="NaN"):
        SpanPointer.decode(start.clone().fill_(float("nan")), end, torch.ones(1, 4))
    with pytest.raises(ValueError, match="max_len"):
        SpanPointer.decode(start, end, torch.ones(1, 4), max_len=0)
    with pytest.raises(ValueError, match="at least one real"):
        SpanPointer.decode(start, end, torch.zeros(1, 4))


def test_span_pointer_loss_is_ce_with_the_end_restricted_after_the_gold_start():
    torch.manual_seed(0)
    head = SpanPointer(6)
    hidden = torch.randn(2, 5, 6, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    s, e = torch.tensor([1, 0]), torch.tensor([3, 4])
    out = head(hidden, mask, s, e)
    logits = hidden @ head.proj.weight.T + head.proj.bias                  # [B, n, 2]
    ref = 0.0
    for b in range(2):
        n_real = int(mask[b].sum())
        ls = logits[b, :n_real, 0].log_softmax(-1)
        le = logits[b, s[b]:n_real, 1].log_softmax(-1)
        ref = ref - (ls[s[b]] + le[e[b] - s[b]]) / 2
    torch.testing.assert_close(out.loss, ref, atol=1e-6, rtol=0)
    out.loss.backward()
    assert hidden.grad[0, 4].abs().max() == 0 and hidden.grad[0, :4].abs().max() > 0
    with pytest.raises(ValueError, match="end_labels must be >= start_labels"):
        head(hidden, mask, torch.tensor([2, 0]), torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="real tokens"):
        head(hidden, mask, torch.tensor([4, 0]), torch.tensor([4, 4]))


def test_pair_spans_thresholds_are_strict_and_starts_take_the_nearest_end():
    start = torch.tensor([0.9, 0.5, 0.51, 0.0, 0.7, 0.0, 0.6])
    end = torch.tensor([0.0, 0.0, 0.4, 0.41, 0.0, 0.9, 0.0])
    # starts > 0.5: 0, 2, 4, 6 (0.5 is not); ends > 0.4: 3, 5 (0.4 is not); 6 has no end after it
    assert pair_spans(start, end) == [(0, 3), (2, 3), (4, 5)]
    assert pair_spans(start, end, (0.49, 0.39)) == [(0, 2), (1, 2), (2, 2), (4, 5)]
    with pytest.raises(ValueError, match="thresholds"):
        pair_spans(start, end, (0.5,))
    with pytest.raises(ValueError, match=r"thresholds\[1\]"):
        pair_spans(start, end, (0.5, 1.5))


def _tags(spans, n):
    t = torch.zeros(n, 2)
    for s, e in spans:
        t[s, 0] = t[e, 1] = 1
    return t


def test_gold_tag_probabilities_give_back_exactly_the_gold_triples():
    """Overlapping gold: subjects (2, 5) and (4, 5) share an end; one subject has three objects, two with the
    same predicate; an object span contains another triple's subject."""
    n, P = 12, 3
    gold = {((2, 5), 0, (7, 8)), ((2, 5), 0, (10, 10)), ((2, 5), 2, (0, 1)), ((4, 5), 1, (7, 11)),
            ((9, 9), 2, (4, 5))}
    subjects = sorted({t[0] for t in gold})
    subject_probs = _tags(subjects, n)

    def object_probs(spans):
        out = torch.zeros(len(spans), n, P, 2)
        for i, sp in enumerate(spans):
            for s, p, (o0, o1) in gold:
                if s == sp:
                    out[i, o0, p, 0] = out[i, o1, p, 1] = 1
        return out
    assert set(decode_triples(subject_probs, object_probs)) == gold
    assert decode_triples(torch.zeros(n, 2), object_probs) == []


def _model(P=3):
    torch.manual_seed(0)
    return SubjectObjectExtractor(kexue.build_transformer_model(config=TINY), P).eval()


def _batch():
    ex = [([1, 5, 6, 7, 8, 9, 2], [((1, 2), 0, (4, 5)), ((1, 2), 2, (3, 3)), ((3, 3), 1, (1, 2))]),
          ([1, 11, 12, 13, 2], [((2, 3), 1, (1, 1))])]
    return spo_training_batch(ex, 3, random.Random(0))


def test_object_logits_condition_on_the_subject_by_add_mean():
    model = _model()
    b = _batch()
    with torch.no_grad():
        H, _ = model.encode(b["input_ids"], attention_mask=b["attention_mask"])
        out = model(b["input_ids"], attention_mask=b["attention_mask"], subject_span=b["subject_span"])
        k = b["subject_span"]
        for i in range(2):
            fused = H[i] + (H[i, k[i, 0]] + H[i, k[i, 1]]) / 2
            torch.testing.assert_close(out.object_logits[i], model.object_head(fused).view(-1, 3, 2))
        torch.testing.assert_close(out.subject_logits, model.subject_head(H))


def test_loss_is_the_masked_mean_bce_of_the_four_taggers_and_padding_gets_no_gradient():
    model = _model()
    b = _batch()
    out = model(b["input_ids"], attention_mask=b["attention_mask"], subject_span=b["subject_span"], labels=b["labels"])
    m = b["attention_mask"].float()
    ref = 0.0
    for logits, y in ((out.subject_logits, b["labels"]["subject"]), (out.object_logits, b["labels"]["object"])):
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").flatten(2).sum(-1)
        ref = ref + (bce * m).sum() / m.sum()
    torch.testing.assert_close(out.loss, ref)
    out.loss.backward()
    word = model.backbone.embeddings.word.weight.grad
    assert word[0].abs().max() == 0 and word[5].abs().max() > 0          # id 0 only at padding


def test_extract_decodes_the_models_own_probabilities():
    model = _model()
    with torch.no_grad():
        model.subject_head.bias.fill_(0.3)         # sigmoid 0.57: every real token starts and ends a subject
        model.object_head.bias.fill_(-0.2)         # sigmoid 0.45: no object start, every token an object end
        model.object_head.bias[0::2][1] = 0.4      # predicate 1 starts objects (0.6 > 0.5)
        model.subject_head.weight.zero_()
        model.object_head.weight.zero_()
    ids = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
    got = model.extract(ids)
    for b, n in enumerate([4, 3]):
        subjects = [(i, i) for i in range(n)]
        assert got[b] == sorted((s, 1, (j, j)) for s in subjects for j in range(n))
    assert model.extract(ids, o_thresholds=(0.6, 0.4)) == [[], []]


def test_training_batch_samples_one_gold_subject_and_its_objects():
    ex = [([1, 5, 6, 7, 8, 9, 2], [((1, 2), 0, (4, 5)), ((1, 2), 2, (3, 3)), ((3, 3), 1, (1, 2))])]
    seen = set()
    for seed in range(30):
        b = spo_training_batch(ex, 3, random.Random(seed))
        k1, k2 = b["subject_span"][0].tolist()
        seen.add((k1, k2))
        assert k1 in (1, 3) and k2 in (2, 3) and k2 >= k1
        objs = {(p, (s, e)) for s in range(7) for e in range(7) for p in range(3)
                if b["labels"]["object"][0, s, p, 0] and b["labels"]["object"][0, e, p, 1]}
        want = {(p, o) for s, p, o in ex[0][1] if s == (k1, k2)}
        assert {(p, o) for p, o in objs if (o[0], o[1]) in {w[1] for w in want}} == want
    assert seen == {(1, 2), (1, 3), (3, 3)}          # (1, 3): the reference's non-subject pairing
    gold = {tuple(spo_training_batch(ex, 3, random.Random(s), sampling="gold")["subject_span"][0].tolist())
            for s in range(30)}
    assert gold == {(1, 2), (3, 3)}
    tags = b["labels"]["subject"][0]
    assert tags[:, 0].nonzero().flatten().tolist() == [1, 3] and tags[:, 1].nonzero().flatten().tolist() == [2, 3]
    with pytest.raises(ValueError, match="no triple"):
        spo_training_batch([([1, 2], [])], 3, random.Random(0))
    with pytest.raises(ValueError, match="outside"):
        spo_training_batch([([1, 2], [((0, 5), 0, (1, 1))])], 3, random.Random(0))


def test_bad_extractor_arguments_are_refused():
    bb = kexue.build_transformer_model(config=TINY)
    with pytest.raises(ValueError, match="num_predicates"):
        SubjectObjectExtractor(bb, 0)
    with pytest.raises(ValueError, match="fuse"):
        SubjectObjectExtractor(bb, 2, fuse="concat")
    with pytest.raises(ValueError, match="prior"):
        SubjectObjectExtractor(bb, 2, prior=1.0)
    m = SubjectObjectExtractor(bb, 2, prior=0.05)
    with torch.no_grad():
        probs = torch.sigmoid(torch.cat([m.subject_head.bias, m.object_head.bias]))
    torch.testing.assert_close(probs, torch.full_like(probs, 0.05))
    model = SubjectObjectExtractor(bb, 2)
    with pytest.raises(ValueError, match="subject_span"):
        model(torch.tensor([[1, 2, 3]]), subject_span=torch.tensor([[2, 1]]))
    with pytest.raises(ValueError, match="subject_span"):
        model(torch.tensor([[1, 2, 3]]), labels={"subject": torch.zeros(1, 3, 2)})


def test_predict_triples_equals_extract_on_each_unpadded_text_and_restores_the_mode():
    from kexue.tasks.extraction import predict_triples
    model = _model()
    with torch.no_grad():
        model.subject_head.bias.fill_(0.3)
        model.object_head.bias.fill_(0.1)
    texts = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 11, 2]]
    model.train()
    got = predict_triples(model, texts, batch_size=2)
    assert model.training
    model.eval()
    assert got == [model.extract(torch.tensor([t]))[0] for t in texts] and any(got)
