"""Inputs and labels of the NL2SQL baseline (https://kexue.fm/archives/6771).

The sequence is `[CLS] question [SEP] [CLS] header_1 [SEP] [CLS] header_2 [SEP] ...` with a 1:1 character
tokenizer, so question character k is token k + 1; each header's `[CLS]` position is recorded. Labels:
`sel_agg` per column (agg id, or num_agg - 1 = not selected), `conn` per question, and per token `cond_op`
(the op of the condition whose value covers the token, or num_op - 1) and `cond_col` (that condition's column;
0 elsewhere, which is also column 0: the loss masks it to condition tokens)."""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from kexue._validate import check_int
from kexue.ops import sequence_padding

from .query import SQLQuery
from .text import edit_distance, locate_value

__all__ = ["NL2SQLEncoder"]

# padding value of each field when a batch is collated
_PAD = {"input_ids": 0, "token_type_ids": 0, "question_mask": 0, "header_pos": 0, "header_mask": 0,
        "cond_col": 0}


class NL2SQLEncoder:
    """`NL2SQLEncoder(tokenizer)` where `tokenizer` maps one character to one token (kexue's
    `Tokenizer(vocab, char_level_mapping=True)`); `encode(question, headers, sql)` gives one example's tensors,
    `collate(items)` pads a batch."""

    def __init__(self, tokenizer, max_len: int = 160, num_agg: int = 7, num_op: int = 5,
                 similarity: Callable[[str, str], float] = edit_distance):
        if isinstance(tokenizer, (str, bytes, os.PathLike)) or not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(f"tokenizer must have an encode(text) -> (token_ids, segment_ids) method, "
                            f"got {type(tokenizer).__name__}")
        self.tokenizer = tokenizer
        self.max_len = check_int("max_len", max_len, low=4)
        self.num_agg = check_int("num_agg", num_agg, low=2)
        self.num_op = check_int("num_op", num_op, low=2)
        if not callable(similarity):
            raise TypeError(f"similarity must be a callable (str, str) -> distance, got {similarity!r}")
        self.similarity = similarity

    def _char_ids(self, text: str, what: str) -> tuple[list[int], list[int]]:
        ids, segments = self.tokenizer.encode(text)
        if len(ids) != len(text) + 2:
            raise ValueError(f"the tokenizer must map one character to one token: {what} {text!r} has "
                             f"{len(text)} characters but {len(ids) - 2} tokens (use a character-level "
                             f"tokenizer, e.g. Tokenizer(vocab, char_level_mapping=True))")
        return list(ids), list(segments)

    def encode(self, question: str, headers: Sequence[str], sql: SQLQuery | None = None) -> dict[str, Tensor]:
        """input_ids, token_type_ids, question_mask [n]; header_pos, header_mask [h]; with `sql` the labels
        sel_agg [h], conn [], cond_op [n], cond_col [n] and two counts: dropped_conds (value not found in the
        question, so unlabelled) and overlapping_conds (a value span overwrote another's labels)."""
        if not isinstance(question, str) or not question:
            raise ValueError(f"question must be a non-empty string, got {question!r}")
        if isinstance(headers, str) or not headers or not all(isinstance(h, str) and h for h in headers):
            raise ValueError(f"headers must be a non-empty list of non-empty strings, got {headers!r}")
        if sql is not None and not isinstance(sql, SQLQuery):
            raise TypeError(f"sql must be a SQLQuery or None, got {type(sql).__name__}")
        ids, segments = self._char_ids(question, "question")
        header_pos = []
        for h in headers:
            h_ids, h_segments = self._char_ids(h, "header")
            header_pos.append(len(ids))
            ids += h_ids
            segments += h_segments
        if len(ids) > self.max_len:
            raise ValueError(f"question and headers take {len(ids)} tokens, more than max_len={self.max_len} "
                             f"(the reference skips such samples in training)")
        n, q = len(ids), len(question)
        out = {"input_ids": torch.tensor(ids), "token_type_ids": torch.tensor(segments),
               "question_mask": torch.tensor([0] + [1] * q + [0] * (n - q - 1)),
               "header_pos": torch.tensor(header_pos), "header_mask": torch.ones(len(headers), dtype=torch.long)}
        if sql is not None:
            out.update(self._labels(question, len(headers), n, sql))
        return out

    def _labels(self, question: str, num_headers: int, n: int, sql: SQLQuery) -> dict[str, Tensor]:
        bad = [c for c in sql.sel + [c for c, _, _ in sql.conds] if c >= num_headers]
        if bad:
            raise ValueError(f"sql refers to columns {bad}, the table has {num_headers} headers")
        max_op = max((o for _, o, _ in sql.conds), default=0)
        if max(sql.agg, default=0) >= self.num_agg - 1 or max_op >= self.num_op - 1:
            raise ValueError(f"sql has an agg >= num_agg - 1 = {self.num_agg - 1} or an op >= num_op - 1 = "
                             f"{self.num_op - 1} (those ids mean 'not selected' / 'no condition')")
        sel_agg = torch.full((num_headers,), self.num_agg - 1)
        for c, a in zip(sql.sel, sql.agg):
            sel_agg[c] = a
        cond_op = torch.full((n,), self.num_op - 1)
        cond_col = torch.zeros(n, dtype=torch.long)
        taken = [False] * len(question)
        dropped = overlapping = 0
        for col, op, value in sql.conds:
            span = locate_value(question, value, taken, self.similarity)
            if span is None:
                dropped += 1
                continue
            s, e, overlaps = span
            overlapping += overlaps
            taken[s:e] = [True] * (e - s)
            cond_op[s + 1:e + 1] = op
            cond_col[s + 1:e + 1] = col
        return {"sel_agg": sel_agg, "conn": torch.tensor(sql.cond_conn_op), "cond_op": cond_op,
                "cond_col": cond_col, "dropped_conds": torch.tensor(dropped),
                "overlapping_conds": torch.tensor(overlapping)}

    def collate(self, items: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """Pad a list of `encode` outputs into a batch: sequences [B, n], headers [B, h], scalars [B]; the
        label padding (cond_op num_op - 1, sel_agg num_agg - 1) is masked by question_mask / header_mask."""
        if not items:
            raise ValueError("collate needs at least one encoded example")
        keys = set(items[0])
        if any(set(it) != keys for it in items):
            raise ValueError("collate: the items have different fields (mix of labelled and unlabelled examples?)")
        pad = dict(_PAD, cond_op=self.num_op - 1, sel_agg=self.num_agg - 1)
        return {k: torch.stack([it[k] for it in items]) if items[0][k].dim() == 0
                else sequence_padding([it[k] for it in items], value=pad[k]) for k in sorted(keys)}
