"""Non-autoregressive reading comprehension by filling fixed [MASK] answer slots (https://kexue.fm/archives/7148).

Input `[CLS] [MASK]*L [SEP] question [SEP] passage [SEP]`; one MLM pass gives independent distributions for the
L slots; decoding walks the slots left to right, allowing only tokens that continue the current prefix somewhere
in the passage (or the end token), so every answer is a contiguous passage substring. Several passages vote with
S(a) = sum(s^2) / (sum(s) + 1). bert4keras `task_reading_comprehension_by_mlm.py` in PyTorch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_int
from ..ops import sequence_padding
from .limits import check_token_id, check_token_ids

__all__ = ["NgramIndex", "passage_constrained_decode", "vote_answers", "MLMSlotReader", "SlotReaderOutput"]


class NgramIndex:
    """Which tokens follow a given token prefix somewhere in the passage (built once per passage)."""

    def __init__(self, passage_ids: Sequence[int]):
        self.passage = check_token_ids("passage_ids", passage_ids, None)

    def next_tokens(self, prefix: Sequence[int]) -> set[int]:
        """Tokens that follow `prefix` in the passage; every passage token for an empty prefix; empty set if
        the prefix never occurs (or only at the very end)."""
        p, n = self.passage, len(prefix)
        prefix = list(prefix)
        return {p[i + n] for i in range(len(p) - n) if p[i:i + n] == prefix}


def passage_constrained_decode(slot_probs: Tensor, index: NgramIndex, end_id: int,
                               min_len: int = 0) -> tuple[list[int], float]:
    """slot_probs [L, V] -> (answer ids without end_id, score). Slot i picks the most probable token among those
    continuing the prefix in the passage plus end_id (end_id only once the answer has `min_len` tokens, or
    when nothing else is allowed). Score = mean of the chosen raw probabilities, the end slot included."""
    if not isinstance(slot_probs, Tensor) or slot_probs.dim() != 2 or 0 in slot_probs.shape:
        raise ValueError(f"slot_probs must be a non-empty [L, V] tensor, got shape "
                         f"{tuple(getattr(slot_probs, 'shape', ()))}")
    probs = slot_probs.float()
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise ValueError("slot_probs must be finite probabilities >= 0 (got NaN, inf or negative values)")
    V = probs.shape[1]
    end_id = check_token_id("end_id", end_id, V, allow_none=False)
    min_len = check_int("min_len", min_len, 0)
    check_token_ids("passage_ids", index.passage, V)
    answer: list[int] = []
    chosen: list[float] = []
    for i in range(probs.shape[0]):
        allowed = index.next_tokens(answer) - {end_id}
        if len(answer) >= min_len or not allowed:
            allowed.add(end_id)
        ids = torch.tensor(sorted(allowed), dtype=torch.long)
        j = int(probs[i, ids].argmax())
        tok = int(ids[j])
        chosen.append(float(probs[i, tok]))
        if tok == end_id:
            break
        answer.append(tok)
    return answer, sum(chosen) / len(chosen)


def vote_answers(cands: Iterable[tuple[Hashable, float]],
                 rule: Literal["sq_over_sum_plus_one", "max", "sum"] = "sq_over_sum_plus_one") -> dict:
    """Merge per-passage (answer, score) proposals: S(a) = sum s^2 / (sum s + 1) by default; empty answers
    (``""``, ``()``, ``[]``, None) are ignored."""
    check_choice("rule", rule, ("sq_over_sum_plus_one", "max", "sum"))
    groups: dict = {}
    for a, s in cands:
        if a is None or len(a) == 0:
            continue
        s = float(s)
        if not math.isfinite(s) or (rule == "sq_over_sum_plus_one" and s < 0):
            need = "finite and >= 0" if rule == "sq_over_sum_plus_one" else "finite"
            raise ValueError(f"vote scores must be {need} (rule={rule!r}), got {s!r} for answer {a!r}")
        groups.setdefault(a if isinstance(a, Hashable) else tuple(a), []).append(s)
    if rule == "max":
        return {a: max(v) for a, v in groups.items()}
    if rule == "sum":
        return {a: sum(v) for a, v in groups.items()}
    return {a: sum(x * x for x in v) / (sum(v) + 1) for a, v in groups.items()}


def _argmax_decode(slot_probs: Tensor, index: NgramIndex, end_id: int, min_len: int = 0) -> tuple[list[int], float]:
    """Unconstrained: the most probable token of each slot until end_id (not before `min_len` tokens);
    score = mean chosen probability, the end slot included. `index` is unused (same signature)."""
    answer, chosen = [], []
    for row in slot_probs.float():
        if len(answer) < min_len:
            row = row.clone()
            row[end_id] = -1.0
        tok = int(row.argmax())
        chosen.append(float(slot_probs[len(chosen), tok]))
        if tok == end_id:
            break
        answer.append(tok)
    return answer, sum(chosen) / len(chosen)


@dataclass
class SlotReaderOutput:
    slot_logits: Tensor                # [B, num_slots, V]
    loss: Tensor | None = None


class MLMSlotReader(nn.Module):
    """An MLM (`mlm_model(input_ids, segment_ids=..., attention_mask=...)` returning logits [B, n, V] or an
    object with `.logits`) read at the answer slots (https://kexue.fm/archives/7148)."""

    def __init__(self, mlm_model: nn.Module, mask_id: int, sep_id: int, cls_id: int, num_slots: int = 32,
                 pad_id: int = 0):
        super().__init__()
        num_slots = check_int("num_slots", num_slots, 1)
        mask_id, sep_id, cls_id, pad_id = (check_token_id(n, v, None, allow_none=False) for n, v in (
            ("mask_id", mask_id), ("sep_id", sep_id), ("cls_id", cls_id), ("pad_id", pad_id)))
        self.mlm, self.num_slots = mlm_model, num_slots
        self.mask_id, self.sep_id, self.cls_id, self.pad_id = mask_id, sep_id, cls_id, pad_id

    def build_inputs(self, question_ids: Sequence[int], passage_ids: Sequence[int], max_q: int = 64,
                     max_p: int = 256, answer_ids: Sequence[int] | None = None) -> dict[str, list[int]]:
        """`[CLS] [MASK]*L [SEP] q [SEP] p [SEP]` (q, p without specials, truncated), segment ids all 0, and
        with answer_ids the slot targets: answer (cut to L - 1) + [SEP], padded with pad_id."""
        max_q, max_p = check_int("max_q", max_q, 0), check_int("max_p", max_p, 0)
        q = check_token_ids("question_ids", question_ids, None)[:max_q]
        p = check_token_ids("passage_ids", passage_ids, None)[:max_p]
        ids = [self.cls_id] + [self.mask_id] * self.num_slots + [self.sep_id] + q + [self.sep_id] + p + [self.sep_id]
        out = {"input_ids": ids, "segment_ids": [0] * len(ids), "passage_ids": p}
        if answer_ids is not None:
            a = list(answer_ids)[:self.num_slots - 1] + [self.sep_id]
            out["answer_ids"] = a + [self.pad_id] * (self.num_slots - len(a))
        return out

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, segment_ids: Tensor | None = None,
                answer_ids: Tensor | None = None) -> SlotReaderOutput:
        """input_ids [B, n] -> slot logits [B, L, V]; with answer_ids [B, L] the CE over non-pad slots."""
        if input_ids.dim() != 2 or input_ids.shape[1] < self.num_slots + 2:
            raise ValueError(f"input_ids must be [B, n] with n >= num_slots + 2 = {self.num_slots + 2}, "
                             f"got {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = (input_ids != self.pad_id).long()
        out = self.mlm(input_ids, segment_ids=segment_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", out)[:, 1:self.num_slots + 1]                 # [B, L, V]
        loss = None
        if answer_ids is not None:
            keep = answer_ids != self.pad_id                                          # [B, L]
            loss = F.cross_entropy(logits[keep].float(), answer_ids[keep])
        return SlotReaderOutput(logits, loss)

    @torch.no_grad()
    def answer(self, question_ids: Sequence[int], passages: Sequence[Sequence[int]], max_q: int = 64,
               max_p: int = 256, min_len: int = 0, constrained: bool = True) -> tuple[tuple[int, ...], float]:
        """One batched MLM pass over all passages, constrained decoding per passage, then voting.
        Returns (answer ids, vote score); ((), 0.0) when no passage proposes an answer.
        constrained=False: plain argmax per slot up to the first end token (the ablation of the article)."""
        if len(passages) == 0:
            raise ValueError("passages must hold at least one passage, got none")
        built = [self.build_inputs(question_ids, p, max_q, max_p) for p in passages]
        ids = sequence_padding([b["input_ids"] for b in built], value=self.pad_id)
        mask = sequence_padding([[1] * len(b["input_ids"]) for b in built])
        probs = self(ids, mask, torch.zeros_like(ids)).slot_logits.float().softmax(-1)  # [P, L, V]
        decode = passage_constrained_decode if check_bool("constrained", constrained) else _argmax_decode
        cands = [decode(pr, NgramIndex(b["passage_ids"]), self.sep_id, min_len) for pr, b in zip(probs, built)]
        votes = vote_answers((tuple(a), s) for a, s in cands)
        if not votes:
            return (), 0.0
        best = max(votes, key=votes.get)
        return best, votes[best]
