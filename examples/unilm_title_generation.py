"""Title generation with a UniLM seq2seq (bert4keras `task_seq2seq_autotitle.py`, 从语言模型到Seq2Seq：
Transformer如戏，全靠Mask https://kexue.fm/archives/6933).

Data: kexue's seeded synthetic passage -> title task (`make_title_passages`): a passage of 3-6 facts about a main
entity (always its job and its place) and one other entity, shuffled; the title is "{地点}的{职业}{实体}" of the
main entity, e.g. "北京的医生阿巴" -- the model must find two facts and copy three spans. Model: a char-level
UniLM from scratch, `[CLS] passage [SEP] title [SEP]` with the loss on the title; decoding by beam search
(generated tokens get segment 1). Metrics: ROUGE-L F1 (characters) and exact match on held-out passages.
Differences from the article: synthetic passages instead of THUCNews, a small model from scratch instead of a
pretrained BERT-base, rotary positions.
"""
from __future__ import annotations

import argparse

import torch

from kexue.data import sequence_padding
from kexue.datasets import make_title_passages, qa_passage_chars
from kexue.generation import generate
from kexue.metrics import rouge_l
from kexue.models import build_transformer_model
from kexue.tasks import encode_seq2seq, train_seq2seq
from kexue.tokenizers import Tokenizer, build_char_vocab

BUDGETS = {"smoke": dict(train=30, test=4, layers=1, hidden=32, steps=5, lr=2e-3),
           "quick": dict(train=3000, test=100, layers=2, hidden=64, steps=1200, lr=2e-3),
           "full": dict(train=20000, test=500, layers=4, hidden=128, steps=6000, lr=1e-3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beams", type=int, default=3)
    args = parser.parse_args(argv)
    b = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(args.seed)

    data = make_title_passages(b["train"] + b["test"], args.seed)
    train, test = data[:b["train"]], data[b["train"]:]
    print(f"data: {len(train)} train / {len(test)} held-out synthetic passages; e.g. {train[0][0]} -> {train[0][1]}")
    tokenizer = Tokenizer(build_char_vocab([qa_passage_chars()], min_count=1))
    model = build_transformer_model(config=dict(
        vocab_size=tokenizer.vocab_size, hidden_size=b["hidden"], num_hidden_layers=b["layers"],
        num_attention_heads=max(2, b["hidden"] // 32), intermediate_size=4 * b["hidden"], max_position_embeddings=256,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), model="roformer", application="unilm",
        with_mlm=True)
    print(f"model: char UniLM (RoFormer block) from scratch, {b['layers']} layers, d={b['hidden']}; {b['steps']} "
          f"steps of 32; beam search {args.beams} (not the article's pretrained BERT-base on THUCNews)")

    losses = train_seq2seq(model, [encode_seq2seq(tokenizer, p, t, max_target_len=32) for p, t in train],
                           steps=b["steps"], lr=b["lr"], seed=args.seed)
    sep = tokenizer.token_to_id("[SEP]")
    titles = []
    for i in range(0, len(test), 64):                         # autotitle.generate, a batch of passages at once
        ids, segs = zip(*(tokenizer.encode(p, maxlen=130) for p, _ in test[i:i + 64]))
        out = generate(model, torch.as_tensor(sequence_padding(ids)), torch.as_tensor(sequence_padding(segs)),
                       num_beams=args.beams, max_new_tokens=32, end_id=sep)
        titles += [tokenizer.decode(row).replace(" ", "") for row in out.trimmed()]
    for (p, t), g in list(zip(test, titles))[:3]:
        print(f"  {p}\n    gold {t}   generated {g}")
    metrics = {"rouge_l": sum(rouge_l(g, t) for (_, t), g in zip(test, titles)) / len(test),
               "exact_match": sum(g == t for (_, t), g in zip(test, titles)) / len(test)}
    print(f"final train loss {losses[-1]:.3f}; held-out ROUGE-L {metrics['rouge_l']:.3f}, "
          f"exact match {metrics['exact_match']:.3f}")
    return metrics


if __name__ == "__main__":
    main()
