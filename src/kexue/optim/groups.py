"""Param groups from parameter names: the PyTorch idiom for bert4keras's per-weight options
(https://kexue.fm/archives/7094).

bert4keras keyword                         kexue (torch.optim param groups)
`exclude_from_weight_decay=[patterns]`     group with `weight_decay_rate=0` for names matching a pattern
`exclude_from_layer_adaptation=[...]`      group with `layer_adaptation=False`
`lr_multiplier=100` (the CRF's)            group with `lr = base lr × 100` (key `lr_multiplier` records it)

    groups = param_groups_by_name(model, {r"bias|LayerNorm": {"weight_decay_rate": 0.0},
                                          r"^crf\\.": {"lr_multiplier": 100}}, lr=1e-5)
    opt = WeightDecay(torch.optim.Adam(groups, lr=1e-5), 0.01)

A group's lr is an ordinary torch lr: every torch LR scheduler (and `PiecewiseLinearLR`,
`PiecewiseLinearScheduler`) scales each group's lr by the same factor, so the ratio stays the multiplier.
"""
from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

from kexue._validate import check_float

__all__ = ["param_groups_by_name", "split_by_name_patterns"]


def _compile_rules(rules: Any) -> list[tuple[re.Pattern, dict[str, Any]]]:
    items = list(rules.items()) if isinstance(rules, dict) else rules
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"rules must be a dict {{regex: options}} or a list of (regex, options) pairs, got "
                        f"{type(rules).__name__}")
    compiled = []
    for i, rule in enumerate(items):
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[1], dict)
                and isinstance(rule[0], (str, re.Pattern))):
            raise TypeError(f"rules[{i}] must be a (regex, options-dict) pair, got {rule!r}")
        if "params" in rule[1]:
            raise ValueError(f"rules[{i}] options must not contain 'params', got {sorted(rule[1])}")
        try:
            compiled.append((re.compile(rule[0]), dict(rule[1])))
        except re.error as e:
            raise ValueError(f"rules[{i}] pattern {rule[0]!r} is not a valid regex: {e}") from None
    return compiled


def _resolve_lr(options: dict[str, Any], lr: float | None, where: str) -> dict[str, Any]:
    """`lr_multiplier` m -> `lr` = lr × m (the group keeps `lr_multiplier` as a record)."""
    if "lr_multiplier" not in options:
        return options
    m = check_float(f"{where}['lr_multiplier']", options["lr_multiplier"], low=0.0)
    if "lr" in options:
        raise ValueError(f"{where} sets both 'lr' ({options['lr']!r}) and 'lr_multiplier' ({m!r}); give one")
    if lr is None:
        raise TypeError(f"{where} sets lr_multiplier={m!r}, which needs the base learning rate: pass lr=... "
                        f"(the group's lr becomes lr × {m!r}), e.g. param_groups_by_name(model, rules, lr=1e-5)")
    return {**options, "lr": lr * m}


def param_groups_by_name(model: nn.Module, rules: dict[str, dict[str, Any]] | list[tuple[str | re.Pattern, dict]],
                         default: dict[str, Any] | None = None, lr: float | None = None) -> list[dict[str, Any]]:
    """Param groups from parameter names (https://kexue.fm/archives/7094): the first matching rule's options.

    `rules`: {regex: options} or [(regex, options), ...]; `re.search` on the parameter name decides. An option
    `lr_multiplier: m` (bert4keras's `lr_multiplier`, e.g. for the CRF's transitions) gives the group
    `lr = lr × m` and needs `lr`, the optimizer's base lr. E.g. bert4keras's exclude lists and the CRF's lr:
    `param_groups_by_name(model, {r"bias|LayerNorm|norm": {"weight_decay_rate": 0.0, "layer_adaptation": False},
    r"^crf\\.": {"lr_multiplier": 100}}, lr=1e-5)`.
    Frozen parameters are left out; groups come in rule order, then the default group.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if lr is not None:
        lr = check_float("lr", lr, low=0.0)
    compiled = _compile_rules(rules)
    options = [_resolve_lr(opts, lr, f"rules[{i}]") for i, (_, opts) in enumerate(compiled)]
    options.append(_resolve_lr(dict(default or {}), lr, "default"))
    buckets: list[list[Tensor]] = [[] for _ in range(len(compiled) + 1)]
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        idx = next((i for i, (rx, _) in enumerate(compiled) if rx.search(pname)), len(compiled))
        buckets[idx].append(p)
    return [{"params": ps, **opts} for ps, opts in zip(buckets, options) if ps]


def _as_named_groups(params: Any, keyword: str) -> list[dict[str, Any]]:
    """The `params` argument of a torch optimizer as groups of (name, tensor) pairs; names are required."""
    if isinstance(params, Tensor):
        raise TypeError(f"params must be an iterable of (name, tensor) pairs or of groups, got one Tensor")
    items = list(params)
    groups = [dict(g) for g in items] if items and isinstance(items[0], dict) else [{"params": items}]
    for gi, group in enumerate(groups):
        entries = group["params"]
        entries = [entries] if isinstance(entries, Tensor) else list(entries)
        names = group.pop("param_names", None)
        if names is not None and len(names) == len(entries) and all(isinstance(e, Tensor) for e in entries):
            entries = list(zip(names, entries))
        for e in entries:
            if not (isinstance(e, tuple) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], Tensor)):
                raise TypeError(
                    f"{keyword} matches parameter names, but params[{gi}] holds a {type(e).__name__} without a name. "
                    f"Pass model.named_parameters() (or groups of (name, tensor) pairs), or do it the kexue way "
                    f"before building the optimizer: groups = kexue.optim.param_groups_by_name(model, "
                    f"{{r'bias|LayerNorm': {{'weight_decay_rate': 0.0}}}}), then the optimizer on `groups`")
        group["params"] = entries
    return groups


def split_by_name_patterns(params: Any, exclusions: dict[str, tuple[list[str], dict[str, Any]]]) -> list[dict]:
    """Split named params into groups by bert4keras exclude lists (https://kexue.fm/archives/7094).

    `exclusions`: {keyword: (patterns, options)}, e.g. {"exclude_from_weight_decay": (["bias", "LayerNorm"],
    {"weight_decay_rate": 0.0})}; a parameter whose name matches (`re.search`) a keyword's patterns gets its
    options. Groups keep their own options and their order; the names stay in the groups (torch records them
    as `param_names`)."""
    compiled: dict[str, tuple[list[re.Pattern], dict[str, Any]]] = {}
    for keyword, (patterns, options) in exclusions.items():
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)) or \
                not all(isinstance(x, (str, re.Pattern)) for x in patterns):
            raise TypeError(f"{keyword} must be a list of name patterns (regex strings, as in bert4keras), got "
                            f"{patterns!r}")
        try:
            compiled[keyword] = ([re.compile(x) for x in patterns], options)
        except re.error as e:
            raise ValueError(f"{keyword} holds a pattern that is not a valid regex: {e}") from None
    out: list[dict[str, Any]] = []
    for group in _as_named_groups(params, " and ".join(exclusions)):
        buckets: dict[tuple[bool, ...], list] = {}
        for name, p in group["params"]:
            key = tuple(any(rx.search(name) for rx in rxs) for rxs, _ in compiled.values())
            buckets.setdefault(key, []).append((name, p))
        for key, entries in buckets.items():
            extra: dict[str, Any] = {}
            for hit, (_, options) in zip(key, compiled.values()):
                if hit:
                    extra.update(options)
            out.append({**group, **extra, "params": entries})
    return out
