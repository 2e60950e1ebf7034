"""Training and reading loops for MLM reading comprehension (https://kexue.fm/archives/7148, bert4keras
`task_reading_comprehension_by_mlm.py`): the model is `kexue.generation.MLMSlotReader`; a question comes with
several passages, each step trains on one randomly chosen passage per question (target: the answer when that
passage holds it, else the empty answer, i.e. [SEP] in slot 1), and reading votes over all passages.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .._validate import check_bool, check_float, check_int
from ..generation import MLMSlotReader
from ..ops import sequence_padding

__all__ = ["ReadingExample", "reading_examples", "slot_reader_batch", "train_slot_reader", "read_answers"]


@dataclass(frozen=True)
class ReadingExample:
    """Token ids of one question, its passages, and the answer each passage supports ([] when none)."""
    question_ids: list[int]
    passage_ids: list[list[int]]
    answer_ids: list[list[int]]


def reading_examples(questions, encode: Callable[[str], list[int]]) -> list[ReadingExample]:
    """`kexue.datasets.FactQuestion`s (question, passages, answers, answer_passage) -> ReadingExamples,
    texts turned into token ids by `encode` (no [CLS]/[SEP])."""
    out = []
    for q in questions:
        gold = encode(q.answers[0]) if q.answers else []
        out.append(ReadingExample(encode(q.question), [encode(p) for p in q.passages],
                                  [gold if k == q.answer_passage else [] for k in range(len(q.passages))]))
    return out


def slot_reader_batch(reader: MLMSlotReader, triples: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]],
                      max_q: int = 64, max_p: int = 256) -> dict[str, torch.Tensor]:
    """(question ids, passage ids, answer ids) triples -> padded input_ids, attention_mask, segment_ids [B, n]
    and answer_ids [B, num_slots] for `reader(**batch)`."""
    if len(triples) == 0:
        raise ValueError("triples must hold at least one (question, passage, answer) triple, got none")
    built = [reader.build_inputs(q, p, max_q, max_p, answer_ids=a) for q, p, a in triples]
    ids = sequence_padding([b["input_ids"] for b in built], value=reader.pad_id)
    return {"input_ids": ids, "attention_mask": sequence_padding([[1] * len(b["input_ids"]) for b in built]),
            "segment_ids": torch.zeros_like(ids), "answer_ids": torch.tensor([b["answer_ids"] for b in built])}


def train_slot_reader(reader: MLMSlotReader, examples: Sequence[ReadingExample], *, steps: int,
                      batch_size: int = 32, lr: float = 1e-4, seed: int = 0, max_q: int = 64, max_p: int = 256,
                      clip_grad_norm: float = 1.0) -> list[float]:
    """Adam on the slot cross-entropy; each step draws `batch_size` questions and one passage of each.
    Seeded (batches and dropout); returns the loss per step."""
    steps, batch_size = check_int("steps", steps, 1), check_int("batch_size", batch_size, 1)
    lr, seed = check_float("lr", lr, 0.0, low_open=True), check_int("seed", seed, 0)
    clip_grad_norm = check_float("clip_grad_norm", clip_grad_norm, 0.0, low_open=True)
    if len(examples) == 0:
        raise ValueError("examples must hold at least one ReadingExample, got none")
    rng, losses = random.Random(seed), []
    opt = torch.optim.Adam(reader.parameters(), lr=lr)
    reader.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            triples = []
            for ex in (rng.choice(examples) for _ in range(batch_size)):
                k = rng.randrange(len(ex.passage_ids))
                triples.append((ex.question_ids, ex.passage_ids[k], ex.answer_ids[k]))
            loss = reader(**slot_reader_batch(reader, triples, max_q, max_p)).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reader.parameters(), clip_grad_norm)
            opt.step()
            losses.append(loss.item())
    reader.eval()
    return losses


@torch.no_grad()
def read_answers(reader: MLMSlotReader, examples: Sequence[ReadingExample], *, constrained: bool = True,
                 max_q: int = 64, max_p: int = 256) -> list[tuple[tuple[int, ...], float]]:
    """(answer ids, vote score) per question: one MLM pass over its passages, (un)constrained slot decoding,
    voting S = sum s^2 / (sum s + 1); ((), 0.0) when every passage proposes the empty answer."""
    constrained = check_bool("constrained", constrained)
    reader.eval()
    return [reader.answer(ex.question_ids, ex.passage_ids, max_q, max_p, constrained=constrained)
            for ex in examples]
