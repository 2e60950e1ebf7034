"""truncate_sequences / text_segmentate vs the bert4keras loop and invariants (https://kexue.fm/archives/7630)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data import text_segmentate, truncate_sequences


def _bert4keras_truncate(maxlen, indices, *sequences):
    """The reference loop of bert4keras.snippets.truncate_sequences (pop from the argmax length)."""
    sequences = [s for s in sequences if s is not None]
    indices = indices if isinstance(indices, list) else [indices] * len(sequences)
    while sum(len(s) for s in sequences) > maxlen:
        lengths = [len(s) for s in sequences]
        i = lengths.index(max(lengths))
        sequences[i].pop(indices[i])
    return sequences


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=4), maxlen=st.integers(0, 30),
       index=st.sampled_from([-1, -2, 0, 1]))
def test_truncate_sequences_matches_reference_loop(lengths, maxlen, index):
    seqs = [[f"{k}.{j}" for j in range(n)] for k, n in enumerate(lengths)]
    ref = [list(s) for s in seqs]
    try:
        expected = _bert4keras_truncate(maxlen, index, *ref)
    except IndexError:  # e.g. pop(-2) from a one-item list: rejected up front, before any change
        with pytest.raises(ValueError, match=f"by popping at index {index}"):
            truncate_sequences(maxlen, index, *seqs)
        assert [len(s) for s in seqs] == lengths
        return
    out = truncate_sequences(maxlen, index, *seqs)
    assert out == expected and out[0] is seqs[0]  # in place
    assert sum(map(len, out)) == min(maxlen, sum(lengths))


def test_truncate_sequences_keeps_cls_and_sep():
    first, second = ["[CLS]", *"abcdef", "[SEP]"], [*"xyz", "[SEP]"]
    truncate_sequences(9, -2, first, None, second)
    assert first == ["[CLS]", "a", "b", "c", "[SEP]"] and second == ["x", "y", "z", "[SEP]"]
    truncate_sequences(6, -2, first, second)
    assert first == ["[CLS]", "a", "[SEP]"] and second == ["x", "y", "[SEP]"]
    a, b = list(range(5)), list(range(5))
    truncate_sequences(6, [0, -1], a, b)
    assert a == [2, 3, 4] and b == [0, 1, 2]  # ties pop from the earliest sequence first
    with pytest.raises(ValueError, match="maxlen must be an int >= 0, got -1"):
        truncate_sequences(-1, -1, [1])
    with pytest.raises(TypeError, match="must be mutable lists .* got tuple"):
        truncate_sequences(1, -1, (1, 2))
    with pytest.raises(ValueError, match="one index per sequence \\(2\\), got \\[0\\]"):
        truncate_sequences(1, [0], [1], [2])


def test_text_segmentate_example():
    text = "今天天气很好，我们去公园玩吧！\n公园里有很多人。有人在跑步，有人在跳舞；孩子们在放风筝。"
    pieces = text_segmentate(text, 16, "\n。！；，")
    assert pieces == ["今天天气很好，我们去公园玩吧！", "公园里有很多人。", "有人在跑步，有人在跳舞；", "孩子们在放风筝。"]
    assert text_segmentate(text, 16, "\n。！；，", strips="。！；，") == [
        "今天天气很好，我们去公园玩吧", "公园里有很多人", "有人在跑步，有人在跳舞", "孩子们在放风筝"]
    assert text_segmentate("  short  ", 10) == ["short"]
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        text_segmentate(b"abc", 5)
    with pytest.raises(ValueError, match="maxlen must be an int >= 1, got 0"):
        text_segmentate("abc", 0)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10**6), maxlen=st.integers(8, 40))
def test_text_segmentate_partitions_text_within_maxlen(seed, maxlen):
    rng = random.Random(seed)
    seps = "；。，"
    # clauses of at most 6 characters, so every clause fits and pieces can always respect maxlen
    text = "".join("".join(rng.choice("天地玄黄宇宙洪荒") for _ in range(rng.randint(1, 6))) + rng.choice(seps)
                   for _ in range(rng.randint(1, 30)))
    text = text.strip()
    pieces = text_segmentate(text, maxlen, seps)
    assert "".join(pieces) == text
    assert all(0 < len(p) <= maxlen for p in pieces)
    assert all(p[-1] in seps for p in pieces[:-1])


def test_bad_lengths_indices_and_separators_name_the_argument():
    with pytest.raises(TypeError, match="maxlen must be an int, got 2.5"):
        truncate_sequences(2.5, -1, [1, 2, 3])
    with pytest.raises(TypeError, match="indices must be an int or one int per sequence, got 0.5"):
        truncate_sequences(1, 0.5, [1, 2])
    with pytest.raises(TypeError, match="indices\\[1\\] must be an int, got 'x'"):
        truncate_sequences(1, [0, "x"], [1, 2], [3])
    import numpy as np
    a = [1, 2, 3]
    assert truncate_sequences(np.int64(1), np.int64(-1), a) == [[1]]  # numpy ints are ints
    with pytest.raises(TypeError, match="maxlen must be an int, got 4.0"):
        text_segmentate("abc", 4.0)
    with pytest.raises(ValueError, match="maxlen must be an int >= 1, got -3"):
        text_segmentate("abc", -3)
    with pytest.raises(TypeError, match="seps must be a str of separator characters"):
        text_segmentate("a,b", 1, seps=None)
    with pytest.raises(ValueError, match="seps\\[1\\] must be a non-empty separator"):
        text_segmentate("a,b;c", 1, seps=[",", ""])
    with pytest.raises(TypeError, match="strips must be a str or None, got int"):
        text_segmentate("a,b", 1, ",", strips=0)
