"""Named-entity recognition with BERT + CRF (bert4keras examples/task_sequence_labeling_ner_crf.py;
https://kexue.fm/archives/5542 for the CRF, https://kexue.fm/archives/6736 for fine-tuning BERT).

Data: kexue.datasets.ner_sentences, synthetic Chinese sentences with PER / LOC / ORG entities and BIO tags per
character; the test sentences hold only entity strings never drawn for training (the bert4keras example uses
the People's Daily corpus). Model: a small BERT trained from scratch (the example fine-tunes Chinese BERT-base),
a linear layer to the tag scores and `kexue.nn.CRF` (bert4keras: ConditionalRandomField with lr_multiplier
1000; here one learning rate). Metric: entity F1 (exact span and type).
"""
from __future__ import annotations

import argparse
import random

import torch
from torch import nn

from kexue.datasets import NER_TAGS, ner_sentences
from kexue.metrics import bio_entities, triple_f1
from kexue.models import build_transformer_model
from kexue.nn import CRF
from kexue.ops import sequence_padding
from kexue.tokenizers import Tokenizer, build_char_vocab

# budget -> (training sentences, test sentences, steps, hidden size, layers)
BUDGETS = {"smoke": (64, 16, 3, 32, 1), "quick": (3000, 300, 600, 64, 2), "full": (10000, 1000, 3000, 128, 4)}


class BertCRF(nn.Module):
    """BERT -> Dense(num_tags) emissions -> CRF, as in the bert4keras example."""

    def __init__(self, bert: nn.Module, num_tags: int):
        super().__init__()
        self.bert, self.dense, self.crf = bert, nn.Linear(bert.config.hidden_size, num_tags), CRF(num_tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dense(self.bert(ids).last_hidden_state)                    # [B, n, num_tags]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes on CPU")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny sizes (the test)")
    args = parser.parse_args(argv)
    n_train, n_test, steps, hidden, layers = BUDGETS["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.manual_seed(0)
    rng = random.Random(0)
    print(f"data: {n_train} synthetic NER sentences (PER/LOC/ORG, BIO), test {n_test} with unseen entity strings; "
          f"model: {layers}-layer d={hidden} BERT from scratch + CRF (example: pretrained BERT-base)")

    train, test = ner_sentences(n_train, "train", 0), ner_sentences(n_test, "test", 0)
    vocab = build_char_vocab([s.text for s in train], min_count=2)
    tokenizer = Tokenizer(vocab, char_level_mapping=True)                # [CLS] chars [SEP], one token per char
    tag_id = {t: i for i, t in enumerate(NER_TAGS)}

    def encode(s):                                                       # [CLS] and [SEP] are tagged O
        return tokenizer.encode(s.text)[0], [0] + [tag_id[t] for t in s.tags()] + [0]

    train_data = [encode(s) for s in train]
    bert = build_transformer_model(config=dict(model_type="bert", vocab_size=len(vocab), hidden_size=hidden,
                                               num_hidden_layers=layers, num_attention_heads=4,
                                               intermediate_size=2 * hidden, max_position_embeddings=64))
    model = BertCRF(bert, len(NER_TAGS))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    for step in range(1, steps + 1):
        batch = rng.sample(train_data, min(32, len(train_data)))
        ids = sequence_padding([x for x, _ in batch])
        tags = sequence_padding([y for _, y in batch])
        loss = model.crf(model(ids), tags, mask=ids != 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % max(1, steps // 5) == 0:
            print(f"step {step}: loss {loss.item():.4f}")

    model.eval()
    pred, gold = [], []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            chunk = test[i:i + 64]
            ids = sequence_padding([tokenizer.encode(s.text)[0] for s in chunk])
            for s, path in zip(chunk, model.crf.decode(model(ids), mask=ids != 0)):
                pred.append(set(bio_entities([NER_TAGS[t] for t in path[1:-1]])))
                gold.append(set(s.entities))
    f1, precision, recall = triple_f1(pred, gold)
    print("example:", test[0].text, "->", sorted((test[0].text[a:b + 1], t) for a, b, t in pred[0]))
    print(f"test entity F1 {f1:.4f} (precision {precision:.4f}, recall {recall:.4f})")
    return {"f1": f1, "precision": precision, "recall": recall}


if __name__ == "__main__":
    main()
