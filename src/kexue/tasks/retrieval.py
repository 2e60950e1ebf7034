"""Sentence similarity as many-class classification with a margin softmax (https://kexue.fm/archives/5743).

Every paraphrase group is one class: a sentence encoder (embedding + GRU, L2-normalised) feeds a cosine
classifier trained with normalised softmax, AM-Softmax, ArcFace or the author's simple A-Softmax
(`kexue.nn.MarginSoftmaxLoss`), so each step contrasts a sentence with every other group at once. The
classifier is then dropped: sentences of groups never seen in training are retrieved by cosine
(`evaluate_retrieval`: top-k accuracy and the cosine gap). `train_sentence_encoder(objective="pairwise")` is
the article's foil, binary same/different classification of sentence pairs with random negatives.
"""
from __future__ import annotations

import random
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_choice, check_float, check_int
from kexue.data import sequence_padding
from kexue.metrics import retrieval_topk_accuracy
from kexue.nn import CosineClassifier, MarginSoftmaxLoss

__all__ = ["SentenceEncoder", "train_sentence_encoder", "encode_sentences", "evaluate_retrieval", "cosine_gap",
           "OBJECTIVES"]

OBJECTIVES = ("softmax", "am", "aam", "a_simple", "pairwise")
_DEFAULT_MARGIN = {"softmax": 0.0, "am": 0.35, "aam": 0.5, "a_simple": 0.0}


class SentenceEncoder(nn.Module):
    """Token embedding -> GRU (or LSTM), last state of each row -> L2-normalised sentence vector [B, hidden]."""

    def __init__(self, vocab_size: int, emb_dim: int = 128, hidden: int = 128, rnn: str = "gru", pad_id: int = 0):
        super().__init__()
        vocab_size = check_int("vocab_size", vocab_size, 1)
        self.pad_id = check_int("pad_id", pad_id, 0, vocab_size - 1)
        self.embed = nn.Embedding(vocab_size, check_int("emb_dim", emb_dim, 1), padding_idx=self.pad_id)
        cls = {"gru": nn.GRU, "lstm": nn.LSTM}[check_choice("rnn", rnn, ("gru", "lstm"))]
        self.rnn = cls(emb_dim, check_int("hidden", hidden, 1), batch_first=True)
        self.hidden = hidden

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """ids [B, T] right-padded, mask [B, T] (default: ids != pad_id) -> unit vectors [B, hidden]."""
        if ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"SentenceEncoder: expected integer ids [B, T], got {ids.dtype} {tuple(ids.shape)}")
        mask = ids.ne(self.pad_id) if mask is None else mask.bool()
        lengths = mask.sum(1)                                                     # [B]
        if bool((lengths == 0).any()):
            raise ValueError(f"SentenceEncoder: rows {(lengths == 0).nonzero().flatten().tolist()} are empty")
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        state = self.rnn(packed)[1]
        h = state[0] if isinstance(state, tuple) else state                      # [1, B, hidden]
        return F.normalize(h[-1], dim=-1)


