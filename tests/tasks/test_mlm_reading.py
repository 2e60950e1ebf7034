"""MLM reading-comprehension loops (spec nlp/06): examples from fact questions, the batch layout, seeded
training that fits a small set, and reading that stays inside the passages."""
import pytest
import torch

import kexue
from kexue.datasets import fact_questions
from kexue.generation import MLMSlotReader
from kexue.tasks.mlm_reading import read_answers, reading_examples, slot_reader_batch, train_slot_reader
from kexue.tokenizers import build_char_vocab


def _setup(n=6, seed=0):
    qs = fact_questions(n, seed, facts_per_passage=(2, 3), value_len=(1, 3), no_answer_rate=0.0)
    vocab = build_char_vocab([t for q in qs for t in (q.question, *q.passages)], min_count=1)
    encode = lambda text: [vocab[c] for c in text]                       # noqa: E731
    return qs, vocab, encode, reading_examples(qs, encode)


def _reader(vocab, seed=0):
    torch.manual_seed(seed)
    cfg = dict(model_type="bert", vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64, max_position_embeddings=96, hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0)
    return MLMSlotReader(kexue.build_transformer_model(config=cfg, with_mlm=True), vocab["[MASK]"], vocab["[SEP]"],
                         vocab["[CLS]"], num_slots=4, pad_id=vocab["[PAD]"])


def test_examples_put_the_answer_on_the_holder_passage_only():
    qs, _, encode, ex = _setup()
    for q, e in zip(qs, ex):
        assert e.question_ids == encode(q.question) and len(e.passage_ids) == len(q.passages) == 3
        assert [bool(a) for a in e.answer_ids] == [k == q.answer_passage for k in range(3)]
        assert e.answer_ids[q.answer_passage] == encode(q.answers[0])


def test_batch_equals_build_inputs_padded():
    _, vocab, _, ex = _setup()
    reader = _reader(vocab)
    triples = [(ex[0].question_ids, ex[0].passage_ids[0], ex[0].answer_ids[0]),
               (ex[1].question_ids, ex[1].passage_ids[2][:3], [])]
    b = slot_reader_batch(reader, triples)
    for row, (q, p, a) in enumerate(triples):
        ref = reader.build_inputs(q, p, answer_ids=a)
        n = len(ref["input_ids"])
        assert b["input_ids"][row, :n].tolist() == ref["input_ids"] and b["attention_mask"][row].sum() == n
        assert (b["input_ids"][row, n:] == vocab["[PAD]"]).all() and b["answer_ids"][row].tolist() == ref["answer_ids"]
    assert b["answer_ids"][1].tolist() == [vocab["[SEP]"]] + [vocab["[PAD]"]] * 3     # empty answer: [SEP] only
    with pytest.raises(ValueError, match="triples"):
        slot_reader_batch(reader, [])


def test_training_is_seeded_and_fits_a_small_set():
    _, vocab, _, ex = _setup(4)
    a, b = _reader(vocab), _reader(vocab)
    la = train_slot_reader(a, ex, steps=60, batch_size=8, lr=3e-3, seed=1)
    lb = train_slot_reader(b, ex, steps=60, batch_size=8, lr=3e-3, seed=1)
    assert la == lb
    assert sum(la[-10:]) / 10 < 0.5 * sum(la[:10]) / 10
    with pytest.raises(ValueError, match="examples"):
        train_slot_reader(a, [], steps=1)


def test_constrained_reading_stays_inside_the_passages():
    qs, vocab, _, ex = _setup(5)
    reader = _reader(vocab)                                              # untrained: arbitrary slot tables
    for (ans, score), e in zip(read_answers(reader, ex), ex):
        assert score >= 0 and (not ans or any(
            list(ans) == p[i:i + len(ans)] for p in e.passage_ids for i in range(len(p))))
