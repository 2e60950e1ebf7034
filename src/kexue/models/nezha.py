"""NEZHA (arXiv 1909.00204): BERT without an absolute position table; every attention layer adds
functional relative position encodings, clipped to +-max_relative_position, to the scores and to the
values: s_ij = q_i (k_j + r_ij) / sqrt(D), out_i = sum_j a_ij (v_j + r_ij), r_ij = T[clip(j - i) + k].
Used for DialoGPT-style dialogue in https://kexue.fm/archives/7718."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention
from ..nn.position import nezha_relative_table
from .bert import bert_config_from_hf, bert_keymap, embedding_pairs, encoder_pairs
from .config import TransformerConfig
from .loading import KeyMap
from .registry import register_model
from .transformer import Transformer

__all__ = ["NEZHA", "NezhaAttention"]


class NezhaAttention(MultiHeadAttention):
    """Eager attention with NEZHA's relative key and value terms (no fused kernel can add the value term)."""

    def __init__(self, *args, max_relative_position: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_relative_position = max_relative_position
        self.register_buffer("table", nezha_relative_table(max_relative_position, self.head_dim), persistent=False)
        self._query_start: Tensor | None = None

    def forward(self, x: Tensor, *args, cache=None, **kwargs):
        # with a KV cache the keys are every slot of its static buffer: the queries start at cache.cache_pos
        self._query_start = None if cache is None else cache.cache_pos
        return super().forward(x, *args, cache=cache, **kwargs)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention_bias: Tensor | None,
               output_attentions: bool) -> tuple[Tensor, Tensor | None]:
        n, m = q.shape[2], k.shape[2]
        qpos = (torch.arange(m - n, m, device=q.device) if self._query_start is None     # the last n keys
                else self._query_start + torch.arange(n, device=q.device))                # cached: from cache_pos
        kpos = torch.arange(m, device=q.device)
        rel = (kpos[None, :] - qpos[:, None]).clamp(-self.max_relative_position, self.max_relative_position)
        r = self.table[rel + self.max_relative_position].to(q.dtype)              # [n, m, D]
        scores = torch.matmul(q, k.transpose(-1, -2)) + torch.einsum("bhnd,nmd->bhnm", q, r)
        scores = scores * self.scale                                               # [B, H, n, m]
        if attention_bias is not None:
            scores = scores + attention_bias
        weights = scores.float().softmax(-1).to(q.dtype)
        p = self.dropout if self.training else 0.0
        dropped = nn.functional.dropout(weights, p)
        out = torch.matmul(dropped, v) + torch.einsum("bhnm,nmd->bhnd", dropped, r)  # [B, H, n, D]
        return out, (weights if output_attentions else None)


def nezha_config_from_hf(hf: dict) -> TransformerConfig:
    cfg = bert_config_from_hf({**hf, "position_embedding_type": "absolute"})
    return cfg.replace(position="nezha", max_relative_position=hf.get("max_relative_position", 64))


def nezha_keymap(cfg: TransformerConfig) -> KeyMap:
    base = bert_keymap(cfg)
    pairs = (embedding_pairs(positions=False) + encoder_pairs()
             + [(hf, kx) for hf, kx, _, _ in base.pairs if hf.startswith(("cls.", "pooler."))])
    ignore = tuple(p.pattern for p in base.ignore) + (r"relative_positions_encoding",)
    return KeyMap(pairs, prefix=("bert.", "nezha."), ignore=ignore, heads=("cls.",))


@register_model("nezha", config_from_hf=nezha_config_from_hf, keymap=nezha_keymap)
class NEZHA(Transformer):
    def build_attention(self, i: int) -> nn.Module:
        c = self.config
        if self.attention_kernel != "sdpa":
            raise ValueError(f"attention_kernel={self.attention_kernel!r} cannot serve NEZHA: its relative "
                             "value term needs NezhaAttention's own eager attention; leave it 'sdpa'")
        return NezhaAttention(c.hidden_size, c.num_heads, c.head_dim, bias=c.qkv_bias, dropout=c.attention_dropout,
                              max_relative_position=c.max_relative_position)
