"""Vocabulary files and the character classes of BERT's basic tokenizer (https://kexue.fm/archives/6736).

`load_vocab(simplified=True)` is bert4keras's vocabulary reduction: it drops the pieces a WordPiece
tokenizer can never emit (multi-character pieces containing a CJK character or a punctuation mark),
and returns `keep_tokens`, the old id of every kept token, for the model-side embedding surgery.
"""
from __future__ import annotations

import os
import unicodedata
from typing import Iterable, Mapping

from kexue._validate import check_bool

__all__ = ["load_vocab", "save_vocab", "is_cjk_character", "is_punctuation", "is_space", "is_control",
           "is_special_token", "is_redundant_token", "stem"]

# CJK Unified Ideographs and their extensions, as in Google BERT's `_is_chinese_char`.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk_character(ch: str) -> bool:
    """True for a CJK ideograph (the characters BERT splits one per token)."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def is_punctuation(ch: str) -> bool:
    """ASCII symbols and every Unicode P* character (BERT's definition of punctuation)."""
    code = ord(ch)
    return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
            or unicodedata.category(ch).startswith("P"))


def is_space(ch: str) -> bool:
    """Space, tab, newline, carriage return and Unicode Zs separators."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """Control and format characters (Cc, Cf) that BERT's cleaning removes."""
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_special_token(token: str) -> bool:
    """Bracketed tokens such as [CLS], [UNK] or [unused1]."""
    return len(token) >= 2 and token[0] == "[" and token[-1] == "]"


def stem(token: str) -> str:
    """The text of a WordPiece token without its continuation prefix `##`."""
    return token[2:] if token.startswith("##") else token


def is_redundant_token(token: str) -> bool:
    """A piece WordPiece can never produce: several characters including a CJK character or punctuation."""
    return len(token) > 1 and any(is_cjk_character(c) or is_punctuation(c) for c in stem(token))


def load_vocab(path: str | os.PathLike, simplified: bool = False, startswith: Iterable[str] | None = None,
               encoding: str = "utf-8") -> dict[str, int] | tuple[dict[str, int], list[int]]:
    """Read a BERT vocab.txt into {token: line index}; with `simplified=True` also drop redundant pieces.

    Returns `token_dict`, or `(token_dict, keep_tokens)` when simplified: the tokens of `startswith` come
    first, then the non-redundant tokens in file order, and `keep_tokens[new_id]` is the token's old id.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a vocab file, got {type(path).__name__}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"vocab file path={str(path)!r} is a directory (expected a BERT vocab.txt)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vocab file path={str(path)!r} does not exist (expected a BERT vocab.txt)")
    check_bool("simplified", simplified)
    token_dict: dict[str, int] = {}
    try:
        with open(path, encoding=encoding) as reader:
            for index, line in enumerate(reader):
                fields = line.split()
                token = fields[0] if fields else line.strip()
                if token in token_dict:
                    raise ValueError(f"vocab file {str(path)!r} lists token {token!r} twice (lines "
                                     f"{token_dict[token] + 1} and {index + 1}); ids would be ambiguous")
                token_dict[token] = index
    except UnicodeDecodeError as e:
        raise ValueError(f"vocab file {str(path)!r} is not valid {encoding} text ({e}); pass encoding=...") from e
    if not token_dict:
        raise ValueError(f"vocab file {str(path)!r} holds no token (an empty file)")
    if not simplified:
        return token_dict
    if isinstance(startswith, str):
        raise TypeError(f"startswith must be a list of tokens, got the str {startswith!r}")
    new_dict: dict[str, int] = {}
    keep_tokens: list[int] = []
    for token in startswith or []:
        if token not in token_dict:
            raise ValueError(f"startswith token {token!r} is not in the vocab file {str(path)!r}")
        if token not in new_dict:
            new_dict[token] = len(new_dict)
            keep_tokens.append(token_dict[token])
    for token, index in token_dict.items():  # file order == id order
        if token not in new_dict and not is_redundant_token(token):
            new_dict[token] = len(new_dict)
            keep_tokens.append(index)
    return new_dict, keep_tokens


def save_vocab(path: str | os.PathLike, token_dict: dict[str, int], encoding: str = "utf-8") -> None:
    """Write {token: id} as a vocab.txt, one token per line in id order (e.g. a simplified vocab). A token
    holding whitespace would not read back the same (`load_vocab` keeps a line's first field): refused."""
    if not isinstance(token_dict, Mapping):
        raise TypeError(f"token_dict must be a dict {{token: id}}, got {type(token_dict).__name__}")
    for token in token_dict:
        if not isinstance(token, str):
            raise TypeError(f"token_dict keys must be str tokens, got {token!r} ({type(token).__name__})")
        if token and token.split() != [token]:  # '' (a blank line) does read back
            raise ValueError(f"token_dict holds the token {token!r}, which contains whitespace and would "
                             "not read back from a vocab file")
    ids = sorted(token_dict.values())
    if ids != list(range(len(ids))):
        raise ValueError(f"token_dict ids must be exactly 0..{len(ids) - 1}, got {len(ids)} ids "
                         f"from {ids[:1]} to {ids[-1:]}")
    with open(path, "w", encoding=encoding) as writer:
        for token, _ in sorted(token_dict.items(), key=lambda kv: kv[1]):
            writer.write(token + "\n")
