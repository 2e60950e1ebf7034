"""Span and triple extraction heads of 当Bert遇上Keras (https://kexue.fm/archives/6736), after the author's
bert_in_keras scripts:

- `SpanPointer` (subject_extract.py): one span per text, softmax pointers over positions for its start and
  end, the end constrained to start <= end; decoding takes the best valid pair exactly.
- `SubjectObjectExtractor` (relation_extract.py), "half-pointer, half-tagging": sigmoid start/end taggers
  find every subject; the sequence conditioned on one subject, H + (h_start + h_end) / 2, feeds sigmoid
  start/end taggers per predicate that find that subject's objects. Decoding pairs each start with the
  nearest end at or after it (objects: of the same predicate), with separate start / end thresholds.

Spans are (start, end) token indices, both inclusive; a triple is ((s_start, s_end), predicate, (o_start, o_end)).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_float, check_int

__all__ = ["SpanPointer", "SpanPointerOutput", "SubjectObjectExtractor", "ExtractorOutput", "pair_spans",
           "decode_triples", "predict_triples", "spo_training_batch", "Triple"]

Span = tuple[int, int]
Triple = tuple[Span, int, Span]


def _check_mask(mask: Tensor, shape: tuple[int, ...], name: str = "mask") -> Tensor:
    if not isinstance(mask, Tensor) or tuple(mask.shape) != shape:
        raise ValueError(f"{name} must be a tensor of shape {list(shape)}, got "
                         f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
    mask = mask.bool()
    if mask.numel() and not mask.any(-1).all():
        raise ValueError(f"every row of {name} needs at least one real (True) position")
    return mask


@dataclass
class SpanPointerOutput:
    start_logits: Tensor            # [B, n], -inf on padding
    end_logits: Tensor              # [B, n], -inf on padding
    loss: Tensor | None = None      # CE(start) + CE(end restricted to positions >= the gold start), batch mean


class SpanPointer(nn.Module):
    """Softmax pointers over positions: hidden [B, n, C] -> start / end logits [B, n] (subject_extract.py).

    Training: CE(start) + CE(end), where the end's softmax runs only over positions >= the gold start (the
    reference masks them with the cumulative sum of the start one-hot). Padding is -inf, never a large
    constant, so fp16 cannot overflow it."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(check_int("hidden_size", hidden_size, 1), 2)

    def forward(self, hidden: Tensor, mask: Tensor, start_labels: Tensor | None = None,
                end_labels: Tensor | None = None) -> SpanPointerOutput:
        """hidden [B, n, C], mask [B, n] (True / 1 = real token), start_labels / end_labels [B] positions."""
        B, n = hidden.shape[:2]
        mask = _check_mask(mask, (B, n))
        start, end = self.proj(hidden).unbind(-1)                                     # [B, n] each
        start = start.masked_fill(~mask, float("-inf"))
        end = end.masked_fill(~mask, float("-inf"))
        if (start_labels is None) != (end_labels is None):
            raise ValueError("pass both start_labels and end_labels, or neither")
        loss = None
        if start_labels is not None:
            for name, lab in (("start_labels", start_labels), ("end_labels", end_labels)):
                if lab.shape != (B,) or lab.is_floating_point():
                    raise ValueError(f"{name} must be positions of shape [{B}], got {lab.dtype} {tuple(lab.shape)}")
                if not ((lab >= 0) & (lab < n)).all() or not mask.gather(1, lab.clamp(0, n - 1)[:, None]).all():
                    raise ValueError(f"{name} must point at real tokens in [0, {n}), got {lab.tolist()}")
            if (end_labels < start_labels).any():
                raise ValueError(f"end_labels must be >= start_labels, got start {start_labels.tolist()} "
                                 f"and end {end_labels.tolist()}")
            before = torch.arange(n, device=hidden.device)[None] < start_labels[:, None]   # [B, n]
            loss = F.cross_entropy(start, start_labels) + \
                F.cross_entropy(end.masked_fill(before, float("-inf")), end_labels)
        return SpanPointerOutput(start, end, loss)

    @staticmethod
    def decode(start_logits: Tensor, end_logits: Tensor, mask: Tensor, max_len: int | None = None,
               forbidden: Tensor | None = None) -> list[Span | None]:
        """The span (s, e) maximising log p_start(s) + log p_end(e) with s <= e, both real tokens,
        e - s + 1 <= max_len and no `forbidden` position (e.g. punctuation never inside an answer) in
        [s, e]: exact, over all pairs. start/end_logits, mask, forbidden [B, n]. None for a row with no
        valid span. Ties go to the smallest s, then the smallest e."""
        if start_logits.dim() != 2 or end_logits.shape != start_logits.shape:
            raise ValueError(f"start_logits and end_logits must both be [B, n], got {tuple(start_logits.shape)} "
                             f"and {tuple(end_logits.shape)}")
        B, n = start_logits.shape
        mask = _check_mask(mask, (B, n))
        if start_logits.isnan().any() or end_logits.isnan().any():
            raise ValueError("start_logits / end_logits hold NaN; refusing to decode a span from them")
        if max_len is not None:
            max_len = check_int("max_len", max_len, 1)
        if forbidden is not None:
            forbidden = _check_mask_shape(forbidden, (B, n), "forbidden")
        ls = start_logits.float().masked_fill(~mask, float("-inf")).log_softmax(-1)        # [B, n]
        le = end_logits.float().masked_fill(~mask, float("-inf")).log_softmax(-1)
        pos = torch.arange(n, device=ls.device)
        width = pos[None, :] - pos[:, None]                                               # [n, n]: e - s
        valid = (width >= 0)[None] & mask[:, :, None] & mask[:, None, :]                  # [B, n, n]
        if max_len is not None:
            valid &= (width < max_len)[None]
        if forbidden is not None:
            c = torch.cumsum(forbidden.long(), -1)                                        # forbidden in [0, i]
            inside = c[:, None, :] - (c - forbidden.long())[:, :, None]                   # count in [s, e]
            valid &= inside == 0
        score = (ls[:, :, None] + le[:, None, :]).masked_fill(~valid, float("-inf")).flatten(1)
        best = score.argmax(-1)
        ok = torch.isfinite(score.gather(1, best[:, None]))[:, 0]
        return [(int(b) // n, int(b) % n) if k else None for b, k in zip(best.tolist(), ok.tolist())]


def _check_mask_shape(t: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    if not isinstance(t, Tensor) or tuple(t.shape) != shape:
        raise ValueError(f"{name} must be a tensor of shape {list(shape)}, got "
                         f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    return t.bool()


def _check_thresholds(name: str, th: Sequence[float]) -> tuple[float, float]:
    if not isinstance(th, (tuple, list)) or len(th) != 2:
        raise ValueError(f"{name} must be a pair (start, end) of probabilities, got {th!r}")
    return tuple(check_float(f"{name}[{i}]", t, 0.0, 1.0) for i, t in enumerate(th))


def pair_spans(start_probs: Tensor, end_probs: Tensor, thresholds: Sequence[float] = (0.5, 0.4)) -> list[Span]:
    """Spans from two taggers [n]: every position with start_probs > thresholds[0] (strictly) starts a span,
    ended by the nearest position e >= start with end_probs > thresholds[1]; starts without one are dropped.
    Several starts may share an end (overlapping spans)."""
    ts, te = _check_thresholds("thresholds", thresholds)
    starts = (start_probs > ts).nonzero().flatten().tolist()
    ends = (end_probs > te).nonzero().flatten().tolist()
    out = []
    for s in starts:
        e = next((e for e in ends if e >= s), None)
        if e is not None:
            out.append((s, e))
    return out


def decode_triples(subject_probs: Tensor, object_probs: Callable[[list[Span]], Tensor],
                   s_thresholds: Sequence[float] = (0.5, 0.4),
                   o_thresholds: Sequence[float] = (0.5, 0.4)) -> list[Triple]:
    """One text's triples: subjects from subject_probs [n, 2] (start, end) by `pair_spans`; then
    object_probs(subjects) -> [S, n, P, 2], each subject's object taggers, paired per predicate."""
    subjects = pair_spans(subject_probs[:, 0], subject_probs[:, 1], s_thresholds)
    _check_thresholds("o_thresholds", o_thresholds)
    if not subjects:
        return []
    probs = object_probs(subjects)                                                     # [S, n, P, 2]
    if probs.dim() != 4 or probs.shape[0] != len(subjects) or probs.shape[-1] != 2:
        raise ValueError(f"object_probs must return [S={len(subjects)}, n, P, 2], got {tuple(probs.shape)}")
    triples = set()
    for subject, op in zip(subjects, probs):
        for p in range(op.shape[1]):
            for obj in pair_spans(op[:, p, 0], op[:, p, 1], o_thresholds):
                triples.add((subject, p, obj))
    return sorted(triples)


@dataclass
class ExtractorOutput:
    subject_logits: Tensor                 # [B, n, 2]: start, end
    object_logits: Tensor | None = None    # [B, n, P, 2], given a subject_span
    loss: Tensor | None = None


def _masked_bce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """BCE summed over the trailing dims after [B, n], averaged over real tokens (bert_in_keras)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    bce = bce.flatten(2).sum(-1)                                                     # [B, n]
    m = mask.to(bce.dtype)
    return (bce * m).sum() / m.sum()


class SubjectObjectExtractor(nn.Module):
    """Half-pointer half-tagging SPO extractor on a kexue Transformer encoder (relation_extract.py).

    forward(input_ids, segment_ids, attention_mask, subject_span [B, 2], labels) -> ExtractorOutput;
    labels = {"subject": [B, n, 2] 0/1 start/end tags of every gold subject, "object": [B, n, P, 2] tags of
    the objects of `subject_span`, per predicate}; loss = masked-mean BCE of the subject start and end
    taggers + the same of the object taggers summed over predicates (the reference's four terms).

    prior: None keeps the taggers' zero bias (the reference's Dense); a probability p starts every tagger at
    p (bias log(p / (1 - p))), the usual prior init for sparse tags: from scratch, fewer steps are spent
    pushing every tag towards 0."""

    def __init__(self, backbone: nn.Module, num_predicates: int, fuse: str = "add_mean", prior: float | None = None):
        super().__init__()
        self.num_predicates = check_int("num_predicates", num_predicates, 1)
        self.fuse = check_choice("fuse", fuse, ("add_mean",))
        C = backbone.config.hidden_size
        self.backbone = backbone
        self.subject_head = nn.Linear(C, 2)
        self.object_head = nn.Linear(C, 2 * self.num_predicates)
        if prior is not None:
            prior = check_float("prior", prior, 0.0, 1.0, low_open=True, high_open=True)
            for head in (self.subject_head, self.object_head):
                nn.init.constant_(head.bias, math.log(prior / (1 - prior)))

    def encode(self, input_ids: Tensor, segment_ids: Tensor | None = None,
               attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Token states H [B, n, C] and the padding mask [B, n] (bool)."""
        if attention_mask is None:
            attention_mask = self.backbone.default_attention_mask(input_ids)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        H = self.backbone(input_ids, segment_ids, attention_mask).last_hidden_state
        return H, _check_mask(attention_mask, tuple(input_ids.shape), "attention_mask")

    def object_logits(self, H: Tensor, subject_span: Tensor) -> Tensor:
        """H [B, n, C] conditioned on subject_span [B, 2] by H + (h_start + h_end) / 2 -> [B, n, P, 2]."""
        B, n, C = H.shape
        if subject_span.shape != (B, 2) or subject_span.is_floating_point():
            raise ValueError(f"subject_span must be (start, end) positions [B, 2] = [{B}, 2], got "
                             f"{subject_span.dtype} {tuple(subject_span.shape)}")
        if not ((subject_span >= 0) & (subject_span < n)).all() or (subject_span[:, 1] < subject_span[:, 0]).any():
            raise ValueError(f"subject_span must hold 0 <= start <= end < {n}, got {subject_span.tolist()}")
        ends = H.gather(1, subject_span[:, :, None].expand(B, 2, C))                       # [B, 2, C]
        fused = H + ends.mean(1, keepdim=True)                                             # [B, n, C]
        return self.object_head(fused).view(B, n, self.num_predicates, 2)

    def forward(self, input_ids: Tensor, segment_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                subject_span: Tensor | None = None, labels: dict | None = None) -> ExtractorOutput:
        H, mask = self.encode(input_ids, segment_ids, attention_mask)
        B, n, _ = H.shape
        subject = self.subject_head(H)                                                     # [B, n, 2]
        obj = self.object_logits(H, subject_span) if subject_span is not None else None
        loss = None
        if labels is not None:
            if obj is None:
                raise ValueError("labels need the subject_span the object tags belong to")
            P = self.num_predicates
            for key, shape in (("subject", (B, n, 2)), ("object", (B, n, P, 2))):
                if not isinstance(labels, dict) or key not in labels or tuple(labels[key].shape) != shape:
                    got = tuple(labels[key].shape) if isinstance(labels, dict) and key in labels else "missing"
                    raise ValueError(f"labels[{key!r}] must be 0/1 tags of shape {list(shape)}, got {got}")
            loss = _masked_bce(subject, labels["subject"], mask) + _masked_bce(obj, labels["object"], mask)
        return ExtractorOutput(subject, obj, loss)

    @torch.no_grad()
    def extract(self, input_ids: Tensor, segment_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                s_thresholds: Sequence[float] = (0.5, 0.4),
                o_thresholds: Sequence[float] = (0.5, 0.4)) -> list[list[Triple]]:
        """Triples per row, token positions (see the module docstring): subjects where the start tagger
        > s_thresholds[0] and the nearest end >= it > s_thresholds[1]; then, for all subjects of a row in one
        batch, objects by the same rule with o_thresholds and the same predicate at start and end."""
        _check_thresholds("s_thresholds", s_thresholds)
        _check_thresholds("o_thresholds", o_thresholds)
        H, mask = self.encode(input_ids, segment_ids, attention_mask)
        m = mask[..., None].to(H.dtype)
        subject = torch.sigmoid(self.subject_head(H)) * m                                  # [B, n, 2]

        def objects_of(b: int) -> Callable[[list[Span]], Tensor]:
            def probs(spans: list[Span]) -> Tensor:
                S = len(spans)
                o = self.object_logits(H[b:b + 1].expand(S, -1, -1), torch.tensor(spans, device=H.device))
                return torch.sigmoid(o) * m[b:b + 1, :, :, None]                          # [S, n, P, 2]
            return probs
        return [decode_triples(subject[b], objects_of(b), s_thresholds, o_thresholds) for b in range(H.shape[0])]


def predict_triples(model: SubjectObjectExtractor, token_ids: Sequence[Sequence[int]], batch_size: int = 64,
                    pad_id: int = 0, **thresholds) -> list[list[Triple]]:
    """`model.extract` over a list of token-id lists, right-padded in batches of `batch_size`, in eval mode
    (the model's mode is restored); thresholds: s_thresholds / o_thresholds."""
    batch_size = check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(token_ids), batch_size):
            chunk = [list(x) for x in token_ids[i:i + batch_size]]
            n = max(map(len, chunk))
            ids = torch.tensor([x + [pad_id] * (n - len(x)) for x in chunk])
            out += model.extract(ids, attention_mask=ids != pad_id, **thresholds)
    finally:
        model.train(was_training)
    return out


def spo_training_batch(examples: Sequence[tuple[Sequence[int], Sequence[Triple]]], num_predicates: int,
                       rng: random.Random, pad_id: int = 0, sampling: str = "reference") -> dict:
    """A training batch from (token ids, triples at token positions) examples, each with >= 1 triple: the
    subject tags of every gold subject, one sampled subject per example and the object tags of the triples
    whose subject is the sampled (k1, k2). sampling "reference" (bert_in_keras): a random gold start k1, then
    a random gold end k2 >= k1, which need not end a subject starting at k1 (then no object tags: a negative
    example); "gold": a gold subject drawn uniformly. Returns input_ids, attention_mask [B, n], subject_span
    [B, 2], labels {"subject": [B, n, 2], "object": [B, n, P, 2]}."""
    P = check_int("num_predicates", num_predicates, 1)
    check_choice("sampling", sampling, ("reference", "gold"))
    if not examples:
        raise ValueError("spo_training_batch needs at least one example")
    n = max(len(ids) for ids, _ in examples)
    B = len(examples)
    ids = torch.full((B, n), pad_id, dtype=torch.long)
    subj = torch.zeros(B, n, 2)
    obj = torch.zeros(B, n, P, 2)
    span = torch.zeros(B, 2, dtype=torch.long)
    for b, (tokens, triples) in enumerate(examples):
        if not triples:
            raise ValueError(f"example {b} has no triple; the extractor trains on texts with at least one")
        ids[b, :len(tokens)] = torch.as_tensor(list(tokens))
        for (s0, s1), p, (o0, o1) in triples:
            if not (0 <= s0 <= s1 < len(tokens) and 0 <= o0 <= o1 < len(tokens) and 0 <= p < P):
                raise ValueError(f"example {b}: triple {((s0, s1), p, (o0, o1))} lies outside its {len(tokens)} "
                                 f"tokens or predicates [0, {P})")
            subj[b, s0, 0] = subj[b, s1, 1] = 1
        if sampling == "gold":
            k1, k2 = rng.choice(sorted({t[0] for t in triples}))
        else:
            k1 = rng.choice(sorted({t[0][0] for t in triples}))
            k2 = rng.choice(sorted(e for e in {t[0][1] for t in triples} if e >= k1))
        span[b] = torch.tensor([k1, k2])
        for (s0, s1), p, (o0, o1) in triples:
            if (s0, s1) == (k1, k2):
                obj[b, o0, p, 0] = obj[b, o1, p, 1] = 1
    mask = torch.zeros(B, n, dtype=torch.bool)
    for b, (tokens, _) in enumerate(examples):
        mask[b, :len(tokens)] = True
    return {"input_ids": ids, "attention_mask": mask, "subject_span": span,
            "labels": {"subject": subj, "object": obj}}
