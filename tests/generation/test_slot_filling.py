"""MLM slot filling (spec nlp/06): inputs, passage-constrained decoding, voting, loss masking, a learned toy task."""
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kexue
from kexue.generation import MLMSlotReader, NgramIndex, passage_constrained_decode, vote_answers
from kexue.ops import sequence_padding

PAD, CLS, SEP, MASK = 0, 1, 2, 3


def _is_substring(a, p):
    return len(a) == 0 or any(p[i:i + len(a)] == a for i in range(len(p) - len(a) + 1))


def test_build_inputs_layout_and_targets():
    reader = MLMSlotReader(lambda *a, **k: None, MASK, SEP, CLS, num_slots=4)
    b = reader.build_inputs([7, 8, 9], [10, 11, 12, 13, 14], max_q=2, max_p=4, answer_ids=[11, 12, 13, 14, 15])
    assert b["input_ids"] == [CLS, MASK, MASK, MASK, MASK, SEP, 7, 8, SEP, 10, 11, 12, 13, SEP]
    assert b["segment_ids"] == [0] * 14
    assert b["answer_ids"] == [11, 12, 13, SEP]                      # cut to L - 1, then [SEP]
    assert reader.build_inputs([7], [10], answer_ids=[])["answer_ids"] == [SEP, PAD, PAD, PAD]


def test_one_hot_table_spells_the_gold_span_with_score_one():
    passage = [5, 6, 7, 8, 6, 9]
    table = torch.zeros(5, 12)
    for i, tok in enumerate([6, 9, SEP]):
        table[i, tok] = 1.0
    assert passage_constrained_decode(table, NgramIndex(passage), SEP) == ([6, 9], 1.0)


@settings(max_examples=60, deadline=None)
@given(passage=st.lists(st.integers(4, 9), min_size=0, max_size=12), seed=st.integers(0, 10_000),
       slots=st.integers(1, 6), min_len=st.integers(0, 3))
def test_constrained_answer_is_always_a_passage_substring(passage, seed, slots, min_len):
    probs = torch.rand(slots, 10, generator=torch.Generator().manual_seed(seed)).softmax(-1)
    answer, score = passage_constrained_decode(probs, NgramIndex(passage), SEP, min_len=min_len)
    assert _is_substring(answer, passage)
    assert len(answer) <= slots and 0.0 <= score <= 1.0


def test_ngram_index_next_tokens():
    idx = NgramIndex([5, 6, 5, 7])
    assert idx.next_tokens(()) == {5, 6, 7}
    assert idx.next_tokens((5,)) == {6, 7}
    assert idx.next_tokens((5, 7)) == set() and idx.next_tokens((9,)) == set()


def test_vote_closed_forms():
    assert vote_answers([("a", 1.0)]) == {"a": 0.5}
    assert vote_answers([("a", 1.0), ("a", 1.0)])["a"] == pytest.approx(2 / 3)
    assert vote_answers([("", 0.9), ((), 0.9)]) == {}
    one, two = vote_answers([("a", 0.6)])["a"], vote_answers([("a", 0.6), ("a", 0.3)])["a"]
    assert two > one and vote_answers([("a", 0.7)])["a"] > one
    assert vote_answers([("a", 0.2), ("a", 0.5)], rule="max") == {"a": 0.5}
    with pytest.raises(ValueError, match="rule"):
        vote_answers([], rule="mean")


def _tiny_bert(vocab, seed=0, hidden=32):
    torch.manual_seed(seed)
    cfg = dict(model_type="bert", vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=2 * hidden, max_position_embeddings=64, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    return kexue.build_transformer_model(config=cfg, with_mlm=True)


def test_padding_slots_get_no_gradient():
    reader = MLMSlotReader(_tiny_bert(20), MASK, SEP, CLS, num_slots=4)
    b = reader.build_inputs([5], [6, 7, 8], answer_ids=[7])
    ids = torch.tensor([b["input_ids"]])
    logits = reader(ids).slot_logits.detach().requires_grad_()
    keep = torch.tensor([b["answer_ids"]]) != PAD
    torch.nn.functional.cross_entropy(logits[keep], torch.tensor([b["answer_ids"]])[keep]).backward()
    assert logits.grad[0, 2:].abs().sum() == 0 and logits.grad[0, :2].abs().sum() > 0


KEYS = range(4, 8)
VOCAB = 8 + 4 * len(KEYS)


def _qa_task(n, rng):
    """Passages of 3 facts `key v..v`: 1-3 values, ascending, from the key's own 4 tokens; question: a key;
    answer: its values (empty when the key is absent, 10%)."""
    out = []
    for _ in range(n):
        keys = rng.sample(list(KEYS), 4)
        own = lambda k: range(8 + 4 * (k - 4), 12 + 4 * (k - 4))
        facts = {k: sorted(rng.sample(own(k), rng.randint(1, 3))) for k in keys[:3]}
        passage = [t for k in keys[:3] for t in [k] + facts[k]]
        q = keys[3] if rng.random() < 0.1 else rng.choice(keys[:3])
        out.append(([q], passage, facts.get(q, [])))
    return out


def test_slot_reader_learns_synthetic_reading_comprehension():
    """300 steps (~10 s on a quiet 2-core box); constrained decoding reads the span and beats (or ties) the
    plain per-slot argmax.

    Mechanism, checked per question: a correct plain answer is a passage span whose every token is allowed,
    so the constrained decoder returns it too. Threshold, measured over 5 seeds x ATEN_CPU_CAPABILITY in
    {default, avx2, avx512}: constrained accuracy 0.52 to 0.95 (seed 1 is the slow learner; 0.77-0.82 for
    seed 0), untrained 0.02; the bar 0.35 sits well below the worst seed."""
    rng = random.Random(0)
    reader = MLMSlotReader(_tiny_bert(VOCAB, hidden=128), MASK, SEP, CLS, num_slots=4)
    opt = torch.optim.Adam(reader.parameters(), 2e-3)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50))
    for step in range(300):
        built = [reader.build_inputs(q, p, answer_ids=a) for q, p, a in _qa_task(32, rng)]
        ids = sequence_padding([b["input_ids"] for b in built])
        loss = reader(ids, answer_ids=torch.tensor([b["answer_ids"] for b in built])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        warmup.step()
    reader.eval()
    test = _qa_task(60, random.Random(1))
    constrained = plain = 0
    for q, p, a in test:
        got, _ = reader.answer(q, [p])
        ids = torch.tensor([reader.build_inputs(q, p)["input_ids"]])
        with torch.no_grad():
            arg = reader(ids).slot_logits[0].argmax(-1).tolist()
        plain_right = (arg[:arg.index(SEP)] if SEP in arg else arg) == a
        assert list(got) == a or not plain_right, (q, p, a, got, arg)
        constrained += list(got) == a
        plain += plain_right
    assert constrained / len(test) >= 0.35
    assert constrained >= plain
