""""非自回归"也不差：基于MLM的阅读理解问答 (https://kexue.fm/archives/7148): a BERT MLM fills 8 [MASK] answer slots in
one pass; passage-constrained decoding plus voting over 3 passages is compared with unconstrained argmax
slots and with a start/end pointer head on the same pretrained backbone, and its decode time with an 8-step
autoregressive (UniLM, KV-cached) decode of a model of the same size.

The recipe only: data `kexue.datasets.fact_questions`, vocabulary `kexue.tokenizers.build_char_vocab`,
pretraining `kexue.train.pretrain_mlm`, the reader `kexue.generation.MLMSlotReader` with the loops of
`kexue.tasks.mlm_reading`, the pointer `kexue.tasks.SpanPointer`, scores `kexue.metrics.sogou_qa_scores`.
"""
from __future__ import annotations

import copy
import random
import time

import torch

import kexue
from kexue.datasets import fact_questions
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.generation import MLMSlotReader, generate, vote_answers
from kexue.metrics import sogou_qa_scores
from kexue.ops import sequence_padding
from kexue.tasks import SpanPointer
from kexue.tasks.mlm_reading import read_answers, reading_examples, train_slot_reader
from kexue.tokenizers import build_char_vocab
from kexue.train import pretrain_mlm

SLOTS, LR, BATCH, TIMED = 8, 5e-4, 32, 30
# mode -> (train questions, test questions, facts per passage, hidden, layers, pretrain steps, fine-tune steps)
_BUDGET = {"smoke": (40, 10, (2, 3), 32, 1, 2, 2), "quick": (1000, 150, (3, 5), 64, 2, 100, 200),
           "full": (3000, 500, (6, 10), 128, 4, 2000, 3000)}


def bert_config(vocab_size: int, hidden: int, layers: int, max_len: int) -> dict:
    return dict(model_type="bert", vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=max_len,
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def _pointer_inputs(ex, cls: int, sep: int):
    """[CLS] q [SEP] p [SEP] per passage, the offset of p, and start/end labels (0 = [CLS] = no answer)."""
    rows, offsets, labels = [], [], []
    for p, a in zip(ex.passage_ids, ex.answer_ids):
        off = len(ex.question_ids) + 2
        rows.append([cls] + ex.question_ids + [sep] + p + [sep])
        offsets.append(off)
        start = next((off + i for i in range(len(p) - len(a) + 1) if a and p[i:i + len(a)] == a), 0)
        labels.append((start, start + len(a) - 1 if start else 0))
    return rows, offsets, labels


def _pointer_batch(model, rows, offsets, lengths):
    ids = sequence_padding(rows)
    hidden = model(ids, segment_ids=torch.zeros_like(ids), attention_mask=(ids != 0).long()).last_hidden_state
    mask = torch.zeros(ids.shape, dtype=torch.bool)                       # [CLS] + passage positions
    mask[:, 0] = True
    for b, (off, n) in enumerate(zip(offsets, lengths)):
        mask[b, off:off + n] = True
    return hidden, mask


def train_pointer(backbone, examples, steps: int, seed: int, cls: int, sep: int) -> tuple:
    """Arm 3: softmax start/end pointers over [CLS] + passage positions on the same pretrained backbone."""
    torch.manual_seed(seed)
    model, head = copy.deepcopy(backbone), SpanPointer(backbone.config.hidden_size)
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=LR)
    rng, losses = random.Random(seed), []
    model.train()
    for _ in range(steps):
        rows, offs, labels, lens = [], [], [], []
        for ex in (rng.choice(examples) for _ in range(BATCH)):
            k = rng.randrange(len(ex.passage_ids))
            r, o, lab = _pointer_inputs(ex, cls, sep)
            rows.append(r[k]); offs.append(o[k]); labels.append(lab[k]); lens.append(len(ex.passage_ids[k]))
        hidden, mask = _pointer_batch(model, rows, offs, lens)
        loss = head(hidden, mask, torch.tensor([s for s, _ in labels]), torch.tensor([e for _, e in labels])).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.eval()
    return model, head, losses


