"""bert_of_theseus (https://kexue.fm/archives/7575): every metric produced and finite, repeatable, the verdict follows
the numbers both ways; one Theseus arm on a tiny model leaves the predecessor and head untouched, steps the
schedule once per update and returns a standalone successor of successor depth."""
import copy
import math

import pytest
import torch

from kexue.compress import ConstantReplacement, LinearReplacement, SequenceClassifier
from kexue.experiments import NOT_REPRODUCED, REPRODUCED, MODES, verdict
from kexue.experiments.bert_of_theseus import EXPERIMENT, run, theseus_arm
from kexue.models import build_transformer_model

METRICS = {"predecessor_test_acc", "direct_test_acc", "theseus_constant_test_acc", "theseus_linear_test_acc",
           "successor_untrained_test_acc", "theseus_minus_direct_pt", "linear_minus_direct_pt",
           "predecessor_minus_direct_pt", "successor_updates"}
TINY = dict(model_type="bert", vocab_size=12, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values()), a.metrics
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


@pytest.mark.parametrize("schedule", [ConstantReplacement(0.5), LinearReplacement(0.3, 0.05)])
def test_theseus_arm_freezes_the_teacher_steps_the_schedule_and_exports_the_successor(schedule):
    torch.manual_seed(0)
    pretrained = build_transformer_model(config=TINY)
    teacher = SequenceClassifier(copy.deepcopy(pretrained), 2, pooling="cls").eval()
    before = copy.deepcopy(teacher.state_dict())
    successor = SequenceClassifier(build_transformer_model(config={**TINY, "num_hidden_layers": 2}), 2, pooling="cls")
    succ_before = copy.deepcopy(successor.state_dict())
    g = torch.Generator().manual_seed(0)
    train = [([1, *torch.randint(3, 12, (5,), generator=g).tolist()], i % 2) for i in range(40)]
    student, losses = theseus_arm(teacher, successor, train, epochs=1, final_epochs=1, schedule=schedule, lr=1e-3,
                                  seed=0)
    assert schedule.t == 2 and len(losses) == 4                      # 40 examples / batch 32 = 2 updates per stage
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())   # teacher untouched
    assert all(torch.equal(v, successor.state_dict()[k]) for k, v in succ_before.items())   # worked on a copy
    assert student.backbone.num_layers == 2 and not student.training
    assert any(not torch.equal(v, student.backbone.state_dict()[k.removeprefix("backbone.")])
               for k, v in succ_before.items() if k.startswith("backbone."))


@pytest.mark.parametrize("metrics, expected", [
    ({"theseus_minus_direct_pt": 0.4}, REPRODUCED),
    ({"theseus_minus_direct_pt": 0.0}, NOT_REPRODUCED),
    ({"theseus_minus_direct_pt": -1.2}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(TypeError, match="seed"):
        run("smoke", 1.5)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "bert_of_theseus"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
