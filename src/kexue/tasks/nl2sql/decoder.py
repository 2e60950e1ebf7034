"""Table-aware decoding of the NL2SQL baseline's outputs to a logic form (https://kexue.fm/archives/6771).

1. every column whose select/agg argmax is not "not selected" is selected with that agg;
2. each maximal run of question tokens sharing an op argmax other than "no condition" is a value; its column
   is the argmax of the run's mean column distribution (a run that reaches the end of the question is kept;
   the reference's loop dropped it);
3. a value that is not a number cannot take '>' or '<': the op becomes '=='
   (`numeric_ops_only_for_numbers`; the reference also turned '!=' into '==');
4. for '==': a value absent from the table snaps to the most similar cell (`value_snapping`), and a value
   absent from the chosen column but present in another moves to that column (`column_repair`);
5. conditions are deduplicated; with <= 1 condition the connector is 0, otherwise argmax over {AND, OR}."""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch

from kexue._validate import check_bool, check_int

from .model import NL2SQLOutput
from .query import SQLQuery, Table
from .text import edit_distance, is_number, most_similar

__all__ = ["NL2SQLDecoder", "condition_spans"]

GT, LT, EQ, NE = range(4)


def condition_spans(op_labels: Sequence[int], none_label: int = 4) -> list[tuple[int, int, int]]:
    """(start, end, op) of each maximal run of equal labels other than `none_label` (end exclusive)."""
    spans, start = [], 0
    for label, run in itertools.groupby(op_labels):
        length = len(list(run))
        if label != none_label:
            spans.append((start, start + length, int(label)))
        start += length
    return spans


class NL2SQLDecoder:
    """`NL2SQLDecoder().decode(outputs, question, table, index=0) -> SQLQuery`; the three switches turn the
    reference's post-processing off one by one (the experiment's ablation)."""

    def __init__(self, value_snapping: bool = True, column_repair: bool = True,
                 numeric_ops_only_for_numbers: bool = True,
                 similarity: Callable[[str, str], float] = edit_distance,
                 is_numeric: Callable[[str], bool] = is_number):
        self.value_snapping = check_bool("value_snapping", value_snapping)
        self.column_repair = check_bool("column_repair", column_repair)
        self.numeric_ops_only_for_numbers = check_bool("numeric_ops_only_for_numbers", numeric_ops_only_for_numbers)
        for name, f in (("similarity", similarity), ("is_numeric", is_numeric)):
            if not callable(f):
                raise TypeError(f"{name} must be callable, got {f!r}")
        self.similarity, self.is_numeric = similarity, is_numeric

    @torch.no_grad()
    def decode(self, outputs: NL2SQLOutput, question: str, table: Table, index: int = 0) -> SQLQuery:
        """The query of batch row `index` (question characters are tokens 1..len(question))."""
        if not isinstance(table, Table):
            raise TypeError(f"table must be a Table, got {type(table).__name__}")
        B, n, h = outputs.cond_col_logits.shape
        check_int("index", index, 0, B - 1)
        num_headers = len(table.headers)
        if num_headers > h or len(question) + 1 > n:
            raise ValueError(f"the outputs cover {h} headers and {n - 1} question tokens, the example has "
                             f"{num_headers} headers and {len(question)} question characters")
        sel_agg = outputs.sel_agg_logits[index, :num_headers]                         # [h, num_agg]
        not_selected = sel_agg.shape[-1] - 1
        sel, agg = [], []
        for c, a in enumerate(sel_agg.argmax(-1).tolist()):
            if a != not_selected:
                sel.append(c)
                agg.append(a)
        op_logits = outputs.cond_op_logits[index, 1:len(question) + 1]               # [q, num_op]
        col_probs = outputs.cond_col_logits[index, 1:len(question) + 1, :num_headers].softmax(-1)   # [q, h]
        conds = []
        for s, e, op in condition_spans(op_logits.argmax(-1).tolist(), none_label=op_logits.shape[-1] - 1):
            col = int(col_probs[s:e].mean(0).argmax())
            cond = self.repair(col, op, question[s:e], table)
            if cond not in conds:
                conds.append(cond)
        conn = 0 if len(conds) <= 1 else 1 + int(outputs.conn_logits[index, 1:].argmax())
        return SQLQuery(sel, agg, conn, conds)

    def repair(self, col: int, op: int, value: str, table: Table) -> tuple[int, int, str]:
        """Steps 3-4 of the post-processing on one predicted condition."""
        if self.numeric_ops_only_for_numbers and op in (GT, LT) and not self.is_numeric(value):
            op = EQ
        if op == EQ:
            if self.value_snapping and table.all_values and not any(value in vs for vs in table.column_values):
                value = most_similar(value, table.all_values, self.similarity)[0]
            if self.column_repair and value not in table.column_values[col]:
                col = next((c for c, values in enumerate(table.column_values) if value in values), col)
        return col, op, value
