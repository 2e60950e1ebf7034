"""kexue.tasks.theseus (https://kexue.fm/archives/7575): Theseus training on a tiny model leaves the predecessor (and
its head) bit-identical, works on copies, steps the schedule once per update and returns a standalone successor
of successor depth whose weights moved."""
import copy

import pytest
import torch

from kexue.compress import ConstantReplacement, LinearReplacement, SequenceClassifier
from kexue.models import build_transformer_model
from kexue.tasks import StepReplacementSchedule, theseus_compress

TINY = dict(model_type="bert", vocab_size=12, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


def _models():
    torch.manual_seed(0)
    teacher = SequenceClassifier(build_transformer_model(config=TINY), 2, pooling="cls").eval()
    successor = SequenceClassifier(build_transformer_model(config={**TINY, "num_hidden_layers": 2}), 2, pooling="cls")
    g = torch.Generator().manual_seed(0)
    train = [([1, *torch.randint(3, 12, (5,), generator=g).tolist()], i % 2) for i in range(40)]
    return teacher, successor, train


@pytest.mark.parametrize("schedule", [ConstantReplacement(0.5), LinearReplacement(0.3, 0.05)])
def test_theseus_compress_freezes_the_teacher_steps_the_schedule_and_exports_the_successor(schedule):
    teacher, successor, train = _models()
    before, succ_before = copy.deepcopy(teacher.state_dict()), copy.deepcopy(successor.state_dict())
    student, losses = theseus_compress(teacher, successor, train, epochs=1, final_epochs=1, schedule=schedule,
                                       lr=1e-3, seed=0)
    assert schedule.t == 2 and len(losses) == 4                      # 40 examples / batch 32 = 2 updates per stage
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())   # teacher untouched
    assert all(torch.equal(v, successor.state_dict()[k]) for k, v in succ_before.items())   # worked on a copy
    assert student.backbone.num_layers == 2 and not student.training
    assert any(not torch.equal(v, student.backbone.state_dict()[k.removeprefix("backbone.")])
               for k, v in succ_before.items() if k.startswith("backbone."))


def test_no_final_stage_and_bad_arguments():
    teacher, successor, train = _models()
    student, losses = theseus_compress(teacher, successor, train, epochs=1, final_epochs=0, schedule=1.0, seed=0)
    assert len(losses) == 2 and student.backbone.num_layers == 2
    with pytest.raises(TypeError, match="schedule"):
        StepReplacementSchedule(0.5)
    with pytest.raises(TypeError, match="predecessor and successor"):
        theseus_compress(teacher.backbone, successor, train, 1, 0)
    with pytest.raises(ValueError, match="final_epochs"):
        theseus_compress(teacher, successor, train, 1, -1)


def test_the_student_keeps_the_teachers_pooling_and_dropout():
    teacher, successor, train = _models()
    teacher = SequenceClassifier(teacher.backbone, head=teacher.head, pooling="mean", dropout=0.2).eval()
    student, _ = theseus_compress(teacher, successor, train, epochs=1, final_epochs=0, schedule=0.5, seed=0)
    assert student.pooling == "mean" and student.dropout.p == 0.2
