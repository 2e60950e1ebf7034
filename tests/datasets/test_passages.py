"""Fact passages (nlp/06) and key-value passages (nlp/07): the asked fact is where the labels say, distractors
never state it, no-answer shares, lengths, seeding, and argument checks."""
import random
import re

import pytest

from kexue.datasets import fact_questions, key_value_passages
from kexue.datasets.passages import CUE_CLOSE, CUE_OPEN, KEY_CHARS


def test_fact_questions_state_the_asked_fact_only_in_the_holder_passage():
    qs = fact_questions(300, seed=1)
    for q in qs:
        entity, attribute = re.fullmatch(r"(.+)的(.+)是什么？", q.question).groups()
        assert len(q.passages) == 3
        stated = [re.findall(f"(?:^|。){entity}的{attribute}是([^。]+)。", p) for p in q.passages]
        if q.answer_passage < 0:
            assert q.answers == () and not any(stated)
        else:
            assert stated[q.answer_passage] == list(q.answers) and 1 <= len(q.answers[0]) <= 6
            assert sum(map(len, stated)) == 1
        for p in q.passages:
            assert 6 <= p.count("。") <= 10
    share = sum(q.answer_passage < 0 for q in qs) / len(qs)
    assert 0.05 < share < 0.16                                           # 10% no-answer, binomial n=300
    same_entity = same_attribute = 0                                     # distractors share entity or attribute
    for q in qs:
        entity, attribute = re.fullmatch(r"(.+)的(.+)是什么？", q.question).groups()
        for p in q.passages:
            facts = re.findall(r"([^。]+)的([^。]+)是[^。]+。", p)
            same_entity += sum(e == entity and a != attribute for e, a in facts)
            same_attribute += sum(e != entity and a == attribute for e, a in facts)
    assert same_entity > 300 and same_attribute > 300


def test_key_value_passages_layout():
    items = key_value_passages(200, seed=2)
    for it in items:
        assert len(it.passage) == 256 and it.passage.count(CUE_OPEN) == 6 and it.question.endswith("？")
        key = it.question[:-1]
        if it.start < 0:
            assert it.answer == "" and key not in it.passage
        else:
            assert it.passage[it.start:it.start + len(it.answer)] == it.answer
            assert it.passage[it.start - 1] == CUE_OPEN and it.passage[it.start + len(it.answer)] == CUE_CLOSE
            k = it.passage.index(key)                                    # the key appears once, before its value
            assert it.passage.count(key) == 1 and 2 + 16 <= it.start - 1 - k <= 2 + 24
            assert CUE_OPEN not in it.passage[k:it.start - 1]            # nothing bracketed in between
    share = sum(it.start < 0 for it in items) / len(items)
    assert 0.1 < share < 0.3


def test_generators_are_seeded():
    assert fact_questions(5, 3) == fact_questions(5, random.Random(3)) != fact_questions(5, 4)
    assert key_value_passages(5, 3) == key_value_passages(5, 3) != key_value_passages(5, 4)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="length"):
        key_value_passages(1, length=256, filler_len=(20, 50))          # 6 facts of up to 57 chars do not fit
    with pytest.raises(ValueError, match="facts_per_passage"):
        fact_questions(1, facts_per_passage=(5, 2))
    with pytest.raises(TypeError, match="value_len"):
        fact_questions(1, value_len=3)
    with pytest.raises(ValueError, match="no_answer_rate"):
        key_value_passages(1, no_answer_rate=1.5)
    with pytest.raises(ValueError, match="seed"):
        fact_questions(1, seed=-1)


def test_single_char_keys_and_unkeyed_distractors():
    items = key_value_passages(100, seed=5, length=128, num_facts=3, key_len=1, keyed_distractors=False)
    for it in items:
        key = it.question[:-1]
        assert len(key) == 1 and it.passage.count(CUE_OPEN) == 3
        keys_in_passage = [c for c in it.passage if c in KEY_CHARS]
        assert len(keys_in_passage) == 1                                 # only one fact keeps its key
        if it.start >= 0:
            assert keys_in_passage == [key] and it.passage.index(key) < it.start
        else:
            assert key not in it.passage and it.answer == ""
