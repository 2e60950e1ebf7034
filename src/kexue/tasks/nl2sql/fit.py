"""Training and evaluation loops of the NL2SQL baseline (https://kexue.fm/archives/6771) on examples in the
competition's format ({"question", "table_id", "sql"}), shared by the example script and the experiment."""
from __future__ import annotations

import random
from typing import Mapping, Sequence

import torch

from kexue._validate import check_float, check_int

from .decoder import NL2SQLDecoder
from .encoder import NL2SQLEncoder
from .execute import execution_match
from .model import NL2SQLModel
from .query import SQLQuery, Table, logic_form_match

__all__ = ["encode_examples", "train_nl2sql", "predict_nl2sql", "predict_nl2sql_ablation", "nl2sql_scores"]


def encode_examples(encoder: NL2SQLEncoder, examples: Sequence[Mapping], tables: Mapping[str, Table]) -> list[dict]:
    """`encoder.encode` of each example with its gold SQL (labels included)."""
    return [encoder.encode(e["question"], tables[e["table_id"]].headers, SQLQuery.from_dict(e["sql"]))
            for e in examples]


def train_nl2sql(model: NL2SQLModel, encoder: NL2SQLEncoder, items: Sequence[dict], steps: int,
                 batch_size: int = 32, lr: float = 1e-3, warmup: float = 0.1, seed: int = 0) -> list[float]:
    """Adam on the summed loss for `steps` batches drawn by a seeded shuffle; the learning rate rises linearly
    over the first `warmup` fraction of the steps, then decays linearly to lr / 5 (the reference: one epoch
    0 -> 5e-5, one epoch down to 1e-5, then constant). Returns the loss of each step."""
    check_int("steps", steps, low=1)
    check_int("batch_size", batch_size, low=1)
    check_float("lr", lr, 0.0, low_open=True)
    check_float("warmup", warmup, 0.0, 1.0)
    if not items:
        raise ValueError("train_nl2sql needs at least one encoded example")
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_warm = max(1, round(warmup * steps))
    scale = lambda s: (s + 1) / n_warm if s < n_warm else 1 - 0.8 * (s - n_warm) / max(1, steps - n_warm)  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, scale)
    order: list[int] = []
    losses = []
    model.train()
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(items)))
            rng.shuffle(fresh)
            order += fresh
        batch = encoder.collate([items[i] for i in order[:batch_size]])
        del order[:batch_size]
        loss = model(**batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def predict_nl2sql(model: NL2SQLModel, encoder: NL2SQLEncoder, decoder: NL2SQLDecoder,
                   examples: Sequence[Mapping], tables: Mapping[str, Table], batch_size: int = 64) -> list[SQLQuery]:
    """The decoded query of each example."""
    return predict_nl2sql_ablation(model, encoder, {"": decoder}, examples, tables, batch_size)[""]


@torch.no_grad()
def predict_nl2sql_ablation(model: NL2SQLModel, encoder: NL2SQLEncoder, decoders: Mapping[str, NL2SQLDecoder],
                            examples: Sequence[Mapping], tables: Mapping[str, Table],
                            batch_size: int = 64) -> dict[str, list[SQLQuery]]:
    """{name: the query of each example decoded by that decoder}, from one forward pass per batch."""
    check_int("batch_size", batch_size, low=1)
    if not decoders or not all(isinstance(d, NL2SQLDecoder) for d in decoders.values()):
        raise TypeError(f"decoders must be a non-empty mapping of names to NL2SQLDecoder, got {decoders!r}")
    was_training = model.training
    model.eval()
    preds: dict[str, list[SQLQuery]] = {name: [] for name in decoders}
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        batch = encoder.collate([encoder.encode(e["question"], tables[e["table_id"]].headers) for e in chunk])
        out = model(**batch)
        for name, decoder in decoders.items():
            preds[name] += [decoder.decode(out, e["question"], tables[e["table_id"]], index=b)
                            for b, e in enumerate(chunk)]
    model.train(was_training)
    return preds


def nl2sql_scores(preds: Sequence[SQLQuery], examples: Sequence[Mapping],
                  tables: Mapping[str, Table]) -> dict[str, float]:
    """logic_form_acc and execution_acc (the competition's two scores) and their mean."""
    if len(preds) != len(examples) or not examples:
        raise ValueError(f"preds and examples must be equally long and non-empty, got {len(preds)}, {len(examples)}")
    golds = [SQLQuery.from_dict(e["sql"]) for e in examples]
    lf = sum(logic_form_match(p, g) for p, g in zip(preds, golds)) / len(golds)
    ex = sum(execution_match(p, g, tables[e["table_id"]]) for p, g, e in zip(preds, golds, examples)) / len(golds)
    return {"logic_form_acc": lf, "execution_acc": ex, "score": (lf + ex) / 2}
