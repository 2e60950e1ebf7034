"""`extend_with` class factory (bert4keras `extend_with_*`) and `param_groups_by_name` (https://kexue.fm/archives/7094).

`AdamW = extend_with(torch.optim.Adam, "weight_decay")` gives a class taking the base optimizer's arguments
plus the derivations' own keywords (bert4keras names: `weight_decay_rate`, `lr_schedule`, `grad_accum_steps`,
`steps_per_slow_update`, `slow_step_size`, `ema_momentum`, ...). Derivations are listed innermost first:
`extend_with(Adam, "weight_decay", "layer_adaptation")` is `LayerAdaptation(WeightDecay(Adam(...)))` = LAMB.
"""
from __future__ import annotations

import inspect
import re
from typing import Any

from torch import nn
from torch.optim import Optimizer

from kexue.optim.accumulation import GradientAccumulation
from kexue.optim.base import DerivedOptimizer
from kexue.optim.clipping import GradientClipping
from kexue.optim.derived import LayerAdaptation, PiecewiseLinearLR, WeightDecay
from kexue.optim.ema import ExponentialMovingAverage
from kexue.optim.lazy import LazyUpdate
from kexue.optim.lookahead import Lookahead

__all__ = ["extend_with", "param_groups_by_name", "DERIVATIONS"]

DERIVATIONS: dict[str, type[DerivedOptimizer]] = {
    "weight_decay": WeightDecay,
    "layer_adaptation": LayerAdaptation,
    "piecewise_linear_lr": PiecewiseLinearLR,
    "gradient_accumulation": GradientAccumulation,
    "lookahead": Lookahead,
    "lazy_optimization": LazyUpdate,
    "exponential_moving_average": ExponentialMovingAverage,
    "gradient_clipping": GradientClipping,
}


def _keywords(cls: type) -> dict[str, str]:
    """factory keyword -> constructor argument of a derivation class."""
    if cls.factory_kwargs:
        return dict(cls.factory_kwargs)
    sig = inspect.signature(cls.__init__)
    return {n: n for n in list(sig.parameters)[2:]}


def extend_with(base_cls: type[Optimizer], *derivations: str | type[DerivedOptimizer], name: str | None = None) -> type:
    """A new optimizer class: `base_cls` wrapped by `derivations`, first = innermost (https://kexue.fm/archives/7094).

    The class is a subclass of the outermost derivation; `obj.inner` walks down the chain to the base instance.
    """
    if not (isinstance(base_cls, type) and issubclass(base_cls, Optimizer)):
        raise TypeError(f"base_cls must be a torch.optim.Optimizer subclass, got {base_cls!r}")
    if not derivations:
        raise ValueError("extend_with needs at least one derivation, got none")
    classes = []
    for d in derivations:
        if isinstance(d, str):
            if d not in DERIVATIONS:
                raise ValueError(f"unknown derivation {d!r}; expected one of {sorted(DERIVATIONS)} or a "
                                 f"DerivedOptimizer subclass")
            d = DERIVATIONS[d]
        if not (isinstance(d, type) and issubclass(d, DerivedOptimizer)):
            raise TypeError(f"derivations must be names or DerivedOptimizer subclasses, got {d!r}")
        classes.append(d)
    routes = [_keywords(c) for c in classes]
    base_params = set(inspect.signature(base_cls.__init__).parameters) - {"self", "params"}
    seen: dict[str, str] = {}
    for cls, keys in zip(classes, routes):
        for k in keys:
            if k in base_params or k in seen:
                other = base_cls.__name__ if k in base_params else seen[k]
                raise TypeError(f"keyword {k!r} of {cls.__name__} clashes with {other}; wrap instances by hand")
            seen[k] = cls.__name__
    outer, inner_classes = classes[-1], classes[:-1]

    def __init__(self, params: Any, **kwargs: Any) -> None:
        def take(route: dict[str, str]) -> dict[str, Any]:
            return {arg: kwargs.pop(k) for k, arg in route.items() if k in kwargs}
        wrapper_kwargs = [take(r) for r in routes]
        opt = base_cls(params, **kwargs)
        for cls, kw in zip(inner_classes, wrapper_kwargs[:-1]):
            opt = cls(opt, **kw)
        outer.__init__(self, opt, **wrapper_kwargs[-1])

    cls_name = name or base_cls.__name__ + "".join(c.__name__ for c in classes)
    doc = (f"{base_cls.__name__} extended with {', '.join(c.__name__ for c in classes)} (innermost first); "
           f"extra keywords: {sorted(seen)}. (https://kexue.fm/archives/7094)")
    return type(cls_name, (outer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                     "_made_by_extend_with": True})


def param_groups_by_name(model: nn.Module, rules: list[tuple[str | re.Pattern, dict[str, Any]]],
                         default: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Param groups from parameter names (https://kexue.fm/archives/7094): the first matching rule's options.

    A rule is (regex, options); `re.search` on the parameter name decides.

    The PyTorch idiom for bert4keras's exclude lists, e.g.
    `param_groups_by_name(model, [(r"bias|LayerNorm|norm", {"weight_decay_rate": 0.0, "layer_adaptation": False})])`.
    Frozen parameters are left out; groups come in rule order, then the default group. (https://kexue.fm/archives/7094)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    compiled = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[1], dict)
                and isinstance(rule[0], (str, re.Pattern))):
            raise TypeError(f"rules[{i}] must be a (regex, options-dict) pair, got {rule!r}")
        if "params" in rule[1]:
            raise ValueError(f"rules[{i}] options must not contain 'params', got {sorted(rule[1])}")
        compiled.append((re.compile(rule[0]), rule[1]))
    default = dict(default or {})
    buckets: list[list] = [[] for _ in range(len(compiled) + 1)]
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        idx = next((i for i, (rx, _) in enumerate(compiled) if rx.search(pname)), len(compiled))
        buckets[idx].append(p)
    options = [opts for _, opts in compiled] + [default]
    return [{"params": ps, **opts} for ps, opts in zip(buckets, options) if ps]
