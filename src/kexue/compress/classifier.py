"""A sequence classifier on the Transformer core: [CLS] features (pooled when the backbone has a pooler)
and a head, as in the fine-tuning examples of https://kexue.fm/archives/6736 and the BERT-of-Theseus
classifier of https://kexue.fm/archives/7575 (Dense on the [CLS] vector)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SequenceClassifier", "ClassifierOutput", "cls_features"]


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


def classification_loss(logits: Tensor, labels: Tensor | None) -> Tensor | None:
    if labels is None:
        return None
    if labels.shape != logits.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be class ids of shape [B] = [{logits.shape[0]}], got "
                         f"{labels.dtype} {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels)


class SequenceClassifier(nn.Module):
    """backbone (a kexue Transformer) + head on the [CLS] features: logits [B, K] = head(features [B, C]).

    head defaults to nn.Linear(hidden_size, num_classes)."""

    def __init__(self, backbone: nn.Module, num_classes: int | None = None, head: nn.Module | None = None):
        super().__init__()
        if head is None:
            if not isinstance(num_classes, int) or num_classes < 1:
                raise ValueError(f"num_classes must be a positive int when no head is given, got {num_classes!r}")
            head = nn.Linear(backbone.config.hidden_size, num_classes)
        self.backbone, self.head = backbone, head

    def forward(self, input_ids: Tensor | None = None, segment_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, inputs_embeds: Tensor | None = None,
                labels: Tensor | None = None) -> ClassifierOutput:
        """input_ids [B, n] (or inputs_embeds [B, n, E]), segment_ids [B, n], attention_mask [B, n], labels [B]."""
        bb = self.backbone
        B, n = bb.check_inputs(input_ids, segment_ids, attention_mask, inputs_embeds)
        if attention_mask is None:
            attention_mask = bb.default_attention_mask(input_ids)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        positions = bb.default_positions(input_ids, n, 0, device)                         # [1|B, n]
        x = bb.apply_embeddings(input_ids, segment_ids, positions, inputs_embeds)          # [B, n, C]
        bias, empty = bb.attention_bias(attention_mask, segment_ids, batch_size=B, length=n, device=device)
        x = bb.apply_main_layers(x, attention_bias=bias, empty_rows=empty, positions=positions)[0]
        logits = self.head(cls_features(bb, x))                                            # [B, K]
        return ClassifierOutput(logits, classification_loss(logits, labels))
