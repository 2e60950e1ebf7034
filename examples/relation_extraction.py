"""SPO triple extraction with BERT + the "half-pointer, half-tagging" head (bert4keras
examples/task_relation_extraction.py; https://kexue.fm/archives/6736 and bert_in_keras relation_extract.py).

Data: kexue.datasets.spo_sentences, synthetic Chinese sentences with 5 predicates and 1-3 triples each; the test
sentences use clause patterns and entity strings never seen in training. Model: a small BERT trained from
scratch (the article fine-tunes Chinese BERT-base on the 2019 Baidu data, 50 predicates). Metric: micro F1 of
exact triples.
"""
from __future__ import annotations

import argparse
import random

import torch

from kexue.datasets import PREDICATES, spo_sentences
from kexue.metrics import triple_f1
from kexue.models import build_transformer_model
from kexue.tasks import SubjectObjectExtractor, spo_training_batch
from kexue.tasks.extraction import predict_triples
from kexue.tokenizers import Tokenizer, build_char_vocab
from kexue.train import linear_warmup_decay

# budget -> (training sentences, test sentences, steps, hidden size, layers)
BUDGETS = {"smoke": (64, 16, 3, 32, 1), "quick": (3000, 300, 1500, 64, 2), "full": (8000, 1000, 4000, 128, 4)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    args = parser.parse_args(argv)
    n_train, n_test, steps, hidden, layers = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(0)
    rng = random.Random(0)
    print(f"data: {n_train} synthetic SPO sentences (5 predicates), test {n_test} with held-out templates and "
          f"unseen entities; model: {layers}-layer d={hidden} BERT from scratch (article: pretrained BERT-base)")

    train, test = spo_sentences(n_train, "train", 0), spo_sentences(n_test, "test", 0)
    vocab = build_char_vocab([s.text for s in train], min_count=2)
    tokenizer = Tokenizer(vocab, char_level_mapping=True)         # [CLS] chars [SEP]: char k is token k + 1
    train_data = [(tokenizer.encode(s.text)[0], s.token_triples()) for s in train]
    test_ids = [tokenizer.encode(s.text)[0] for s in test]

    bert = build_transformer_model(config=dict(model_type="bert", vocab_size=len(vocab), hidden_size=hidden,
                                               num_hidden_layers=layers, num_attention_heads=4,
                                               intermediate_size=2 * hidden, max_position_embeddings=64))
    model = SubjectObjectExtractor(bert, num_predicates=len(PREDICATES), prior=0.05)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = linear_warmup_decay(optimizer, max(1, steps // 10), steps, final_ratio=0.1)

    for step in range(1, steps + 1):
        batch = spo_training_batch(rng.sample(train_data, min(32, len(train_data))), len(PREDICATES), rng,
                                   sampling="gold")
        loss = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                     subject_span=batch["subject_span"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    predicted = predict_triples(model, test_ids)
    f1, precision, recall = triple_f1([set(p) for p in predicted], [set(s.token_triples()) for s in test])
    s = test[0]                                                   # token k is char k - 1
    print("example:", s.text, "->", sorted((s.text[a - 1:b], PREDICATES[q], s.text[c - 1:d])
                                           for (a, b), q, (c, d) in predicted[0]))
    print(f"test triple F1 {f1:.4f} (precision {precision:.4f}, recall {recall:.4f})")
    return {"f1": f1, "precision": precision, "recall": recall}


if __name__ == "__main__":
    main()
