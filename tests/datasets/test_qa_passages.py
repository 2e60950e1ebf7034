"""qa_passages (spec nlp/10): seeded template passages; every QA pair parses back to its own fact (the grammar
is the inverse of the templates), and the consistency metric says no to wrong answers and foreign questions."""
import pytest

from kexue.datasets import (make_qa_passages, make_title_passages, parse_question, qa_consistent, qa_passage_chars,
                            score_qa_pairs)
from kexue.datasets.qa_passages import ATTRIBUTES, LOCATION_ATTRIBUTE, PLACES


def test_seeded_and_within_the_recipe_bounds():
    a, b = make_qa_passages(50, seed=3), make_qa_passages(50, seed=3)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in make_qa_passages(50, 4)] != [p.text for p in a]
    for p in a:
        assert 4 <= len(p.facts) <= 8 and len(p.qa_pairs) == len(p.facts)
        assert 2 <= len({e for e, _ in p.facts}) <= 3
        assert p.text.count("。") == len(p.facts)
        assert set(p.text) <= set(qa_passage_chars())


def test_every_pair_parses_back_to_its_fact_and_is_consistent():
    for p in make_qa_passages(200, seed=0):
        for (q, a), (key, value) in zip(p.qa_pairs, p.facts.items()):
            assert parse_question(q) == key and a == value and a in p.text
            assert qa_consistent(p, q, a)


def test_grammar_on_hand_made_questions():
    assert parse_question("阿巴的颜色是什么？") == ("阿巴", "颜色")
    assert parse_question("请问卡达尔的职业是什么？") == ("卡达尔", "职业")
    assert parse_question("卡达在哪里？") == ("卡达", LOCATION_ATTRIBUTE)
    assert parse_question("卡达位于哪里？") == ("卡达", LOCATION_ATTRIBUTE)
    for bad in ("阿巴的身高是什么？", "的颜色是什么？", "阿巴的颜色是什么", "阿巴在哪里？？", "", "北京在哪里？"):
        assert parse_question(bad) is None, bad


def test_consistency_refuses_wrong_answers_and_unknown_facts():
    p = make_qa_passages(1, seed=1)[0]
    (e, attr), value = next(iter(p.facts.items()))
    q = f"{e}在哪里？" if attr == LOCATION_ATTRIBUTE else f"{e}的{attr}是什么？"
    assert qa_consistent(p, q, value)
    pool = PLACES if attr == LOCATION_ATTRIBUTE else ATTRIBUTES[attr]
    assert not qa_consistent(p, q, next(v for v in pool if v != value))
    assert not qa_consistent(p, "扎扎扎的颜色是什么？", value)          # no such entity in the passage
    assert not qa_consistent(p, "随便问问", value)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="min_facts"):
        make_qa_passages(3, 0, min_facts=5, max_facts=4)
    with pytest.raises(TypeError, match="seed"):
        make_qa_passages(3, 0.5)
    with pytest.raises(ValueError, match="max_facts"):
        make_qa_passages(3, 0, max_facts=20, entities=(1, 2))
    with pytest.raises(TypeError, match="question"):
        parse_question(None)


def test_score_on_hand_made_pairs():
    p = make_qa_passages(1, seed=2)[0]
    (q0, a0), (q1, a1) = p.qa_pairs[:2]
    wrong = next(v for v in ATTRIBUTES["颜色"] + PLACES if v not in p.text)      # not in the passage at all
    s = score_qa_pairs([p, p], [[(q0, a0), (q0, a0), (q1, a1)], [(q0, wrong), ("随便", "")]])
    assert s == {"support": pytest.approx(3 / 5), "consistency": pytest.approx(3 / 5), "distinct": 2.0}
    with pytest.raises(ValueError, match="one list"):
        score_qa_pairs([p], [])


def test_title_passages_state_the_title_facts_of_the_main_entity():
    data = make_title_passages(100, seed=0)
    assert data == make_title_passages(100, seed=0)
    for text, title in data:
        place, rest = title.split("的", 1)
        job, entity = rest[:2], rest[2:]
        assert f"{entity}的职业是{job}。" in text and f"{entity}位于{place}。" in text
        assert text.count("的职业是") == 1 and 3 <= text.count("。") <= 6
        assert set(text + title) <= set(qa_passage_chars())
