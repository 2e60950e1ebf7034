"""The parallel_apply experiment (spec core/18): smoke run, its tokenizer and baseline against references."""
import collections
import math
import pickle

import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, verdict
from kexue.experiments import parallel_apply as pa

COUNT_METRICS = ("counts_match", "texts", "tokens", "distinct_tokens", "cores", "workers")


def test_forward_max_match_takes_the_longest_word_first():
    fmm = pa.ForwardMaxMatch({"中国", "中国人", "人民", "银行"})
    assert fmm("中国人民银行") == ["中国人", "民", "银行"]   # greedy: the classic FMM mis-split
    assert fmm("人民") == ["人民"] and fmm("") == []
    assert fmm("甲乙") == ["甲", "乙"]                        # unknown characters become single tokens
    assert pickle.loads(pickle.dumps(fmm))("中国人") == ["中国人"]  # worker processes can receive it


def test_corpus_and_segmenter_reconstruct_the_text():
    texts, gold = pa.people_daily(200)
    assert len(texts) == len(gold) == 200
    fmm = pa.ForwardMaxMatch({w for line in gold for w in line})
    for text, words in zip(texts, gold):
        assert "".join(words) == text and "".join(fmm(text)) == text  # segmentation never loses a character
    assert all("/" not in w for line in gold for w in line)          # POS tags stripped


def test_naive_count_equals_counter():
    texts = ["a b a", "c a", "", "b b"]
    tokens, seconds, counted = pa.naive_count(texts, str.split, segments=2)
    assert tokens == collections.Counter("a b a c a b b".split())
    assert len(seconds) == 2 and counted == [5, 2]


def _small(monkeypatch):
    monkeypatch.setitem(pa.LINES, "quick", 300)
    monkeypatch.setitem(pa.BATCH_SIZE, "quick", 50)
    monkeypatch.setitem(pa.REPEATS, "quick", 1)


def test_smoke_every_metric_finite(monkeypatch):
    _small(monkeypatch)
    m = pa.run("quick", 0)
    for check in pa.EXPERIMENT.checks:
        assert check.metric in m.metrics
    assert all(math.isfinite(v) for k, v in m.metrics.items() if k != "load_average_1min"), m.metrics
    assert m.metrics["counts_match"] == 1.0 and m.metrics["texts"] == 300
    assert m.metrics["fair_efficiency"] == pytest.approx(m.metrics["parallel_speedup"] / 2)
    assert [r["method"][:3] for r in m.tables["timings"]] == ["(a)", "(b)", "(c)"]
    assert m.figures[0].name == "naive_cost" and len(m.figures[0].lines["naive dict.get loop"][1]) == pa.SEGMENTS


def test_same_seed_same_counts(monkeypatch):
    """The counts are repeatable; the wall-clock times are measurements and are not."""
    _small(monkeypatch)
    a, b = pa.run("quick", 0).metrics, pa.run("quick", 0).metrics
    assert {k: a[k] for k in COUNT_METRICS} == {k: b[k] for k in COUNT_METRICS}


@pytest.mark.slow
def test_quick_run_produces_every_metric():
    m = pa.run("quick", 0).metrics
    assert m["counts_match"] == 1.0 and m["tokens"] > 250_000
    assert all(math.isfinite(v) for k, v in m.items() if k != "load_average_1min")


def test_verdict_on_hand_made_numbers():
    article = {"counts_match": 1.0, "batch_speedup": 2.5, "parallel_speedup": 1.7, "fair_efficiency": 0.87}
    assert verdict(pa.EXPERIMENT.checks, article) == REPRODUCED
    loaded = dict(article, batch_speedup=0.95, parallel_speedup=0.69, fair_efficiency=0.34)
    assert verdict(pa.EXPERIMENT.checks, loaded) == PARTLY
    superlinear = dict(article, fair_efficiency=1.3)
    assert verdict(pa.EXPERIMENT.checks, superlinear) == PARTLY
    assert verdict(pa.EXPERIMENT.checks, {"counts_match": 0.0, "batch_speedup": 0.5, "parallel_speedup": 0.5,
                                          "fair_efficiency": 1.5}) == NOT_REPRODUCED
