"""Seq2seq with synchronous L2R / R2L decoders that attend to each other (https://kexue.fm/archives/6877).

bojone/seq2seq `seq2seq_bidecoder.py` in PyTorch: a shared embedding, a BiLSTM encoder whose masked max-pool
conditions every LayerNorm (conditional LN), two LSTM decoders (left-to-right and right-to-left), a causal
"interaction" attention from each decoder to the other (step t sees the partner's steps 0..t), a source
attention, a classifier shared by both directions and an optional copy prior from the source bag of words.
Legend: B batch, S source length, T target steps, C hidden_size, E embedding_size, V vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention, mask_to_bias
from ..nn.norm import ConditionalLayerNorm
from .._validate import check_int
from ..ops import masked_max
from .inputs import ValueChecks, check_ids, check_mask

__all__ = ["CrossDirectionAttention", "BidirectionalDecoderSeq2Seq", "Seq2SeqOutput", "EncoderState"]


class CrossDirectionAttention(MultiHeadAttention):
    """Multi-head attention from one decoder's states to the other's, causal over the step index
    (https://kexue.fm/archives/6877); `causal=False` gives the plain source attention. The shared
    MultiHeadAttention (its projections `q`, `k`, `v` and head split) without an output projection."""

    def __init__(self, hidden_size: int, num_heads: int = 8, head_dim: int = 16, bias: bool = False,
                 causal: bool = True):
        super().__init__(hidden_size, num_heads, head_dim, bias=bias, out_proj=False)
        self.causal = causal

    def forward(self, h_self: Tensor, h_other: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """h_self [B, T, C], h_other [B, T', C], attention_mask [B, T'] of h_other (1 = real token)
        -> [B, T, num_heads*head_dim]. A step that may see no partner step (all padding) gets zeros."""
        B, T, _ = h_self.shape
        Tk = h_other.shape[1]
        allowed = torch.ones(B, 1, T, Tk, dtype=torch.bool, device=h_self.device)
        if self.causal:
            allowed = allowed & torch.ones(T, Tk, dtype=torch.bool, device=h_self.device).tril()
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]                        # [B, 1, T, T']
        out, _ = super().forward(h_self, context=h_other, attention_bias=mask_to_bias(allowed, h_self.dtype),
                                 empty_rows=~allowed.any(-1, keepdim=True))
        return out                                                                         # [B, T, h*d]


class _Decoder(nn.Module):
    """embedding -> CLN -> (LSTM -> CLN) x layers, one direction."""

    def __init__(self, embedding_size: int, hidden_size: int, layers: int, cond_size: int):
        super().__init__()
        self.norms = nn.ModuleList([ConditionalLayerNorm(embedding_size, cond_size, eps=1e-5)] +
                                   [ConditionalLayerNorm(hidden_size, cond_size, eps=1e-5) for _ in range(layers)])
        self.lstms = nn.ModuleList([nn.LSTM(embedding_size if i == 0 else hidden_size, hidden_size, batch_first=True)
                                    for i in range(layers)])

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:                    # [B, T, E] -> [B, T, C]
        x = self.norms[0](x, cond)
        for lstm, norm in zip(self.lstms, self.norms[1:]):
            x = norm(lstm(x)[0], cond)
        return x


@dataclass
class EncoderState:
    """Everything the decoders need from the source; rows can be gathered for beams."""
    hidden: Tensor      # [B, S, C]
    mask: Tensor        # [B, S] bool
    cond: Tensor        # [B, C] masked max-pool
    prior: Tensor | None  # [B, V] copy-prior logits

    def index_select(self, index: Tensor) -> "EncoderState":
        pick = lambda x: None if x is None else x.index_select(0, index)
        return EncoderState(pick(self.hidden), pick(self.mask), pick(self.cond), pick(self.prior))


@dataclass
class Seq2SeqOutput:
    logits_l2r: Tensor          # [B, T-1, V]
    logits_r2l: Tensor          # [B, T-1, V]
    loss: Tensor | None = None


class BidirectionalDecoderSeq2Seq(nn.Module):
    """Encoder + synchronous L2R/R2L decoders with cross-direction attention (https://kexue.fm/archives/6877).
    Targets: L2R `[BOS] y [EOS]`, R2L the same list reversed before padding (`make_r2l_targets`).
    Sizes use the docs/naming.md names: embedding_size (token vectors), hidden_size (LSTM states, even: the
    encoder is bidirectional), num_heads and head_dim of the two attentions."""

    def __init__(self, vocab_size: int, embedding_size: int = 128, hidden_size: int = 128, enc_layers: int = 2,
                 dec_layers: int = 2, num_heads: int = 8, head_dim: int = 16, copy_prior: bool = True,
                 share_classifier: bool = True, pad_id: int = 0, interaction: bool = True):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("embedding_size", embedding_size), ("enc_layers", enc_layers),
                        ("dec_layers", dec_layers), ("num_heads", num_heads), ("head_dim", head_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(hidden_size, int) or hidden_size < 2 or hidden_size % 2:
            raise ValueError(f"hidden_size must be an even int >= 2 (two LSTM directions), got {hidden_size!r}")
        check_int("pad_id", pad_id, 0, vocab_size - 1)
        self.vocab_size, self.pad_id, self.interaction = vocab_size, pad_id, interaction
        C = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.enc_norms = nn.ModuleList([nn.LayerNorm(embedding_size if i == 0 else C) for i in range(enc_layers)])
        self.enc_lstms = nn.ModuleList([nn.LSTM(embedding_size if i == 0 else C, C // 2, batch_first=True,
                                                bidirectional=True) for i in range(enc_layers)])
        self.decoders = nn.ModuleList([_Decoder(embedding_size, C, dec_layers, C) for _ in range(2)])
        inner = num_heads * head_dim
        self.interact = nn.ModuleList([CrossDirectionAttention(C, num_heads, head_dim) for _ in range(2)])
        self.retrieve = nn.ModuleList([CrossDirectionAttention(C, num_heads, head_dim, causal=False)
                                       for _ in range(2)])
        self.project = nn.ModuleList([nn.Linear(C + 2 * inner, C) for _ in range(2)])
        n_cls = 1 if share_classifier else 2
        self.classifiers = nn.ModuleList([nn.Linear(C, vocab_size) for _ in range(n_cls)])
        if copy_prior:      # ScaleShift(b) = exp(s) * b + c on the source bag of words
            self.prior_scale = nn.Parameter(torch.zeros(vocab_size))
            self.prior_shift = nn.Parameter(torch.zeros(vocab_size))
        self.copy_prior = copy_prior

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> EncoderState:
        """src [B, S] -> EncoderState (BiLSTM states, padding mask, max-pooled condition, copy prior)."""
        checks = ValueChecks()
        B, S = self._check_ids("src", src, checks)
        if src_mask is not None:
            check_mask("src_mask", src_mask, ((B, S),), src.device)
            checks.binary("src_mask", src_mask)
        checks.run()
        mask = (src != self.pad_id) if src_mask is None else src_mask.bool()
        x = self.embedding(src)                                                           # [B, S, E]
        for norm, lstm in zip(self.enc_norms, self.enc_lstms):
            x = lstm(norm(x))[0] * mask[..., None]                                        # [B, S, C]
        cond = masked_max(x, mask, dim=1)                                                 # [B, C]
        prior = None
        if self.copy_prior:
            bow = torch.zeros(src.shape[0], self.vocab_size, device=src.device)
            bow.scatter_(1, src, mask.float())                                            # [B, V] in {0, 1}
            prior = self.prior_scale.exp() * bow + self.prior_shift
        return EncoderState(x, mask, cond, prior)

    def _check_ids(self, name: str, ids: Tensor, checks: ValueChecks, shape: tuple[int, int] | None = None):
        B, n = check_ids(name, ids, shape)
        checks.in_range(name, ids, 0, self.vocab_size, "the vocabulary")
        return B, n

    def decode(self, enc: EncoderState, l2r_ids: Tensor, r2l_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder inputs [B, T] (both directions, step-aligned) -> next-token logits [B, T, V] each."""
        checks = ValueChecks()
        B, T = self._check_ids("l2r_ids", l2r_ids, checks)
        self._check_ids("r2l_ids", r2l_ids, checks, (B, T))
        if enc.hidden.shape[0] != B:
            raise ValueError(f"l2r_ids has batch size {B} but the encoder state has {enc.hidden.shape[0]}")
        checks.run()
        masks = [l2r_ids != self.pad_id, r2l_ids != self.pad_id]
        hs = [dec(self.embedding(ids), enc.cond) for dec, ids in zip(self.decoders, (l2r_ids, r2l_ids))]
        logits = []
        for d in range(2):
            inter = self.interact[d](hs[d], hs[1 - d], masks[1 - d])                      # [B, T, h*d]
            if not self.interaction:
                inter = torch.zeros_like(inter)
            src_att = self.retrieve[d](hs[d], enc.hidden, enc.mask)                       # [B, T, h*d]
            z = F.leaky_relu(self.project[d](torch.cat([hs[d], inter, src_att], -1)), 0.2)
            out = self.classifiers[d % len(self.classifiers)](z)                          # [B, T, V]
            if enc.prior is not None:
                out = (out + enc.prior[:, None]) / 2
            logits.append(out)
        return logits[0], logits[1]

    def forward(self, src: Tensor, tgt_l2r: Tensor, tgt_r2l: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Seq2SeqOutput:
        """Teacher forcing on full targets [B, T]: logits for steps 1..T-1 and the mean of both masked CEs."""
        checks = ValueChecks()
        B, T = self._check_ids("tgt_l2r", tgt_l2r, checks)
        self._check_ids("tgt_r2l", tgt_r2l, checks, (B, T))
        if T < 2:
            raise ValueError(f"tgt_l2r and tgt_r2l must have shape [B, T >= 2] ([BOS] and one target), "
                             f"got {tuple(tgt_l2r.shape)}")
        if isinstance(src, Tensor) and src.dim() == 2 and src.shape[0] != B:
            raise ValueError(f"tgt_l2r has batch size {B} but src has {src.shape[0]}; expected the same B")
        if tgt_mask is not None:
            check_mask("tgt_mask", tgt_mask, ((B, T),), tgt_l2r.device)
            checks.binary("tgt_mask", tgt_mask)
        checks.run()
        mask = (tgt_l2r != self.pad_id) if tgt_mask is None else tgt_mask.bool()
        enc = self.encode(src, src_mask)
        l2r, r2l = self.decode(enc, tgt_l2r[:, :-1], tgt_r2l[:, :-1])
        m = mask[:, 1:]
        count = m.sum().clamp_min(1)                # all-padding targets: a zero loss, not 0 / 0 = NaN
        ce = lambda lg, y: F.cross_entropy(lg[m], y[:, 1:][m], reduction="sum") / count   # noqa: E731
        return Seq2SeqOutput(l2r, r2l, (ce(l2r, tgt_l2r) + ce(r2l, tgt_r2l)) / 2)

    @torch.no_grad()
    def step(self, enc: EncoderState, l2r_prefix: Tensor, r2l_prefix: Tensor) -> tuple[Tensor, Tensor]:
        """Prefixes [N, t] (rows paired with enc rows) -> last-position probabilities [N, V], both directions."""
        l2r, r2l = self.decode(enc, l2r_prefix, r2l_prefix)
        return l2r[:, -1].float().softmax(-1), r2l[:, -1].float().softmax(-1)
