"""Masked-language-model pretraining, the step before BERT fine-tuning (https://kexue.fm/archives/6736; spec
nlp/02 section 4): BERT's 80/10/10 masking and a short AdamW + warm-up loop over a kexue BERT built with
`with_mlm=True`. The loop is step-counted (or, for a user at the command line, time-boxed) and seeded."""
from __future__ import annotations

import math
import time
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_float, check_int
from kexue.optim.schedule import PiecewiseLinearScheduler, linear_warmup_decay

__all__ = ["mlm_mask", "pretrain_mlm", "mlm_eval_loss"]

IGNORE_INDEX = -100


def _check_ids(name: str, ids: Tensor, vocab_size: int) -> None:
    if not isinstance(ids, Tensor) or ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64/int32 tensor of token ids, got {type(ids).__name__}"
                        + (f" of dtype {ids.dtype}" if isinstance(ids, Tensor) else ""))
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{name} holds ids in [{int(ids.min())}, {int(ids.max())}], outside [0, vocab_size="
                         f"{vocab_size})")


def _check_specials(special_ids: Iterable[int], vocab_size: int) -> list[int]:
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Iterable):
        raise TypeError(f"special_ids must be an iterable of token ids, got {special_ids!r}")
    out = [check_int(f"special_ids[{k}]", i, low=0, high=vocab_size - 1) for k, i in enumerate(special_ids)]
    if len(set(out)) >= vocab_size:
        raise ValueError(f"special_ids={out} cover the whole vocabulary (vocab_size={vocab_size}): no token "
                         "left to predict or to draw as a random replacement")
    return out


