"""Token heat maps for attributions (https://kexue.fm/archives/7533 shows IG scores as coloured text).

Scores are scaled by their largest magnitude: positive ones shade red, negative ones blue, zero stays
white, so a signed IG sum and a min-max normalised L2 score both render sensibly.
"""
from __future__ import annotations

import html
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["to_html", "to_ansi", "to_text", "token_colors"]

_POS = (220, 38, 38)      # red
_NEG = (37, 99, 235)      # blue


def _check(tokens: Sequence[str], scores: Tensor | Sequence[float]) -> Tensor:
    if isinstance(tokens, str) or not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"tokens must be a sequence of str, got {tokens!r}")
    s = torch.as_tensor(scores, dtype=torch.float64).detach().cpu().reshape(-1)
    if s.numel() != len(tokens):
        raise ValueError(f"scores has {s.numel()} entries but tokens has {len(tokens)}; expected one score per token")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"scores must be finite, got {s.tolist()}")
    return s


def token_colors(scores: Tensor | Sequence[float]) -> list[tuple[int, int, int, float]]:
    """(r, g, b, intensity) per score: intensity = |s| / max |s| in [0, 1]; red for s > 0, blue for s < 0."""
    s = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    peak = float(s.abs().max()) if s.numel() else 0.0
    out = []
    for v in s.tolist():
        a = abs(v) / peak if peak > 0 else 0.0
        out.append((*(_POS if v >= 0 else _NEG), a))
    return out


def to_html(tokens: Sequence[str], scores: Tensor | Sequence[float]) -> str:
    """An HTML fragment: one <span> per token, background alpha = |score| / max |score|, score as title."""
    s = _check(tokens, scores)
    spans = []
    for tok, v, (r, g, b, a) in zip(tokens, s.tolist(), token_colors(s)):
        spans.append(f'<span style="background-color: rgba({r}, {g}, {b}, {a:.3f}); padding: 0 2px" '
                     f'title="{v:.4g}">{html.escape(tok)}</span>')
    return '<div class="kexue-heatmap">' + " ".join(spans) + "</div>"


def to_ansi(tokens: Sequence[str], scores: Tensor | Sequence[float]) -> str:
    """Tokens on 24-bit ANSI backgrounds blended from white towards red / blue by |score| / max |score|."""
    s = _check(tokens, scores)
    parts = []
    for tok, (r, g, b, a) in zip(tokens, token_colors(s)):
        rgb = [round(255 + a * (c - 255)) for c in (r, g, b)]                     # white -> colour
        parts.append(f"\x1b[48;2;{rgb[0]};{rgb[1]};{rgb[2]}m\x1b[38;2;0;0;0m{tok}\x1b[0m")
    return " ".join(parts)


def to_text(tokens: Sequence[str], scores: Tensor | Sequence[float], digits: int = 3) -> str:
    """Plain text: `token(score)` pairs separated by spaces."""
    s = _check(tokens, scores)
    return " ".join(f"{tok}({v:.{digits}f})" for tok, v in zip(tokens, s.tolist()))
