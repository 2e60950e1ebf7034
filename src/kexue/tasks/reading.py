"""Extractive reading comprehension with a DGCNN reader (https://kexue.fm/archives/5409, Keras version
https://kexue.fm/archives/6906): a mixed char-word embedding, a dilated gated CNN over the question pooled by
attention, a dilated gated CNN over the passage conditioned on the question, and "half-pointer, half-tagging"
heads: start_t = a * sigmoid(w_s^T h_t), end_t = a * sigmoid(w_e^T h_t), a = sigmoid(w^T p) the passage's
answerability, trained with a per-position binary focal loss. Spans are read off with `extract_spans` and
passages vote with `kexue.generation.vote_answers`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_float, check_int
from ..nn import DGCNN, AttentionPooling1d

__all__ = ["MixedCharWordEmbedding", "align_word_ids", "DGCNNReader", "ReaderOutput", "span_focal_loss",
           "extract_spans", "span_answers", "PlainDilatedConv1d"]


class MixedCharWordEmbedding(nn.Module):
    """e_t = CharEmb(c_t) + W_w w2v(word containing c_t), W_w without bias (https://kexue.fm/archives/6906).
    word_vectors [num_words, e]: row 0 is the unknown word and is used as the zero vector."""

    def __init__(self, num_chars: int, dim: int, word_vectors: Tensor, freeze_word_vectors: bool = True):
        super().__init__()
        num_chars, dim = check_int("num_chars", num_chars, 1), check_int("dim", dim, 1)
        if not isinstance(word_vectors, Tensor) or word_vectors.dim() != 2 or word_vectors.shape[0] < 1:
            raise ValueError(f"word_vectors must be a [num_words >= 1, e] tensor, got "
                             f"{tuple(getattr(word_vectors, 'shape', ()))}")
        if not bool(torch.isfinite(word_vectors).all()):
            raise ValueError("word_vectors must be finite (got NaN or inf)")
        vectors = word_vectors.detach().float().clone()
        vectors[0] = 0.0                                                     # unknown word -> zero vector
        self.chars = nn.Embedding(num_chars, dim)
        self.words = nn.Embedding.from_pretrained(vectors, freeze=freeze_word_vectors, padding_idx=0)
        self.word_proj = nn.Linear(vectors.shape[1], dim, bias=False)
        self.dim = dim

    def forward(self, char_ids: Tensor, char_word_ids: Tensor) -> Tensor:
        """char_ids, char_word_ids [B, n] (the word index of the word holding each char) -> [B, n, dim]."""
        if char_ids.shape != char_word_ids.shape:
            raise ValueError(f"char_word_ids must match char_ids {tuple(char_ids.shape)}, got "
                             f"{tuple(char_word_ids.shape)}")
        return self.chars(char_ids) + self.word_proj(self.words(char_word_ids))


def align_word_ids(words: Sequence[str], word_index: Mapping[str, int]) -> list[int]:
    """One word id per character: each word's id (0 when unknown) repeated len(word) times."""
    return [word_index.get(w, 0) for w in words for _ in w]


class PlainDilatedConv1d(nn.Module):
    """The ungated control of the article's block: Y = (X + ReLU(Conv1d_{k, r}(X M))) M."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1):
        super().__init__()
        channels = check_int("channels", channels, 1)
        if check_int("kernel_size", kernel_size, 1) % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 1 (symmetric 'same' padding), got {kernel_size!r}")
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=check_int("dilation", dilation, 1),
                              padding="same")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        m = 1.0 if mask is None else mask[..., None].to(x.dtype)             # [B, n, 1]
        x = x * m
        return (x + torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2))) * m


class _Stack(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for b in self.blocks:
            x = b(x, mask)
        return x


def _encoder(dim: int, dilations: Sequence[int], block: str, kernel_size: int, gate_dropout: float | None):
    if block == "gated":
        return DGCNN(dim, dilations, kernel_size=kernel_size, gate_dropout=gate_dropout)
    if len(dilations) == 0:
        raise ValueError("dilations must hold at least one dilation, got an empty sequence")
    return _Stack([PlainDilatedConv1d(dim, kernel_size, d) for d in dilations])


def span_focal_loss(probs: Tensor, targets: Tensor, mask: Tensor | None = None, alpha: float = 0.25,
                    gamma: float = 2.0, scale: float = 1.0, eps: float = 1e-8) -> Tensor:
    """-alpha y (1-p)^gamma log p - (1-alpha) (1-y) p^gamma log(1-p) on probabilities clipped to [eps, 1-eps],
    averaged over real positions, times `scale` (the reference uses 100). probs, targets, mask [B, n]."""
    if probs.shape != targets.shape or (mask is not None and mask.shape != probs.shape):
        raise ValueError(f"probs, targets and mask must share one shape, got {tuple(probs.shape)}, "
                         f"{tuple(targets.shape)}, {None if mask is None else tuple(mask.shape)}")
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    gamma, scale = check_float("gamma", gamma, 0.0), check_float("scale", scale, 0.0)
    eps = check_float("eps", eps, 0.0, 0.5, low_open=True, high_open=True)
    y = targets.to(probs.dtype)
    if bool(((y != 0) & (y != 1)).any()):
        raise ValueError("targets must hold only 0/1")
    eps = max(eps, torch.finfo(probs.dtype).eps)                          # 1 - eps must stay below 1
    p = probs.clamp(eps, 1 - eps)
    loss = torch.where(y > 0, -alpha * (1 - p).pow(gamma) * p.log(), -(1 - alpha) * p.pow(gamma) * (1 - p).log())
    m = torch.ones_like(y) if mask is None else mask.to(y.dtype)
    return scale * (loss * m).sum() / m.sum().clamp_min(1)


@dataclass
class ReaderOutput:
    start_probs: Tensor                # [B, n_p]  a * sigmoid(w_s^T h_t), 0 on pads
    end_probs: Tensor                  # [B, n_p]
    answerable: Tensor                 # [B]       a = sigmoid(w^T p)
    loss: Tensor | None = None


class DGCNNReader(nn.Module):
    """The DGCNN reading-comprehension model (https://kexue.fm/archives/5409, spec nlp/07).

    `embedding` maps the inputs (a tensor, or a tuple of tensors such as (char_ids, char_word_ids) for
    `MixedCharWordEmbedding`) to [B, n, dim]. `block="plain"` swaps every gated block for `PlainDilatedConv1d`
    (the article's ablation)."""

    def __init__(self, embedding: nn.Module, dim: int = 128, q_dilations: Sequence[int] = (1, 2, 1),
                 p_dilations: Sequence[int] = (1, 2, 4, 8, 16, 1), gate_dropout: float | None = 0.1,
                 dropout: float = 0.1, block: str = "gated", kernel_size: int = 3, focal_alpha: float = 0.25,
                 focal_gamma: float = 2.0, loss_scale: float = 100.0):
        super().__init__()
        dim = check_int("dim", dim, 1)
        block = check_choice("block", block, ("gated", "plain"))
        self.focal_alpha = check_float("focal_alpha", focal_alpha, 0.0, 1.0)
        self.focal_gamma = check_float("focal_gamma", focal_gamma, 0.0)
        self.loss_scale = check_float("loss_scale", loss_scale, 0.0)
        self.embedding, self.dim = embedding, dim
        self.dropout = nn.Dropout(check_float("dropout", dropout, 0.0, 1.0, high_open=True))
        self.q_encoder = _encoder(dim, q_dilations, block, kernel_size, gate_dropout)
        self.q_pool = AttentionPooling1d(dim)
        self.p_in = nn.Linear(2 * dim, dim, bias=False)
        self.p_encoder = _encoder(dim, p_dilations, block, kernel_size, gate_dropout)
        self.p_pool = AttentionPooling1d(2 * dim)
        self.answerable_head = nn.Linear(2 * dim, 1, bias=False)
        self.span_head = nn.Linear(2 * dim, 2)                               # start, end

    def _embed(self, inputs, mask: Tensor, name: str) -> Tensor:
        x = self.embedding(*inputs) if isinstance(inputs, (tuple, list)) else self.embedding(inputs)
        if x.dim() != 3 or x.shape[:2] != mask.shape or x.shape[2] != self.dim:
            raise ValueError(f"embedding of {name} must be [B, n, dim={self.dim}] matching its mask "
                             f"{tuple(mask.shape)}, got {tuple(x.shape)}")
        return self.dropout(x)

    def forward(self, q_inputs, q_mask: Tensor, p_inputs, p_mask: Tensor, start_labels: Tensor | None = None,
                end_labels: Tensor | None = None) -> ReaderOutput:
        """q_mask [B, n_q], p_mask [B, n_p] (True = real); labels [B, n_p] 0/1 (several 1s allowed)."""
        q_mask, p_mask = q_mask.bool(), p_mask.bool()
        if q_mask.shape[0] != p_mask.shape[0]:
            raise ValueError(f"q_mask and p_mask must share the batch size, got {tuple(q_mask.shape)} and "
                             f"{tuple(p_mask.shape)}")
        q = self.q_encoder(self._embed(q_inputs, q_mask, "q_inputs"), q_mask)            # [B, n_q, d]
        q_vec = self.q_pool(q, q_mask)                                                   # [B, d]
        p = self._embed(p_inputs, p_mask, "p_inputs")                                    # [B, n_p, d]
        q_rep = q_vec[:, None].expand(-1, p.shape[1], -1)
        h = self.p_encoder(self.p_in(torch.cat([p, q_rep], -1)), p_mask)                 # [B, n_p, d]
        h = torch.cat([h, q_rep], -1)                                                    # [B, n_p, 2d]
        a = torch.sigmoid(self.answerable_head(self.p_pool(h, p_mask)))                  # [B, 1]
        m = p_mask.to(h.dtype)
        start, end = (a[:, :, None] * torch.sigmoid(self.span_head(h))).unbind(-1)       # [B, n_p] each
        start, end = start * m, end * m
        loss = None
        if (start_labels is None) != (end_labels is None):
            raise ValueError("give both start_labels and end_labels, or neither")
        if start_labels is not None:
            kw = dict(mask=p_mask, alpha=self.focal_alpha, gamma=self.focal_gamma, scale=self.loss_scale)
            loss = span_focal_loss(start, start_labels, **kw) + span_focal_loss(end, end_labels, **kw)
        return ReaderOutput(start, end, a[:, 0], loss)


def extract_spans(p_start: Tensor, p_end: Tensor, threshold: float = 0.1,
                  max_len: int = 12) -> dict[tuple[int, int], float]:
    """{(i, j): p_start[i] * p_end[j]} over i <= j < i + max_len with both probabilities > threshold
    (spans of the DGCNN reader, https://kexue.fm/archives/5409). p_start, p_end [n]."""
    if p_start.dim() != 1 or p_start.shape != p_end.shape:
        raise ValueError(f"p_start and p_end must be [n] of one length, got {tuple(p_start.shape)} and "
                         f"{tuple(p_end.shape)}")
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    max_len = check_int("max_len", max_len, 1)
    if not bool(torch.isfinite(p_start).all() & torch.isfinite(p_end).all()):
        raise ValueError("p_start and p_end must be finite")
    n = p_start.shape[0]
    offset = torch.arange(n)[None, :] - torch.arange(n)[:, None]                        # [n, n]: j - i
    ok = (offset >= 0) & (offset < max_len)
    ok &= (p_start > threshold).cpu()[:, None] & (p_end > threshold).cpu()[None, :]   # compared in the input dtype
    s, e = p_start.detach().double().cpu(), p_end.detach().double().cpu()
    score = s[:, None] * e[None, :]
    return {(int(i), int(j)): float(score[i, j]) for i, j in ok.nonzero().tolist()}


def span_answers(spans: Mapping[tuple[int, int], float], text: str | Sequence) -> dict:
    """{answer string (text[i:j + 1]): best score} -- duplicate strings in one passage keep their max."""
    out: dict = {}
    for (i, j), score in spans.items():
        if not 0 <= i <= j < len(text):
            raise ValueError(f"span ({i}, {j}) lies outside the text of length {len(text)}")
        a = text[i:j + 1]
        a = a if isinstance(a, str) else tuple(a)
        out[a] = max(score, out.get(a, score))
    return out
