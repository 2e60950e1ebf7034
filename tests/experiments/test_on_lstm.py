"""on_lstm (https://kexue.fm/archives/6621): every metric produced and finite, repeatable, the verdict follows the
numbers both ways; the synthetic language's trees and the baselines against hand-made cases."""
import math

import numpy as np
import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, MODES, verdict
from kexue.experiments.on_lstm import (EXPERIMENT, VOCAB, baseline_f1, batchify, corpus, gold_spans, leaves, run,
                                       sample_sentence)

METRICS = {"on_lstm_f1", "random_f1", "right_branching_f1", "untrained_on_lstm_f1", "f1_over_random_pt",
           "on_lstm_ppl", "lstm_ppl", "ppl_ratio"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())


def test_gold_spans_of_a_hand_made_tree():
    # 9 words; NP (0,2), VP (2,9), object NP (3,9), NP (3,5), PP (5,9), NP (6,9); the sentence (0,9) is left out
    tree = [["a", "dog"], ["sees", [["this", "cat"], ["in", ["a", "big", "house"]]]]]
    assert gold_spans(tree) == {(0, 2), (2, 9), (3, 9), (3, 5), (5, 9), (6, 9)}


def test_sentences_agree_in_number_and_respect_the_length_bounds():
    rng = np.random.default_rng(0)
    sents = corpus(300, rng)
    assert all(4 <= len(w) <= 14 for w, _ in sents) and all(w == leaves(t) for w, t in sents)
    assert {x for w, _ in sents for x in w} <= set(VOCAB)
    for words, tree in sents:
        subject, verb = leaves(tree[0]), tree[1][0]
        plural_subject = subject[0] in {"some", "these", "those", "many"}
        assert verb.endswith("s") != plural_subject                     # sees / see agree with the subject


def test_batchify_shifts_targets_by_one():
    x, y = batchify([["a", "dog", "sees", "a", "cat"], ["some", "dogs", "see", "this", "big", "cat"]])
    assert x.shape == y.shape == (2, 7)
    assert (x[:, 1:6] == y[:, :5]).all() and x[0, 0] == 1 and y[0, 5] == 2 and y[0, 6] == 0


def test_right_branching_baseline_scores_one_on_right_branching_gold():
    right = ["a", ["b", ["c", "d"]]]                                     # inner spans (1,4), (2,4)
    rng = np.random.default_rng(0)
    rand, rb = baseline_f1([(leaves(right), right)], rng)
    assert rb == 1.0 and 0.0 <= rand <= 1.0


def test_sample_sentence_is_seeded():
    assert sample_sentence(np.random.default_rng(5)) == sample_sentence(np.random.default_rng(5))


@pytest.mark.parametrize("metrics, expected", [
    ({"f1_over_random_pt": 40.0, "ppl_ratio": 1.01}, REPRODUCED),
    ({"f1_over_random_pt": 40.0, "ppl_ratio": 1.05}, PARTLY),
    ({"f1_over_random_pt": 5.0, "ppl_ratio": 1.05}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    with pytest.raises(TypeError, match="seed"):
        run("smoke", 1.5)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "on_lstm"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
