"""Position encodings used by the model families: rotary (RoFormer, https://kexue.fm/archives/8265),
NEZHA's clipped functional relative positions (arXiv 1909.00204), and T5's bucketed relative bias
(arXiv 1910.10683)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_table", "RotaryEmbedding", "nezha_relative_table", "T5RelativeBias"]


def sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """[P, dim] table: sin(p * w_i) in the first half, cos(p * w_i) in the second, w_i = 10000^(-2i/dim)."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]           # [P, 1]
    inv = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)    # [dim/2]
    ang = pos * inv                                                           # [P, dim/2]
    return torch.cat([ang.sin(), ang.cos()], -1).float()


class RotaryEmbedding(nn.Module):
    """Rotate consecutive pairs (x_2i, x_2i+1) by angle p * w_i (RoFormer's interleaved layout).
    The table is a buffer with the checkpoint's values ([P, D]: sin half, cos half)."""

    def __init__(self, num_positions: int, head_dim: int, persistent: bool = True):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head_dim, got {head_dim}")
        self.register_buffer("table", sinusoidal_table(num_positions, head_dim), persistent=persistent)

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x [B, H, n, D]; positions [B, n] or [n] -> rotated x."""
        sin, cos = self.table[positions].to(x.dtype).chunk(2, -1)              # [B?, n, D/2]
        if sin.dim() == 3:
            sin, cos = sin[:, None], cos[:, None]                               # [B, 1, n, D/2]
        x1, x2 = x[..., 0::2], x[..., 1::2]                                     # [B, H, n, D/2]
        return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).flatten(-2)


def nezha_relative_table(max_relative_position: int, depth: int) -> Tensor:
    """NEZHA's [2k+1, depth] table: row r holds sin/cos (interleaved) of r * w_i; distance j - i is clipped
    to [-k, k] and shifted by k to pick the row."""
    k = max_relative_position
    pos = torch.arange(2 * k + 1, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, depth, 2, dtype=torch.float32) * (-math.log(10000.0) / depth))
    table = torch.zeros(2 * k + 1, depth)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)
    return table


class T5RelativeBias(nn.Module):
    """Learned per-head bias for log-bucketed relative distances (T5)."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.num_buckets, self.max_distance, self.bidirectional = num_buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, relative: Tensor) -> Tensor:
        """relative = key_pos - query_pos (long) -> bucket index, as in the T5 paper's code."""
        nb, out = self.num_buckets, torch.zeros_like(relative)
        if self.bidirectional:
            nb //= 2
            out = out + (relative > 0).long() * nb
            relative = relative.abs()
        else:
            relative = -torch.clamp(relative, max=0)
        max_exact = nb // 2
        is_small = relative < max_exact
        large = max_exact + (torch.log(relative.float() / max_exact) / math.log(self.max_distance / max_exact)
                             * (nb - max_exact)).long()
        large = torch.clamp(large, max=nb - 1)
        return out + torch.where(is_small, relative, large)

    def forward(self, query_pos: Tensor, key_pos: Tensor) -> Tensor:
        """query_pos [n], key_pos [m] -> bias [1, H, n, m]."""
        buckets = self.bucket(key_pos[None, :] - query_pos[:, None])              # [n, m]
        return self.embedding(buckets).permute(2, 0, 1)[None]
