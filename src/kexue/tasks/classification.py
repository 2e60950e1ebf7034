"""Sentence (and sentence-pair) classification by fine-tuning a pretrained encoder, as in 当Bert遇上Keras
(https://kexue.fm/archives/6736): the encoder, dropout and one dense layer on the [CLS] / pooled features.

The model is `kexue.compress.SequenceClassifier` (pooling "cls" / "pooler" / "mean", dropout, multilabel);
this module reads and writes it as a Hugging Face `BertForSequenceClassification` checkpoint (the encoder's
weights under `bert.`, the head as `classifier.weight` / `classifier.bias`), strictly: every weight must be
used and every parameter filled. With pooling "pooler" (the default here) the logits equal `transformers`'
on the same checkpoint."""
from __future__ import annotations

import json
import os

from torch import nn

from ..compress.classifier import POOLINGS, SequenceClassifier
from ..models import CheckpointError, build_transformer_model, read_state_dict, save_pretrained
from ..models.config import read_hf_config
from ..models.loading import load_into, write_safetensors

__all__ = ["SequenceClassifier", "load_sequence_classifier", "save_sequence_classifier"]

HEAD_KEYS = ("classifier.weight", "classifier.bias")
MULTILABEL = "multi_label_classification"
ARCHITECTURES = {"bert": "BertForSequenceClassification", "albert": "AlbertForSequenceClassification"}


def _num_labels(hf: dict) -> int:
    if isinstance(hf.get("id2label"), dict) and hf["id2label"]:
        return len(hf["id2label"])
    return int(hf.get("num_labels", 2))


def load_sequence_classifier(checkpoint: str | os.PathLike, *, pooling: str = "pooler",
                             dropout: float | None = None, multilabel: bool | None = None,
                             allow_nonfinite: bool = False) -> SequenceClassifier:
    """A `SequenceClassifier` from an HF `BertForSequenceClassification`-format directory (config.json +
    weights), loaded strictly. The number of labels comes from the config's id2label / num_labels;
    multilabel defaults to problem_type == "multi_label_classification"; dropout defaults to the config's
    classifier_dropout, else hidden_dropout_prob (as `transformers`). Returned in train mode, like HF."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    hf = read_hf_config(checkpoint)
    state = read_state_dict(checkpoint)
    absent = [k for k in HEAD_KEYS if k not in state]
    other_head = sorted(k for k in state if k.startswith("classifier.") and k not in HEAD_KEYS)
    if absent or other_head:
        raise CheckpointError(f"{os.fspath(checkpoint)!r} is not a BertForSequenceClassification checkpoint: "
                              f"it lacks {absent} and/or holds another classifier head {other_head[:5]} "
                              "(expected exactly classifier.weight [K, C] and classifier.bias [K])")
    weight, bias = state.pop("classifier.weight"), state.pop("classifier.bias")
    if weight.dim() != 2 or bias.shape != weight.shape[:1]:
        raise CheckpointError(f"classifier.weight {tuple(weight.shape)} and classifier.bias {tuple(bias.shape)} "
                              "must be [K, C] and [K]")
    K = _num_labels(hf)
    if weight.shape[0] != K:
        raise CheckpointError(f"classifier.weight has {weight.shape[0]} rows but the config declares {K} labels")
    backbone = build_transformer_model(config=checkpoint, with_pool=True)
    fam = backbone.family
    if fam.convert_in is not None:
        state = fam.convert_in(state, backbone.config)
    backbone.load_report = load_into(backbone, state, fam.keymap(backbone.config), strict=True,
                                     allow_nonfinite=allow_nonfinite)
    if dropout is None:
        dropout = hf.get("classifier_dropout")
        dropout = hf.get("hidden_dropout_prob", 0.1) if dropout is None else dropout
    if multilabel is None:
        multilabel = hf.get("problem_type") == MULTILABEL
    model = SequenceClassifier(backbone, K, pooling=pooling, dropout=dropout, multilabel=multilabel)
    if weight.shape[1] != model.head.in_features:
        raise CheckpointError(f"classifier.weight {tuple(weight.shape)} does not fit hidden size "
                              f"{model.head.in_features}")
    if not allow_nonfinite and not (weight.isfinite().all() and bias.isfinite().all()):
        raise CheckpointError("classifier.weight / classifier.bias hold NaN or inf (pass allow_nonfinite=True)")
    model.head.weight.data.copy_(weight)
    model.head.bias.data.copy_(bias)
    return model


def save_sequence_classifier(model: SequenceClassifier, directory: str | os.PathLike) -> None:
    """Write `model` (a SequenceClassifier with an nn.Linear head and pooling "pooler") as an HF
    `BertForSequenceClassification` checkpoint that `transformers` and `load_sequence_classifier` load back."""
    if not isinstance(model, SequenceClassifier):
        raise TypeError(f"model must be a SequenceClassifier, got {type(model).__name__}")
    if not isinstance(model.head, nn.Linear) or model.pooling != "pooler":
        raise ValueError("save_sequence_classifier writes BertForSequenceClassification, which is pooler -> "
                         f"Linear: got pooling={model.pooling!r} and head {type(model.head).__name__}")
    directory = os.fspath(directory)
    save_pretrained(model.backbone, directory)
    weights = os.path.join(directory, "model.safetensors")
    state = read_state_dict(weights)
    state.update({"classifier.weight": model.head.weight, "classifier.bias": model.head.bias})
    write_safetensors(state, weights)
    config = os.path.join(directory, "config.json")
    with open(config, encoding="utf-8") as f:
        hf = json.load(f)
    K = model.head.out_features
    if hf.get("model_type") in ARCHITECTURES:
        hf["architectures"] = [ARCHITECTURES[hf["model_type"]]]
    hf.update(id2label={str(i): f"LABEL_{i}" for i in range(K)}, label2id={f"LABEL_{i}": i for i in range(K)},
              classifier_dropout=model.dropout.p,
              problem_type=MULTILABEL if model.multilabel else "single_label_classification")
    with open(config, "w", encoding="utf-8") as f:
        json.dump(hf, f, indent=2, sort_keys=True)
