"""kexue.datasets.nl2sql_tables (nlp/03): the toy table world is seeded, its train and test tables are
disjoint, every condition value is a cell of its column and appears in the question (whole, or with one
character dropped when marked corrupted), and the recipe's proportions hold."""
import random

import pytest

from kexue.datasets import make_nl2sql_world
from kexue.datasets.nl2sql_tables import make_question, make_table

WORLD = make_nl2sql_world(n_tables=30, questions_per_table=30, seed=1)


def _cell(v):
    return v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


def test_seeded_and_disjoint():
    again = make_nl2sql_world(n_tables=30, questions_per_table=30, seed=1)
    assert again.train == WORLD.train and again.tables == WORLD.tables
    assert make_nl2sql_world(n_tables=30, questions_per_table=30, seed=2).train != WORLD.train
    train_ids = {e["table_id"] for e in WORLD.train}
    test_ids = {e["table_id"] for e in WORLD.test}
    assert not train_ids & test_ids and len(test_ids) == 6 and len(WORLD.test) == 6 * 30


def test_tables_follow_the_recipe():
    for t in WORLD.tables.values():
        n = len(t["header"])
        assert 4 <= n <= 8 and len(set(t["header"])) == n and 6 <= len(t["rows"]) <= 12
        assert "text" in t["types"] and "real" in t["types"]
        text = [row[c] for row in t["rows"] for c in range(n) if t["types"][c] == "text"]
        assert len(set(text)) == len(text) and all(isinstance(v, str) for v in text)
        assert all(isinstance(row[c], (int, float)) for row in t["rows"] for c in range(n) if t["types"][c] == "real")


def test_condition_values_are_cells_and_are_mentioned_in_the_question():
    for e in WORLD.train + WORLD.test:
        t, sql, q = WORLD.tables[e["table_id"]], e["sql"], e["question"]
        assert len(sql["sel"]) == len(sql["agg"]) == 1 and 1 <= len(sql["conds"]) <= 2
        assert (sql["cond_conn_op"] == 0) == (len(sql["conds"]) == 1)
        assert sql["sel"][0] not in [c for c, _, _ in sql["conds"]]
        assert t["header"][sql["sel"][0]] in q
        for col, op, value in sql["conds"]:
            assert value in {_cell(row[col]) for row in t["rows"]}
            if t["types"][col] == "text":
                assert op in (2, 3)                                 # no comparison on text
            if value not in q:                                      # the corrupted mention: one char dropped
                assert e["corrupted"] and op == 2 and any(value[:k] + value[k + 1:] in q for k in range(len(value)))


def test_corruption_and_omission_rates():
    eligible = corrupted = 0
    for e in WORLD.train + WORLD.test:
        t = WORLD.tables[e["table_id"]]
        for col, op, value in e["sql"]["conds"]:
            if t["types"][col] == "text" and op == 2 and len(value) >= 3:
                eligible += 1
                corrupted += value not in e["question"]
    assert 0.12 < corrupted / eligible < 0.28                      # 20 % of the eligible values
    assert 0.05 < sum(e["column_omitted"] for e in WORLD.train) / len(WORLD.train) < 0.3
    none = make_nl2sql_world(n_tables=10, questions_per_table=20, corrupt_prob=0.0, seed=1)
    assert not any(e["corrupted"] for e in none.train + none.test)


def test_test_tables_can_carry_more_questions():
    w = make_nl2sql_world(n_tables=10, questions_per_table=4, test_questions_per_table=9, seed=1)
    assert len(w.train) == 8 * 4 and len(w.test) == 2 * 9
    assert w.train == make_nl2sql_world(n_tables=10, questions_per_table=4, seed=1).train


def test_single_table_and_question_are_seeded():
    t = make_table(random.Random(4), "x")
    assert t == make_table(random.Random(4), "x") and t["id"] == "x"
    assert make_question(random.Random(5), t) == make_question(random.Random(5), t)


@pytest.mark.parametrize("kwargs, match", [({"n_tables": 1}, "n_tables"), ({"test_fraction": 1.0}, "test_fraction"),
                                           ({"corrupt_prob": 1.5}, "corrupt_prob"), ({"seed": -1}, "seed"),
                                           ({"test_questions_per_table": 0}, "test_questions_per_table")])
def test_bad_arguments_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_nl2sql_world(**kwargs)
