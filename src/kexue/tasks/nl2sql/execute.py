"""Execution of a logic form on its table with the standard library's sqlite3, for execution accuracy (the
competition's second score, https://kexue.fm/archives/6771): two different queries that return the same rows
count as equal."""
from __future__ import annotations

import sqlite3
from collections import Counter

from .query import AGG_NAMES, CONN_NAMES, OP_NAMES, SQLQuery, Table, cell_text

__all__ = ["execute", "execution_match"]

_SQL_OPS = {">": ">", "<": "<", "==": "=", "!=": "!="}


def _condition_value(value: str, column_type: str):
    """A numeric column compares numbers when the value parses as one, else the string (as sqlite would)."""
    if column_type == "real":
        try:
            return float(value)
        except ValueError:
            return value
    return value


def execute(sql: SQLQuery, table: Table) -> list[tuple]:
    """The rows `sql` returns on `table`, sorted (a bag of rows: SQL fixes no row order).

    Columns are c0..c{n-1} of type REAL or TEXT; several conditions with connector 0 are joined by AND."""
    if not isinstance(sql, SQLQuery) or not isinstance(table, Table):
        raise TypeError(f"execute needs a SQLQuery and a Table, got {type(sql).__name__}, {type(table).__name__}")
    n = len(table.headers)
    if not sql.sel:
        raise ValueError("execute: the query selects no column (sel is empty)")
    bad = [c for c in sql.sel + [c for c, _, _ in sql.conds] if c >= n]
    if bad:
        raise ValueError(f"execute: column ids {bad} are out of range for a table of {n} columns")
    selects = [f"{AGG_NAMES[a]}(c{c})" if a else f"c{c}" for c, a in zip(sql.sel, sql.agg)]
    where, params = [], []
    for c, op, value in sql.conds:
        where.append(f"c{c} {_SQL_OPS[OP_NAMES[op]]} ?")
        params.append(_condition_value(value, table.types[c]))
    query = f"SELECT {', '.join(selects)} FROM t"
    if where:
        query += " WHERE " + f" {CONN_NAMES[sql.cond_conn_op] or 'AND'} ".join(where)
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE t (" + ", ".join(f"c{i} {'REAL' if table.types[i] == 'real' else 'TEXT'}"
                                                   for i in range(n)) + ")")
        rows = [[float(v) if t == "real" else cell_text(v) for v, t in zip(row, table.types)] for row in table.rows]
        db.executemany(f"INSERT INTO t VALUES ({', '.join('?' * n)})", rows)
        out = db.execute(query, params).fetchall()
    db.close()
    return sorted(out, key=repr)


def execution_match(pred: SQLQuery, gold: SQLQuery, table: Table) -> bool:
    """True when both queries return the same bag of rows; a prediction that cannot run (no select) is wrong."""
    try:
        got = execute(pred, table)
    except ValueError:
        return False
    return Counter(got) == Counter(execute(gold, table))
