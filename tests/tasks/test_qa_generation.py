"""QAPairGenerator (spec nlp/10, https://kexue.fm/archives/7630): the training layout, the two decoding stages
(the question stage reads passage + answer + [SEP] with segment 1), top-p -> 0 equals greedy, batching equals one
passage at a time, the passage constraint, and a tiny model that learns one passage's pairs."""
import random

import pytest
import torch

import kexue.tasks.qa_generation as qg
from kexue.datasets import make_qa_passages, qa_consistent, qa_passage_chars
from kexue.models import build_transformer_model
from kexue.tasks import QAPairGenerator
from kexue.tokenizers import Tokenizer, build_char_vocab

VOCAB = build_char_vocab([qa_passage_chars()], min_count=1)
TOK = Tokenizer(VOCAB)
SEP, CLS = VOCAB["[SEP]"], VOCAB["[CLS]"]
PASSAGES = [p.text for p in make_qa_passages(3, seed=0)]


def _model(seed=0, wide=True, hidden=32, layers=1):
    torch.manual_seed(seed)
    cfg = dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers,
               num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=256,
               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = build_transformer_model(config=cfg, application="unilm", with_mlm=True).eval()
    if wide:                                 # wide random weights: varied outputs, some rows end early
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.3)
    return model


def _ids(text):
    return TOK.encode(text)[0][1:-1]


def test_encode_layouts_and_segments():
    gen = QAPairGenerator(_model(), TOK)
    ids, seg = gen.encode("阿巴的颜色是红色。", "红色", "阿巴的颜色是什么？")
    p, a, q = _ids("阿巴的颜色是红色。"), _ids("红色"), _ids("阿巴的颜色是什么？")
    assert ids == [CLS, *p, SEP, *a, SEP, *q, SEP]
    assert seg == [0] * (len(p) + 2) + [1] * (len(a) + len(q) + 2)
    qf = QAPairGenerator(_model(), TOK, layout="question_first")
    assert qf.encode("阿巴的颜色是红色。", "红色", "阿巴的颜色是什么？")[0] == [CLS, *p, SEP, *q, SEP, *a, SEP]
    capped = QAPairGenerator(_model(), TOK, max_passage_len=4, max_answer_len=1, max_question_len=2)
    ids, seg = capped.encode("阿巴的颜色是红色。", "红色", "阿巴的颜色是什么？")
    assert ids == [CLS, *p[:4], SEP, a[0], SEP, *q[:2], SEP] and sum(seg) == 5


