"""Adversarial training and its first-order twin, the input-gradient penalty: FGM, PGD, VAT
(https://kexue.fm/archives/7466, https://kexue.fm/archives/7234).

FGM adds delta = eps * g / ||g|| (g = gradient of the loss w.r.t. the target: an input tensor, an
nn.Embedding matrix or any parameter), backpropagates the loss at the perturbed point, and restores
the target bit-exactly. To first order this trains on l + eps * ||grad l||, which
`input_gradient_penalty` computes exactly with double backprop. VAT replaces the label by the
model's own prediction and finds the worst direction by power iteration.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from kexue._validate import check_bool, check_float, check_int

__all__ = ["input_gradient_penalty", "FGM", "PGD", "VAT", "adversarial_step", "resolve_targets",
           "token_embedding"]
_NORMS = ("global", "per_sample", "per_row")
Target = str | nn.Module | Tensor | Sequence[Tensor] | Callable[[str, Tensor], bool]


_TOKEN_TABLE_NAMES = ("word", "word_embeddings", "wte", "shared", "embed_tokens", "tok_embeddings",
                      "token_embedding", "token_embeddings", "embed_in")


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The token (word) embedding of `model`, what bert4keras calls "Embedding-Token": the module returned by
    `model.get_input_embeddings()` when there is one, else the model's only nn.Embedding, else the one nn.Embedding
    named like a token table (kexue `embeddings.word`, HF `word_embeddings` / `wte` / `embed_tokens`, T5 `shared`)."""
    get = getattr(model, "get_input_embeddings", None)
    if callable(get) and isinstance(emb := get(), nn.Embedding):
        return emb
    tables = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if len(tables) == 1:
        return tables[0][1]
    named = [m for n, m in tables if n.rsplit(".", 1)[-1] in _TOKEN_TABLE_NAMES]
    if len(named) == 1:
        return named[0]
    raise ValueError(f"cannot tell the token embedding of {type(model).__name__} among its nn.Embedding modules "
                     f"{[n for n, _ in tables]}: pass target= the module, its weight or a parameter name, or "
                     "target='all_embeddings'")


def resolve_targets(model: nn.Module | None, target: Target) -> list[Tensor]:
    """Tensors to perturb (https://kexue.fm/archives/7234):
    - "embedding" or "token_embedding": the token embedding matrix only (`token_embedding`), as the article and
      bert4keras; position / segment tables and the embedding LayerNorm are left alone;
    - "all_embeddings": the weight of every nn.Embedding (token, position, segment, ...);
    - any other string: every parameter whose name contains it (e.g. "embeddings." = the whole embedding block);
    - a tensor / list of tensors, a module's parameters (an nn.Embedding gives its matrix), or the parameters
      selected by fn(name, param)."""
    if isinstance(target, Tensor):
        return [target]
    if isinstance(target, nn.Module):
        return [p for p in target.parameters() if p.requires_grad]
    if isinstance(target, (list, tuple)) and all(isinstance(t, Tensor) for t in target) and target:
        return list(target)
    if not isinstance(model, nn.Module):
        raise TypeError(f"target={target!r} selects parameters by name, so model must be an nn.Module, "
                        f"got {type(model).__name__}")
    if target in ("embedding", "token_embedding"):
        return [token_embedding(model).weight]
    if target == "all_embeddings":
        found = list({id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}.values())
    elif isinstance(target, str):
        found = [p for n, p in model.named_parameters() if target in n]
    elif callable(target):
        found = [p for n, p in model.named_parameters() if target(n, p)]
    else:
        raise TypeError(f"target must be a str, module, tensor(s) or callable, got {type(target).__name__}")
    if not found:
        names = [n for n, _ in model.named_parameters()][:8]
        raise ValueError(f"target={target!r} matches no parameter of the model; names start with {names}")
    return found


def _check_norm(norm: str) -> str:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    return norm