@torch.no_grad()
def pointer_answers(model, head, examples, cls: int, sep: int) -> list[tuple[tuple[int, ...], float]]:
    """Best span (<= SLOTS - 1 tokens) per passage unless [CLS]-[CLS] (no answer) is likelier; passages vote."""
    out = []
    for ex in examples:
        rows, offs, _ = _pointer_inputs(ex, cls, sep)
        hidden, mask = _pointer_batch(model, rows, offs, [len(p) for p in ex.passage_ids])
        res = head(hidden, mask)
        ps, pe = res.start_logits.softmax(-1), res.end_logits.softmax(-1)          # [P, n] over the mask
        span_mask = mask.clone()
        span_mask[:, 0] = False
        cands = []
        for b, span in enumerate(head.decode(res.start_logits, res.end_logits, span_mask, max_len=SLOTS - 1)):
            if span is None:
                continue
            s, e = span
            score = float(ps[b, s] * pe[b, e])
            if score > float(ps[b, 0] * pe[b, 0]):
                cands.append((tuple(rows[b][s:e + 1]), score))
        votes = vote_answers(cands)
        best = max(votes, key=votes.get) if votes else ()
        out.append((best, votes.get(best, 0.0)))
    return out


@torch.no_grad()
def decode_times(reader: MLMSlotReader, unilm, examples) -> tuple[float, float]:
    """Seconds per question: the MLM reader (one pass over the passages, constrained decoding, voting) and an
    8-step greedy UniLM decode of the same passages (KV cache, all 8 steps run), interleaved."""
    t_mlm = t_ar = 0.0
    for ex in examples:
        t0 = time.perf_counter()
        reader.answer(ex.question_ids, ex.passage_ids)
        t1 = time.perf_counter()
        rows = [[reader.cls_id] + ex.question_ids + [reader.sep_id] + p + [reader.sep_id] for p in ex.passage_ids]
        ids = sequence_padding(rows)
        generate(unilm, ids, torch.zeros_like(ids), (ids != 0).long(), max_new_tokens=SLOTS, min_new_tokens=SLOTS,
                 stop_at_eos=False)
        t_mlm, t_ar = t_mlm + t1 - t0, t_ar + time.perf_counter() - t1
    return t_mlm / len(examples), t_ar / len(examples)


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    n_train, n_test, facts, hidden, layers, pre_steps, ft_steps = _BUDGET[mode]
    make = lambda n, s: fact_questions(n, s, facts_per_passage=facts)                # noqa: E731
    train_q, test_q = make(n_train, 2 * seed), make(n_test, 2 * seed + 1)
    vocab = build_char_vocab([t for q in train_q + test_q for t in (q.question, *q.passages)], min_count=1)
    inverse = {i: c for c, i in vocab.items()}
    encode = lambda text: [vocab.get(c, vocab["[UNK]"]) for c in text]               # noqa: E731
    pad, cls, sep, mask = (vocab[t] for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"))
    train, test = reading_examples(train_q, encode), reading_examples(test_q, encode)
    max_len = 4 + SLOTS + max(len(ex.question_ids) + len(p) for ex in train + test for p in ex.passage_ids)
    torch.manual_seed(seed)
    backbone = kexue.build_transformer_model(config=bert_config(len(vocab), hidden, layers, max_len), with_mlm=True)
    passages = [[cls] + p + [sep] for ex in train for p in ex.passage_ids]
    pre = pretrain_mlm(backbone, passages, mask_id=mask, special_ids=[pad, cls, sep, mask], steps=pre_steps,
                       batch_size=BATCH, seed=seed)
    pointer, head, pointer_losses = train_pointer(backbone, train, ft_steps, seed, cls, sep)
    reader = MLMSlotReader(backbone, mask, sep, cls, num_slots=SLOTS, pad_id=pad)     # fine-tunes backbone
    slot_losses = train_slot_reader(reader, train, steps=ft_steps, batch_size=BATCH, lr=LR, seed=seed)
    golds = {i: list(q.answers) for i, q in enumerate(test_q)}
    text = lambda ids: "".join(inverse[i] for i in ids)                              # noqa: E731
    arms = {"constrained": read_answers(reader, test, constrained=True),
            "unconstrained": read_answers(reader, test, constrained=False),
            "pointer": pointer_answers(pointer, head, test, cls, sep)}
    no_answer_share = sum(not q.answers for q in test_q) / len(test_q)            # Final of answering nothing
    metrics, rows = {}, []
    for arm, answers in arms.items():
        s = sogou_qa_scores({i: text(a) for i, (a, _) in enumerate(answers)}, golds)
        metrics.update({f"{arm}_{k}": v for k, v in s.items()})
        not_in_passage = sum(bool(a) and not any(text(a) in p for p in q.passages)
                             for (a, _), q in zip(answers, test_q)) / len(test_q)
        metrics[f"{arm}_not_substring"] = not_in_passage
        rows.append({"arm": arm, "exact match": s["acc"], "char F1": s["f1"], "Final": s["final"],
                     "answers not in any passage": not_in_passage})
    torch.manual_seed(seed)
    unilm = kexue.build_transformer_model(config=bert_config(len(vocab), hidden, layers, max_len + SLOTS),
                                          application="unilm", with_mlm=True).eval()
    t_mlm, t_ar = decode_times(reader, unilm, test[:TIMED])
    metrics.update({"em_gain_constrained_vs_unconstrained": metrics["constrained_acc"] - metrics["unconstrained_acc"],
                    "final_gap_constrained_vs_pointer": metrics["constrained_final"] - metrics["pointer_final"],
                    "constrained_final_over_empty": metrics["constrained_final"] - no_answer_share,
                    "mlm_ms_per_question": 1e3 * t_mlm, "ar8_ms_per_question": 1e3 * t_ar,
                    "speedup_vs_ar8": t_ar / t_mlm})
    fig = Figure("training_loss", "Training loss", "step", "loss",
                 {"MLM pretraining": (pre["step"], pre["loss"]),
                  "slot reader (fine-tune)": (list(range(1, ft_steps + 1)), slot_losses),
                  "pointer head (fine-tune)": (list(range(1, ft_steps + 1)), pointer_losses)})
    timing = [{"decoder": "MLM slots, constrained + voting (1 pass)", "ms / question": 1e3 * t_mlm},
              {"decoder": "UniLM greedy, 8 steps, KV cache", "ms / question": 1e3 * t_ar}]
    return Measurement(metrics, tables={"arms": rows, "decode_time": timing}, figures=[fig])


EXPERIMENT = Experiment(
    name="mlm_reading_comprehension",
    title='"非自回归"也不差：基于MLM的阅读理解问答 (non-autoregressive is not bad either: MLM reading comprehension)',
    url="https://kexue.fm/archives/7148",
    claim="The article: MLM slot filling scores Final 0.7745 on SogouQA, level with seq2seq (0.7699), at much higher "
          "prediction speed. Spec targets on synthetic fact passages: constrained + voting >= unconstrained argmax "
          "on exact match, constrained ~ a pointer head (Final within 0.05), and >= 3x faster than an 8-step "
          "autoregressive decode.",
    setup=f"fact_questions: '{{实体}}的{{属性}}是什么？' with 3 passages of template facts '{{实体}}的{{属性}}是{{值}}。' "
          "(syllable names, values of 1-6 chars), one passage holds the fact, distractors share its entity or "
          "attribute, 10% no answer. Char vocabulary from the data; BERT (4 heads, FFN 4d) MLM-pretrained "
          f"on the passages, then fine-tuned with L_a = {SLOTS} slots (Adam {LR:g}, batch {BATCH}, one random "
          "passage per question per step). Arms: (1) slots + passage-constrained decoding + voting, (2) the same "
          "slots, argmax per slot + voting, (3) softmax start/end pointer head (+ [CLS] = no answer) fine-tuned "
          "from the same pretrained weights with the same budget. Decode time: per question over the first "
          f"{TIMED} test questions, vs an 8-step greedy UniLM decode (KV cache) of a model of the same size.",
    checks=[
        Check("em_gain_constrained_vs_unconstrained", ">=", 0.0, "EM(constrained + voting) - EM(argmax slots)"),
        Check("final_gap_constrained_vs_pointer", "~", 0.0, "Final(constrained) - Final(pointer head)", tol=0.05),
        Check("speedup_vs_ar8", ">=", 3.0, "time(8-step AR decode) / time(MLM slots)"),
        Check("constrained_final_over_empty", ">=", 0.2, "validity: Final(constrained) over answering nothing "
              "(not a spec target; keeps 'arm 1 ~ arm 3' from holding between two readers that learned nothing)"),
    ],
    run=run,
    seeds={"quick": 1, "full": 3},
    exclusive=True,                # the decode-time speed-up is timed: nothing may run beside it
    deviations={
        "quick": "1 000 training / 150 test questions with 3-5 facts per passage (spec: 3 000 with 6-10), a "
                 "2-layer d=64 BERT (spec: 4-layer d=128) MLM-pretrained for 100 steps (spec: ~3 min), 200 "
                 "fine-tuning steps per arm, lr 5e-4 (the article's 1e-5 is for BERT-base), 1 seed; model "
                 "selection: the last step. Decode times are wall clock on a possibly loaded machine.",
        "full": "3 000 training / 500 test questions with 6-10 facts per passage, a 4-layer d=128 BERT pretrained "
                "for 2 000 steps, 3 000 fine-tuning steps per arm, lr 5e-4, 3 seeds; last-step model.",
    },
)
