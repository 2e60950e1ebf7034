"""`extend_with` class factory (bert4keras `extend_with_*`) and `param_groups_by_name` (https://kexue.fm/archives/7094).

`AdamW = extend_with(torch.optim.Adam, "weight_decay")` gives a class taking the base optimizer's arguments
plus the derivations' own keywords (bert4keras names: `weight_decay_rate`, `lr_schedule`, `grad_accum_steps`,
`steps_per_slow_update`, `slow_step_size`, `ema_momentum`, ...). Derivations are listed innermost first:
`extend_with(Adam, "weight_decay", "layer_adaptation")` is `LayerAdaptation(WeightDecay(Adam(...)))` = LAMB.

bert4keras's `exclude_from_weight_decay=[name patterns]` (and `exclude_from_layer_adaptation`) are accepted as
documented aliases of kexue's param groups: with named parameters (`model.named_parameters()`) the matching
ones go to groups with `weight_decay_rate=0` (`layer_adaptation=False`); without names it is a TypeError that
shows the kexue way (`param_groups_by_name`).
"""
from __future__ import annotations

import inspect
from typing import Any

from torch.optim import Optimizer

from kexue.optim.accumulation import GradientAccumulation
from kexue.optim.base import DerivedOptimizer
from kexue.optim.clipping import GradientClipping
from kexue.optim.derived import LayerAdaptation, PiecewiseLinearLR, WeightDecay
from kexue.optim.ema import ExponentialMovingAverage
from kexue.optim.groups import param_groups_by_name, split_by_name_patterns
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


# bert4keras keyword -> the derivation it needs and the group options it maps to
_EXCLUDE_ALIASES = (("exclude_from_weight_decay", WeightDecay, {"weight_decay_rate": 0.0}),
                    ("exclude_from_layer_adaptation", LayerAdaptation, {"layer_adaptation": False}))


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
    aliases = {key: (cls, options) for key, cls, options in _EXCLUDE_ALIASES
               if any(issubclass(c, cls) for c in classes)}

    def __init__(self, params: Any, **kwargs: Any) -> None:
        exclusions = {}
        for key, cls, options in _EXCLUDE_ALIASES:
            if key in kwargs and key not in aliases:
                raise TypeError(f"{key} (the bert4keras keyword) needs the {cls.__name__} derivation, which "
                                f"{cls_name} lacks; for per-name options use kexue.optim.param_groups_by_name")
            if key in kwargs and kwargs[key] is not None:
                exclusions[key] = (kwargs.pop(key), options)
            kwargs.pop(key, None)
        if exclusions:
            params = split_by_name_patterns(params, exclusions)

        def take(route: dict[str, str]) -> dict[str, Any]:
            return {arg: kwargs.pop(k) for k, arg in route.items() if k in kwargs}
        wrapper_kwargs = [take(r) for r in routes]
        opt = base_cls(params, **kwargs)
        for cls, kw in zip(inner_classes, wrapper_kwargs[:-1]):
            opt = cls(opt, **kw)
        outer.__init__(self, opt, **wrapper_kwargs[-1])

    cls_name = name or base_cls.__name__ + "".join(c.__name__ for c in classes)
    doc = (f"{base_cls.__name__} extended with {', '.join(c.__name__ for c in classes)} (innermost first); "
           f"extra keywords: {sorted(seen) + sorted(aliases)}. (https://kexue.fm/archives/7094)")
    return type(cls_name, (outer,), {"__init__": __init__, "__doc__": doc, "__module__": __name__,
                                     "_made_by_extend_with": True})