def test_question_stage_reads_passage_answer_sep_with_segment_one(monkeypatch):
    calls = []

    def spy(model, input_ids, segment_ids, attention_mask, **kw):
        out = qg.__dict__["_real_generate"](model, input_ids, segment_ids, attention_mask, **kw)
        calls.append((input_ids, segment_ids, attention_mask, kw, out))
        return out
    monkeypatch.setitem(qg.__dict__, "_real_generate", qg.generate)
    monkeypatch.setattr(qg, "generate", spy)
    gen = QAPairGenerator(_model(), TOK)
    pairs = gen.generate_batch(PASSAGES[:2], n=3, seed=0)
    assert len(calls) == 2 and [len(p) for p in pairs] == [3, 3]
    (ids1, seg1, mask1, kw1, out1), (ids2, seg2, mask2, kw2, out2) = calls
    assert kw1["do_sample"] and kw1["topp"] == 0.95 and kw1["num_samples"] == 3 and kw1["max_new_tokens"] == 17
    assert "new_segment" not in kw1 and "new_segment" not in kw2          # generated tokens get segment 1
    assert kw2["num_beams"] == 1 and kw2["max_new_tokens"] == 65 and (seg1 == 0).all()
    for r, answer in enumerate(out1.trimmed()):
        answer = answer.tolist()
        answer = answer if answer[-1] == SEP else answer + [SEP]              # ran to its cap: [SEP] appended
        src = TOK.encode(PASSAGES[r // 3])[0]
        n = int(mask2[r].sum())
        assert ids2[r, :n].tolist() == src + answer                          # right padded
        assert seg2[r, :n].tolist() == [0] * len(src) + [1] * len(answer)
        assert pairs[r // 3][r % 3][1] == TOK.decode([t for t in answer if t != SEP]).strip()


def test_top_p_to_zero_equals_greedy_and_greedy_gives_one_pair():
    model = _model()
    greedy = QAPairGenerator.greedy(model, TOK).generate_batch(PASSAGES, n=4)
    tiny = QAPairGenerator(model, TOK, answer_sampling=dict(top_p=1e-9)).generate_batch(PASSAGES, n=4, seed=1)
    assert tiny == greedy
    assert all(len(set(pairs)) == 1 for pairs in greedy)


def test_sampling_is_seeded_and_varies():
    gen = QAPairGenerator(_model(), TOK)
    a, b = gen.generate(PASSAGES[0], n=8, seed=5), gen.generate(PASSAGES[0], n=8, seed=5)
    assert a == b and len(set(a)) > 1


def test_batch_equals_one_passage_at_a_time():
    gen = QAPairGenerator.greedy(_model(), TOK, question_search=dict(num_beams=3))
    assert gen.generate_batch(PASSAGES, n=1) == [gen.generate(p, n=1) for p in PASSAGES]


def test_constrained_answers_are_passage_substrings():
    gen = QAPairGenerator(_model(seed=1), TOK, constrain_answer_to_passage=True, max_answer_len=6)
    free = QAPairGenerator(_model(seed=1), TOK, max_answer_len=6)
    got = gen.generate_batch(PASSAGES, n=10, seed=0)
    assert all(a and a in p for p, pairs in zip(PASSAGES, got) for _, a in pairs)
    unconstrained = free.generate_batch(PASSAGES, n=10, seed=0)
    assert not all(a in p for p, pairs in zip(PASSAGES, unconstrained) for _, a in pairs)   # it does matter


def test_a_tiny_model_learns_the_pairs_of_one_passage():
    torch.manual_seed(0)
    passage = make_qa_passages(1, seed=7, min_facts=2, max_facts=2)[0]
    model = _model(wide=False, hidden=48).train()
    gen = QAPairGenerator(model, TOK)
    batch = gen.collate([gen.encode(passage.text, a, q) for q, a in passage.qa_pairs])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = gen.loss(batch).item()
    for _ in range(150):
        loss = gen.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * first
    pairs = gen.generate(passage.text, n=10, seed=0)
    assert all(qa_consistent(passage, q, a) for q, a in pairs)
    assert model.training                                           # generation restores the mode


def test_bad_arguments_are_refused_by_name():
    enc = build_transformer_model(config=dict(model_type="bert", vocab_size=len(VOCAB), hidden_size=8,
                                              num_hidden_layers=1, num_attention_heads=1, intermediate_size=8))
    with pytest.raises(ValueError, match="unilm"):
        QAPairGenerator(enc, TOK)
    with pytest.raises(ValueError, match="answer_sampling"):
        QAPairGenerator(_model(), TOK, answer_sampling=dict(p=0.9))
    with pytest.raises(ValueError, match="top_p"):
        QAPairGenerator(_model(), TOK, answer_sampling=dict(top_p=1.5))
    with pytest.raises(ValueError, match="layout"):
        QAPairGenerator(_model(), TOK, layout="sideways")
    with pytest.raises(ValueError, match="answer_first"):
        QAPairGenerator(_model(), TOK, layout="question_first", constrain_answer_to_passage=True)
    gen = QAPairGenerator(_model(), TOK)
    with pytest.raises(TypeError, match="passages"):
        gen.generate_batch("阿巴的颜色是红色。")
    with pytest.raises(ValueError, match="n must be"):
        gen.generate(PASSAGES[0], n=0)
    with pytest.raises(ValueError, match="non-empty"):
        gen.encode(PASSAGES[0], "", "阿巴的颜色是什么？")
