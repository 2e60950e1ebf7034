"""kexue.compress: BERT-of-Theseus module replacement (https://kexue.fm/archives/7575)."""
from .classifier import ClassifierOutput, SequenceClassifier, cls_features
from .schedules import ConstantReplacement, LinearReplacement
from .theseus import LayerGroup, ReplaceableModule, TheseusModel
from .truncate import truncate_layers

__all__ = ["TheseusModel", "ReplaceableModule", "LayerGroup", "ConstantReplacement", "LinearReplacement",
           "truncate_layers", "SequenceClassifier", "ClassifierOutput", "cls_features"]
