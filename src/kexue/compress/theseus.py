"""BERT-of-Theseus: compression by progressive module replacement (https://kexue.fm/archives/7575;
Xu et al., EMNLP 2020, arXiv 2002.02925).

The predecessor's L layers form K modules of L/K consecutive layers; the successor's M layers form K modules
of M/K. In training each module position runs, with probability p (r_i ~ Bernoulli(p)), the successor's
module instead of the predecessor's, y_i = r_i scc_i(y_{i-1}) + (1 - r_i) prd_i(y_{i-1}); as in Su's
code the embedding layer is one more replaceable module. Only the task loss is used; predecessor and
head are frozen, so only the successor learns. In eval mode the successor runs alone.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_float
from .classifier import POOLINGS, ClassifierOutput, SequenceClassifier, classification_loss, pool_features
from .schedules import ConstantReplacement, LinearReplacement

__all__ = ["ReplaceableModule", "LayerGroup", "TheseusModel"]


class ReplaceableModule(nn.Module):
    """A frozen predecessor module and a trainable successor module with the same input and output.

    use_successor: a bool (one path for the whole batch) or a bool tensor [B] (per sample: both paths run
    where the batch is mixed, and rows are picked with torch.where)."""

    def __init__(self, predecessor: nn.Module, successor: nn.Module):
        super().__init__()
        self.predecessor, self.successor = predecessor, successor

    def forward(self, *args: Any, use_successor: bool | Tensor, **kwargs: Any) -> Tensor:
        if isinstance(use_successor, Tensor) and use_successor.dim() == 1:
            if bool(use_successor.all()) or not bool(use_successor.any()):
                use_successor = bool(use_successor[0])
            else:
                s, p = self.successor(*args, **kwargs), self.predecessor(*args, **kwargs)   # [B, ...]
                return torch.where(use_successor.view(-1, *[1] * (s.dim() - 1)), s, p)
        return (self.successor if bool(use_successor) else self.predecessor)(*args, **kwargs)


class LayerGroup(nn.Module):
    """Consecutive layers of one backbone run as a module (its `apply_main_layers` stage on those layers):
    x [B, n, C] -> [B, n, C]."""

    def __init__(self, backbone: nn.Module, layers: Sequence[int]):
        super().__init__()
        self.layers = list(layers)
        self.blocks = nn.ModuleList([backbone.layer(i) for i in self.layers])
        self.backbone = [backbone]          # a list: not registered twice

    def forward(self, x: Tensor, *, attention_bias: Tensor | None = None, empty_rows: Tensor | None = None,
                positions: Tensor | None = None) -> Tensor:
        return self.backbone[0].apply_main_layers(x, attention_bias=attention_bias, empty_rows=empty_rows,
                                                  positions=positions, layers=self.layers)[0]


class _Embed(nn.Module):
    """A backbone's `apply_embeddings` stage as a module: ids [B, n] -> x [B, n, C]."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = [backbone]          # a list: not registered twice

    def forward(self, input_ids: Tensor, segment_ids: Tensor | None, positions: Tensor) -> Tensor:
        return self.backbone[0].apply_embeddings(input_ids, segment_ids, positions)


