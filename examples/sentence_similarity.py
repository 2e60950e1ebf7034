"""Sentence-pair classification with BERT: paraphrase or not (bert4keras examples/task_sentence_similarity_lcqmc.py;
https://kexue.fm/archives/6736).

Data: kexue.datasets.make_paraphrase_groups (synthetic sentences of token ids: a meaning's renderings use random
synonyms, swaps and fillers). A positive pair is two renderings of one meaning; a negative pair is a rendering
and either a rendering of another meaning or a near miss: another rendering of the same meaning with two content
words replaced by other words, so word overlap alone does not decide (LCQMC is real Chinese question pairs). Model: [CLS] a [SEP] b [SEP] with segment
ids 0 then 1, a small BERT trained from scratch (the example fine-tunes BERT-wwm), pooler -> dropout 0.1 ->
Dense(2) as in the example. Metric: accuracy on pairs of meanings never seen in training.
"""
from __future__ import annotations

import argparse
import random

import torch

from kexue.compress import SequenceClassifier
from kexue.datasets import make_paraphrase_groups
from kexue.models import build_transformer_model
from kexue.ops import sequence_padding

# budget -> (meanings, lexicon size, steps, hidden size, layers)
BUDGETS = {"smoke": (60, 50, 3, 32, 1), "quick": (1500, 200, 1000, 64, 2), "full": (3000, 400, 4000, 128, 4)}


def make_pairs(groups, meanings: list[int], rng: random.Random, per_meaning: int = 1) -> list[tuple]:
    """(a, b, label, kind) pairs from the renderings of `meanings`: half paraphrases ("same"), a quarter
    renderings of another meaning ("other"), a quarter edited near misses ("near")."""
    by_group = {}
    for sentence, g in zip(groups.sentences, groups.groups):
        by_group.setdefault(g, []).append(sentence)
    content_tokens = [t for t, w in enumerate(groups.word_of_token) if w >= 0]
    pairs = []
    for g in meanings:
        for _ in range(per_meaning):
            a, b = rng.sample(by_group[g], 2)
            u = rng.random()
            if u < 0.5:
                pairs.append((a, b, 1, "same"))
            elif u < 0.75:
                pairs.append((a, rng.choice(by_group[rng.choice([h for h in meanings if h != g])]), 0, "other"))
            else:
                b = list(b)
                content = [i for i, t in enumerate(b) if groups.word_of_token[t] >= 0]
                for i in rng.sample(content, min(2, len(content))):
                    word = groups.word_of_token[b[i]]
                    while groups.word_of_token[b[i]] == word:      # a surface token of another word
                        b[i] = rng.choice(content_tokens)
                pairs.append((a, b, 0, "near"))
    return pairs


def encode(pairs: list[tuple], cls: int, sep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[CLS] a [SEP] b [SEP] ids, segment ids (0 for [CLS] a [SEP], 1 for b [SEP]) and labels."""
    ids = [[cls] + a + [sep] + b + [sep] for a, b, *_ in pairs]
    segments = [[0] * (len(a) + 2) + [1] * (len(b) + 1) for a, b, *_ in pairs]
    return sequence_padding(ids), sequence_padding(segments), torch.tensor([y for _, _, y, _ in pairs])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    args = parser.parse_args(argv)
    meanings, lexicon, steps, hidden, layers = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(0)
    rng = random.Random(0)
    groups = make_paraphrase_groups(meanings, lexicon, seed=0)
    split = int(0.9 * meanings)
    train_meanings = list(range(split))                                # fresh pairs drawn every step
    test = make_pairs(groups, list(range(split, meanings)), rng, per_meaning=4)
    print(f"data: synthetic paraphrase / near-miss pairs drawn from {split} meanings (lexicon {lexicon}), test "
          f"{len(test)} pairs of {meanings - split} unseen meanings; model: {layers}-layer d={hidden} BERT from "
          "scratch (example: BERT-wwm on LCQMC)")

    cls, sep = groups.vocab_size, groups.vocab_size + 1                  # two extra ids after the token ids
    bert = build_transformer_model(config=dict(model_type="bert", vocab_size=groups.vocab_size + 2,
                                               hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                               intermediate_size=2 * hidden, max_position_embeddings=64),
                                   with_pool=True)
    model = SequenceClassifier(bert, 2, pooling="pooler", dropout=0.1, initializer_range=0.02)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    for step in range(1, steps + 1):
        ids, segments, labels = encode(make_pairs(groups, rng.sample(train_meanings, min(64, split)), rng), cls, sep)
        loss = model(ids, segments, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    model.eval()
    with torch.no_grad():
        ids, segments, labels = encode(test, cls, sep)
        right = (model(ids, segments).logits.argmax(-1) == labels).tolist()
    accuracy = sum(right) / len(test)
    by_kind = {k: sum(r for r, p in zip(right, test) if p[3] == k) / max(1, sum(p[3] == k for p in test))
               for k in ("same", "other", "near")}
    print(f"test accuracy {accuracy:.4f} on {len(test)} pairs (chance 0.5); paraphrases {by_kind['same']:.4f}, "
          f"other meanings {by_kind['other']:.4f}, near misses {by_kind['near']:.4f}")
    return {"accuracy": accuracy, **{f"accuracy_{k}": v for k, v in by_kind.items()}}


if __name__ == "__main__":
    main()