def _unit(g: Tensor, norm: str) -> Tensor:
    """g / ||g||: one L2 norm over the whole tensor ("global") or one per slice of dim 0."""
    if norm == "global" or g.dim() == 0:
        n = g.norm()
    else:
        n = g.reshape(g.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (g.dim() - 1)))
    if not torch.isfinite(n).all():
        raise FloatingPointError("non-finite gradient norm in the adversarial direction")
    return g / n.clamp_min(torch.finfo(g.dtype).tiny)


def input_gradient_penalty(loss: Tensor, wrt: Tensor | nn.Module | Sequence[Tensor], epsilon: float = 1.0,
                           normalized: bool = False) -> Tensor:
    """0.5 * eps * ||grad_wrt loss||^2 (or eps * ||grad||), built with create_graph=True so that
    backpropagating it differentiates the gradient norm (double backprop), unlike bert4torch which
    only doubles the gradient. Add it to the loss before backward."""
    epsilon = check_float("epsilon", epsilon, 0.0)
    tensors = resolve_targets(None, wrt) if not isinstance(wrt, str) else None
    if not tensors or not all(t.requires_grad for t in tensors):
        raise ValueError("wrt must be tensors/parameters with requires_grad=True (e.g. embedding.weight)")
    grads = torch.autograd.grad(loss, tensors, create_graph=True, allow_unused=True)
    sq = sum(g.pow(2).sum() for g in grads if g is not None)
    if not isinstance(sq, Tensor):
        return loss.new_zeros(())
    return epsilon * sq.clamp_min(1e-30).sqrt() if normalized else 0.5 * epsilon * sq


class FGM:
    """Fast gradient method (https://kexue.fm/archives/7234): attack() adds eps*g/||g|| (or eps*sign(g)) to the
    targets, restore() copies the saved values back bit-exactly. `with FGM(model): loss_adv.backward()`.
    The default target="embedding" is the token embedding matrix only, as in the article and bert4keras;
    target="all_embeddings", a parameter-name substring, a module or tensors select others (`resolve_targets`)."""

    def __init__(self, model: nn.Module | None = None, target: Target = "embedding", epsilon: float = 1.0,
                 norm: str = "global", use_sign: bool = False) -> None:
        epsilon = check_float("epsilon", epsilon, 0.0, low_open=True)
        use_sign = check_bool("use_sign", use_sign)
        self.targets = resolve_targets(model, target)
        self.epsilon, self.norm, self.use_sign = epsilon, _check_norm(norm), use_sign
        self.backup: dict[int, Tensor] = {}

    def direction(self, g: Tensor, scale: float) -> Tensor:
        return scale * (g.sign() if self.use_sign else _unit(g, self.norm))

    def _grads(self, grads: Sequence[Tensor | None] | None) -> list[Tensor | None]:
        grads = [t.grad for t in self.targets] if grads is None else list(grads)
        if len(grads) != len(self.targets):
            raise ValueError(f"grads must have one entry per target ({len(self.targets)}), got {len(grads)}")
        return grads

    @torch.no_grad()
    def attack(self, grads: Sequence[Tensor | None] | None = None) -> None:
        """Perturb each target along its gradient (`grads`, default `.grad`); targets without one stay."""
        if self.backup:
            raise RuntimeError("FGM.attack() called twice without restore()")
        for i, (t, g) in enumerate(zip(self.targets, self._grads(grads))):
            if g is not None:
                self.backup[i] = t.detach().clone()
                t.add_(self.direction(g.to(t.dtype), self.epsilon))

    @torch.no_grad()
    def restore(self) -> None:
        for i, saved in self.backup.items():
            self.targets[i].copy_(saved)
        self.backup.clear()

    def __enter__(self) -> "FGM":
        self.attack()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()


