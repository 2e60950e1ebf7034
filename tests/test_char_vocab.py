"""kexue.tokenizers.build_char_vocab: a char vocabulary that round-trips through save_vocab/Tokenizer."""
import pytest

from kexue.tokenizers import Tokenizer, build_char_vocab, load_vocab, save_vocab

TEXTS = ["这个手机很好用", "很好，很好！", "不好用", "手机 电池 不行", "Ｗifi很好"]


def test_specials_first_then_chars_by_frequency_with_ties_by_char():
    vocab = build_char_vocab(TEXTS, min_count=2)
    assert list(vocab)[:6] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]"]
    assert list(vocab.values()) == list(range(len(vocab)))
    # counted by hand: 好 5, 很 4, i 2 (in "Ｗifi"), 不 2, 手 2, 机 2, 用 2 (ties in code-point order); others once
    assert list(vocab)[6:] == ["好", "很", "i", "不", "手", "机", "用"]
    assert build_char_vocab(TEXTS, min_count=2, max_size=8) == dict(list(vocab.items())[:8])


def test_upper_case_is_merged_into_lower_case_like_the_tokenizer():
    vocab = build_char_vocab(["AaBb"], min_count=2)
    assert list(vocab)[6:] == ["a", "b"]
    assert "A" not in vocab
    assert list(build_char_vocab(["AaBb"], min_count=1, do_lower_case=False))[6:] == ["A", "B", "a", "b"]


def test_whitespace_and_control_characters_are_not_tokens():
    vocab = build_char_vocab(["a b\tc\u3000d\u200b"] * 3, min_count=1)
    assert set(vocab) - {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]"} == {"a", "b", "c", "d"}


def test_round_trip_through_save_vocab_and_one_token_per_cjk_character(tmp_path):
    vocab = build_char_vocab(TEXTS, min_count=2)
    save_vocab(tmp_path / "vocab.txt", vocab)
    assert load_vocab(tmp_path / "vocab.txt") == vocab
    for tok in (Tokenizer(vocab), Tokenizer(str(tmp_path / "vocab.txt"))):
        text = "这个手机很好用不"
        ids, _ = tok.encode(text)
        assert len(ids) == len(text) + 2
        assert tok.id_to_token(ids[0]) == "[CLS]" and tok.id_to_token(ids[-1]) == "[SEP]"
        assert [tok.id_to_token(i) for i in ids[1:-1]] == [c if c in vocab else "[UNK]" for c in text]
        assert tok.id_to_token(ids[1]) == "[UNK]"  # 这 occurs once: rarer than min_count


def test_char_level_mapping_gives_one_token_per_character_of_any_text():
    vocab = build_char_vocab(TEXTS + ["wifi ok"] * 5, min_count=2)
    tok = Tokenizer(vocab, char_level_mapping=True)
    text = "WiFi 很好 abc!"
    ids, _ = tok.encode(text)
    assert len(ids) == len(text) + 2
    assert tok.id_to_token(ids[5]) == "[unused1]"
    assert [tok.id_to_token(i) for i in ids[1:5]] == ["w", "i", "f", "i"]


@pytest.mark.parametrize("kwargs, exc, word", [({"texts": "abc"}, TypeError, "texts"),
                                               ({"texts": ["a", 3]}, TypeError, r"texts\[1\]"),
                                               ({"texts": [], "min_count": 0}, ValueError, "min_count"),
                                               ({"texts": [], "max_size": 3}, ValueError, "max_size")])
def test_bad_arguments_are_refused_by_name(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        build_char_vocab(**kwargs)
