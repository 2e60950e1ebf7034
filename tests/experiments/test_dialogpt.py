"""dialogpt (https://kexue.fm/archives/7718): every metric produced and finite, repeatable, the verdict follows the
numbers both ways; distinct-n and the reply perplexity against hand computations."""
import math

import pytest
import torch

from kexue.experiments import MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments.dialogpt import EXPERIMENT, _pairs, _prefixes, distinct_n, reply_perplexity, run
from kexue.datasets import scripted_dialogs
from kexue.tasks import build_dialog_lm
from kexue.tokenizers import Tokenizer, build_char_vocab

METRICS = {"all_turns_reply_ppl", "all_turns_answer_ppl", "all_turns_recall_acc", "last_turn_reply_ppl",
           "last_turn_answer_ppl", "last_turn_recall_acc", "last_utterance_recall_acc",
           "steps_to_last_turn_ppl_ratio", "recall_gain_pt", "greedy_distinct1", "greedy_distinct2",
           "topk_distinct1", "topk_distinct2", "distinct2_gain"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert a.tables["sample_replies"] == b.tables["sample_replies"]


def test_distinct_n_by_hand():
    assert distinct_n(["abab", "ab"], 1) == 2 / 6
    assert distinct_n(["abab", "ab"], 2) == 2 / 4                       # ab, ba, ab | ab
    assert distinct_n(["a"], 2) == 0.0


def test_splits_of_a_dialogue():
    d = scripted_dialogs(1, seed=0)[0]
    n = len(d.turns)
    assert _prefixes([d]) == [d.turns[:i] for i in range(2, n + 1)]      # one sample per reply
    assert _pairs([d]) == [d.turns[i:i + 2] for i in range(n - 1)]


def test_reply_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    turns = [["我叫小明", "你好"], ["在吗", "我在北京", "好的"]]
    tok = Tokenizer(build_char_vocab([t for d in turns for t in d], min_count=1))
    model = build_dialog_lm(tok.vocab_size, hidden=16, layers=1, heads=2, max_len=32)
    with torch.no_grad():                                                # every logit 0: uniform predictions
        for p in model.mlm.parameters():
            p.zero_()
    assert reply_perplexity(model, tok, turns) == pytest.approx(tok.vocab_size, rel=1e-4)
    assert reply_perplexity(model, tok, turns, "last") == pytest.approx(tok.vocab_size, rel=1e-4)


@pytest.mark.parametrize("metrics, expected", [
    ({"recall_gain_pt": 40.0, "steps_to_last_turn_ppl_ratio": 0.5, "distinct2_gain": 0.1}, REPRODUCED),
    ({"recall_gain_pt": 40.0, "steps_to_last_turn_ppl_ratio": 1.1, "distinct2_gain": 0.1}, PARTLY),
    ({"recall_gain_pt": -1.0, "steps_to_last_turn_ppl_ratio": 1.0, "distinct2_gain": 0.0}, NOT_REPRODUCED),
])
def test_verdict_on_hand_made_numbers(metrics, expected):
    assert verdict(EXPERIMENT.checks, metrics) == expected


def test_bad_mode_and_seed_are_refused_by_name():
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises(ValueError, match="seed"):
        run("smoke", -1)
    assert set(EXPERIMENT.seeds) == set(MODES) and EXPERIMENT.name == "dialogpt"


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = run("quick", 0)
    assert set(m.metrics) == METRICS and all(math.isfinite(v) for v in m.metrics.values())
