"""A seeded synthetic table world for the NL2SQL baseline (spec nlp/03, https://kexue.fm/archives/6771),
in the format of the Zhuiyi/Tianchi 2019 TableQA data, with no download.

Each table has 4-8 columns (text columns of syllable names, numeric columns of integers and one-decimal
numbers) and 6-12 rows; text cells are unique within a table. A question selects one column with an agg word
(平均/最大/最小/总/多少个 or none) under one or two conditions joined by 并且 (AND) / 或者 (OR); a condition
reads "<column>是/不是/大于/小于<value>", or only "<value>" for a text equality (the column left for the
model to guess: column repair's case). Values are copied from cells; 20 % of the text equality values lose
one character in the question (gold keeps the cell: value snapping's case). Train and test tables are
disjoint.

Tables: {"id", "header", "types" ("text" / "real"), "rows"}; examples: {"question", "table_id",
"sql": {"sel", "agg", "cond_conn_op", "conds": [[col, op, value]]}, "corrupted": bool, "column_omitted":
bool}; agg 0 none 1 AVG 2 MAX 3 MIN 4 COUNT 5 SUM, op 0 > 1 < 2 == 3 !=, conn 0 none 1 AND 2 OR.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kexue._validate import check_float, check_int

__all__ = ["NL2SQLWorld", "make_nl2sql_world", "make_table", "make_question"]

TEXT_HEADERS = ("城市", "名称", "公司", "作者", "品牌", "地区", "学校", "球队", "歌手", "产品", "电影", "股票")
REAL_HEADERS = ("价格", "人口", "面积", "销量", "年份", "评分", "数量", "收入", "年龄", "得分", "利润", "票房")
SYLLABLES = ("安北昌德恩方高海华佳江金凯兰丽林明南宁鹏琪瑞山盛泰天万文武西祥新星阳永云泽长振中州博朗"
             "嘉骏康乐龙茂睿荣胜舒通伟欣雅逸远卓")
# agg id -> phrase templates around the header h (the question ends with one of them)
_SELECT = {0: ("{h}是多少", "{h}是什么"), 1: ("平均{h}是多少",), 2: ("最大的{h}是多少", "最高的{h}是多少"),
           3: ("最小的{h}是多少", "最低的{h}是多少"), 4: ("有多少个{h}",), 5: ("总{h}是多少",)}
_CONDITION = {0: "{h}大于{v}", 1: "{h}小于{v}", 2: "{h}是{v}", 3: "{h}不是{v}"}
_CONNECTOR = {1: "并且", 2: "或者"}
_PREFIX = ("", "", "请问", "我想知道")


@dataclass
class NL2SQLWorld:
    tables: dict[str, dict]      # id -> table
    train: list[dict]            # examples on the train tables
    test: list[dict]             # examples on the held-out tables


def _text_value(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))


def _real_value(rng: random.Random) -> int | float:
    """An int in [1, 999] or (15 %) a number with one non-zero decimal in (1, 100)."""
    return round(rng.randint(1, 99) + rng.randint(1, 9) / 10, 1) if rng.random() < 0.15 else rng.randint(1, 999)


def make_table(rng: random.Random, table_id: str) -> dict:
    """One table: 4-8 columns (1 to half of them text), 6-12 rows, text cells unique in the table."""
    n_cols = rng.randint(4, 8)
    n_text = rng.randint(1, n_cols // 2)
    kinds = ["text"] * n_text + ["real"] * (n_cols - n_text)
    rng.shuffle(kinds)
    text_names = iter(rng.sample(TEXT_HEADERS, n_text))
    real_names = iter(rng.sample(REAL_HEADERS, n_cols - n_text))
    header = [next(text_names) if k == "text" else next(real_names) for k in kinds]
    n_rows = rng.randint(6, 12)
    seen: set[str] = set()
    columns = []
    for k in kinds:
        if k == "real":
            columns.append([_real_value(rng) for _ in range(n_rows)])
            continue
        col = []
        while len(col) < n_rows:
            v = _text_value(rng)
            if v not in seen:
                seen.add(v)
                col.append(v)
        columns.append(col)
    return {"id": table_id, "header": header, "types": kinds, "rows": [list(r) for r in zip(*columns)]}


def _cell(v) -> str:
    return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


def make_question(rng: random.Random, table: dict, corrupt_prob: float = 0.2,
                  omit_column_prob: float = 0.3) -> dict:
    """One question on `table` with its SQL (see the module docstring)."""
    header, types, rows = table["header"], table["types"], table["rows"]
    sel = rng.randrange(len(header))
    agg = rng.choice((0, 1, 2, 3, 4, 5)) if types[sel] == "real" else rng.choice((0, 4))
    select = rng.choice(_SELECT[agg]).format(h=header[sel])
    n_conds = 1 if rng.random() < 0.6 else 2
    cond_cols = rng.sample([c for c in range(len(header)) if c != sel], n_conds)
    conds, phrases, corrupted, omitted = [], [], False, False
    for c in cond_cols:
        value = _cell(rng.choice(rows)[c])
        op = (2 if rng.random() < 0.8 else 3) if types[c] == "text" else rng.choice((0, 1, 2, 3))
        mention = value
        if types[c] == "text" and op == 2 and len(value) >= 3 and rng.random() < corrupt_prob:
            k = rng.randrange(len(value))
            mention, corrupted = value[:k] + value[k + 1:], True
        if types[c] == "text" and op == 2 and rng.random() < omit_column_prob:
            phrases.append(mention)
            omitted = True
        else:
            phrases.append(_CONDITION[op].format(h=header[c], v=mention))
        conds.append([c, op, value])
    conn = 0 if n_conds == 1 else rng.choice((1, 2))
    question = rng.choice(_PREFIX) + (_CONNECTOR.get(conn, "")).join(phrases) + "的" + select
    return {"question": question, "table_id": table["id"],
            "sql": {"sel": [sel], "agg": [agg], "cond_conn_op": conn, "conds": conds},
            "corrupted": corrupted, "column_omitted": omitted}


def make_nl2sql_world(n_tables: int = 200, questions_per_table: int = 20, test_fraction: float = 0.2,
                      corrupt_prob: float = 0.2, omit_column_prob: float = 0.3, seed: int = 0,
                      test_questions_per_table: int | None = None) -> NL2SQLWorld:
    """`n_tables` tables, the last round(test_fraction * n_tables) held out; `questions_per_table` on each
    train table and `test_questions_per_table` (default the same) on each test table."""
    check_int("n_tables", n_tables, low=2)
    check_int("questions_per_table", questions_per_table, low=1)
    n_test_questions = questions_per_table if test_questions_per_table is None else \
        check_int("test_questions_per_table", test_questions_per_table, low=1)
    check_float("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    check_float("corrupt_prob", corrupt_prob, 0.0, 1.0)
    check_float("omit_column_prob", omit_column_prob, 0.0, 1.0)
    check_int("seed", seed, low=0)
    n_test = min(n_tables - 1, max(1, round(test_fraction * n_tables)))
    rng = random.Random(seed)
    tables = [make_table(rng, f"t{i}") for i in range(n_tables)]
    split = n_tables - n_test
    examples = [[make_question(rng, t, corrupt_prob, omit_column_prob)
                 for _ in range(questions_per_table if i < split else n_test_questions)] for i, t in enumerate(tables)]
    return NL2SQLWorld({t["id"]: t for t in tables}, [e for ex in examples[:split] for e in ex],
                       [e for ex in examples[split:] for e in ex])
