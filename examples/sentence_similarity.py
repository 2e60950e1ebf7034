"""Sentence-pair classification with BERT: paraphrase or not (bert4keras examples/task_sentence_similarity_lcqmc.py;
https://kexue.fm/archives/6736).

Data: kexue.datasets.make_paraphrase_groups (synthetic sentences of token ids: a meaning's renderings use random
synonyms, swaps and fillers). A positive pair is two renderings of one meaning; a negative pair is a rendering
and a copy of another rendering of the same meaning with two content words replaced by other words, so word
overlap alone does not decide (LCQMC is real Chinese question pairs). Model: [CLS] a [SEP] b [SEP] with segment
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
BUDGETS = {"smoke": (60, 50, 3, 32, 1), "quick": (1500, 200, 800, 64, 2), "full": (3000, 400, 4000, 128, 4)}


def make_pairs(groups, meanings: range, rng: random.Random, per_meaning: int = 4) -> list[tuple]:
    """(a, b, label) pairs from the renderings of `meanings`: half paraphrases, half edited near-misses."""
    by_group = {}
    for sentence, g in zip(groups.sentences, groups.groups):
        by_group.setdefault(g, []).append(sentence)
    other_words = [t for t, w in enumerate(groups.word_of_token) if w >= 0]
    pairs = []
    for g in meanings:
        renderings = by_group[g]
        for _ in range(per_meaning):
            a, b = rng.sample(renderings, 2)
            if rng.random() < 0.5:
                pairs.append((a, b, 1))
                continue
            b = list(b)
            content = [i for i, t in enumerate(b) if groups.word_of_token[t] >= 0]
            for i in rng.sample(content, min(2, len(content))):
                word = groups.word_of_token[b[i]]
                while groups.word_of_token[b[i]] == word:          # a surface token of another word
                    b[i] = rng.choice(other_words)
            pairs.append((a, b, 0))
    return pairs


def encode(pairs: list[tuple], cls: int, sep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[CLS] a [SEP] b [SEP] ids, segment ids (0 for [CLS] a [SEP], 1 for b [SEP]) and labels."""
    ids = [[cls] + a + [sep] + b + [sep] for a, b, _ in pairs]
    segments = [[0] * (len(a) + 2) + [1] * (len(b) + 1) for a, b, _ in pairs]
    return sequence_padding(ids), sequence_padding(segments), torch.tensor([y for _, _, y in pairs])


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
    train, test = make_pairs(groups, range(split), rng), make_pairs(groups, range(split, meanings), rng)
    print(f"data: {len(train)} synthetic paraphrase / near-miss pairs ({split} meanings, lexicon {lexicon}), test "
          f"{len(test)} pairs of unseen meanings; model: {layers}-layer d={hidden} BERT from scratch "
          "(example: BERT-wwm on LCQMC)")

    cls, sep = groups.vocab_size, groups.vocab_size + 1                  # two extra ids after the token ids
    bert = build_transformer_model(config=dict(model_type="bert", vocab_size=groups.vocab_size + 2,
                                               hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                               intermediate_size=2 * hidden, max_position_embeddings=64),
                                   with_pool=True)
    model = SequenceClassifier(bert, 2, pooling="pooler", dropout=0.1, initializer_range=0.02)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    for step in range(1, steps + 1):
        ids, segments, labels = encode(rng.sample(train, min(64, len(train))), cls, sep)
        loss = model(ids, segments, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test), 256):
            ids, segments, labels = encode(test[i:i + 256], cls, sep)
            correct += int((model(ids, segments).logits.argmax(-1) == labels).sum())
    accuracy = correct / len(test)
    print(f"test accuracy {accuracy:.4f} on {len(test)} pairs (chance 0.5)")
    return {"accuracy": accuracy}


if __name__ == "__main__":
    main()
