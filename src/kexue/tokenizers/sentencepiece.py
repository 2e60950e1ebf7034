"""SentencePiece tokenizer with the same API, for T5-style vocabularies (https://kexue.fm/archives/7867).

bert4keras `SpTokenizer`: pieces from a SentencePiece model, `</s>` appended (no start token) as T5 does,
and `decode` that drops control, unknown and unused pieces.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

from kexue._validate import check_bool

from .base import TokenizerBase, _as_id_list, _check_id

__all__ = ["SpTokenizer"]


class SpTokenizer(TokenizerBase):
    """`SpTokenizer("spiece.model")`: encode -> (ids + [eos], segment ids); pad/eos/unk ids from the model."""

    def __init__(self, model_path: str | os.PathLike, *, add_bos: bool = False, add_eos: bool = True,
                 pre_tokenize: Callable[[str], Sequence[str]] | None = None):
        try:
            import sentencepiece as spm
        except ImportError as e:  # optional dependency
            raise ImportError("SpTokenizer needs the `sentencepiece` package: pip install kexue[sentencepiece]") from e
        if not isinstance(model_path, (str, os.PathLike)):
            raise TypeError(f"model_path must be a path to a .model file, got {type(model_path).__name__}")
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"sentencepiece model_path={str(model_path)!r} does not exist")
        if pre_tokenize is not None and not callable(pre_tokenize):
            raise TypeError(f"pre_tokenize must be a callable text -> list of words, got {pre_tokenize!r}")
        check_bool("add_bos", add_bos)
        check_bool("add_eos", add_eos)
        try:
            self.sp_model = spm.SentencePieceProcessor(model_file=str(model_path))
        except RuntimeError as e:  # sentencepiece's parse failure ("INTERNAL: could not parse ModelProto")
            raise ValueError(f"model_path={str(model_path)!r} is not a sentencepiece model: {e}") from e
        self._pre_tokenize = pre_tokenize
        ids = {name: getattr(self.sp_model, f"{name}_id")() for name in ("pad", "unk", "bos", "eos")}
        ids = {k: (v if v >= 0 else None) for k, v in ids.items()}  # -1 = not defined in the model
        for name, wanted in (("bos", add_bos), ("eos", add_eos)):
            if wanted and ids[name] is None:
                raise ValueError(f"add_{name}=True but the sentencepiece model defines no {name} piece")
        self._token_pad_id, self._token_unk_id = ids["pad"], ids["unk"]
        self._bos_id, self._eos_id = ids["bos"], ids["eos"]
        self._token_start_id = ids["bos"] if add_bos else None
        self._token_end_id = ids["eos"] if add_eos else None
        self._token_mask_id = None

    @property
    def vocab_size(self) -> int:
        return self.sp_model.get_piece_size()

    pad_id = property(lambda self: self._token_pad_id, doc="id of the padding piece (None when undefined)")
    unk_id = property(lambda self: self._token_unk_id, doc="id of the unknown piece")
    eos_id = property(lambda self: self._eos_id, doc="id of </s> (None when undefined)")
    bos_id = property(lambda self: self._bos_id, doc="id of <s> (None when undefined)")

    def token_to_id(self, token: str) -> int:
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {type(token).__name__}: {token!r:.60}")
        return self.sp_model.piece_to_id(token)

    def id_to_token(self, i: int) -> str:
        return self.sp_model.id_to_piece(_check_id(i, self.vocab_size))

    def _pieces(self, text: str) -> tuple[list[int], None]:
        if self._pre_tokenize is not None:
            words = self._pre_tokenize(text)
            if isinstance(words, str) or not isinstance(words, Sequence) or \
                    not all(isinstance(w, str) for w in words):
                raise TypeError(f"pre_tokenize must return a list of str words, got {words!r:.60}")
            text = " ".join(words)
        return self.sp_model.encode(text), None

    def _pieces_batch(self, texts: list[str], with_offsets: bool) -> tuple[list[list[int]], None]:
        if self._pre_tokenize is not None:
            return super()._pieces_batch(texts, with_offsets)
        return self.sp_model.encode(texts), None  # one call for the batch (sentencepiece's own threads)

    def _is_decodable(self, i: int) -> bool:
        sp = self.sp_model
        return not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i))

    def decode(self, ids) -> str:
        """Text of `ids`, without control (pad, eos), unknown and unused pieces."""
        ids = _as_id_list(ids, self.vocab_size)  # each id range-checked by position
        return self.sp_model.decode([i for i in ids if self._is_decodable(i)])
