"""UniLM seq2seq on a BERT-style model (https://kexue.fm/archives/6933): source and target in one sequence, the
target under the UniLM mask, loss on the target tokens only (`kexue.nn.seq2seq_lm_loss`). The pieces the
seq2seq tasks share (title generation, QA-pair generation): encode a (source, target) pair, pad a batch, and a
short AdamW fine-tuning loop with a one-cycle learning rate."""
from __future__ import annotations

import random
from typing import Sequence

import torch
from torch import Tensor, nn

from .._validate import check_float, check_int
from ..nn import seq2seq_lm_loss
from ..ops import sequence_padding

__all__ = ["encode_seq2seq", "collate_seq2seq", "seq2seq_loss", "train_seq2seq"]

Example = tuple[Sequence[int], Sequence[int]]       # (token_ids, segment_ids)


def encode_seq2seq(tokenizer, source: str, target: str, max_source_len: int = 128,
                   max_target_len: int = 64) -> tuple[list[int], list[int]]:
    """`[CLS] source [SEP] target [SEP]` with segments 0...0 1...1, each part truncated to its cap (tokens)."""
    max_source_len = check_int("max_source_len", max_source_len, 1)
    max_target_len = check_int("max_target_len", max_target_len, 1)
    for name, text in (("source", source), ("target", target)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name} must be a non-empty str, got {text!r}")
    src, _ = tokenizer.encode(source, maxlen=max_source_len + 2)
    tgt, _ = tokenizer.encode(target, maxlen=max_target_len + 2)
    return list(src) + list(tgt[1:]), [0] * len(src) + [1] * (len(tgt) - 1)


def collate_seq2seq(examples: Sequence[Example], pad_id: int = 0) -> dict[str, Tensor]:
    """Right-padded batch of (token_ids, segment_ids): input_ids, segment_ids, attention_mask [B, n]."""
    if not examples:
        raise ValueError("collate_seq2seq needs at least one example")
    for k, (ids, seg) in enumerate(examples):
        if len(ids) != len(seg) or not ids:
            raise ValueError(f"example {k}: token_ids ({len(ids)}) and segment_ids ({len(seg)}) must be non-empty "
                             "and of one length")
    ids = torch.as_tensor(sequence_padding([list(e[0]) for e in examples], value=pad_id)).long()
    seg = torch.as_tensor(sequence_padding([list(e[1]) for e in examples], value=0)).long()
    mask = torch.as_tensor(sequence_padding([[1] * len(e[0]) for e in examples], value=0)).long()
    return {"input_ids": ids, "segment_ids": seg, "attention_mask": mask}


def seq2seq_loss(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The UniLM loss of `model` on a batch from `collate_seq2seq`."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    logits = model(batch["input_ids"], segment_ids=batch["segment_ids"], attention_mask=batch["attention_mask"]).logits
    return seq2seq_lm_loss(logits, batch["input_ids"], batch["segment_ids"], batch["attention_mask"])


def train_seq2seq(model: nn.Module, examples: Sequence[Example], *, steps: int, batch_size: int = 32,
                  lr: float = 1e-3, weight_decay: float = 0.01, warmup: float = 0.1, clip_grad_norm: float = 1.0,
                  pad_id: int = 0, seed: int = 0) -> list[float]:
    """Fine-tune a UniLM model in place: `steps` AdamW steps on random batches of `examples` (drawn by `seed`),
    one-cycle learning rate peaking at `lr` after `warmup` of the steps, gradient norm clipped. Returns the
    loss of every step; the model is left in eval mode."""
    if getattr(model, "application", None) != "unilm":
        raise ValueError("train_seq2seq needs a model built with application='unilm' (and with_mlm=True)")
    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0, low_open=True)
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    warmup = check_float("warmup", warmup, 0.0, 1.0, low_open=True, high_open=True)
    clip_grad_norm = check_float("clip_grad_norm", clip_grad_norm, 0.0, low_open=True)
    seed = check_int("seed", seed)
    examples = list(examples)
    collate_seq2seq(examples[:1], pad_id)                    # refuses an empty or malformed first example early
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    rng = random.Random(seed)
    losses = []
    model.train()
    for _ in range(steps):
        loss = seq2seq_loss(model, collate_seq2seq(rng.sample(examples, min(batch_size, len(examples))), pad_id))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train_seq2seq: the loss became {loss.item()} at step {len(losses)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses
