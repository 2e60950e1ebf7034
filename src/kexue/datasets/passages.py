"""Seeded fact passages for extractive reading comprehension (no download).

`fact_questions` (MLM reading comprehension, https://kexue.fm/archives/7148): each question "{实体}的{属性}是什么？"
comes with several passages of template facts "{实体}的{属性}是{值}。" (random syllable names, values of 1-6
characters); one passage states the asked fact, the others are distractors that share its entity or its
attribute; a share of the questions has no answer in any passage.

`key_value_passages` (DGCNN reader, https://kexue.fm/archives/5409): a passage of random syllable text holding
facts "{键}…filler…「{值}」"; the question is "{键}？" and the answer is the bracketed value that follows that key.
Every bracketed value looks alike, so finding the right one needs context as far back as the filler is long.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .._validate import check_bool, check_float, check_int

__all__ = ["FactQuestion", "fact_questions", "KeyValuePassage", "key_value_passages"]

# disjoint character pools (and none of the template characters 的是什么？。「」)
NAME_CHARS = "阿巴卡达伊法加哈基拉玛纳欧帕奇萨塔乌瓦希亚扎贝德格克洛莫诺佩"
ATTRIBUTES = ("颜色", "产地", "作者", "首都", "年龄", "重量", "身高", "职业", "爱好", "生日", "住址", "价格")
VALUE_CHARS = "一二三四五六七八九十百千万红黄蓝绿白黑金银东南西北春夏秋冬山水木火土石"
KEY_CHARS = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰"
FILLER_CHARS = "风云雨雪花草鸟鱼虫星月日光影声色香味江河湖海林田城乡街桥"
CUE_OPEN, CUE_CLOSE = "「", "」"


@dataclass(frozen=True)
class FactQuestion:
    """A question, its passages and its accepted answers (() when no passage states the fact);
    `answer_passage` is the index of the passage that does (-1 when none)."""
    question: str
    passages: tuple[str, ...]
    answers: tuple[str, ...]
    answer_passage: int


def _rng(seed: int | random.Random) -> random.Random:
    return seed if isinstance(seed, random.Random) else random.Random(check_int("seed", seed, 0))


def _range(name: str, value, low: int) -> tuple[int, int]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"{name} must be a (min, max) tuple of ints, got {value!r}")
    a, b = check_int(f"{name}[0]", value[0], low), check_int(f"{name}[1]", value[1], low)
    if a > b:
        raise ValueError(f"{name} must have min <= max, got {value!r}")
    return a, b


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(NAME_CHARS) for _ in range(rng.randint(2, 3)))


def fact_questions(n: int, seed: int | random.Random = 0, passages_per_question: int = 3,
                   facts_per_passage: tuple[int, int] = (6, 10), value_len: tuple[int, int] = (1, 6),
                   no_answer_rate: float = 0.1) -> list[FactQuestion]:
    """n questions with `passages_per_question` passages each (spec nlp/06 section 4)."""
    n = check_int("n", n, 0)
    passages_per_question = check_int("passages_per_question", passages_per_question, 1)
    f_lo, f_hi = _range("facts_per_passage", facts_per_passage, 1)
    if f_hi > 60:                                        # 6 entities x 12 attributes - the asked pair = 71 facts
        raise ValueError(f"facts_per_passage must be at most 60 facts, got {facts_per_passage!r}")
    v_lo, v_hi = _range("value_len", value_len, 1)
    no_answer_rate = check_float("no_answer_rate", no_answer_rate, 0.0, 1.0)
    rng = _rng(seed)
    value = lambda: "".join(rng.choice(VALUE_CHARS) for _ in range(rng.randint(v_lo, v_hi)))  # noqa: E731
    out = []
    for _ in range(n):
        entity, attribute = _name(rng), rng.choice(ATTRIBUTES)
        others: list[str] = []
        while len(others) < 5:
            e = _name(rng)
            if e != entity and e not in others:
                others.append(e)
        answerable = rng.random() >= no_answer_rate
        holder = rng.randrange(passages_per_question) if answerable else -1
        gold = value()
        passages = []
        for k in range(passages_per_question):
            facts, seen = [], {(entity, attribute)}
            count = rng.randint(f_lo, f_hi) - (k == holder)
            while len(facts) < count:                                # distractors: same entity or same attribute
                e = entity if rng.random() < 0.3 else rng.choice(others)
                a = attribute if (e != entity and rng.random() < 0.3) else rng.choice(ATTRIBUTES)
                if (e, a) not in seen:
                    seen.add((e, a))
                    facts.append(f"{e}的{a}是{value()}。")
            if k == holder:
                facts.insert(rng.randint(0, len(facts)), f"{entity}的{attribute}是{gold}。")
            passages.append("".join(facts))
        out.append(FactQuestion(f"{entity}的{attribute}是什么？", tuple(passages),
                                (gold,) if answerable else (), holder))
    return out


@dataclass(frozen=True)
class KeyValuePassage:
    """A question "{键}？", its passage, the answer ("" when the key is absent) and its start (-1 when absent)."""
    question: str
    passage: str
    answer: str
    start: int


def key_value_passages(n: int, seed: int | random.Random = 0, length: int = 256, num_facts: int = 6,
                       filler_len: tuple[int, int] = (16, 24), value_len: tuple[int, int] = (1, 3),
                       no_answer_rate: float = 0.2, key_len: int = 2,
                       keyed_distractors: bool = True) -> list[KeyValuePassage]:
    """n passages of exactly `length` characters with `num_facts` facts "{键}" + filler + "「{值}」" in order,
    random filler between them (spec nlp/07 section 4). Keys are `key_len` characters, distinct within a passage.
    keyed_distractors=False: only one fact keeps its key (the asked one; in a no-answer passage another key),
    the other bracketed values follow plain filler, so the answer is found by looking back for a key without
    matching it to the question."""
    n, length, num_facts = check_int("n", n, 0), check_int("length", length, 1), check_int("num_facts", num_facts, 1)
    fl_lo, fl_hi = _range("filler_len", filler_len, 0)
    v_lo, v_hi = _range("value_len", value_len, 1)
    no_answer_rate = check_float("no_answer_rate", no_answer_rate, 0.0, 1.0)
    key_len = check_int("key_len", key_len, 1, 4)
    keyed_distractors = check_bool("keyed_distractors", keyed_distractors)
    longest = num_facts * (key_len + fl_hi + 2 + v_hi)
    if longest > length:
        raise ValueError(f"length must hold num_facts={num_facts} facts of up to {key_len} + {fl_hi} + 2 + {v_hi} "
                         f"chars (>= {longest}), got {length}")
    if num_facts + 1 > len(KEY_CHARS) ** key_len:
        raise ValueError(f"num_facts must be < {len(KEY_CHARS) ** key_len} (distinct keys of {key_len} chars), "
                         f"got {num_facts}")
    rng = _rng(seed)
    filler = lambda k: "".join(rng.choice(FILLER_CHARS) for _ in range(k))  # noqa: E731
    out = []
    for _ in range(n):
        keys: list[str] = []
        while len(keys) < num_facts + 1:                                  # the last one is never in the passage
            key = "".join(rng.choice(KEY_CHARS) for _ in range(key_len))
            if key not in keys:
                keys.append(key)
        values = ["".join(rng.choice(VALUE_CHARS) for _ in range(rng.randint(v_lo, v_hi))) for _ in range(num_facts)]
        asked = rng.randrange(num_facts)
        facts = [(keys[i] if keyed_distractors or i == asked else filler(key_len)) + filler(rng.randint(fl_lo, fl_hi))
                 + CUE_OPEN + values[i] + CUE_CLOSE for i in range(num_facts)]
        free = length - sum(map(len, facts))                              # spread over num_facts + 1 gaps
        cuts = sorted(rng.randint(0, free) for _ in range(num_facts))
        gaps = [b - a for a, b in zip([0] + cuts, cuts + [free])]
        text, starts = filler(gaps[0]), []
        for i, fact in enumerate(facts):
            starts.append(len(text) + len(fact) - len(values[i]) - 1)
            text += fact + filler(gaps[i + 1])
        if rng.random() < no_answer_rate:
            out.append(KeyValuePassage(keys[-1] + "？", text, "", -1))
        else:
            out.append(KeyValuePassage(keys[asked] + "？", text, values[asked], starts[asked]))
    return out