def _batch(sentences: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    return sequence_padding([list(s) for s in sentences], value=pad_id)          # [B, T]


def encode_sentences(encoder: SentenceEncoder, sentences: Sequence[Sequence[int]], batch_size: int = 512) -> Tensor:
    """Unit sentence vectors [N, hidden] in eval mode, `batch_size` sentences at a time."""
    batch_size = check_int("batch_size", batch_size, 1)
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = [encoder(_batch(sentences[i:i + batch_size], encoder.pad_id))
               for i in range(0, len(sentences), batch_size)]
    encoder.train(was)
    return torch.cat(out)


def _check_data(sentences, groups) -> None:
    if len(sentences) != len(groups) or not sentences:
        raise ValueError(f"sentences and groups must be non-empty and of equal length, got {len(sentences)} and "
                         f"{len(groups)}")


def train_sentence_encoder(encoder: SentenceEncoder, sentences: Sequence[Sequence[int]], groups: Sequence[int], *,
                           objective: str = "am", scale: float = 30.0, margin: float | None = None,
                           epochs: int = 8, batch_size: int = 128, lr: float = 1e-3,
                           seed: int = 0) -> list[float]:
    """Train `encoder` on paraphrase groups (labels 0..G-1) with Adam; returns the loss of every step.

    objective "softmax" | "am" | "aam" | "a_simple": a `CosineClassifier` over the G groups with that
    `MarginSoftmaxLoss` (margin None: 0.35 for am, 0.5 for aam); "pairwise": the same number of updates, each
    on batch_size pairs: batch_size / 2 anchors, each with one same-group sentence (label 1) and one random
    other-group sentence (label 0), logit = a * cos + b with a, b learned (binary cross-entropy)."""
    _check_data(sentences, groups)
    objective = check_choice("objective", objective, OBJECTIVES)
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    lr, seed = check_float("lr", lr, 0.0, low_open=True), check_int("seed", seed, 0)
    G = max(groups) + 1
    if min(groups) < 0:
        raise ValueError(f"groups must be ids in [0, G), got {min(groups)}")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    if objective == "pairwise":
        head = nn.Linear(1, 1)
        nn.init.constant_(head.weight, 5.0), nn.init.zeros_(head.bias)
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        if len(members) < 2:
            raise ValueError("pairwise training needs at least two groups for negatives")
    else:
        margin = _DEFAULT_MARGIN[objective] if margin is None else check_float("margin", margin, 0.0)
        head = CosineClassifier(encoder.hidden, G)
        loss_fn = MarginSoftmaxLoss(objective, check_float("scale", scale, 0.0, low_open=True), margin)
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    encoder.train()
    losses, order = [], list(range(len(sentences)))
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if objective == "pairwise":                       # b/2 anchors: b labelled pairs per update
                idx = idx[:max(1, len(idx) // 2)]
                pos = [rng.choice(members[groups[i]]) for i in idx]
                neg = []
                for i in idx:
                    g = rng.randrange(G)
                    while g == groups[i] or g not in members:
                        g = rng.randrange(G)
                    neg.append(rng.choice(members[g]))
                z = encoder(_batch([sentences[i] for i in idx + pos + neg], encoder.pad_id))  # [3a, H]
                a, p, n = z.split(len(idx))
                cos = torch.cat([(a * p).sum(-1), (a * n).sum(-1)])                          # [2a]
                logit = head(cos[:, None])[:, 0]
                target = torch.cat([torch.ones(len(idx)), torch.zeros(len(idx))])
                loss = F.binary_cross_entropy_with_logits(logit, target)
            else:
                cos = head(encoder(_batch([sentences[i] for i in idx], encoder.pad_id)), normalize_input=False)
                loss = loss_fn(cos, torch.tensor([groups[i] for i in idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def cosine_gap(vectors: Tensor, groups: Tensor, chunk: int = 1024) -> dict[str, float]:
    """Per query (self excluded): mean cosine to the other members of its group ("intra") minus the largest
    cosine to a sentence of another group ("nearest_other"); averaged over queries whose group has another
    member. vectors [N, D] (normalised here), groups [N]. Returns intra, nearest_other and gap."""
    v = F.normalize(vectors.float(), dim=-1)
    N = v.shape[0]
    intra, other = [], []
    for s in range(0, N, check_int("chunk", chunk, 1)):
        sim = v[s:s + chunk] @ v.T                                                     # [c, N]
        same = groups[s:s + chunk, None] == groups[None]                              # [c, N]
        rows = torch.arange(sim.shape[0])
        same[rows, rows + s] = False                                                  # self is no match
        is_other = groups[s:s + chunk, None] != groups[None]
        n_same = same.sum(1)
        keep = (n_same > 0) & is_other.any(1)
        intra.append(((sim * same).sum(1) / n_same.clamp_min(1))[keep])
        other.append(sim.masked_fill(~is_other, -float("inf")).max(1).values[keep])
    intra_t, other_t = torch.cat(intra), torch.cat(other)
    if intra_t.numel() == 0:
        raise ValueError("cosine_gap needs a group with two members and at least two groups")
    return {"intra": intra_t.mean().item(), "nearest_other": other_t.mean().item(),
            "gap": (intra_t - other_t).mean().item()}


def evaluate_retrieval(encoder: SentenceEncoder, sentences: Sequence[Sequence[int]], groups: Sequence[int],
                       ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """The article's open-set evaluation on (unseen) groups: top-k accuracy by cosine with self-matches
    excluded (`kexue.metrics.retrieval_topk_accuracy`) as "top1", "top5", ..., and the `cosine_gap` keys."""
    _check_data(sentences, groups)
    v, g = encode_sentences(encoder, sentences), torch.tensor(list(groups))
    out = {f"top{k}": acc for k, acc in retrieval_topk_accuracy(v, g, ks).items()}
    out.update(cosine_gap(v, g))
    return out
