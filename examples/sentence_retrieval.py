"""Sentence similarity as many-class classification with AM-Softmax, as bojone/margin-softmax's sent_sim.py
(基于GRU和AM-Softmax的句子相似度模型, https://kexue.fm/archives/5743): every paraphrase group is a class; a GRU
sentence encoder with a unit-norm cosine classifier is trained with AM-Softmax (s=30, m=0.35); then the
classifier is dropped and sentences of groups never seen in training are retrieved by cosine.

Differs from the article: synthetic paraphrase groups (meanings of 4-8 words from a 2 000-word lexicon, rendered
with synonyms, local swaps and fillers; `kexue.datasets.make_paraphrase_groups`) instead of the tongyiju.csv
Chinese paraphrase data, tokens are words not characters, CPU-sized budgets.
"""
from __future__ import annotations

import argparse

import torch

from kexue.datasets import make_paraphrase_groups
from kexue.tasks import SentenceEncoder, encode_sentences, evaluate_retrieval, train_sentence_encoder

# budget -> meanings, training groups, epochs, embedding size, GRU size
BUDGETS = {"smoke": (60, 40, 1, 16, 16), "quick": (1500, 1200, 8, 64, 128), "full": (3000, 2500, 8, 64, 128)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 200 training groups, 8 epochs (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes (the test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", default="am", choices=["softmax", "am", "aam", "a_simple", "pairwise"])
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    meanings, n_train, epochs, emb, hidden = BUDGETS[budget]
    torch.manual_seed(args.seed)

    data = make_paraphrase_groups(meanings, 2000, seed=args.seed)
    train, unseen = data.split(n_train)
    print(f"data: synthetic paraphrase groups, {train.num_groups} training groups ({len(train.sentences)} "
          f"sentences), {unseen.num_groups} unseen groups ({len(unseen.sentences)} sentences) for retrieval")
    encoder = SentenceEncoder(data.vocab_size, emb, hidden)
    print(f"model: embedding {emb} + GRU {hidden}, L2-normalised; loss {args.loss} over the {train.num_groups} "
          f"groups (s=30); Adam 1e-3, batch 128, {epochs} epochs; differs from the article: synthetic word-level "
          "data, not tongyiju.csv")

    losses = train_sentence_encoder(encoder, train.sentences, train.groups, objective=args.loss, epochs=epochs,
                                    seed=args.seed)
    print(f"training loss: {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} updates")
    result = evaluate_retrieval(encoder, unseen.sentences, unseen.groups)

    vectors = encode_sentences(encoder, unseen.sentences[:1])            # one query, shown with its neighbours
    sims = (encode_sentences(encoder, unseen.sentences) @ vectors[0]).tolist()
    nearest = sorted(range(1, len(sims)), key=lambda i: -sims[i])[:3]
    print(f"query {unseen.sentences[0]} (group {unseen.groups[0]}) -> "
          + ", ".join(f"{unseen.sentences[i]} (group {unseen.groups[i]}, cos {sims[i]:.2f})" for i in nearest))
    print(f"unseen groups: top-1 {100 * result['top1']:.1f}%, top-5 {100 * result['top5']:.1f}%, top-10 "
          f"{100 * result['top10']:.1f}%; cosine gap (own group - nearest other) {result['gap']:.3f}")
    return {"top1": result["top1"], "top5": result["top5"], "top10": result["top10"], "cosine_gap": result["gap"]}


if __name__ == "__main__":
    main()
