"""Shared models for the IG tests: a tiny BERT classifier, trained on a synthetic marker task so that it
saturates (predicted probabilities near 1), as in spec nlp/12's CPU reproduction A."""
import pytest
import torch

import kexue
from kexue.compress import SequenceClassifier

PAD, CLS, SEP, MASK = 0, 1, 2, 3
POS = list(range(4, 9))          # positive markers
NEG = list(range(9, 14))         # negative markers
NEUTRAL = (14, 60)               # neutral token ids [14, 60)
TINY = dict(model_type="bert", vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=37, max_position_embeddings=32, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


def marker_batch(B: int, n: int = 8, generator: torch.Generator | None = None):
    """[CLS] w_1..w_n [SEP] with one marker at a random position; label 1 = positive marker. Returns ids
    [B, n+2], labels [B], marker positions [B]."""
    g = generator
    ids = torch.randint(*NEUTRAL, (B, n), generator=g)
    labels = torch.randint(0, 2, (B,), generator=g)
    which = torch.randint(0, 5, (B,), generator=g)
    marker = torch.where(labels.bool(), torch.tensor(POS)[which], torch.tensor(NEG)[which])
    pos = torch.randint(0, n, (B,), generator=g)
    ids[torch.arange(B), pos] = marker
    ids = torch.cat([torch.full((B, 1), CLS), ids, torch.full((B, 1), SEP)], 1)
    return ids, labels, pos + 1


@pytest.fixture(scope="package")
def trained_classifier():
    """A 2-layer d=32 BERT + pooler + linear head trained to 100% accuracy (60 Adam steps, ~2 s)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = SequenceClassifier(kexue.build_transformer_model(config=TINY, with_pool=True), num_classes=2)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(60):
        ids, labels, _ = marker_batch(32, generator=g)
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ids, labels, _ = marker_batch(256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        acc = (model(ids).logits.argmax(-1) == labels).float().mean().item()
    # measured over 5 seeds x ATEN_CPU_CAPABILITY in {default, avx2, avx512}: accuracy 1.000 every time,
    # smallest predicted probability 0.994 (the saturation the IG tests rely on)
    assert acc > 0.97, f"the fixture classifier did not learn the marker task (accuracy {acc})"
    return model