class PGD(FGM):
    """Projected gradient descent (Madry et al.): `steps` ascent steps of size alpha, each projected
    back onto the eps-ball (L2 per `norm`, or L-inf with use_sign) around the original values.  Targets as
    FGM: by default the token embedding matrix only."""

    def __init__(self, model: nn.Module | None = None, target: Target = "embedding", epsilon: float = 1.0,
                 alpha: float = 0.3, steps: int = 3, norm: str = "global", use_sign: bool = False) -> None:
        super().__init__(model, target, epsilon, norm, use_sign)
        self.alpha = check_float("alpha", alpha, 0.0, low_open=True)
        self.steps = check_int("steps", steps, 1)

    def _project(self, delta: Tensor) -> Tensor:
        if self.use_sign:
            return delta.clamp(-self.epsilon, self.epsilon)
        if self.norm == "global":
            return delta * (self.epsilon / delta.norm().clamp_min(self.epsilon))
        n = delta.reshape(delta.shape[0], -1).norm(dim=1).clamp_min(self.epsilon)
        return delta * (self.epsilon / n).reshape(-1, *([1] * (delta.dim() - 1)))

    @torch.no_grad()
    def attack(self, grads: Sequence[Tensor | None] | None = None) -> None:
        """One projected ascent step (repeat calls accumulate; restore() undoes all)."""
        for i, (t, g) in enumerate(zip(self.targets, self._grads(grads))):
            if g is None:
                continue
            base = self.backup.setdefault(i, t.detach().clone())
            delta = self._project(t - base + self.direction(g.to(t.dtype), self.alpha))
            t.copy_(base + delta)

    def attack_steps(self, closure: Callable[[], Tensor], grads: Sequence[Tensor | None] | None = None) -> None:
        """All `steps` ascent steps; `closure()` recomputes the loss at the current perturbation."""
        for k in range(self.steps):
            if k > 0:
                grads = torch.autograd.grad(closure(), self.targets, allow_unused=True)
            self.attack(grads)


