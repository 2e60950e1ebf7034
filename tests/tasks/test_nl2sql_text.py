"""kexue.tasks.nl2sql string helpers and the logic form (nlp/03): edit distance against a brute-force
recursion, span grouping against itertools.groupby, value location, the full-match metric's set semantics."""
import functools
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.tasks.nl2sql import (SQLQuery, Table, cell_text, condition_spans, edit_distance, is_number,
                                locate_value, logic_form_accuracy, logic_form_match, most_similar)


def brute_edit_distance(a: str, b: str) -> int:
    @functools.lru_cache(None)
    def d(i, j):
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))
    return d(len(a), len(b))


@settings(max_examples=150, deadline=None)
@given(st.text("abc北京", max_size=7), st.text("abc北京", max_size=7))
def test_edit_distance_equals_the_recursive_definition(a, b):
    assert edit_distance(a, b) == brute_edit_distance(a, b) == edit_distance(b, a)


def test_edit_distance_known_values_and_type_check():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "北京市") == 3
    with pytest.raises(TypeError, match="two strings"):
        edit_distance("a", 1)


def test_most_similar_picks_the_nearest_and_the_first_on_ties():
    assert most_similar("北京", ["上海", "北京市", "南京"]) == ("北京市", 1)     # 南京 is also 1 away: first wins
    with pytest.raises(ValueError, match="no candidates"):
        most_similar("x", [])


@pytest.mark.parametrize("text, expected", [("35", True), ("3.5", True), ("1,000", False), ("-3", False),
                                            ("1e3", False), ("北京", False), ("3.", False), ("", False)])
def test_is_number_is_the_references_digits_and_dot(text, expected):
    assert is_number(text) is expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=30))
def test_condition_spans_are_the_groupby_runs_without_label_4(labels):
    expected, pos = [], 0
    for label, run in itertools.groupby(labels):
        n = len(list(run))
        if label != 4:
            expected.append((pos, pos + n, label))
        pos += n
    assert condition_spans(labels) == expected
    assert all(set(labels[s:e]) == {op} for s, e, op in condition_spans(labels))


def test_locate_value_exact_untaken_corrupted_and_absent():
    q = "城市是北京或者北京的人口"
    assert locate_value(q, "北京") == (3, 5, False)
    taken = [False] * len(q)
    taken[3:5] = [True, True]
    assert locate_value(q, "北京", taken) == (7, 9, False)                 # the second occurrence
    assert locate_value("城市是北的人口", "北京") == (3, 4, False)             # "北": 1 edit < 2 chars
    assert locate_value("地区是方中的面积", "方琪中") == (3, 5, False)       # one char dropped: the 2-char window
    assert locate_value("完全无关", "北京市") is None                        # nothing within distance < len
    only = "北京的面积"
    assert locate_value(only, "北京", [True, True, False, False, False]) == (0, 2, True)   # overwrites: reported


def test_cell_text_and_table_values():
    assert (cell_text(35.0), cell_text(3.5), cell_text(7), cell_text("北京")) == ("35", "3.5", "7", "北京")
    t = Table(["城市", "人口"], [["北京", 2100], ["上海", 2400.0]])
    assert t.types == ["text", "real"] and t.column_values == [{"北京", "上海"}, {"2100", "2400"}]
    assert t.all_values == sorted({"北京", "上海", "2100", "2400"})
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        Table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="types"):
        Table(["a"], [["x"]], types=["date"])
    with pytest.raises(ValueError, match="finite"):
        cell_text(float("nan"))


def test_sql_query_validation_and_dict_round_trip():
    q = SQLQuery.from_dict({"sel": [2], "agg": [1], "cond_conn_op": 1, "conds": [[0, 2, "北京"], [1, 0, 30]]})
    assert q.conds == [(0, 2, "北京"), (1, 0, "30")] and SQLQuery.from_dict(q.to_dict()) == q
    with pytest.raises(ValueError, match="parallel"):
        SQLQuery([0, 1], [0])
    with pytest.raises(ValueError, match="agg"):
        SQLQuery([0], [6])
    with pytest.raises(ValueError, match="op"):
        SQLQuery([0], [0], 0, [(0, 4, "x")])
    with pytest.raises(TypeError, match="cond_conn_op"):
        SQLQuery([0], [0], 1.0)


def test_logic_form_match_is_a_set_comparison():
    gold = SQLQuery([1, 3], [0, 1], 1, [(0, 2, "北京"), (2, 0, "30")])
    assert logic_form_match(SQLQuery([3, 1], [1, 0], 1, [(2, 0, "30"), (0, 2, "北京")]), gold)   # any order
    assert logic_form_match(SQLQuery([1, 3, 3], [0, 1, 1], 1, [(0, 2, "北京"), (2, 0, "30"), (2, 0, "30")]), gold)
    assert not logic_form_match(SQLQuery([1, 3], [1, 0], 1, gold.conds), gold)           # agg with the wrong sel
    assert not logic_form_match(SQLQuery([1, 3], [0, 1], 2, gold.conds), gold)           # connector
    assert not logic_form_match(SQLQuery([1, 3], [0, 1], 1, [(0, 2, "北京"), (2, 1, "30")]), gold)   # op
    assert not logic_form_match(SQLQuery([1, 3], [0, 1], 1, [(0, 2, "北京")]), gold)      # a condition missing
    assert logic_form_accuracy([gold, SQLQuery([0], [0])], [gold, gold]) == 0.5
    with pytest.raises(TypeError, match="pred"):
        logic_form_match(gold.to_dict(), gold)
    with pytest.raises(ValueError, match="equally long"):
        logic_form_accuracy([gold], [])
