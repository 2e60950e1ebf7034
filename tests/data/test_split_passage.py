"""split_passage (https://kexue.fm/archives/7630): chunks are non-empty and <= max_len, and joined they give
the text back (exactly when it holds no stripped or blank character; up to those characters otherwise)."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data import split_passage

STRIPS = "；;，, "


def _without(text: str, chars: str) -> str:
    return "".join(c for c in text if c not in chars and not c.isspace())


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="甲乙丙丁ab。！？!?；;，, \n", max_size=80), max_len=st.integers(1, 20))
def test_chunks_are_short_non_empty_and_restore_the_text(text, max_len):
    chunks = split_passage(text, max_len)
    assert all(0 < len(c) <= max_len for c in chunks)
    assert _without("".join(chunks), STRIPS) == _without(text, STRIPS)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet="甲乙丙丁ab。！？", min_size=1, max_size=80), max_len=st.integers(1, 20))
def test_without_stripped_characters_the_join_is_exact(text, max_len):
    assert "".join(split_passage(text, max_len)) == text


def test_cuts_at_sentence_ends_first_and_strips_commas():
    text = "甲的颜色是红色。乙位于北京，丙的职业是医生。"
    assert split_passage(text, 12) == ["甲的颜色是红色。", "乙位于北京", "丙的职业是医生。"]
    assert split_passage(text, 100) == [text]
    assert split_passage("甲乙丙丁甲乙丙", 3) == ["甲乙丙", "丁甲乙", "丙"]     # no separator: hard cuts
    assert split_passage("", 5) == [] and split_passage("，，", 5) == []


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="max_len"):
        split_passage("abc", 0)
    with pytest.raises(TypeError, match="text"):
        split_passage(None, 5)
    with pytest.raises(TypeError, match="seps"):
        split_passage("abc", 5, seps=None)