class VAT:
    """Virtual adversarial training: loss = D(p(x) || p(x + r_adv)) with p(x) under no_grad and r_adv
    the power-iteration estimate of the top eigenvector of the Hessian of D, scaled to eps.

    target: "input" (perturb the first input), a parameter (perturb it; model_fn must be the nn.Module
    owning it), or a module: perturb="weight" (default for nn.Embedding: the embedding matrix, the
    author's variant) or perturb="output" (default otherwise: its output, through a forward hook).
    distance "kl" on logits or "mse" on outputs.
    """

    def __init__(self, model_fn: Callable, target: str | nn.Module | Tensor = "input", epsilon: float = 1.0,
                 xi: float = 10.0, iters: int = 1, distance: str = "kl", norm: str = "global",
                 generator: torch.Generator | None = None, perturb: str | None = None) -> None:
        epsilon = check_float("epsilon", epsilon, 0.0, low_open=True)
        xi, iters = check_float("xi", xi, 0.0, low_open=True), check_int("iters", iters, 0)
        if distance not in ("kl", "mse"):
            raise ValueError(f"distance must be 'kl' or 'mse', got {distance!r}")
        if isinstance(target, str) and target != "input":
            raise ValueError(f"target must be 'input', a parameter or a module, got {target!r}")
        self.model_fn, self.epsilon, self.xi, self.iters = model_fn, epsilon, xi, iters
        self.distance, self.norm, self.generator = distance, _check_norm(norm), generator
        self.param_name = None
        if perturb not in (None, "weight", "output"):
            raise ValueError(f"perturb must be 'weight', 'output' or None, got {perturb!r}")
        if isinstance(target, nn.Module) and (perturb or ("weight" if isinstance(target, nn.Embedding)
                                                          else "output")) == "weight":
            target = target.weight
        if isinstance(target, Tensor):
            if not isinstance(model_fn, nn.Module):
                raise TypeError("a parameter target needs model_fn to be the nn.Module that owns it")
            names = [n for n, p in model_fn.named_parameters() if p is target]
            if not names:
                raise ValueError("the target parameter is not a parameter of model_fn")
            self.param_name = names[0]
        self.target = target
        self.mode = "input" if isinstance(target, str) else "param" if self.param_name else "output"

    def _run(self, r: Tensor | None, inputs: tuple, kwargs: dict, shape_box: list | None = None) -> Tensor:
        if self.mode == "input":
            return self.model_fn(inputs[0] + r if r is not None else inputs[0], *inputs[1:], **kwargs)
        if self.mode == "param":
            if r is None:
                return self.model_fn(*inputs, **kwargs)
            return functional_call(self.model_fn, {self.param_name: self.target + r}, inputs, kwargs)

        def hook(module, args, out):
            if shape_box is not None:
                shape_box.append(out)
            return out if r is None else out + r
        handle = self.target.register_forward_hook(hook)
        try:
            return self.model_fn(*inputs, **kwargs)
        finally:
            handle.remove()

    def _dist(self, clean: Tensor, out: Tensor) -> Tensor:
        out = _at_least_float32(out)
        if self.distance == "mse":
            return (out - clean).pow(2).reshape(out.shape[0], -1).sum(1).mean()
        lp, lq = clean.log_softmax(-1), out.log_softmax(-1)
        return (lp.exp() * (lp - lq)).sum(-1).clamp_min(0).mean()       # KL(p || q) >= 0 per row

    def loss(self, *inputs, **kwargs) -> Tensor:
        """VAT loss on a batch; gradients reach the parameters only through p(x + r_adv)."""
        box: list = []
        with torch.no_grad():
            clean = _at_least_float32(self._run(None, inputs, kwargs, box))
        ref = {"input": inputs[0] if inputs else None, "param": self.target, "output": box[0] if box else None}[self.mode]
        if ref is None:
            raise ValueError(f"VAT(target={self.mode!r}) found nothing to perturb: give the input as the first argument")
        r = torch.randn(ref.shape, dtype=ref.dtype, device=ref.device, generator=self.generator)
        for _ in range(self.iters):
            r = (self.xi * _unit(r, self.norm)).requires_grad_(True)
            d = self._dist(clean, self._run(r, inputs, kwargs))
            g = torch.autograd.grad(d, r, allow_unused=True)[0] if d.requires_grad else None
            r = torch.zeros_like(r) if g is None else g            # an output that ignores r: no direction
        r_adv = self.epsilon * _unit(r.detach(), self.norm)
        return self._dist(clean, self._run(r_adv, inputs, kwargs))


def _at_least_float32(t: Tensor) -> Tensor:
    """Half precision up to float32, float64 kept: VAT's finite difference with a tiny xi lives in the last digits."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def adversarial_step(model: nn.Module, loss_fn: Callable, batch: tuple, optimizer: torch.optim.Optimizer,
                     method: str = "fgm", weight: float = 1.0, **kw) -> dict[str, float]:
    """One optimizer step on batch = (inputs, targets) with method "fgm" | "pgd" | "gp" | "vat"
    (kw go to FGM / PGD / input_gradient_penalty(wrt=...) / VAT). Returns {"loss", "reg"}."""
    if method not in ("fgm", "pgd", "gp", "vat"):
        raise ValueError(f"method must be 'fgm', 'pgd', 'gp' or 'vat', got {method!r}")
    weight = check_float("weight", weight, 0.0)
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    if method == "gp":
        reg = input_gradient_penalty(loss, **kw)
    elif method == "vat":
        reg = VAT(model, **kw).loss(x)
    else:
        reg = None
    (loss + weight * reg if reg is not None else loss).backward()
    if method in ("fgm", "pgd"):
        atk = FGM(model, **kw) if method == "fgm" else PGD(model, **kw)
        if method == "pgd":
            atk.attack_steps(lambda: loss_fn(model(x), y))
        else:
            atk.attack()
        reg = loss_fn(model(x), y)
        (weight * reg).backward()
        atk.restore()
    optimizer.step()
    return {"loss": float(loss.detach()), "reg": float(reg.detach())}
