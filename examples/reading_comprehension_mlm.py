"""MLM reading comprehension (bert4keras `task_reading_comprehension_by_mlm.py`, https://kexue.fm/archives/7148).

Data: kexue's synthetic fact passages ("{实体}的{属性}是什么？" with 3 passages of template facts, one holding the
answer, distractors sharing its entity or attribute, 10% unanswerable). Model: a small character BERT,
MLM-pretrained on the passages, then fine-tuned to fill 8 [MASK] answer slots in one pass; decoding keeps every
answer a passage substring and the passages vote, S = sum s^2 / (sum s + 1). Differences from the article: no
BERT-base or SogouQA/WebQA (synthetic data, a small model pretrained here), Adam at a from-scratch rate, 8 slots.
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import fact_questions
from kexue.generation import MLMSlotReader
from kexue.metrics import sogou_qa_scores
from kexue.models import build_transformer_model
from kexue.tasks import read_answers, reading_examples, train_slot_reader
from kexue.tokenizers import build_char_vocab
from kexue.train import pretrain_mlm

BUDGETS = {"smoke": dict(train=40, test=10, facts=(2, 3), layers=1, hidden=32, pretrain=2, steps=2),
           "quick": dict(train=1500, test=300, facts=(3, 5), layers=2, hidden=64, pretrain=300, steps=600),
           "full": dict(train=3000, test=500, facts=(6, 10), layers=4, hidden=128, pretrain=2000, steps=3000)}
SLOTS = 8


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    b = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(args.seed)

    train_q = fact_questions(b["train"], args.seed, facts_per_passage=b["facts"])
    test_q = fact_questions(b["test"], args.seed + 1, facts_per_passage=b["facts"])
    print(f"data: {len(train_q)} train / {len(test_q)} test questions, 3 passages each; e.g. {train_q[0].question} "
          f"-> {train_q[0].answers or '(no answer)'} in {train_q[0].passages[max(0, train_q[0].answer_passage)]}")
    vocab = build_char_vocab([t for q in train_q + test_q for t in (q.question, *q.passages)], min_count=1)
    chars = {i: c for c, i in vocab.items()}
    encode = lambda text: [vocab.get(c, vocab["[UNK]"]) for c in text]             # noqa: E731
    train, test = reading_examples(train_q, encode), reading_examples(test_q, encode)

    bert = build_transformer_model(config=dict(
        model_type="bert", vocab_size=len(vocab), hidden_size=b["hidden"], num_hidden_layers=b["layers"],
        num_attention_heads=4, intermediate_size=4 * b["hidden"], max_position_embeddings=256), with_mlm=True)
    print(f"model: char BERT, {b['layers']} layers, d={b['hidden']}, {len(vocab)} chars; MLM-pretrained "
          f"{b['pretrain']} steps on the passages, fine-tuned {b['steps']} steps with {SLOTS} answer slots "
          "(not the article's BERT-base on SogouQA/WebQA)")
    cls, sep, mask = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    pretrain_mlm(bert, [[cls] + p + [sep] for ex in train for p in ex.passage_ids], mask_id=mask,
                 special_ids=[vocab["[PAD]"], cls, sep, mask], steps=b["pretrain"], seed=args.seed)
    reader = MLMSlotReader(bert, mask_id=mask, sep_id=sep, cls_id=cls, num_slots=SLOTS, pad_id=vocab["[PAD]"])
    losses = train_slot_reader(reader, train, steps=b["steps"], batch_size=32, lr=5e-4, seed=args.seed)

    preds = {i: "".join(chars[t] for t in ans) for i, (ans, _) in enumerate(read_answers(reader, test))}
    scores = sogou_qa_scores(preds, {i: list(q.answers) for i, q in enumerate(test_q)})
    for i in range(3):
        print(f"  {test_q[i].question} gold {list(test_q[i].answers)} pred {preds[i]!r}")
    print(f"final train loss {losses[-1]:.3f}; accuracy {scores['acc']:.3f}, F1 {scores['f1']:.3f}, "
          f"Final {scores['final']:.3f}")
    return {"accuracy": scores["acc"], "f1": scores["f1"], "final": scores["final"]}


if __name__ == "__main__":
    main()
