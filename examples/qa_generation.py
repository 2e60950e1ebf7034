"""QA-pair generation with a UniLM seq2seq (bert4keras `task_question_answer_generation_by_seq2seq.py`,
学会提问的BERT https://kexue.fm/archives/7630).

Data: kexue's seeded template passages (facts "{实体}的{属性}是{值}。" / "{实体}位于{地点}。" about random syllable
entities, one templated question per fact in two paraphrases), held-out passages disjoint. Model: a char-level
UniLM from scratch, `[CLS] passage [SEP] answer [SEP] question [SEP]`, loss on answer + question. Generation:
answer by nucleus top-p 0.95 sampling, then the question greedy. Differences from the article: synthetic
passages instead of WebQA + SogouQA, a small model trained from scratch (no pretrained BERT-base), rotary
positions; quick uses passages of 2-4 facts about one entity (full: the spec's 4-8 facts about 2-3 entities).
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import make_qa_passages, qa_consistent, qa_passage_chars, score_qa_pairs
from kexue.models import build_transformer_model
from kexue.tasks import QAPairGenerator
from kexue.tokenizers import Tokenizer, build_char_vocab

BUDGETS = {"smoke": dict(train=30, test=2, facts=(2, 4), entities=(1, 1), layers=1, hidden=32, steps=5, lr=3e-3),
           "quick": dict(train=2000, test=20, facts=(2, 4), entities=(1, 1), layers=2, hidden=64, steps=1500,
                         lr=3e-3),
           "full": dict(train=5000, test=100, facts=(4, 8), entities=(2, 3), layers=4, hidden=128, steps=6000,
                        lr=1e-3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    b = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(args.seed)

    passages = make_qa_passages(b["train"] + b["test"], args.seed, *b["facts"], entities=b["entities"])
    train, test = passages[:b["train"]], passages[b["train"]:]
    print(f"data: {len(train)} train / {len(test)} held-out template passages of {b['facts'][0]}-{b['facts'][1]} "
          f"facts; e.g. {train[0].text} -> {train[0].qa_pairs[0]}")
    tokenizer = Tokenizer(build_char_vocab([qa_passage_chars()], min_count=1))
    model = build_transformer_model(config=dict(
        vocab_size=tokenizer.vocab_size, hidden_size=b["hidden"], num_hidden_layers=b["layers"],
        num_attention_heads=max(2, b["hidden"] // 32), intermediate_size=4 * b["hidden"], max_position_embeddings=256,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), model="roformer", application="unilm",
        with_mlm=True)
    print(f"model: char UniLM (RoFormer block) from scratch, {b['layers']} layers, d={b['hidden']}, "
          f"{tokenizer.vocab_size} chars; {b['steps']} steps of 16 (not the article's pretrained BERT-base)")

    # answer: top-p 0.95 sampling, then the question greedy; questions here are <= 13 chars, so cap them at 24
    generator = QAPairGenerator(model, tokenizer, max_question_len=24)
    losses = generator.fit([(p.text, a, q) for p in train for q, a in p.qa_pairs], steps=b["steps"], batch_size=16,
                           lr=b["lr"], seed=args.seed)
    generated = generator.generate_batch([p.text for p in test], n=10, seed=args.seed)
    for p, pairs in list(zip(test, generated))[:2]:
        print(f"  {p.text}")
        for q, a in sorted(set(pairs))[:4]:
            print(f"    Q: {q}  A: {a}  {'(consistent)' if qa_consistent(p, q, a) else '(inconsistent)'}")
    s = score_qa_pairs(test, generated)
    print(f"final train loss {losses[-1]:.3f}; over 10 samples per held-out passage: consistency "
          f"{s['consistency']:.3f}, answer support {s['support']:.3f}, distinct pairs per passage {s['distinct']:.2f}")
    # the spec's fix for free-running answers: sample only answers that are passage substrings
    constrained = QAPairGenerator(model, tokenizer, max_question_len=24, constrain_answer_to_passage=True)
    c = score_qa_pairs(test, constrained.generate_batch([p.text for p in test], n=10, seed=args.seed))
    print(f"answers constrained to the passage: consistency {c['consistency']:.3f}, support {c['support']:.3f}, "
          f"distinct {c['distinct']:.2f}")
    return {**s, **{f"{k}_constrained": v for k, v in c.items()}}


if __name__ == "__main__":
    main()
