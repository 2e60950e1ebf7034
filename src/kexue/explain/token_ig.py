"""Integrated gradients on token embeddings of a text classifier (https://kexue.fm/archives/7533).

Only the token-embedding module's output is interpolated (a forward hook replaces it), so position and
segment embeddings stay as they are, as in the article. Each token gets a vector in R^E; its signed sum
keeps completeness per token, L2 / max-abs give the article's unsigned displays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from .heatmap import to_ansi, to_html, to_text
from .integrated_gradients import endpoint_values, integrated_gradients

__all__ = ["TokenIntegratedGradients", "TokenAttribution"]

_OUTPUTS = ("prob", "logit", "log_prob")
_REDUCE = ("sum", "l2", "max_abs")
_NORMALIZE = ("none", "minmax", "max_abs")


@dataclass
class TokenAttribution:
    """IG of one sequence: vectors [n, E] (raw IG per token), the target class, F(x), F(x') and the delta."""
    input_ids: Tensor             # [n]
    vectors: Tensor               # [n, E]
    target: int
    f_input: float                # F(x)
    f_baseline: float             # F(x')
    delta: float                  # Σ vectors - (F(x) - F(x'))
    special: Tensor               # [n] bool, special tokens ([CLS], [SEP], ...)
    tokens: list[str] | None = None

    @property
    def relative_error(self) -> float:
        """|delta| / |F(x) - F(x')| (inf when the two endpoints coincide)."""
        gap = abs(self.f_input - self.f_baseline)
        return abs(self.delta) / gap if gap > 0 else float("inf")

    def summary(self) -> str:
        """One line to print beside every explanation: target, F(x), F(x'), delta and the relative error."""
        return (f"target={self.target} F(x)={self.f_input:.6g} F(x')={self.f_baseline:.6g} "
                f"delta={self.delta:.3g} ({100 * self.relative_error:.2f}% of F(x) - F(x'))")

    def scores(self, reduce: str = "sum", normalize: str = "none", exclude_special: bool = False) -> Tensor:
        """Per-token scores [n]: signed `sum` over E (completeness per token), `l2` or `max_abs`; then optional
        `minmax` / `max_abs` normalisation, computed over non-special tokens when exclude_special (those get 0)."""
        if reduce not in _REDUCE:
            raise ValueError(f"reduce={reduce!r} is not supported; expected one of {_REDUCE}")
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize={normalize!r} is not supported; expected one of {_NORMALIZE}")
        v = self.vectors
        s = v.sum(-1) if reduce == "sum" else v.norm(dim=-1) if reduce == "l2" else v.abs().amax(-1)   # [n]
        keep = ~self.special if exclude_special else torch.ones_like(self.special)
        if exclude_special:
            s = s.masked_fill(~keep, 0.0)
        if normalize == "none" or not bool(keep.any()):
            return s
        kept = s[keep]
        if normalize == "minmax":
            lo, span = kept.min(), kept.max() - kept.min()
            s = (s - lo) / span if float(span) > 0 else torch.zeros_like(s)
        else:
            peak = kept.abs().max()
            s = s / peak if float(peak) > 0 else torch.zeros_like(s)
        return s.masked_fill(~keep, 0.0)

    def render(self, fmt: str = "html", reduce: str = "l2", normalize: str = "minmax",
               exclude_special: bool = False) -> str:
        """The token heat map as `html`, `ansi` or `text` (tokens default to the ids as strings)."""
        renderers = {"html": to_html, "ansi": to_ansi, "text": to_text}
        if fmt not in renderers:
            raise ValueError(f"fmt={fmt!r} is not supported; expected one of {tuple(renderers)}")
        tokens = self.tokens if self.tokens is not None else [str(i) for i in self.input_ids.tolist()]
        return renderers[fmt](tokens, self.scores(reduce, normalize, exclude_special))


def _find_word_embedding(model: nn.Module) -> nn.Module:
    found = [m for name, m in model.named_modules() if name == "embeddings.word" or name.endswith(".embeddings.word")]
    if len(found) != 1:
        raise ValueError(f"embedding_module=None: found {len(found)} modules named '*embeddings.word' in the model; "
                         "pass the token-embedding module explicitly")
    return found[0]


class TokenIntegratedGradients:
    """IG w.r.t. the output of a classifier's token-embedding module, via a forward hook.

    model(input_ids, segment_ids=..., attention_mask=...) must return logits [B, C] (or an object with
    `.logits`). F is the softmax probability (`output="prob"`), the logit or the log-probability of `target`
    (default: the predicted class). baseline: "zero", "pad", "mask" (embedding of pad/mask_token_id) or a
    tensor broadcastable to [B, n, E]. embedding_module defaults to the model's `*embeddings.word`; any module
    run once per forward works (e.g. `backbone.embeddings`: the whole embedding output). keep_special_tokens_fixed
    keeps `special_token_ids` at their true embeddings along the path (they then get exactly 0). The model runs
    in eval mode during attribution (dropout off) and gets its mode back afterwards."""

    def __init__(self, model: nn.Module, embedding_module: nn.Module | None = None,
                 baseline: Literal["zero", "pad", "mask"] | Tensor = "zero",
                 output: Literal["prob", "logit", "log_prob"] = "prob", n_steps: int = 50,
                 method: str = "gausslegendre", keep_special_tokens_fixed: bool = False,
                 special_token_ids: Sequence[int] = (), pad_token_id: int = 0, mask_token_id: int | None = None,
                 internal_batch_size: int | None = None, tokenizer: Any = None, demo_compatible: bool = False):
        if output not in _OUTPUTS:
            raise ValueError(f"output={output!r} is not supported; expected one of {_OUTPUTS}")
        if not (isinstance(baseline, Tensor) or baseline in ("zero", "pad", "mask")):
            raise ValueError(f"baseline={baseline!r} is not supported; expected 'zero', 'pad', 'mask' or a tensor")
        if baseline == "mask" and mask_token_id is None:
            raise ValueError("baseline='mask' needs mask_token_id (the [MASK] id of the vocabulary)")
        if keep_special_tokens_fixed and not len(special_token_ids):
            raise ValueError("keep_special_tokens_fixed=True needs special_token_ids (e.g. the [CLS] and [SEP] ids)")
        self.model = model
        self.embedding_module = embedding_module if embedding_module is not None else _find_word_embedding(model)
        self.baseline, self.output, self.n_steps, self.method = baseline, output, n_steps, method
        self.keep_special_tokens_fixed = keep_special_tokens_fixed
        self.special_token_ids = [int(i) for i in special_token_ids]
        self.pad_token_id, self.mask_token_id = pad_token_id, mask_token_id
        self.internal_batch_size, self.tokenizer, self.demo_compatible = internal_batch_size, tokenizer, demo_compatible

    # ---- the hooked forward -------------------------------------------------------------------------
    def forward_from_embeddings(self, token_embeds: Tensor, input_ids: Tensor, segment_ids: Tensor | None = None,
                                attention_mask: Tensor | None = None) -> Tensor:
        """F's vector [R, C] with the token-embedding output replaced by token_embeds [R, n, E]; R is a multiple
        of B = len(input_ids) (the ids, segments and mask are tiled R / B times, step-major)."""
        reps = token_embeds.shape[0] // input_ids.shape[0]
        kw = self._forward_kwargs(segment_ids, attention_mask, reps)

        def hook(module: nn.Module, args: Any, out: Tensor) -> Tensor:
            if out.shape != token_embeds.shape:
                raise ValueError(f"token embeddings of shape {tuple(token_embeds.shape)} cannot replace the "
                                 f"embedding output of shape {tuple(out.shape)}")
            return token_embeds.to(out.dtype)

        handle = self.embedding_module.register_forward_hook(hook)
        try:
            out = self.model(input_ids.repeat(reps, 1), **kw)
        finally:
            handle.remove()
        logits = out if isinstance(out, Tensor) else getattr(out, "logits", None)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise ValueError("model must return logits [B, C] or an object whose .logits is [B, C], got "
                             f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(out).__name__}")
        if self.output == "prob":
            return logits.softmax(-1)
        return logits.log_softmax(-1) if self.output == "log_prob" else logits

    def _forward_kwargs(self, segment_ids: Tensor | None, attention_mask: Tensor | None, reps: int = 1) -> dict:
        return {k: v.repeat(reps, 1) for k, v in (("segment_ids", segment_ids), ("attention_mask", attention_mask))
                if v is not None}

    def token_embeddings(self, input_ids: Tensor, segment_ids: Tensor | None = None,
                         attention_mask: Tensor | None = None) -> Tensor:
        """The embedding module's output [B, n, E] in the model's own forward (captured by a hook, so any
        embedding-like module works: the word table, or `backbone.embeddings` for the full embedding output)."""
        captured = []
        handle = self.embedding_module.register_forward_hook(lambda m, args, out: captured.append(out.detach()))
        try:
            with torch.no_grad():
                self.model(input_ids, **self._forward_kwargs(segment_ids, attention_mask))
        finally:
            handle.remove()
        if len(captured) != 1:
            raise ValueError(f"embedding_module ran {len(captured)} times in one forward of the model; expected once")
        return captured[0]

    def baseline_embeddings(self, input_ids: Tensor, segment_ids: Tensor | None = None,
                            attention_mask: Tensor | None = None) -> Tensor:
        """x' [B, n, E]: zeros, the pad / mask embedding or the given tensor; special tokens kept at x when fixed."""
        x = self.token_embeddings(input_ids, segment_ids, attention_mask)
        if isinstance(self.baseline, Tensor):
            base = self.baseline.detach().to(x).broadcast_to(x.shape).clone()
        elif self.baseline == "zero":
            base = torch.zeros_like(x)
        else:
            tok = self.pad_token_id if self.baseline == "pad" else self.mask_token_id
            base = self.token_embeddings(torch.full_like(input_ids, tok), segment_ids, attention_mask)
        if self.keep_special_tokens_fixed:
            base = torch.where(self._special(input_ids)[..., None], x, base)
        return base

    def _special(self, input_ids: Tensor) -> Tensor:
        ids = torch.tensor(self.special_token_ids, dtype=input_ids.dtype, device=input_ids.device)
        return torch.isin(input_ids, ids)                                             # [B, n]

    # ---- attribution --------------------------------------------------------------------------------
    def attribute_batch(self, input_ids: Tensor, segment_ids: Tensor | None = None,
                        attention_mask: Tensor | None = None,
                        target: int | Tensor | None = None) -> list[TokenAttribution]:
        """One TokenAttribution per row of input_ids [B, n] (padding positions, mask 0, are dropped)."""
        if not isinstance(input_ids, Tensor) or input_ids.is_floating_point():
            raise TypeError(f"input_ids must be an integer tensor [B, n], got "
                            f"{getattr(input_ids, 'dtype', type(input_ids).__name__)}")
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be an integer tensor [B, n], got "
                             f"{tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__}")
        was_training = self.model.training
        self.model.eval()
        try:
            fwd = lambda e: self.forward_from_embeddings(e, input_ids, segment_ids, attention_mask)  # noqa: E731
            x = self.token_embeddings(input_ids, segment_ids, attention_mask)
            base = self.baseline_embeddings(input_ids, segment_ids, attention_mask)
            if target is None:
                with torch.no_grad():
                    target = fwd(x).argmax(-1)                                        # predicted class [B]
            attr = integrated_gradients(fwd, x, base, target, self.n_steps, self.method, self.internal_batch_size,
                                        return_convergence_delta=False, demo_compatible=self.demo_compatible)
            tgt = torch.as_tensor(target, device=x.device).reshape(-1).expand(x.shape[0])
            f_x, f_base = endpoint_values(fwd, x, tgt), endpoint_values(fwd, base, tgt)
            delta = attr.reshape(x.shape[0], -1).sum(1) - (f_x - f_base)              # [B]
        finally:
            self.model.train(was_training)
        special = self._special(input_ids)
        results = []
        for b in range(input_ids.shape[0]):
            keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(special[b])
            ids = input_ids[b][keep]
            tokens = list(self.tokenizer.ids_to_tokens(ids.tolist())) if self.tokenizer is not None else None
            results.append(TokenAttribution(ids, attr[b][keep], int(tgt[b]), float(f_x[b]), float(f_base[b]),
                                            float(delta[b]), special[b][keep], tokens))
        return results

    def attribute(self, input_ids: Tensor, segment_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                  target: int | None = None) -> TokenAttribution:
        """IG of one sequence, input_ids [n] or [1, n]."""
        if isinstance(input_ids, Tensor) and input_ids.dim() == 1:
            input_ids = input_ids[None]
            segment_ids = segment_ids[None] if segment_ids is not None else None
            attention_mask = attention_mask[None] if attention_mask is not None else None
        if isinstance(input_ids, Tensor) and input_ids.dim() == 2 and input_ids.shape[0] != 1:
            raise ValueError(f"attribute explains one sequence, got input_ids of shape {tuple(input_ids.shape)}; "
                             "use attribute_batch for [B, n]")
        return self.attribute_batch(input_ids, segment_ids, attention_mask, target)[0]
