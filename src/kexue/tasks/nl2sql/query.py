"""The NL2SQL logic form and the table it runs on (基于Bert的NL2SQL模型：一个简明的Baseline,
https://kexue.fm/archives/6771), in the format of the Zhuiyi/Tianchi 2019 TableQA data.

A query is `sel` (column ids) with a parallel `agg` (0 none, 1 AVG, 2 MAX, 3 MIN, 4 COUNT, 5 SUM), a connector
`cond_conn_op` (0 none, 1 AND, 2 OR) and `conds`, a list of (column, op, value) with op 0 '>', 1 '<', 2 '==',
3 '!='. Values are strings, as in the competition data."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Sequence

__all__ = ["AGG_NAMES", "OP_NAMES", "CONN_NAMES", "SQLQuery", "Table", "cell_text", "logic_form_match",
           "logic_form_accuracy"]

AGG_NAMES = ("", "AVG", "MAX", "MIN", "COUNT", "SUM")
OP_NAMES = (">", "<", "==", "!=")
CONN_NAMES = ("", "AND", "OR")


def cell_text(value: Any) -> str:
    """A cell as the string a condition value is compared with: 35.0 -> "35", 3.5 -> "3.5", "北京" -> "北京"."""
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise TypeError(f"a table cell must be a str, int or float, got {value!r} ({type(value).__name__})")
    if isinstance(value, str):
        return value
    if not math.isfinite(value):
        raise ValueError(f"a numeric table cell must be finite, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class SQLQuery:
    """One single-table query: `SQLQuery(sel=[2], agg=[1], cond_conn_op=1, conds=[(0, 2, "北京"), (3, 0, "30")])`."""
    sel: list[int]
    agg: list[int]
    cond_conn_op: int = 0
    conds: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self):
        self.sel, self.agg = list(self.sel), list(self.agg)
        if len(self.sel) != len(self.agg):
            raise ValueError(f"SQLQuery.sel and .agg are parallel lists, got sel={self.sel} and agg={self.agg}")
        for name, values, high in (("sel", self.sel, None), ("agg", self.agg, len(AGG_NAMES) - 1)):
            for v in values:
                _check_id(f"SQLQuery.{name}", v, high)
        _check_id("SQLQuery.cond_conn_op", self.cond_conn_op, len(CONN_NAMES) - 1)
        conds = []
        for c in self.conds:
            if not isinstance(c, (tuple, list)) or len(c) != 3:
                raise ValueError(f"SQLQuery.conds holds (column, op, value) triples, got {c!r}")
            col, op, value = c
            _check_id("SQLQuery.conds column", col, None)
            _check_id("SQLQuery.conds op", op, len(OP_NAMES) - 1)
            conds.append((int(col), int(op), cell_text(value)))
        self.conds = conds

    @classmethod
    def from_dict(cls, d: Mapping) -> "SQLQuery":
        """From the competition's JSON: {"sel": [...], "agg": [...], "cond_conn_op": 0, "conds": [[c, op, v]]}."""
        return cls(d["sel"], d["agg"], d.get("cond_conn_op", 0), [tuple(c) for c in d.get("conds", [])])

    def to_dict(self) -> dict:
        return {"sel": list(self.sel), "agg": list(self.agg), "cond_conn_op": self.cond_conn_op,
                "conds": [list(c) for c in self.conds]}


def _check_id(name: str, value: Any, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 0 or (high is not None and value > high):
        raise ValueError(f"{name} must be an int in [0, {'inf' if high is None else high}], got {value}")


@dataclass
class Table:
    """A table: `headers` (column names), `rows` (lists of str / int / float cells) and `types` ("text" or
    "real" per column; guessed from the cells when omitted)."""
    headers: list[str]
    rows: list[list]
    types: list[str] | None = None
    name: str = "t"

    def __post_init__(self):
        if not self.headers or not all(isinstance(h, str) and h for h in self.headers):
            raise ValueError(f"Table.headers must be a non-empty list of non-empty strings, got {self.headers!r}")
        for r, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"Table row {r} has {len(row)} cells, the table has {len(self.headers)} columns")
            for v in row:
                cell_text(v)
        if self.types is None:
            self.types = ["real" if self.rows and all(isinstance(row[c], numbers.Real) for row in self.rows)
                          else "text" for c in range(len(self.headers))]
        self.types = list(self.types)
        if len(self.types) != len(self.headers) or not set(self.types) <= {"text", "real"}:
            raise ValueError(f"Table.types must give 'text' or 'real' for each of the {len(self.headers)} "
                             f"columns, got {self.types!r}")

    @classmethod
    def from_dict(cls, d: Mapping) -> "Table":
        """From the competition's JSON: {"id": ..., "header": [...], "types": [...], "rows": [[...]]}."""
        return cls(list(d["header"]), [list(r) for r in d["rows"]], d.get("types"), d.get("id", "t"))

    @cached_property
    def column_values(self) -> list[set[str]]:
        """The cell strings of each column (computed once per table)."""
        return [{cell_text(row[c]) for row in self.rows} for c in range(len(self.headers))]

    @cached_property
    def all_values(self) -> list[str]:
        """Every distinct cell string, in a fixed order (the candidates of value snapping)."""
        return sorted(set().union(*self.column_values))


def logic_form_match(pred: SQLQuery, gold: SQLQuery) -> bool:
    """The competition's full match: equal connector, equal set of (sel, agg) pairs, equal set of conditions."""
    for name, q in (("pred", pred), ("gold", gold)):
        if not isinstance(q, SQLQuery):
            raise TypeError(f"{name} must be a SQLQuery, got {type(q).__name__}")
    return (pred.cond_conn_op == gold.cond_conn_op
            and set(zip(pred.sel, pred.agg)) == set(zip(gold.sel, gold.agg))
            and set(pred.conds) == set(gold.conds))


def logic_form_accuracy(preds: Sequence[SQLQuery], golds: Sequence[SQLQuery]) -> float:
    """Fraction of full logic-form matches."""
    if len(preds) != len(golds) or not golds:
        raise ValueError(f"preds and golds must be equally long and non-empty, got {len(preds)} and {len(golds)}")
    return sum(logic_form_match(p, g) for p, g in zip(preds, golds)) / len(golds)
