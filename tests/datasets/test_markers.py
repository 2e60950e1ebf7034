"""kexue.datasets.markers (spec nlp/12 reproduction A): the label is the markers' polarity, markers are flagged
exactly, lengths and counts respect the bounds, and the generator is seeded."""
import pytest

from kexue.datasets import marker_sentences, marker_vocab


def test_vocab_layout():
    v = marker_vocab(n_neutral=3, n_markers=2)
    assert list(v) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "n0", "n1", "n2", "+0", "+1", "-0", "-1"]
    assert list(v.values()) == list(range(12))


def test_label_is_the_polarity_of_the_flagged_markers_and_only_markers_are_flagged():
    data = marker_sentences(400, seed=3, n_neutral=50, n_markers=4, min_len=5, max_len=9)
    assert len(data) == 400 and 0.4 < sum(data.labels) / 400 < 0.6
    counts = set()
    for i in range(len(data)):
        toks = data.tokens(i)
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and 5 <= len(toks) - 2 <= 9
        flagged = [t for t, m in zip(toks, data.is_marker[i]) if m]
        assert [t for t in toks if t[0] in "+-"] == flagged          # every marker flagged, nothing else
        assert {t[0] for t in flagged} == {"+" if data.labels[i] else "-"}
        counts.add(len(flagged))
    assert counts == {1, 2}


def test_seeded():
    a, b, c = marker_sentences(20, seed=1), marker_sentences(20, seed=1), marker_sentences(20, seed=2)
    assert a.input_ids == b.input_ids and a.labels == b.labels and a.input_ids != c.input_ids


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="max_len"):
        marker_sentences(5, min_len=10, max_len=5)
    with pytest.raises(TypeError, match="seed"):
        marker_sentences(5, seed=1.5)
    with pytest.raises(ValueError, match="max_markers_per_sentence"):
        marker_sentences(5, min_len=2, max_len=4, max_markers_per_sentence=3)
    with pytest.raises(ValueError, match="n_neutral"):
        marker_vocab(n_neutral=0)


def test_marker_free_sentences_get_label_two_and_the_default_draws_are_unchanged():
    data = marker_sentences(600, seed=4, p_no_marker=1 / 3)
    free = [i for i in range(len(data)) if data.labels[i] == 2]
    assert 0.25 < len(free) / 600 < 0.42
    assert all(not any(data.is_marker[i]) and not any(t[0] in "+-" for t in data.tokens(i)) for i in free)
    assert all(any(data.is_marker[i]) for i in range(len(data)) if data.labels[i] != 2)
    assert marker_sentences(30, seed=4).input_ids == marker_sentences(30, seed=4, p_no_marker=0.0).input_ids
    with pytest.raises(ValueError, match="p_no_marker"):
        marker_sentences(5, p_no_marker=1.5)
