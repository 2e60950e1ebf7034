"""BERT's WordPiece tokenizer with bert4keras's API, on Hugging Face `tokenizers` (https://kexue.fm/archives/6736).

The pipeline is the one of `transformers.BertTokenizer` (BertNormalizer, BertPreTokenizer, WordPiece, special
tokens recognised in the text), so ids and offsets match it exactly. On top of it: bert4keras's `decode`
(CJK joined without spaces), `rematch` (token -> original characters), a 1:1 character mode for span tasks
(whitespace -> [unused1], unknown -> [UNK], token k+1 = character k) and a word-level `pre_tokenize` hook.
"""
from __future__ import annotations

import numbers
import os
import re
from typing import Callable, Mapping, Sequence

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import normalizers, pre_tokenizers
from tokenizers.models import WordPiece

from kexue._validate import check_bool, check_int

from .base import Offsets, TokenizerBase, _as_token_list, _check_id, _check_text
from .vocab import is_cjk_character, is_punctuation, is_space, is_special_token, load_vocab

__all__ = ["Tokenizer"]

_CJK_PUNCTUATION = ("\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f\uff1a\uff1b"
                    "\uff1c\uff1d\uff1e\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40\uff5b\uff5c\uff5d\uff5e\uff5f"
                    "\uff60\uff62\uff63\uff64\u3000\u3001\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f"
                    "\u3010\u3011\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030"
                    "\u303e\u303f\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027\ufe4f\ufe51"
                    "\ufe54\u00b7\uff01\uff1f\uff61\u3002")
# no space after these when decoding (bert4keras)
_NO_SPACE_AFTER = re.compile("(%s) " % "|".join(re.escape(p) for p in _CJK_PUNCTUATION + "+-/={(<["))


