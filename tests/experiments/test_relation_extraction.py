"""relation_extraction (https://kexue.fm/archives/6736): every metric produced and finite, repeatable, the
verdict follows the numbers both ways; the encoding puts char spans one token right of [CLS]."""
import math

import pytest

from kexue.datasets import spo_sentences
from kexue.experiments import NOT_REPRODUCED, REPRODUCED, verdict
from kexue.experiments.relation_extraction import EXPERIMENT, encode, run
from kexue.tokenizers import Tokenizer, build_char_vocab

METRICS = {"test_f1", "test_precision", "test_recall", "valid_f1_seen_templates", "final_loss", "test_unk_rate"}


def test_smoke_run_produces_every_metric_finite_and_repeats():
    a, b = run("smoke", 0), run("smoke", 0)
    assert set(a.metrics) == METRICS and all(math.isfinite(v) for v in a.metrics.values())
    assert a.metrics == b.metrics
    assert {c.metric for c in EXPERIMENT.checks} <= METRICS
    assert all(len(x) == len(y) for f in a.figures for x, y in f.lines.values())
    assert a.tables["test_examples"] and {"sentence", "gold", "predicted"} <= set(a.tables["test_examples"][0])


def test_encode_shifts_char_spans_behind_cls():
    s = spo_sentences(5, "train", 0)
    tok = Tokenizer(build_char_vocab([x.text for x in s], min_count=1), char_level_mapping=True)
    for x in s:
        ids, triples = encode(tok, x)
        tokens = tok.ids_to_tokens(ids)
        assert len(ids) == len(x.text) + 2
        for (a, b), _, (c, d) in triples:
            assert "".join(tokens[a:b + 1]) in x.text and tokens[a] == x.text[a - 1] and tokens[d] == x.text[d - 1]


@pytest.mark.parametrize("f1, expected", [(0.95, REPRODUCED), (0.9, NOT_REPRODUCED), (0.5, NOT_REPRODUCED),
                                          (float("nan"), NOT_REPRODUCED)])
def test_verdict_follows_the_target(f1, expected):
    assert verdict(EXPERIMENT.checks, {"test_f1": f1}) == expected


@pytest.mark.slow
def test_quick_run():
    m = run("quick", 0).metrics
    assert all(math.isfinite(v) for v in m.values()) and 0 <= m["test_f1"] <= 1
