"""kexue.tasks.nl2sql.execute (nlp/03): queries run with sqlite3 on a hand-made table return the rows worked
out by hand; numeric columns compare numbers; equivalent queries match on execution but not on logic form."""
import pytest

from kexue.tasks.nl2sql import SQLQuery, Table, execute, execution_match, logic_form_match

TABLE = Table(["城市", "人口", "面积", "省份"],
              [["北京", 2100, 16410, "河北"], ["上海", 2400, 6340, "江苏"], ["南京", 850, 6587.5, "江苏"],
               ["苏州", 9, 8657, "江苏"]])


def test_select_with_conditions_and_aggregates_by_hand():
    assert execute(SQLQuery([0], [0], 0, [(3, 2, "江苏")]), TABLE) == [("上海",), ("南京",), ("苏州",)]
    assert execute(SQLQuery([1], [1], 0, [(3, 2, "江苏")]), TABLE) == [((2400 + 850 + 9) / 3,)]
    assert execute(SQLQuery([2], [2], 0, []), TABLE) == [(16410.0,)]
    assert execute(SQLQuery([1], [3], 0, [(3, 3, "河北")]), TABLE) == [(9.0,)]
    assert execute(SQLQuery([0], [4], 2, [(1, 0, "2000"), (0, 2, "南京")]), TABLE) == [(3,)]      # OR
    assert execute(SQLQuery([0], [4], 1, [(1, 0, "2000"), (0, 2, "南京")]), TABLE) == [(0,)]      # AND
    assert execute(SQLQuery([2], [5], 0, [(1, 1, "1000")]), TABLE) == [(6587.5 + 8657,)]
    assert execute(SQLQuery([0, 1], [0, 0], 0, [(0, 2, "北京")]), TABLE) == [("北京", 2100.0)]


def test_numeric_columns_compare_numbers_not_strings():
    # as strings "9" > "10" and "850" > "2000"; as numbers only 2100 and 2400 exceed 1000
    assert execute(SQLQuery([0], [0], 0, [(1, 0, "1000")]), TABLE) == [("上海",), ("北京",)]
    assert execute(SQLQuery([0], [0], 0, [(1, 1, "10")]), TABLE) == [("苏州",)]
    assert execute(SQLQuery([0], [0], 0, [(1, 2, "850.0")]), TABLE) == [("南京",)]


def test_equivalent_queries_match_on_execution_only():
    a = SQLQuery([0], [0], 0, [(1, 0, "1000")])
    b = SQLQuery([0], [0], 0, [(1, 0, "2000")])                 # no population between 1000 and 2000
    assert execution_match(a, b, TABLE) and not logic_form_match(a, b)
    assert not execution_match(a, SQLQuery([0], [0], 0, [(1, 0, "2200")]), TABLE)
    assert not execution_match(SQLQuery([], [], 0, []), a, TABLE)          # nothing selected cannot run


def test_execute_refuses_bad_queries_by_name():
    with pytest.raises(ValueError, match="out of range"):
        execute(SQLQuery([7], [0]), TABLE)
    with pytest.raises(ValueError, match="selects no column"):
        execute(SQLQuery([], []), TABLE)
    with pytest.raises(TypeError, match="SQLQuery and a Table"):
        execute({"sel": [0]}, TABLE)