class Tokenizer(TokenizerBase):
    """WordPiece tokenizer: `Tokenizer("vocab.txt" | {token: id}, do_lower_case=True)`.

    `char_level_mapping=True` maps every character to one token; `pre_tokenize(text) -> words` (e.g.
    jieba.lcut) emits in-vocabulary words as single tokens; `return_offsets=True` makes `encode` also
    return character spans by default.
    """

    def __init__(self, vocab: str | os.PathLike | Mapping[str, int], do_lower_case: bool = True, *,
                 strip_accents: bool | None = None, char_level_mapping: bool = False,
                 pre_tokenize: Callable[[str], Sequence[str]] | None = None, return_offsets: bool = False,
                 token_start: str | None = "[CLS]", token_end: str | None = "[SEP]", token_pad: str = "[PAD]",
                 token_unk: str = "[UNK]", token_mask: str = "[MASK]", token_space: str = "[unused1]",
                 max_input_chars_per_word: int = 100):
        for name, flag in (("do_lower_case", do_lower_case), ("char_level_mapping", char_level_mapping),
                           ("return_offsets", return_offsets)):
            check_bool(name, flag)
        if strip_accents is not None:
            check_bool("strip_accents", strip_accents)
        check_int("max_input_chars_per_word", max_input_chars_per_word, low=1)
        if isinstance(vocab, (str, os.PathLike)):
            vocab = load_vocab(vocab)
        self._token_dict = _check_vocab(vocab)
        self._id_to_token_list = [""] * len(self._token_dict)
        for token, i in self._token_dict.items():
            self._id_to_token_list[i] = token
        if pre_tokenize is not None and not callable(pre_tokenize):
            raise TypeError(f"pre_tokenize must be a callable text -> list of words, got {pre_tokenize!r}")
        if char_level_mapping and pre_tokenize is not None:
            raise ValueError("char_level_mapping=True and pre_tokenize are exclusive: one token per character "
                             "leaves no room for word-level tokens")
        self._do_lower_case = bool(do_lower_case)
        self._char_level = bool(char_level_mapping)
        self._pre_tokenize = pre_tokenize
        self._return_offsets = bool(return_offsets)
        self._token_start, self._token_end = token_start, token_end
        self._token_pad, self._token_unk, self._token_mask = token_pad, token_unk, token_mask
        if token_unk not in self._token_dict:
            raise ValueError(f"token_unk={token_unk!r} is not in the vocabulary; WordPiece needs it")
        for name, token in (("token_start", token_start), ("token_end", token_end)):
            if token is not None and token not in self._token_dict:
                raise ValueError(f"{name}={token!r} is not in the vocabulary (pass {name}=None to drop it)")
        get = self._token_dict.get
        self._token_pad_id = get(token_pad)
        self._token_unk_id = get(token_unk)
        self._token_mask_id = get(token_mask)
        self._token_start_id = None if token_start is None else get(token_start)
        self._token_end_id = None if token_end is None else get(token_end)
        self._token_space_id = get(token_space)
        if self._char_level and self._token_space_id is None:
            raise ValueError(f"char_level_mapping=True maps whitespace to token_space={token_space!r}, "
                             "which is not in the vocabulary")

        tk = _HFTokenizer(WordPiece(self._token_dict, unk_token=token_unk,
                                    max_input_chars_per_word=max_input_chars_per_word))
        tk.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                   strip_accents=strip_accents, lowercase=self._do_lower_case)
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tk.add_special_tokens([t for t in dict.fromkeys((token_pad, token_unk, token_start, token_end,
                                                         token_mask)) if t is not None and t in self._token_dict])
        self._tk = tk
        # the same normalization without padding CJK characters with spaces: for words and single chars
        self._word_normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                           strip_accents=strip_accents,
                                                           lowercase=self._do_lower_case)
        self._char_cache: dict[str, str] = {}

    # ---- vocabulary ---------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._token_dict)

    @property
    def token_dict(self) -> dict[str, int]:
        return dict(self._token_dict)

    pad_id = property(lambda self: self._token_pad_id, doc="id of [PAD] (None when absent)")
    unk_id = property(lambda self: self._token_unk_id, doc="id of [UNK]")
    cls_id = property(lambda self: self._token_start_id, doc="id of the start token [CLS]")
    sep_id = property(lambda self: self._token_end_id, doc="id of the end token [SEP]")
    mask_id = property(lambda self: self._token_mask_id, doc="id of [MASK] (None when absent)")

    def token_to_id(self, token: str) -> int:
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {type(token).__name__}: {token!r:.60}")
        return self._token_dict.get(token, self._token_unk_id)

    def id_to_token(self, i: int) -> str:
        return self._id_to_token_list[_check_id(i, len(self._id_to_token_list))]

    # ---- text -> ids --------------------------------------------------------------------------
    def _normalize(self, text: str) -> str:
        return self._word_normalizer.normalize_str(text)

    def _norm_char(self, ch: str) -> str:
        out = self._char_cache.get(ch)
        if out is None:
            out = self._char_cache[ch] = self._normalize(ch)
        return out

    def _pieces(self, text: str) -> tuple[list[int], Offsets]:
        if self._char_level:
            return self._char_pieces(text)
        if self._pre_tokenize is not None:
            return self._word_pieces(text)
        enc = self._tk.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def _pieces_batch(self, texts: list[str], with_offsets: bool) -> tuple[list[list[int]], list[Offsets] | None]:
        if self._char_level or self._pre_tokenize is not None:
            return super()._pieces_batch(texts, with_offsets)
        encodings = self._tk.encode_batch(texts, add_special_tokens=False)  # one Rust call, parallel
        rows = [e.ids for e in encodings]
        return rows, ([e.offsets for e in encodings] if with_offsets else None)

    def _char_pieces(self, text: str) -> tuple[list[int], Offsets]:
        """One token per character: the (normalized) character, [unused1] for whitespace, else [UNK]."""
        ids = []
        for ch in text:
            if is_space(ch):
                ids.append(self._token_space_id)
                continue
            norm = self._norm_char(ch)
            i = self._token_dict.get(norm) if norm else None
            ids.append(i if i is not None else self._token_dict.get(ch, self._token_unk_id))
        return ids, [(k, k + 1) for k in range(len(text))]

    def _word_pieces(self, text: str) -> tuple[list[int], Offsets]:
        """bert4keras `pre_tokenize`: a word in the vocabulary is one token, others go through WordPiece."""
        ids, offsets, cursor = [], [], 0
        words = self._pre_tokenize(text)
        if isinstance(words, str) or not isinstance(words, Sequence):
            raise TypeError(f"pre_tokenize must return a list of str words, got {type(words).__name__}: "
                            f"{words!r:.60}")
        for word in words:
            if not isinstance(word, str):
                raise TypeError(f"pre_tokenize must return str words, got {type(word).__name__}: {word!r:.40}")
            if not word:
                continue
            start = text.find(word, cursor)
            if start < 0:
                raise ValueError(f"pre_tokenize returned the word {word!r}, not found in the text after "
                                 f"character {cursor}; it must return consecutive substrings of the text")
            end = cursor = start + len(word)
            i = self._token_dict.get(self._normalize(word))
            if i is not None and word.strip():
                ids.append(i)
                offsets.append((start, end))
            else:
                enc = self._tk.encode(word, add_special_tokens=False)
                ids.extend(enc.ids)
                offsets.extend((s + start, e + start) for s, e in enc.offsets)
        return ids, offsets

    # ---- ids -> text --------------------------------------------------------------------------
    def decode(self, ids, tokens: Sequence[str] | None = None) -> str:
        """Readable text: special tokens dropped, `##` pieces merged, CJK characters joined without spaces."""
        tokens = self.ids_to_tokens(ids) if tokens is None else _as_token_list(tokens)
        tokens = [t for t in tokens if not is_special_token(t)]
        text = ""
        for i, token in enumerate(tokens):
            if token.startswith("##"):
                text += token[2:]
            elif len(token) == 1 and is_cjk_character(token):
                text += token
            elif len(token) == 1 and is_punctuation(token):
                text += token + " "
            elif i > 0 and text and is_cjk_character(text[-1]):
                text += token
            else:
                text += " " + token
        text = re.sub(" +", " ", text)
        text = re.sub("' (re|m|s|t|ve|d|ll) ", "'\\1 ", text)
        text = _NO_SPACE_AFTER.sub("\\1", text)
        text = re.sub(r"(\d\.) (\d)", "\\1\\2", text)
        return text.strip()

    # ---- tokens -> characters -----------------------------------------------------------------
    def rematch(self, text: str, tokens: Sequence[str]) -> list[list[int]]:
        """bert4keras `rematch`: for each token, the indices of the characters of `text` it came from.

        The spans are the tokenizer's own offsets (those of `encode(..., return_offsets=True)`, equal to
        Hugging Face's `offset_mapping`): token k maps to `range(start, end)`, so a token after an [UNK]
        word points past that word. Bracketed tokens ([CLS], [SEP], [UNK], [unused1] ...) map to [], as in
        bert4keras. `tokens` must come from this tokenizer's `tokenize(text)` (truncated or not, in order)."""
        _check_text(text, "text")
        tokens = _as_token_list(tokens)
        ids, offsets = self._pieces(text)
        pieces = [self._id_to_token_list[i] for i in ids]
        mapping, j = [], 0  # j: the first piece of the text not yet matched
        for k, token in enumerate(tokens):
            if j < len(pieces) and pieces[j] == token:
                hit = j
            elif is_special_token(token):  # added by encode ([CLS], [SEP]): not in the text
                mapping.append([])
                continue
            else:
                try:
                    hit = pieces.index(token, j)
                except ValueError:
                    raise ValueError(f"tokens[{k}]: token {token!r} does not occur in text after its token "
                                     f"{j}: tokens must come from tokenize(text) of this tokenizer") from None
            j = hit + 1
            start, end = offsets[hit]
            mapping.append([] if is_special_token(token) else list(range(start, end)))
        return mapping


def _check_vocab(vocab) -> dict[str, int]:
    if not isinstance(vocab, Mapping):
        raise TypeError(f"vocab must be a path to vocab.txt or a dict {{token: id}}, got {type(vocab).__name__}")
    if len(vocab) == 0:
        raise ValueError("vocab must not be empty")
    token_dict = {}
    for token, i in vocab.items():
        if not isinstance(token, str) or isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"vocab must map str -> int, got {token!r} -> {i!r}")
        token_dict[token] = int(i)
    if sorted(token_dict.values()) != list(range(len(token_dict))):
        raise ValueError(f"vocab ids must be exactly 0..{len(token_dict) - 1} with no gap or repeat")
    return token_dict
