"""A sequence classifier on the Transformer core: [CLS] features (pooled when the backbone has a pooler)
and a head, as in the fine-tuning examples of https://kexue.fm/archives/6736 and the BERT-of-Theseus
classifier of https://kexue.fm/archives/7575 (Dense on the [CLS] vector)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float

__all__ = ["SequenceClassifier", "ClassifierOutput", "cls_features", "pool_features", "POOLINGS"]


@dataclass
class ClassifierOutput:
    logits: Tensor                 # [B, K]
    loss: Tensor | None = None     # mean cross-entropy when labels are given
    path: Tensor | None = None     # Theseus: bool [M] or [B, M], True = the successor's module ran

    def __getitem__(self, key: str):
        return getattr(self, key)


def cls_features(backbone: nn.Module, x: Tensor) -> Tensor:
    """[CLS] features [B, C] from block output x [B, n, C]: the backbone's `apply_final_layers` stage without
    the LM head (final norm, then the pooler tanh(dense(x[:, 0])) when it has one, else the [CLS] state)."""
    out = backbone.apply_final_layers(x, with_logits=False)
    return out.pooled if out.pooled is not None else out.last_hidden_state[:, 0]


def classification_loss(logits: Tensor, labels: Tensor | None, multilabel: bool = False) -> Tensor | None:
    """Mean cross-entropy over class ids [B]; with `multilabel`, mean binary cross-entropy over 0/1 targets
    [B, K] (one sigmoid per label, also the Dense(1, sigmoid) head of the sentiment example)."""
    if labels is None:
        return None
    if multilabel:
        if labels.shape != logits.shape:
            raise ValueError(f"labels must be 0/1 targets of shape [B, K] = {list(logits.shape)} when multilabel, "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if labels.shape != logits.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be class ids of shape [B] = [{logits.shape[0]}], got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels)


POOLINGS = ("auto", "cls", "pooler", "mean")


def pool_features(backbone: nn.Module, x: Tensor, pooling: str, attention_mask: Tensor | None) -> Tensor:
    """Sentence features [B, C] from block output x [B, n, C]: "auto" = `cls_features` (the pooler when the
    backbone has one, else [CLS]); "cls" = the raw [CLS] state; "pooler" = tanh(dense([CLS])), the NSP pooler
    (`transformers`' pooler_output); "mean" = the mean over real tokens (attention_mask [B, n], None = all)."""
    if pooling == "auto":
        return cls_features(backbone, x)
    out = backbone.apply_final_layers(x, with_logits=False)
    h = out.last_hidden_state                                                          # [B, n, C]
    if pooling == "cls":
        return h[:, 0]
    if pooling == "pooler":
        return out.pooled
    if attention_mask is None:
        return h.mean(1)
    if attention_mask.dim() != 2:
        raise ValueError(f"pooling='mean' needs a padding mask [B, n], got attention_mask of shape "
                         f"{tuple(attention_mask.shape)}")
    m = attention_mask.to(h.dtype).unsqueeze(-1)                                        # [B, n, 1]
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class SequenceClassifier(nn.Module):
    """backbone (a kexue Transformer) + dropout + head on pooled features: logits [B, K] = head(features [B, C]).

    pooling: "auto" (default: the pooler when the backbone was built with one, else [CLS]), "cls", "pooler"
    (equals `transformers`' BertForSequenceClassification on the same weights) or "mean"; dropout before the
    head; multilabel: one sigmoid per label and BCE on 0/1 targets [B, K] instead of softmax + CE on ids [B].
    head defaults to nn.Linear(hidden_size, num_classes), with torch's default init, or N(0, initializer_range)
    and zero bias when initializer_range is given (the article's examples: 0.02, the backbone's own)."""

    def __init__(self, backbone: nn.Module, num_classes: int | None = None, head: nn.Module | None = None, *,
                 pooling: str = "auto", dropout: float = 0.0, multilabel: bool = False,
                 initializer_range: float | None = None):
        super().__init__()
        check_choice("pooling", pooling, POOLINGS)
        dropout = check_float("dropout", dropout, 0.0, 1.0, high_open=True)
        check_bool("multilabel", multilabel)
        if initializer_range is not None:
            check_float("initializer_range", initializer_range, 0.0, low_open=True)
        if pooling == "pooler" and getattr(backbone, "pooler", None) is None:
            raise ValueError("pooling='pooler' needs a backbone built with_pool=True (it has no pooler)")
        if head is None:
            if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int when no head is given, got {num_classes!r}")
            head = nn.Linear(backbone.config.hidden_size, num_classes)
            if initializer_range is not None:
                nn.init.normal_(head.weight, std=initializer_range)
                nn.init.zeros_(head.bias)
        self.backbone, self.head = backbone, head
        self.pooling, self.multilabel = pooling, multilabel
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_ids: Tensor | None = None, segment_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, inputs_embeds: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        """input_ids [B, n] (or inputs_embeds [B, n, E]), segment_ids [B, n], attention_mask [B, n], labels [B]
        (class ids) or [B, K] (0/1, multilabel)."""
        bb = self.backbone
        B, n = bb.check_inputs(input_ids, segment_ids, attention_mask, inputs_embeds)
        if attention_mask is None:
            attention_mask = bb.default_attention_mask(input_ids)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        positions = bb.default_positions(input_ids, n, 0, device)                         # [1|B, n]
        x = bb.apply_embeddings(input_ids, segment_ids, positions, inputs_embeds)          # [B, n, C]
        bias, empty = bb.attention_bias(attention_mask, segment_ids, batch_size=B, length=n, device=device)
        x = bb.apply_main_layers(x, attention_bias=bias, empty_rows=empty, positions=positions)[0]
        logits = self.head(self.dropout(pool_features(bb, x, self.pooling, attention_mask)))   # [B, K]
        return ClassifierOutput(logits, classification_loss(logits, labels, self.multilabel))
