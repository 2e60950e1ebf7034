"""bert_finetuning (https://kexue.fm/archives/6736): every metric produced and finite, repeatable, the verdict
follows the numbers both ways; the [UNK] rate and the steps-to-accuracy helper against hand-made cases."""
import math

import pytest

pytest.importorskip("snownlp")

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict  # noqa: E402
from kexue.experiments.bert_finetuning import EXPERIMENT, run, steps_to_reach, unk_rate  # noqa: E402
from kexue.tokenizers import Tokenizer  # noqa: E402

METRICS = {"pretrained_valid_acc", "scratch_valid_acc", "pretrained_test_acc", "scratch_test_acc", "valid_gain_pt",
           "test_gain_pt", "convergence_speedup", "char_bert_unk_rate", "minilm_unk_rate"}
MINILM = {"minilm_valid_acc", "minilm_test_acc"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS | MINILM and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())
    assert 50 < a.metrics["minilm_unk_rate"] < 75           # the 62%: an English vocab on Chinese text
    assert a.metrics["char_bert_unk_rate"] < 10


def test_unk_rate_counts_unknown_characters_but_not_whitespace():
    tok = Tokenizer({t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "好", "书"])},
                    char_level_mapping=True)
    assert unk_rate(tok, ["好书", "好 差"]) == pytest.approx(1 / 4)     # 好 书 | 好 差: one [UNK] of four chars


def test_steps_to_reach_takes_the_first_step_at_or_above_the_level():
    curve = [(10, 0.6), (20, 0.8), (30, 0.75), (40, 0.9)]
    assert steps_to_reach(curve, 0.8, 99) == 20
    assert steps_to_reach(curve, 0.95, 99) == 99


@pytest.mark.parametrize("metrics, expected", [
    ({"valid_gain_pt": 3.0, "test_gain_pt": 2.5, "convergence_speedup": 2.0}, REPRODUCED),
    ({"valid_gain_pt": 3.0, "test_gain_pt": -0.5, "convergence_speedup": 0.8}, PARTLY),
    ({"valid_gain_pt": -1.0, "test_gain_pt": 0.0, "convergence_speedup": 1.0}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_and_seed_are_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "bert_finetuning"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
