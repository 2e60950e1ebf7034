"""Regression: TheseusModel read the [CLS]/pooler features whatever pooling the head was trained with, so a
SequenceClassifier with pooling "cls" on a backbone with a pooler, or "mean", got a head fed the wrong features at
p = 0 (the frozen teacher itself was misread); and the exported successor dropped the pooling and dropout."""
import pytest
import torch
from torch import nn

import kexue
from kexue.compress import SequenceClassifier, TheseusModel


def _cfg(layers):
    return dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                intermediate_size=24, max_position_embeddings=16, hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler", "auto"])
def test_p_zero_equals_the_predecessor_classifier_for_every_pooling(pooling):
    torch.manual_seed(0)
    teacher = SequenceClassifier(kexue.build_transformer_model(config=_cfg(4), with_pool=True), 3, pooling=pooling,
                                 dropout=0.1).eval()
    succ = kexue.build_transformer_model(config=_cfg(2), with_pool=True)
    model = TheseusModel(teacher.backbone, succ, teacher.head, pooling=teacher.pooling, dropout=teacher.dropout.p)
    ids = torch.randint(1, 40, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, -3:] = 0
    model.eval()
    with torch.no_grad():
        forced = model(ids, attention_mask=mask, path=torch.zeros(model.num_switches, dtype=torch.bool)).logits
        torch.testing.assert_close(forced, teacher(ids, attention_mask=mask).logits, rtol=0, atol=0)
        student = model.export_successor().eval()
        assert student.pooling == pooling and student.dropout.p == 0.1
        torch.testing.assert_close(student(ids, attention_mask=mask).logits,
                                   model(ids, attention_mask=mask).logits, rtol=0, atol=0)


def test_bad_pooling_is_refused_by_name():
    pred = kexue.build_transformer_model(config=_cfg(2))
    succ = kexue.build_transformer_model(config=_cfg(2))
    with pytest.raises(ValueError, match="pooling"):
        TheseusModel(pred, succ, nn.Linear(16, 2), pooling="max")
    with pytest.raises(ValueError, match="pooling='pooler'"):
        TheseusModel(pred, succ, nn.Linear(16, 2), pooling="pooler")
    with pytest.raises(ValueError, match="dropout"):
        TheseusModel(pred, succ, nn.Linear(16, 2), dropout=1.0)
