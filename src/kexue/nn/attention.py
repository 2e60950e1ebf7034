"""Multi-head attention shared by every model family.

The kernel is chosen in the constructor: "sdpa" (default; fused kernels on CPU and GPU), "eager" (explicit
softmax), or any function with the signature of F.scaled_dot_product_attention, `kernel(q, k, v,
attn_mask=None, dropout_p=0.0, scale=None) -> out` (e.g. functools.partial(kexue.nn.sparse_attention,
pattern="local", window=64) for long inputs). Asking for the weights always takes the eager path.
SparseSelfAttention (kexue.nn.sparse_attention) and CrossDirectionAttention (kexue.models.seq2seq_bidirectional)
are this module with a sparse kernel / a cross-direction mask.
Masks arrive as one additive bias (padding/causal/UniLM mask plus relative-position bias, built once per
forward by the model) and an `empty_rows` flag: a query row that may see no key gets zeros, never NaN.

Shapes: B batch, n queries, m keys, H heads, D head dim, C = H * D.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_float, check_int
from .kv_cache import KVCache

__all__ = ["MultiHeadAttention", "mask_to_bias", "KERNELS"]

KERNELS = ("sdpa", "eager")     # named kernels; any SDPA-signature callable also works
Kernel = Union[str, Callable[..., Tensor]]


def mask_to_bias(allowed: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Bool mask (True = may attend) -> additive bias: 0 where allowed, a large finite negative elsewhere.
    Half of finfo.min leaves room for a position bias to be added without overflowing to -inf."""
    neg = torch.finfo(dtype).min / 2
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, neg)


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with separate q/k/v/o projections (Vaswani et al., arXiv 1706.03762).

    Args:
        hidden_size: model width of the queries (and of the output).
        num_heads, head_dim: H and D (D defaults to hidden_size // num_heads).
        kv_size: width of the key/value input for cross-attention (defaults to hidden_size).
        bias: bias on q/k/v projections; out_bias: on the output projection (defaults to `bias`).
        scale: score scale, 1/sqrt(D) by default (T5 uses 1.0).
        rotary: module applying rotary position embedding to [B, H, n, D] given positions (RoFormer).
        rotary_value: also rotate the values (RoFormer option).
        kernel: "sdpa", "eager" or `fn(q, k, v, attn_mask=None, dropout_p=0.0, scale=None) -> out` on
            [B, H, n, D] (SDPA's signature; attn_mask is the additive bias broadcastable to [B, H, n, m]).
        key_dim: per-head width of queries and keys when it differs from the values' head_dim
            (bert4keras's key_size; SparseSelfAttention); not for use with a KV cache.
        out_proj: False leaves out the output projection `o` (output width H * head_dim).
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None, kv_size: int | None = None,
                 bias: bool = True, out_bias: bool | None = None, scale: float | None = None,
                 dropout: float = 0.0, rotary: nn.Module | None = None, rotary_value: bool = False,
                 kernel: Kernel = "sdpa", key_dim: int | None = None, out_proj: bool = True):
        super().__init__()
        check_int("hidden_size", hidden_size, low=1)
        check_int("num_heads", num_heads, low=1)
        if head_dim is not None:
            check_int("head_dim", head_dim, low=1)
        if kv_size is not None:
            check_int("kv_size", kv_size, low=1)
        if key_dim is not None:
            check_int("key_dim", key_dim, low=1)
        check_bool("out_proj", out_proj)
        if isinstance(kernel, str):
            if kernel not in KERNELS:
                raise ValueError(f"kernel={kernel!r} is not a named kernel; expected one of {KERNELS} or a "
                                 "function kernel(q, k, v, attn_mask=None, dropout_p=0.0, scale=None)")
        elif not callable(kernel):
            raise TypeError(f"kernel must be one of {KERNELS} or a function kernel(q, k, v, attn_mask=None, "
                            f"dropout_p=0.0, scale=None), got {type(kernel).__name__}")
        check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        if head_dim is None:
            if hidden_size % num_heads:
                raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}; pass head_dim")
            head_dim = hidden_size // num_heads
        kv_size = hidden_size if kv_size is None else kv_size
        key_dim = head_dim if key_dim is None else key_dim
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.key_dim = num_heads, head_dim, key_dim
        self.hidden_size, self.kv_size = hidden_size, kv_size
        self.scale = 1.0 / math.sqrt(key_dim) if scale is None else scale
        self.dropout = dropout
        self.q = nn.Linear(hidden_size, num_heads * key_dim, bias=bias)
        self.k = nn.Linear(kv_size, num_heads * key_dim, bias=bias)
        self.v = nn.Linear(kv_size, inner, bias=bias)
        self.o = nn.Linear(inner, hidden_size, bias=bias if out_bias is None else out_bias) if out_proj else None
        self.rotary = rotary
        self.rotary_value = rotary_value
        # the kernel function (None: SDPA); `eager` forces the explicit-softmax path
        self.kernel: Callable[..., Tensor] | None = None if isinstance(kernel, str) else kernel
        self.eager = kernel == "eager"

    def _heads(self, x: Tensor, dim: int | None = None) -> Tensor:
        B, n, _ = x.shape
        return x.view(B, n, self.num_heads, dim or self.head_dim).transpose(1, 2)   # [B, H, n, D]

    def project(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Queries from x [B, n, hidden_size], keys and values from context [B, m, kv_size] (default x), split
        into heads: q, k [B, H, n|m, key_dim], v [B, H, m, head_dim]."""
        src = x if context is None else context
        return (self._heads(self.q(x), self.key_dim), self._heads(self.k(src), self.key_dim),
                self._heads(self.v(src)))

    def merge(self, out: Tensor) -> Tensor:
        """Heads back to width and the output projection: [B, H, n, D] -> [B, n, hidden_size] (H * D without o)."""
        B, _, n, _ = out.shape
        out = out.transpose(1, 2).reshape(B, n, self.num_heads * self.head_dim)
        return self.o(out) if self.o is not None else out

    def forward(self, x: Tensor, context: Tensor | None = None, attention_bias: Tensor | None = None,
                empty_rows: Tensor | None = None, positions: Tensor | None = None, cache: KVCache | None = None,
                layer_idx: int = 0, output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        """x [B, n, hidden_size]; context [B, m, kv_size] for cross-attention; attention_bias broadcastable to
        [B, H, n, m]; empty_rows [B, 1, n, 1] bool; positions [B, n] or [n] for rotary.
        Returns (out [B, n, hidden_size], weights [B, H, n, m] or None)."""
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"x must have shape [B, n, {self.hidden_size}], got {tuple(x.shape)}")
        B, n, _ = x.shape
        if context is not None and (context.dim() != 3 or context.shape[0] != B or context.shape[-1] != self.kv_size):
            raise ValueError(f"context must have shape [B, m, {self.kv_size}] with B = {B}, got {tuple(context.shape)}")
        q = self._heads(self.q(x), self.key_dim)                             # [B, H, n, D]
        if context is None:
            k, v = self._heads(self.k(x), self.key_dim), self._heads(self.v(x))   # [B, H, n, D]
            if self.rotary is not None:
                q, k = self.rotary(q, positions), self.rotary(k, positions)
                if self.rotary_value:
                    v = self.rotary(v, positions)
            if cache is not None:
                k, v = cache.update(layer_idx, k, v)                         # [B, H, S, D], full buffer
        elif cache is not None and cache.has_cross(layer_idx):
            k, v = cache.cross_kv(layer_idx)                                 # [B, H, m, D]
        else:
            k, v = self._heads(self.k(context), self.key_dim), self._heads(self.v(context))
            if cache is not None:
                cache.set_cross(layer_idx, k, v)
        if attention_bias is not None and attention_bias.dtype != q.dtype:
            attention_bias = attention_bias.to(q.dtype)
            if q.dtype == torch.float16:
                attention_bias = attention_bias.clamp_min(torch.finfo(torch.float16).min)
        out, weights = self.attend(q, k, v, attention_bias, output_attentions)   # [B, H, n, D]
        if empty_rows is not None:
            out = out.masked_fill(empty_rows, 0.0)
            if weights is not None:
                weights = weights.masked_fill(empty_rows, 0.0)
        return self.merge(out), weights

    def attend(self, q: Tensor, k: Tensor, v: Tensor, attention_bias: Tensor | None,
               output_attentions: bool) -> tuple[Tensor, Tensor | None]:
        """softmax(q k^T * scale + bias) v on [B, H, n, D] tensors."""
        p = self.dropout if self.training else 0.0
        if self.kernel is not None and not output_attentions:
            return self.kernel(q, k, v, attn_mask=attention_bias, dropout_p=p, scale=self.scale), None
        if not (output_attentions or self.eager):
            return (F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias, dropout_p=p, scale=self.scale),
                    None)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale           # [B, H, n, m]
        if attention_bias is not None:
            scores = scores + attention_bias
        weights = scores.float().softmax(-1).to(q.dtype)
        return torch.matmul(F.dropout(weights, p), v), weights
