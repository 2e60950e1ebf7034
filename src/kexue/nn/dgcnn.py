"""DGCNN: dilated gated residual 1-D convolutions (https://kexue.fm/archives/5409).

Y = (X_res * (1 - s) + C * s) * M,  [C, G] = Conv1d_{k, dilation r}(X * M),  s = sigmoid(Dropout(G));
X_res = X (or a 1x1 conv when widths differ). Masking before the convolution keeps pads out of real
positions; re-masking after it keeps pad outputs at exactly 0.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_float, check_int

__all__ = ["DilatedGatedConv1d", "DGCNNBlock", "DGCNN"]


class DilatedGatedConv1d(nn.Module):
    """One residual gated dilated convolution block (https://kexue.fm/archives/5409); x [B, n, C]."""

    def __init__(self, channels: int, out_channels: int | None = None, kernel_size: int = 3,
                 dilation: int = 1, gate_dropout: float | None = 0.1, residual: bool = True):
        super().__init__()
        channels = check_int("channels", channels, 1)
        out_channels = channels if out_channels is None else check_int("out_channels", out_channels, 1)
        if check_int("kernel_size", kernel_size, 1) % 2 == 0:
            raise ValueError(f"kernel_size must be an odd int >= 1 (symmetric 'same' padding), got {kernel_size!r}")
        dilation = check_int("dilation", dilation, 1)
        if gate_dropout is not None:
            gate_dropout = check_float("gate_dropout", gate_dropout, 0.0, 1.0, high_open=True)
        residual = check_bool("residual", residual)
        self.channels, self.out_channels = channels, out_channels
        self.kernel_size, self.dilation, self.residual = kernel_size, dilation, residual
        self.conv = nn.Conv1d(channels, 2 * out_channels, kernel_size, dilation=dilation, padding="same")
        self.gate_dropout = nn.Dropout(gate_dropout) if gate_dropout else nn.Identity()
        self.res_proj = nn.Conv1d(channels, out_channels, 1) if residual and out_channels != channels else None

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, n, C = x.shape
        if C != self.channels:
            raise ValueError(f"x must be [B, n, channels={self.channels}], got {tuple(x.shape)}")
        if mask is not None:
            if mask.shape != (B, n):
                raise ValueError(f"mask must be [B, n] = {(B, n)}, got {tuple(mask.shape)}")
            if mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
                raise ValueError("mask must hold only 0/1 (True = real token), got other values")
            m = mask[..., None].to(x.dtype)                                  # [B, n, 1]
            x = x * m
        if n == 0:                                                           # conv1d refuses an empty length
            return x.new_zeros(B, 0, self.out_channels) + x.sum()
        conv, gate = self.conv(x.transpose(1, 2)).transpose(1, 2).chunk(2, -1)   # [B, n, C_out] each
        s = torch.sigmoid(self.gate_dropout(gate))
        if self.residual:
            res = x if self.res_proj is None else self.res_proj(x.transpose(1, 2)).transpose(1, 2)
            y = res * (1 - s) + conv * s
        else:
            y = conv * s
        return y if mask is None else y * m

    @property
    def half_width(self) -> int:
        return self.dilation * (self.kernel_size - 1) // 2


DGCNNBlock = DilatedGatedConv1d


class DGCNN(nn.Module):
    """A stack of `DilatedGatedConv1d` blocks with geometric dilations (https://kexue.fm/archives/5409)."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 2, 4, 8, 16, 1), kernel_size: int = 3,
                 gate_dropout: float | None = 0.1, residual: bool = True):
        super().__init__()
        if len(dilations) == 0:
            raise ValueError("dilations must hold at least one dilation, got an empty sequence")
        channels = check_int("channels", channels, 1)
        self.blocks = nn.ModuleList(DilatedGatedConv1d(channels, kernel_size=kernel_size, dilation=d,
                                                       gate_dropout=gate_dropout, residual=residual)
                                    for d in dilations)

    def receptive_field(self) -> int:
        """Tokens seen by one output: 1 + sum_l d_l (k - 1)  (65 for (1, 2, 4, 8, 16, 1), k = 3)."""
        return 1 + 2 * sum(b.half_width for b in self.blocks)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x