def mlm_mask(input_ids: Tensor, *, mask_id: int, vocab_size: int, special_ids: Iterable[int], rate: float = 0.15,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's masking: each non-special position is chosen with probability `rate`; a chosen token becomes
    [MASK] with probability 0.8, a random non-special token with 0.1, and stays itself with 0.1.

    input_ids [B, n] -> (masked_ids [B, n], labels [B, n]): labels hold the original id at chosen positions
    and -100 elsewhere (the `ignore_index` of cross-entropy). `special_ids` (pad, [CLS], [SEP], ...) are never
    chosen nor drawn as replacements.
    """
    vocab_size = check_int("vocab_size", vocab_size, low=2)
    mask_id = check_int("mask_id", mask_id, low=0, high=vocab_size - 1)
    rate = check_float("rate", rate, 0.0, 1.0, low_open=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    _check_ids("input_ids", input_ids, vocab_size)
    specials = _check_specials(special_ids, vocab_size)
    input_ids = input_ids.long()
    device = input_ids.device
    is_special = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    is_special[specials] = True
    draw = lambda: torch.rand(input_ids.shape, generator=generator, device=device)  # noqa: E731
    chosen = (draw() < rate) & ~is_special[input_ids]                                  # [B, n]
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    u = draw()
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)
    candidates = (~is_special).nonzero().squeeze(1)                                    # [V']
    pick = torch.randint(len(candidates), input_ids.shape, generator=generator, device=device)
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_id), input_ids)
    masked = torch.where(to_random, candidates[pick], masked)
    return masked, labels


def _batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, :len(r)] = True
    return ids, mask


def _mlm_loss(model: nn.Module, masked: Tensor, labels: Tensor, attention_mask: Tensor) -> Tensor:
    """Cross-entropy at the chosen positions; the MLM head runs on those ~15% of positions only."""
    head = model.mlm
    model.mlm = None  # the encoder alone: no [B, n, V] logits for the 85% of positions not predicted
    try:
        hidden = model(masked, attention_mask=attention_mask).last_hidden_state           # [B, n, C]
    finally:
        model.mlm = head
    chosen = labels != IGNORE_INDEX
    if not bool(chosen.any()):
        return hidden.sum() * 0.0  # nothing chosen in this batch: a zero loss, never a NaN
    logits = head(hidden[chosen])                                                        # [k, V]
    return F.cross_entropy(logits.float(), labels[chosen])


def _check_mlm_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a kexue BERT (nn.Module) built with with_mlm=True, got {type(model).__name__}")
    if getattr(model, "mlm", None) is None or not hasattr(model, "config"):
        raise ValueError("model has no MLM head: build it with build_transformer_model(..., with_mlm=True)")


def _check_rows(token_id_lists: Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(token_id_lists, (str, Tensor)) or not isinstance(token_id_lists, Sequence):
        raise TypeError("token_id_lists must be a list of token-id lists (one per text), got "
                        f"{type(token_id_lists).__name__}")
    rows = [list(r) for r in token_id_lists]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("token_id_lists must hold at least one non-empty list of token ids")
    return rows


def pretrain_mlm(model: nn.Module, token_id_lists: Sequence[Sequence[int]], *, mask_id: int,
                 special_ids: Iterable[int], steps: int | None = None, seconds: float | None = None,
                 batch_size: int = 32, lr: float = 5e-4, weight_decay: float = 0.01, warmup: float = 0.1,
                 rate: float = 0.15, pad_id: int = 0, clip_grad_norm: float | None = 1.0, seed: int = 0,
                 log_every: int = 0) -> dict[str, list[float]]:
    """MLM-pretrain `model` (a kexue BERT built with `with_mlm=True`) in place on `token_id_lists` (each a
    tokenised text, [CLS] ... [SEP]) with AdamW, linear warm-up over the first `warmup` fraction of the steps
    and linear decay to 0, fresh 80/10/10 masks each step, batches drawn at random.

    Give `steps` (repeatable: the same seed gives the same model on one machine) or `seconds` (a time box:
    warm-up over 100 x `warmup` steps, then a constant lr until the time is up; the result depends on the
    machine). Returns the history {"step": [...], "loss": [...], "lr": [...]}, one entry per step.
    """
    if (steps is None) == (seconds is None):
        raise ValueError(f"give exactly one of steps (a step count) or seconds (a time box), got steps={steps!r}, "
                         f"seconds={seconds!r}")
    if steps is not None:
        steps = check_int("steps", steps, low=1)
    else:
        seconds = check_float("seconds", seconds, 0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, low=1)
    lr = check_float("lr", lr, 0.0, low_open=True)
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    warmup = check_float("warmup", warmup, 0.0, 1.0)
    seed = check_int("seed", seed, low=0)
    log_every = check_int("log_every", log_every, low=0)
    if clip_grad_norm is not None:
        clip_grad_norm = check_float("clip_grad_norm", clip_grad_norm, 0.0, low_open=True)
    _check_mlm_model(model)
    vocab_size = model.config.vocab_size
    rows = _check_rows(token_id_lists)
    specials = sorted(set(_check_specials(special_ids, vocab_size)) | {check_int("pad_id", pad_id, low=0,
                                                                                high=vocab_size - 1)})
    check_int("mask_id", mask_id, low=0, high=vocab_size - 1)
    too_long = [len(r) for r in rows if len(r) > model.config.max_position]
    if too_long:
        raise ValueError(f"{len(too_long)} texts are longer ({max(too_long)} tokens) than the model's "
                         f"max_position={model.config.max_position}: truncate them first")
    for r in rows:
        if min(r) < 0 or max(r) >= vocab_size:
            raise ValueError(f"token_id_lists holds the id {min(r) if min(r) < 0 else max(r)}, outside "
                             f"[0, vocab_size={vocab_size})")

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    if steps is not None:
        scheduler = linear_warmup_decay(optimizer, min(int(warmup * steps), steps - 1), steps, final_ratio=0.0) \
            if steps > 1 else PiecewiseLinearScheduler(optimizer, {1: 1.0}, from_zero=False)
    else:  # a time box has no known length: warm up over 100 x warmup steps, then keep the lr
        scheduler = PiecewiseLinearScheduler(optimizer, {max(1, int(100 * warmup)): 1.0}, from_zero=warmup > 0)
    history: dict[str, list[float]] = {"step": [], "loss": [], "lr": []}
    start = time.perf_counter()
    model.train()
    with torch.random.fork_rng(devices=[]):  # dropout draws from a seeded stream; the caller's RNG is untouched
        torch.manual_seed(seed)
        step = 0
        while (step < steps) if steps is not None else (time.perf_counter() - start < seconds):
            index = torch.randint(len(rows), (batch_size,), generator=gen).tolist()
            ids, attention = _batch([rows[i] for i in index], pad_id)
            masked, labels = mlm_mask(ids, mask_id=mask_id, vocab_size=vocab_size, special_ids=specials,
                                      rate=rate, generator=gen)
            loss = _mlm_loss(model, masked.to(device), labels.to(device), attention.to(device))
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"MLM loss became {loss.item()} at step {step}: lower lr={lr}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            step += 1
            history["step"].append(step)
            history["loss"].append(loss.item())
            if log_every and step % log_every == 0:
                recent = history["loss"][-log_every:]
                print(f"mlm step {step}: loss {sum(recent) / len(recent):.3f}", flush=True)
    model.eval()
    return history


@torch.no_grad()
def mlm_eval_loss(model: nn.Module, token_id_lists: Sequence[Sequence[int]], *, mask_id: int,
                  special_ids: Iterable[int], rate: float = 0.15, pad_id: int = 0, batch_size: int = 64,
                  seed: int = 0) -> float:
    """Mean MLM cross-entropy over the masked positions of `token_id_lists`, with masks drawn from `seed`
    (the same seed masks the same positions for every model: a paired comparison)."""
    _check_mlm_model(model)
    rows = _check_rows(token_id_lists)
    batch_size = check_int("batch_size", batch_size, low=1)
    vocab_size = model.config.vocab_size
    specials = sorted(set(_check_specials(special_ids, vocab_size)) | {pad_id})
    gen = torch.Generator().manual_seed(check_int("seed", seed, low=0))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for b in range(0, len(rows), batch_size):
        ids, attention = _batch(rows[b:b + batch_size], pad_id)
        masked, labels = mlm_mask(ids, mask_id=mask_id, vocab_size=vocab_size, special_ids=specials, rate=rate,
                                  generator=gen)
        chosen = int((labels != IGNORE_INDEX).sum())
        if chosen:
            total += _mlm_loss(model, masked.to(device), labels.to(device), attention.to(device)).item() * chosen
            count += chosen
    model.train(was_training)
    if not count:
        raise ValueError("no position was masked in token_id_lists: give more or longer texts, or a higher rate")
    return total / count