class _Top(nn.Module):
    """A backbone's `apply_final_layers` stage reduced to the sentence features (`pool_features`):
    x [B, n, C] -> [B, C]."""

    def __init__(self, backbone: nn.Module, pooling: str):
        super().__init__()
        self.backbone, self.pooling = [backbone], pooling          # a list: not registered twice

    def forward(self, x: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return pool_features(self.backbone[0], x, self.pooling, attention_mask)


class TheseusModel(nn.Module):
    """Hybrid of a predecessor and a successor backbone (kexue Transformers) with a shared classifier head.

    forward(input_ids, segment_ids, attention_mask, labels) -> ClassifierOutput(logits [B, K], loss, path).
    path: bool [M] ("batch": one Bernoulli draw per module per batch, the reference) or [B, M] ("sample"),
    True = successor; M = num_modules (+1 first, for the embeddings, when replace_embeddings). The rate is
    `replace_rate` or the scheduler's (a float means a constant rate); eval mode runs the successor alone.
    The final norm and pooler (if any) are those of the backbone whose last module ran. `pooling` and `dropout`
    must be those the head was trained with (a SequenceClassifier's `.pooling` and `.dropout.p`; the default
    "auto" = the pooler if any, else [CLS]); the exported successor keeps them."""

    def __init__(self, predecessor: nn.Module, successor: nn.Module, head: nn.Module,
                 replace_embeddings: bool = True, freeze_predecessor: bool = True, freeze_head: bool = True,
                 granularity: str = "batch", scheduler: float | ConstantReplacement | LinearReplacement = 0.5,
                 num_modules: int | None = None, generator: torch.Generator | None = None, *,
                 pooling: str = "auto", dropout: float = 0.0):
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        dropout = check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        if pooling == "pooler" and (predecessor.pooler is None or successor.pooler is None):
            raise ValueError("pooling='pooler' needs predecessor and successor built with_pool=True")
        L, M = predecessor.num_layers, successor.num_layers
        K = M if num_modules is None else num_modules
        if isinstance(K, bool) or not isinstance(K, int) or K < 1 or L % K or M % K:
            raise ValueError(f"num_modules={K!r} must divide both predecessor.num_layers={L} and "
                             f"successor.num_layers={M}")
        if granularity not in ("batch", "sample"):
            raise ValueError(f"granularity={granularity!r} is not supported; expected 'batch' or 'sample'")
        if predecessor.config.hidden_size != successor.config.hidden_size:
            raise ValueError(f"hidden sizes differ: predecessor {predecessor.config.hidden_size}, successor "
                             f"{successor.config.hidden_size}; modules must be interchangeable")
        if predecessor.application != successor.application:
            raise ValueError(f"applications differ: predecessor {predecessor.application!r}, successor "
                             f"{successor.application!r}")
        for part in ("pooler", "final_norm"):
            if (getattr(predecessor, part) is None) != (getattr(successor, part) is None):
                raise ValueError(f"predecessor and successor must both have or both lack a {part}")
        if not replace_embeddings:
            a, b = predecessor.embeddings.state_dict(), successor.embeddings.state_dict()
            if {k: v.shape for k, v in a.items()} != {k: v.shape for k, v in b.items()}:
                raise ValueError("replace_embeddings=False: the successor reuses the predecessor's embeddings, "
                                 "so their embedding tables must have the same names and shapes")
        if isinstance(scheduler, (int, float)) and not isinstance(scheduler, bool):
            scheduler = ConstantReplacement(scheduler)
        if not isinstance(scheduler, (ConstantReplacement, LinearReplacement)):
            raise TypeError(f"scheduler must be a rate in [0, 1], ConstantReplacement or LinearReplacement, "
                            f"got {type(scheduler).__name__}")
        self.predecessor, self.successor, self.head = predecessor, successor, head
        self.replace_embeddings, self.granularity = replace_embeddings, granularity
        self.scheduler, self.generator, self.num_modules = scheduler, generator, K
        if freeze_predecessor:
            predecessor.requires_grad_(False)
        if freeze_head:
            head.requires_grad_(False)
        lp, ls = L // K, M // K
        self.module_layers = [list(range(lp * i, lp * (i + 1))) for i in range(K)]        # predecessor layers
        self.successor_module_layers = [list(range(ls * i, ls * (i + 1))) for i in range(K)]
        switches = [ReplaceableModule(LayerGroup(predecessor, p), LayerGroup(successor, s))
                    for p, s in zip(self.module_layers, self.successor_module_layers)]
        if replace_embeddings:
            switches.insert(0, ReplaceableModule(_Embed(predecessor), _Embed(successor)))
        # plain lists: the modules are already registered under predecessor / successor (no duplicate keys)
        self.switches: list[ReplaceableModule] = switches
        self._top = [ReplaceableModule(_Top(predecessor, pooling), _Top(successor, pooling))]
        self.pooling, self.dropout = pooling, nn.Dropout(dropout)
        self.last_path: Tensor | None = None

    @property
    def num_switches(self) -> int:
        return len(self.switches)

    def draw_path(self, batch_size: int, replace_rate: float | None = None) -> Tensor:
        """Bernoulli(p) draws, True = successor: [M] for granularity "batch", [B, M] for "sample"."""
        p = self.scheduler.rate if replace_rate is None else replace_rate
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"replace_rate must be a probability in [0, 1], got {p!r}")
        shape = (self.num_switches,) if self.granularity == "batch" else (batch_size, self.num_switches)
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        return torch.rand(shape, generator=self.generator, device=device) < p

    def _check_path(self, path: Tensor | Sequence[bool], B: int) -> Tensor:
        path = torch.as_tensor(path)
        if path.dtype != torch.bool or path.shape not in ((self.num_switches,), (B, self.num_switches)):
            raise ValueError(f"path must be a bool tensor [M] or [B, M] with M = {self.num_switches}, B = {B}; "
                             f"got {path.dtype} {tuple(path.shape)}")
        return path

    def forward(self, input_ids: Tensor, segment_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                labels: Tensor | None = None, replace_rate: float | None = None,
                path: Tensor | Sequence[bool] | None = None) -> ClassifierOutput:
        """input_ids [B, n]; `path` forces the modules (e.g. all False = the predecessor) in any mode."""
        P = self.predecessor
        B, n = P.check_inputs(input_ids, segment_ids, attention_mask, None, 0)
        if attention_mask is None:                                   # the predecessor's padding rule
            attention_mask = P.default_attention_mask(input_ids)
        if path is not None:
            path = self._check_path(path, B)
        elif self.training:
            path = self.draw_path(B, replace_rate)
        else:
            path = torch.ones(self.num_switches, dtype=torch.bool)
        path = path.to(input_ids.device)
        self.last_path = path
        device = input_ids.device
        positions = P.default_positions(input_ids, n, 0, device)                          # [1|B, n]
        bias, empty = P.attention_bias(attention_mask, segment_ids, batch_size=B, length=n, device=device)
        blocks = self.switches
        if self.replace_embeddings:
            x = blocks[0](input_ids, segment_ids, positions, use_successor=path[..., 0])   # [B, n, C]
            blocks = blocks[1:]
        else:
            x = P.apply_embeddings(input_ids, segment_ids, positions)
        for sw, use in zip(blocks, path[..., -len(blocks):].unbind(-1)):
            x = sw(x, attention_bias=bias, empty_rows=empty, positions=positions, use_successor=use)   # [B, n, C]
        feats = self._top[0](x, attention_mask, use_successor=path[..., -1])               # [B, C]
        logits = self.head(self.dropout(feats))                                            # [B, K]
        if torch.is_grad_enabled() and not logits.requires_grad:
            # only frozen modules ran: the loss must still backpropagate (to nothing, so an optimizer
            # step skips every parameter, as Keras does with None gradients in Su's code)
            logits.requires_grad_(True)
        return ClassifierOutput(logits, classification_loss(logits, labels), path)

    def export_successor(self) -> SequenceClassifier:
        """A standalone SequenceClassifier: a copy of the successor backbone (num_layers = its layers; with the
        predecessor's embeddings when they were not replaced) and of the head, all parameters trainable."""
        backbone = copy.deepcopy(self.successor)
        if not self.replace_embeddings:
            backbone.embeddings.load_state_dict(self.predecessor.embeddings.state_dict())
        model = SequenceClassifier(backbone, head=copy.deepcopy(self.head), pooling=self.pooling,
                                   dropout=self.dropout.p).requires_grad_(True)
        return model.train(self.training)
