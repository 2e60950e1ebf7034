"""NL2SQL baseline (bert4keras / bert_in_keras `nl2sql_baseline.py`, https://kexue.fm/archives/6771).

Data: kexue's synthetic table world (the Tianchi TableQA format; toy tables with text and numeric columns,
questions with an agg word and one or two conditions, 20 % of text values with a character dropped), train and
test tables disjoint. Model: a small character BERT from scratch with the baseline's four heads; decoding with
the article's post-processing (value snapping, column repair). Differences from the article: no pretrained
BERT-wwm but a small BERT with rotary positions (RoFormer) trained from scratch on the toy world, columns pooled
over their header block, a select head that also sees the question's [CLS], Adam at a from-scratch learning
rate, synthetic data instead of the competition's.
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import make_nl2sql_world
from kexue.models import build_transformer_model
from kexue.tasks.nl2sql import NL2SQLDecoder, NL2SQLEncoder, NL2SQLModel, Table
from kexue.tasks.nl2sql.fit import encode_examples, nl2sql_scores, predict_nl2sql, train_nl2sql
from kexue.tokenizers import Tokenizer, build_char_vocab

BUDGETS = {"smoke": dict(tables=8, questions=5, layers=1, hidden=32, col_hidden=16, steps=3, batch=8, lr=3e-3),
           "quick": dict(tables=60, questions=20, layers=2, hidden=64, col_hidden=64, steps=1500, batch=16, lr=2e-3),
           "full": dict(tables=200, questions=20, layers=3, hidden=128, col_hidden=256, steps=3000, batch=32,
                        lr=1.5e-3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    b = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(args.seed)

    world = make_nl2sql_world(b["tables"], b["questions"], seed=args.seed)
    tables = {k: Table.from_dict(t) for k, t in world.tables.items()}
    print(f"data: {len(world.train)} train / {len(world.test)} test questions on disjoint toy tables; "
          f"e.g. {world.train[0]['question']} -> {world.train[0]['sql']}")
    vocab = build_char_vocab([e["question"] for e in world.train] + [h for t in tables.values() for h in t.headers],
                             min_count=1)
    encoder = NL2SQLEncoder(Tokenizer(vocab, char_level_mapping=True))
    backbone = build_transformer_model(config=dict(
        vocab_size=len(vocab), hidden_size=b["hidden"], num_hidden_layers=b["layers"],
        num_attention_heads=max(2, b["hidden"] // 32), intermediate_size=4 * b["hidden"],
        max_position_embeddings=160, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), model="roformer")
    model = NL2SQLModel(backbone, col_hidden=b["col_hidden"], header_pooling="mean", question_aware_select=True)
    print(f"model: char RoFormer from scratch, {b['layers']} layers, d={b['hidden']}, {len(vocab)} chars; "
          f"{b['steps']} steps of {b['batch']} (not the article's pretrained BERT-wwm)")

    losses = train_nl2sql(model, encoder, encode_examples(encoder, world.train, tables), b["steps"], b["batch"],
                          b["lr"], seed=args.seed)
    preds = predict_nl2sql(model, encoder, NL2SQLDecoder(), world.test, tables)
    scores = nl2sql_scores(preds, world.test, tables)
    for e, p in list(zip(world.test, preds))[:3]:
        print(f"  {e['question']}\n    gold {e['sql']}\n    pred {p.to_dict()}")
    print(f"final train loss {losses[-1]:.3f}; logic-form accuracy {scores['logic_form_acc']:.3f}, "
          f"execution accuracy {scores['execution_acc']:.3f}")
    return {"logic_form_acc": scores["logic_form_acc"], "execution_acc": scores["execution_acc"]}


if __name__ == "__main__":
    main()
