"""Sparse self-attention: atrous, local and strided patterns (https://kexue.fm/archives/6853).

Query i attends only to S(i):  atrous(r): (i - j) % r == 0;  local(w, d): |i - j| <= w*d and (i - j) % d == 0;
strided(r): atrous(r) | {|i - j| < r} under ONE softmax (Su's merge of the Sparse Transformer patterns).
Two implementations that agree to fp32 rounding:
  impl="dense_mask": an [n, n] boolean mask into SDPA; O(n^2) memory, the oracle.
  impl="blocked":    memory-saving; atrous = fold the sequence into r residue classes ([B, H, r, n/r, D]),
                     local = blocks of b >= w queries against their previous, own and next block (no n x n
                     tensor), strided = both, merged exactly through their log-sum-exps.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.ops import masked_softmax
from .attention import MultiHeadAttention

__all__ = ["sparse_attention_mask", "allowed_pairs", "sparse_attention",
           "SparseSelfAttention", "AtrousSelfAttention", "LocalSelfAttention", "StridedSelfAttention"]

PATTERNS = ("full", "atrous", "local", "strided")
IMPLS = ("auto", "dense_mask", "blocked")
AUTO_BLOCKED_MIN_LEN = 512      # "auto" uses the blocked kernels from this key length on
_MIN_BLOCK = 64                 # local block size b = max(window, 64): big enough for efficient matmuls
_CHUNK = 1024                   # local attention handles about this many queries at a time


def _check_pattern(pattern: str, rate: int, window: int, dilation: int) -> None:
    check_choice("pattern", pattern, PATTERNS)
    for name, val, lo in (("rate", rate, 2 if pattern == "strided" else 1), ("window", window, 0),
                          ("dilation", dilation, 1)):
        check_int(f"{name} (pattern={pattern!r})", val, lo)


def _clip_sizes(n: int, pattern: str, rate: int, window: int, dilation: int) -> tuple[int, int, int]:
    """The smallest (rate, window, dilation) selecting the same pairs on n positions (|i - j| <= n - 1):
    a rate or dilation >= n only keeps i = j (strided: every pair), a window past (n - 1) / dilation adds
    nothing.  So a huge size (window=10**12) costs nothing: no O(window) tensor, no int64 overflow."""
    n = max(n, 1)
    rate = max(2 if pattern == "strided" else 1, min(rate, n))
    dilation = min(dilation, n)
    window = min(window, -(-(n - 1) // dilation))
    return rate, window, dilation


def _pattern_mask(q_pos: Tensor, k_pos: Tensor, pattern: str, rate: int, window: int, dilation: int,
                  causal: bool) -> Tensor:
    rel = q_pos[:, None] - k_pos[None, :]                                    # [n_q, n_k]  i - j
    if pattern == "full":
        m = torch.ones_like(rel, dtype=torch.bool)
    elif pattern == "atrous":
        m = rel % rate == 0
    elif pattern == "local":
        m = (rel.abs() <= window * dilation) & (rel % dilation == 0)
    else:
        m = (rel % rate == 0) | (rel.abs() < rate)
    return m & (rel >= 0) if causal else m


def sparse_attention_mask(seq_len: int, pattern: str, *, rate: int = 2, window: int = 1, dilation: int = 1,
                          causal: bool = False, device: torch.device | str | None = None) -> Tensor:
    """[seq_len, seq_len] bool mask of the pattern, True = query i may attend key j."""
    _check_pattern(pattern, rate, window, dilation)
    check_int("seq_len", seq_len, 1)
    rate, window, dilation = _clip_sizes(seq_len, pattern, rate, window, dilation)
    pos = torch.arange(seq_len, device=device)
    return _pattern_mask(pos, pos, pattern, rate, window, dilation, causal)


def allowed_pairs(seq_len: int, pattern: str, *, rate: int = 2, window: int = 1, dilation: int = 1,
                  causal: bool = False) -> int:
    """Closed-form number of True entries of `sparse_attention_mask` (cost reports, tests)."""
    _check_pattern(pattern, rate, window, dilation)
    n = check_int("seq_len", seq_len, 0)
    rate, window, dilation = _clip_sizes(n, pattern, rate, window, dilation)
    tri = (lambda c: c * (c + 1) // 2) if causal else (lambda c: c * c)
    if pattern == "full":
        return tri(n)
    if pattern == "local":
        side = sum(max(0, n - s * dilation) for s in range(1, window + 1))
        return n + side * (1 if causal else 2)
    q, rem = divmod(n, rate)
    atrous = rem * tri(q + 1) + (rate - rem) * tri(q)
    if pattern == "atrous":
        return atrous
    return atrous + allowed_pairs(n, "local", window=rate - 1, causal=causal) - n


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool = False,
            need_lse: bool = False, dropout_p: float = 0.0, scale: float = 1.0, log: list | None = None):
    """Attention on [..., L_q, D] x [..., L_k, D] with a bool mask broadcastable to [..., L_q, L_k].
    Rows with no allowed key give 0 output (and lse = -inf), never NaN."""
    Lq, Lk = q.shape[-2], k.shape[-2]
    if log is not None:
        log.append((*q.shape[:-2], Lq, Lk))
    if is_causal and (need_lse or mask is not None):
        tril = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril()
        mask, is_causal = tril if mask is None else mask & tril, False
    empty = None
    if mask is not None:
        empty = ~mask.any(-1, keepdim=True)                                  # [..., L_q, 1]
        mask = mask | empty
    if need_lse:
        s = (q @ k.transpose(-1, -2)) * scale                                # [..., L_q, L_k]
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        lse = s.logsumexp(-1)                                                # [..., L_q]
        p = F.dropout(torch.exp(s - lse[..., None]), dropout_p) if dropout_p else torch.exp(s - lse[..., None])
        out = p @ v
        if empty is not None:
            out, lse = out.masked_fill(empty, 0.0), lse.masked_fill(empty[..., 0], float("-inf"))
        return out, lse
    lead, Dv = q.shape[:-2], v.shape[-1]
    if mask is None:
        q4, k4, v4 = (t.reshape(1, -1, t.shape[-2], t.shape[-1]) for t in (q, k, v))   # [1, prod(lead), L, D]
        out = F.scaled_dot_product_attention(q4, k4, v4, dropout_p=dropout_p, is_causal=is_causal, scale=scale)
        return out.reshape(*lead, Lq, Dv)
    # SDPA wants 4-D and converts bool masks at full size: put the dims the mask varies over into the batch
    # axis and the broadcast ones (heads, ...) into the head axis, and pass a compact additive float mask.
    mlead = (1,) * (len(lead) - mask.dim() + 2) + tuple(mask.shape[:-2])
    vary = [i for i in range(len(lead)) if mlead[i] != 1]
    perm = vary + [i for i in range(len(lead)) if mlead[i] == 1]
    nv = math.prod(lead[i] for i in vary)
    q4, k4, v4 = (t.permute(*perm, -2, -1).reshape(nv, -1, t.shape[-2], t.shape[-1]) for t in (q, k, v))
    m4 = mask.expand(*mask.shape[:-2], Lq, Lk).reshape(*mlead, Lq, Lk).permute(*perm, -2, -1).reshape(nv, 1, Lq, Lk)
    bias = torch.zeros(m4.shape, dtype=q.dtype, device=q.device).masked_fill_(~m4, float("-inf"))
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    out = out.reshape(*(lead[i] for i in perm), Lq, Dv).permute(*[perm.index(i) for i in range(len(lead))], -2, -1)
    return out.masked_fill(empty, 0.0) if bool(empty.any()) else out


def _fold(x: Tensor, r: int) -> Tensor:
    """[B, H, n, D] -> [B, H, r, ceil(n/r), D]: residue class c holds positions c, c + r, ... (zero padded)."""
    n = x.shape[-2]
    x = F.pad(x, (0, 0, 0, (-n) % r))
    return x.unflatten(-2, (-1, r)).transpose(-3, -2)


def _unfold(y: Tensor, n: int) -> Tensor:
    """Inverse of `_fold`: [B, H, r, L, D] -> [B, H, n, D]."""
    return y.transpose(-3, -2).flatten(-3, -2)[..., :n, :]


def _fold_valid(valid: Tensor | None, n: int, r: int, device: torch.device) -> Tensor | None:
    """Key validity [Bv, 1, n] -> [Bv, 1, r, L]; the padding to a multiple of r is invalid."""
    if valid is None and n % r == 0:
        return None
    if valid is None:
        valid = torch.ones(1, 1, n, dtype=torch.bool, device=device)
    return F.pad(valid, (0, (-n) % r), value=False).unflatten(-1, (-1, r)).transpose(-2, -1)


def _local(q: Tensor, k: Tensor, v: Tensor, valid: Tensor | None, w: int, causal: bool, exclude_self: bool,
           need_lse: bool, dropout_p: float, scale: float, log: list | None = None):
    """Blocked local attention |i - j| <= w on [..., L, D]: blocks of b >= w queries see their previous,
    own and next block of keys (previous and own when causal); scores are [..., L/b, b, 3b]. Blocks are
    processed in chunks of about _CHUNK queries, so temporaries stay O(_CHUNK * b) beside the output."""
    L = q.shape[-2]
    b = max(w, min(_MIN_BLOCK, L), 1)
    nb = -(-L // b)
    span = 2 * b if causal else 3 * b
    if valid is None:
        valid = torch.ones(L, dtype=torch.bool, device=q.device)
    rel = torch.arange(b, device=q.device)[:, None] - torch.arange(span, device=q.device)[None, :] + b  # i - j
    allowed = rel.abs() <= w
    if causal:
        allowed &= rel >= 0
    if exclude_self:
        allowed &= rel != 0
    group = max(1, _CHUNK // b)
    outs, lses = [], []
    for g0 in range(0, nb, group):
        g1 = min(nb, g0 + group)
        s, e = g0 * b, g1 * b                                                # queries [s, e), keys [s - b, e + b)
        ks, ke = max(0, s - b), min(L, e + (0 if causal else b))
        kpad = (ks - (s - b), (e + (0 if causal else b)) - ke)
        qc = F.pad(q[..., s:min(e, L), :], (0, 0, 0, e - min(e, L))).unflatten(-2, (g1 - g0, b))   # [.., G, b, D]
        kc = F.pad(k[..., ks:ke, :], (0, 0, *kpad)).unfold(-2, span, b).transpose(-1, -2)   # [.., G, span, D]
        vc = F.pad(v[..., ks:ke, :], (0, 0, *kpad)).unfold(-2, span, b).transpose(-1, -2)   # [.., G, span, Dv]
        kvalid = F.pad(valid[..., ks:ke], kpad, value=False).unfold(-1, span, b)           # [.., G, span]
        res = _attend(qc, kc, vc, allowed & kvalid[..., None, :], need_lse=need_lse, dropout_p=dropout_p,
                      scale=scale, log=log)                                           # mask [.., G, b, span]
        out, lse = res if need_lse else (res, None)
        outs.append(out.flatten(-3, -2))
        if need_lse:
            lses.append(lse.flatten(-2))
    out = torch.cat(outs, -2)[..., :L, :] if len(outs) > 1 else outs[0][..., :L, :]
    if need_lse:
        return out, torch.cat(lses, -1)[..., :L]
    return out


def _blocked(q, k, v, valid, pattern, rate, window, dilation, causal, dropout_p, scale, log=None) -> Tensor:
    """Memory-saving kernels; q, k, v [B, H, n, D], valid [Bv, 1, n] or None."""
    n = q.shape[-2]
    if pattern == "full" or (pattern == "atrous" and rate == 1):
        mask = None if valid is None else valid[..., None, :]
        return _attend(q, k, v, mask, is_causal=causal, dropout_p=dropout_p, scale=scale, log=log)
    if pattern == "local":
        if dilation == 1:
            return _local(q, k, v, valid, window, causal, False, False, dropout_p, scale, log)
        fq, fk, fv = (_fold(t, dilation) for t in (q, k, v))                  # [B, H, d, L, D]
        out = _local(fq, fk, fv, _fold_valid(valid, n, dilation, q.device), window, causal, False, False, dropout_p, scale,
                     log)
        return _unfold(out, n)
    fq, fk, fv = (_fold(t, rate) for t in (q, k, v))                          # [B, H, r, L, D]
    fvalid = _fold_valid(valid, n, rate, q.device)
    fmask = None if fvalid is None else fvalid[..., None, :]                  # [Bv, 1, r, 1, L]
    if pattern == "atrous":
        return _unfold(_attend(fq, fk, fv, fmask, is_causal=causal, dropout_p=dropout_p, scale=scale, log=log), n)
    out_a, lse_a = _attend(fq, fk, fv, fmask, is_causal=causal, need_lse=True, dropout_p=dropout_p, scale=scale,
                           log=log)
    out_a, lse_a = _unfold(out_a, n), _unfold(lse_a[..., None], n)[..., 0]    # [B, H, n, D], [B, H, n]
    out_l, lse_l = _local(q, k, v, valid, rate - 1, causal, True, True, dropout_p, scale, log)
    m = torch.maximum(lse_a, lse_l)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m)).detach()
    wa, wl = torch.exp(lse_a - m)[..., None], torch.exp(lse_l - m)[..., None]   # [B, H, n, 1]
    return (wa * out_a + wl * out_l) / (wa + wl).clamp_min(torch.finfo(q.dtype).tiny)


def _key_validity(attn_mask: Tensor | None, attention_mask: Tensor | None, B: int, nk: int):
    """Split an SDPA-style attn_mask into key validity [Bv, 1, nk] (when it only depends on the key) and a
    remaining mask / additive bias broadcastable to [B, H, n_q, n_k]."""
    valid, rest = None, None
    if attn_mask is not None:
        m = attn_mask
        inner = m.shape[1:-1] if m.dim() == 4 else m.shape[:-1]
        key_only = m.dim() <= 4 and all(s == 1 for s in inner) and m.shape[-1] == nk
        if m.dtype != torch.bool and key_only and bool(((m == 0) | (m <= -1e4)).all()):
            m = m == 0                                                       # 0 / -big additive mask -> bool
        if m.dtype == torch.bool and key_only and (m.dim() < 4 or m.shape[0] in (1, B)):
            valid = m.reshape(m.shape[0] if m.dim() == 4 else 1, 1, nk)
        else:
            rest = m
    if attention_mask is not None:
        if attention_mask.shape != (B, nk):
            raise ValueError(f"attention_mask must have shape [B, n_k] = {(B, nk)} (1 = real token), got "
                             f"{tuple(attention_mask.shape)}")
        kp = attention_mask.bool()[:, None, :]                                # [B, 1, nk]
        valid = kp if valid is None else valid & kp
    return valid, rest


def sparse_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, *,
                     pattern: str = "strided", rate: int = 2, window: int = 1, dilation: int = 1,
                     causal: bool = False, attention_mask: Tensor | None = None, impl: str = "auto",
                     dropout_p: float = 0.0, scale: float | None = None,
                     score_shapes: list[tuple[int, ...]] | None = None) -> Tensor:
    """Sparse attention on q, k [B, H, n, D], v [B, H, n, Dv] -> [B, H, n_q, Dv] (https://kexue.fm/archives/6853).

    Drop-in attention kernel `fn(q, k, v, attn_mask=None)`: configure with functools.partial(pattern=...).
    attn_mask follows SDPA (bool True = allowed, or additive float, broadcastable to [B, H, n_q, n_k]);
    a key-only mask ([B, 1, 1, n_k]) keeps the blocked path, any other mask falls back to the dense oracle.
    attention_mask [B, n_k]: the padding mask, 1 / True = real token (kexue's name, docs/naming.md; not torch's
    key_padding_mask, whose True means padding). n_q < n_k means the queries are the last n_q positions
    (incremental decoding). Rows with no allowed key give 0. A rate / window / dilation past the sequence
    is clipped to it (same pairs, no O(window) memory); n = 0 or B = 0 give an empty output.
    score_shapes: a list that every kernel call appends the shape of its score tensor to ([..., L_q, L_k]; the
    logical shape for SDPA calls), so a test or a cost report can check that no [n, n] tensor was formed.
    """
    if isinstance(attn_mask, str):
        raise TypeError(f"attn_mask must be a Tensor or None, got the string {attn_mask!r}; pass pattern= as keyword")
    _check_pattern(pattern, rate, window, dilation)
    check_choice("impl", impl, IMPLS)
    causal = check_bool("causal", causal)
    dropout_p = check_float("dropout_p", dropout_p, 0.0, 1.0, high_open=True)
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be [B, H, n, D], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, H, nq, D = q.shape
    nk = k.shape[-2]
    if k.shape[:2] != (B, H) or v.shape[:3] != k.shape[:3] or k.shape[-1] != D or nq > nk:
        raise ValueError(f"incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected equal "
                         "B, H, k/v lengths, q/k head dims, and n_q <= n_k")
    scale = D ** -0.5 if scale is None else check_float("scale", scale)
    rate, window, dilation = _clip_sizes(nk, pattern, rate, window, dilation)
    valid, rest = _key_validity(attn_mask, attention_mask, B, nk)
    if q.numel() == 0 or k.numel() == 0 or v.numel() == 0:           # n = 0, B = 0, H = 0 or D = 0
        return (q @ k.transpose(-1, -2)) @ v                                 # empty [B, H, n_q, Dv], with a graph
    blockable = rest is None and nq == nk
    if impl == "auto":
        impl = "blocked" if blockable and nk >= AUTO_BLOCKED_MIN_LEN else "dense_mask"
    if impl == "blocked":
        if not blockable:
            raise ValueError("impl='blocked' needs n_q == n_k and an attn_mask that depends on the key only, got "
                             f"n_q={nq}, n_k={nk}, attn_mask shape {tuple(rest.shape) if rest is not None else None}")
        return _blocked(q, k, v, valid, pattern, rate, window, dilation, causal, dropout_p, scale, score_shapes)
    pos = torch.arange(nk, device=q.device)
    allowed = _pattern_mask(pos[nk - nq:], pos, pattern, rate, window, dilation, causal)   # [n_q, n_k]
    if valid is not None:
        allowed = allowed & valid[:, :, None, :]                             # [Bv, 1, n_q, n_k]
    if rest is not None and rest.dtype == torch.bool:
        allowed, rest = allowed & rest, None
    if rest is None:
        return _attend(q, k, v, allowed, dropout_p=dropout_p, scale=scale, log=score_shapes)
    if score_shapes is not None:
        score_shapes.append((B, H, nq, nk))
    empty = ~allowed.any(-1, keepdim=True)
    bias = rest.to(q.dtype).masked_fill(~(allowed | empty), float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
    return out.masked_fill(empty, 0.0)


class SparseSelfAttention(MultiHeadAttention):
    """Multi-head self-attention restricted to a sparse pattern (https://kexue.fm/archives/6853): the shared
    MultiHeadAttention with `sparse_attention` as its kernel.

    As in the reference: bias-free Q/K/V projections, no output projection (output width
    num_heads * head_dim), scores scaled by 1/sqrt(key_dim), outputs at padded positions set to 0.
    Weights are `q`, `k`, `v` (checkpoints with the former `q_proj`, `k_proj`, `v_proj` names load too).

    Args (docs/naming.md): head_dim (default hidden_size // num_heads) and key_dim (per-head width of queries
    and keys, default head_dim). bert4keras's names `head_size` and `key_size` are accepted as keyword aliases
    of head_dim and key_dim (and readable as attributes); giving both names of one size is a TypeError.
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int | None = None,
                 key_dim: int | None = None, pattern: str = "strided", rate: int = 2, window: int = 1,
                 dilation: int = 1, causal: bool = False, bias: bool = False, attn_dropout: float = 0.0,
                 impl: str = "auto", *, head_size: int | None = None, key_size: int | None = None):
        head_dim = _alias("head_dim", head_dim, "head_size", head_size)
        key_dim = _alias("key_dim", key_dim, "key_size", key_size)
        _check_pattern(pattern, rate, window, dilation)
        check_choice("impl", impl, IMPLS)
        hidden_size, num_heads = check_int("hidden_size", hidden_size, 1), check_int("num_heads", num_heads, 1)
        if head_dim is None and hidden_size % num_heads:
            raise ValueError(f"num_heads must divide hidden_size={hidden_size} when head_dim is None, "
                             f"got num_heads={num_heads}")
        attn_dropout = check_float("attn_dropout", attn_dropout, 0.0, 1.0, high_open=True)
        causal, bias = check_bool("causal", causal), check_bool("bias", bias)
        kw = dict(pattern=pattern, rate=rate, window=window, dilation=dilation, causal=causal)
        super().__init__(hidden_size, num_heads, head_dim, bias=bias, dropout=attn_dropout, key_dim=key_dim,
                         out_proj=False, kernel=functools.partial(sparse_attention, impl=impl, **kw))
        self.kw, self.attn_dropout, self.impl = kw, attn_dropout, impl
        self._register_load_state_dict_pre_hook(_rename_old_projections, with_module=True)

    @property
    def head_size(self) -> int:
        """bert4keras's name of `head_dim`."""
        return self.head_dim

    @property
    def key_size(self) -> int:
        """bert4keras's name of `key_dim`."""
        return self.key_dim

    def forward(self, x: Tensor, attention_mask: Tensor | None = None, output_attentions: bool = False):
        """x [B, n, hidden_size], attention_mask [B, n] (1 = real token) -> [B, n, H*head_dim]
        (, weights [B, H, n, n] when output_attentions)."""
        if x.dim() != 3 or x.shape[-1] != self.hidden_size:
            raise ValueError(f"x must be [B, n, hidden_size={self.hidden_size}], got shape {tuple(x.shape)}")
        B, n, _ = x.shape
        if attention_mask is not None and tuple(attention_mask.shape) != (B, n):
            raise ValueError(f"attention_mask must have shape [B, n] = {(B, n)} (that of x), got "
                             f"{tuple(attention_mask.shape)}")
        keep = None if attention_mask is None else attention_mask.bool()          # [B, n]
        q, k, v = self.project(x)                                                 # [B, H, n, dk|dv]
        p = self.dropout if self.training else 0.0
        # a bool key-only mask keeps the kernel on its blocked path without reading the mask back
        out = self.kernel(q, k, v, attn_mask=None if keep is None else keep[:, None, None, :], dropout_p=p,
                          scale=self.scale)                                       # [B, H, n, dv]
        out = self.merge(out)                                                     # [B, n, H*dv]
        if keep is not None:
            out = out * keep[..., None].to(out.dtype)
        if not output_attentions:
            return out
        allowed = (sparse_attention_mask(n, device=x.device, **self.kw) if n else
                   torch.zeros(0, 0, dtype=torch.bool, device=x.device))  # [n, n]
        if keep is not None:
            allowed = allowed & keep[:, None, None, :]                            # [B, 1, n, n]
        scores = q @ k.transpose(-1, -2) * self.scale                             # [B, H, n, n]
        return out, masked_softmax(scores, allowed.expand_as(scores))


def _alias(name: str, value: int | None, alias: str, alias_value: int | None) -> int | None:
    """One size under its kexue name or its bert4keras alias (docs/naming.md), checked under the name given."""
    if value is not None and alias_value is not None:
        raise TypeError(f"{name}={value!r} and {alias}={alias_value!r} both given; {alias} is bert4keras's name of "
                        f"{name}: pass one of them")
    if alias_value is not None:
        return check_int(alias, alias_value, 1)
    return None if value is None else check_int(name, value, 1)


def _rename_old_projections(module, state_dict, prefix, *args) -> None:
    """Load-state-dict pre-hook: `q_proj` / `k_proj` / `v_proj` (before issue 9) -> `q` / `k` / `v`."""
    for old in [key for key in state_dict if key.startswith(prefix)]:
        rest = old[len(prefix):]
        for p in "qkv":
            if rest.startswith(f"{p}_proj."):
                state_dict[prefix + p + rest[len(p) + 5:]] = state_dict.pop(old)


class AtrousSelfAttention(SparseSelfAttention):
    """Dilated attention: i sees j iff (i - j) % rate == 0 (https://kexue.fm/archives/6853)."""

    def __init__(self, hidden_size: int, num_heads: int, rate: int = 1, **kw):
        super().__init__(hidden_size, num_heads, pattern="atrous", rate=rate, **kw)


class LocalSelfAttention(SparseSelfAttention):
    """Sliding-window attention: |i - j| <= window * dilation, step dilation (https://kexue.fm/archives/6853)."""

    def __init__(self, hidden_size: int, num_heads: int, window: int = 1, dilation: int = 1, **kw):
        super().__init__(hidden_size, num_heads, pattern="local", window=window, dilation=dilation, **kw)


class StridedSelfAttention(SparseSelfAttention):
    """Atrous(rate) + local(|i - j| < rate) under one softmax (https://kexue.fm/archives/6853)."""

    def __init__(self, hidden_size: int, num_heads: int, rate: int = 2, **kw):
        super().__init__(hidden_size, num_heads, pattern="strided", rate=rate, **kw)
