"""Seeded template passages with their question-answer pairs, for QA-pair generation (spec nlp/10, after
https://kexue.fm/archives/7630), and the template grammar that parses a generated question back.

A passage holds 4-8 facts about 2-3 entities with random syllable names, each fact one of
"{实体}的{属性}是{值}。" or "{实体}位于{地点}。". Each fact has one question, in one of two paraphrases:
"{实体}的{属性}是什么？" / "请问{实体}的{属性}是什么？" and "{实体}在哪里？" / "{实体}位于哪里？"; its answer is the
value (or place). `parse_question` reads a question back to (entity, attribute) ("位置" for a place), so a
generated pair (question, answer) is *consistent* with a passage when the passage's fact for the parsed
question equals the answer.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .._validate import check_int

__all__ = ["QAPassage", "make_qa_passages", "parse_question", "qa_consistent", "qa_passage_chars",
           "score_qa_pairs", "make_title_passages", "LOCATION_ATTRIBUTE"]

SYLLABLES = "阿巴卡达尔法加哈伊佳克拉马纳欧帕奇莎塔乌维夏亚扎"
ATTRIBUTES = {
    "颜色": ("红色", "蓝色", "绿色", "黄色", "白色", "黑色", "紫色", "灰色"),
    "职业": ("医生", "教师", "农民", "厨师", "画家", "律师", "歌手", "司机"),
    "爱好": ("读书", "游泳", "下棋", "跑步", "唱歌", "钓鱼", "跳舞", "爬山"),
    "宠物": ("小猫", "小狗", "兔子", "金鱼", "乌龟", "鹦鹉", "仓鼠", "小鸡"),
}
LOCATION_ATTRIBUTE = "位置"
PLACES = ("北京", "上海", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州")
_ATTR_QUESTIONS = ("{e}的{a}是什么？", "请问{e}的{a}是什么？")
_PLACE_QUESTIONS = ("{e}在哪里？", "{e}位于哪里？")
_ATTR_RE = re.compile(rf"^(?:请问)?([{SYLLABLES}]+)的({'|'.join(ATTRIBUTES)})是什么？$")
_PLACE_RE = re.compile(rf"^([{SYLLABLES}]+)(?:在哪里|位于哪里)？$")


@dataclass(frozen=True)
class QAPassage:
    """One passage: its text, its facts {(entity, attribute): value} and one (question, answer) per fact."""
    text: str
    facts: dict
    qa_pairs: tuple


def _fact_sentence(entity: str, attribute: str, value: str) -> str:
    return f"{entity}位于{value}。" if attribute == LOCATION_ATTRIBUTE else f"{entity}的{attribute}是{value}。"


def _question(entity: str, attribute: str, rng: random.Random) -> str:
    template = rng.choice(_PLACE_QUESTIONS if attribute == LOCATION_ATTRIBUTE else _ATTR_QUESTIONS)
    return template.format(e=entity, a=attribute)


def make_qa_passages(n: int, seed: int, min_facts: int = 4, max_facts: int = 8,
                     entities: tuple[int, int] = (2, 3)) -> list[QAPassage]:
    """`n` passages, each of min_facts..max_facts facts (shuffled) about entities[0]..entities[1] distinct
    entities with 2-3 syllable names; every (entity, attribute) at most once per passage. Seeded."""
    n = check_int("n", n, 0)
    seed = check_int("seed", seed)
    max_facts = check_int("max_facts", max_facts, 1)
    min_facts = check_int("min_facts", min_facts, 1, max_facts)
    if not (isinstance(entities, tuple) and len(entities) == 2):
        raise TypeError(f"entities must be a (min, max) tuple of ints, got {entities!r}")
    lo = check_int("entities[0]", entities[0], 1)
    hi = check_int("entities[1]", entities[1], lo)
    if hi * (len(ATTRIBUTES) + 1) < max_facts:
        raise ValueError(f"max_facts={max_facts} needs more (entity, attribute) slots than {hi} entities x "
                         f"{len(ATTRIBUTES) + 1} attributes give")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(lo, hi)
        names: list[str] = []
        while len(names) < k:
            name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
            if all(name not in other and other not in name for other in names):
                names.append(name)
        slots = [(e, a) for e in names for a in (*ATTRIBUTES, LOCATION_ATTRIBUTE)]
        m = rng.randint(min_facts, min(max_facts, len(slots)))
        chosen = rng.sample(slots, m)
        facts = {(e, a): rng.choice(PLACES if a == LOCATION_ATTRIBUTE else ATTRIBUTES[a]) for e, a in chosen}
        text = "".join(_fact_sentence(e, a, v) for (e, a), v in facts.items())
        pairs = tuple((_question(e, a, rng), v) for (e, a), v in facts.items())
        out.append(QAPassage(text, facts, pairs))
    return out


def parse_question(question: str) -> tuple[str, str] | None:
    """(entity, attribute) of a question of the template grammar ("位置" for where-questions), else None."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a str, got {type(question).__name__}")
    q = question.strip()
    m = _ATTR_RE.match(q)
    if m:
        return m.group(1), m.group(2)
    m = _PLACE_RE.match(q)
    return (m.group(1), LOCATION_ATTRIBUTE) if m else None


def qa_consistent(passage: QAPassage, question: str, answer: str) -> bool:
    """The question parses to a fact of the passage, and that fact's value is the answer."""
    key = parse_question(question)
    return key is not None and passage.facts.get(key) == answer.strip()


def qa_passage_chars() -> str:
    """Every character a passage, question or answer of this generator can hold (for a character vocabulary)."""
    texts = [SYLLABLES, *ATTRIBUTES, *(v for vs in ATTRIBUTES.values() for v in vs), *PLACES,
             *_ATTR_QUESTIONS, *_PLACE_QUESTIONS, _fact_sentence("", "颜色", ""), _fact_sentence("", "位置", "")]
    return "".join(sorted({c for t in texts for c in t} - set("{}ae")))


def score_qa_pairs(passages: list[QAPassage], generated: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Spec nlp/10's metrics of generated (question, answer) pairs, generated[i] for passages[i]: support (the
    answer is a non-empty passage substring), consistency (`qa_consistent`), both over all pairs, and distinct
    (q, a) pairs per passage."""
    if len(passages) != len(generated) or not passages:
        raise ValueError(f"need one list of generated pairs per passage, got {len(generated)} lists for "
                         f"{len(passages)} passages")
    pairs = [(p, q, a) for p, gen in zip(passages, generated) for q, a in gen]
    if not pairs:
        raise ValueError("no generated pairs to score")
    return {"support": sum(bool(a) and a in p.text for p, _, a in pairs) / len(pairs),
            "consistency": sum(qa_consistent(p, q, a) for p, q, a in pairs) / len(pairs),
            "distinct": sum(len(set(gen)) for gen in generated) / len(generated)}


def make_title_passages(n: int, seed: int, min_facts: int = 3, max_facts: int = 6) -> list[tuple[str, str]]:
    """`n` (passage, title) pairs for UniLM title generation (a synthetic stand-in for bert4keras's
    task_seq2seq_autotitle data): a passage of min_facts..max_facts facts about one main entity, always
    with its job and its place, plus facts about one other entity, shuffled; the title is "{地点}的{职业}{实体}"
    of the main entity (the main entity is the one whose job is stated), e.g. "北京的医生阿巴". Seeded."""
    n = check_int("n", n, 0)
    seed = check_int("seed", seed)
    max_facts = check_int("max_facts", max_facts, 3, 9)
    min_facts = check_int("min_facts", min_facts, 3, max_facts)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        main = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        other = main
        while main in other or other in main:
            other = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3)))
        job, place = rng.choice(ATTRIBUTES["职业"]), rng.choice(PLACES)
        facts = [(main, "职业", job), (main, LOCATION_ATTRIBUTE, place)]
        extra = [(main, a) for a in ATTRIBUTES if a != "职业"] + \
                [(other, a) for a in (*ATTRIBUTES, LOCATION_ATTRIBUTE) if a != "职业"]
        for e, a in rng.sample(extra, rng.randint(min_facts, max_facts) - 2):
            facts.append((e, a, rng.choice(PLACES if a == LOCATION_ATTRIBUTE else ATTRIBUTES[a])))
        rng.shuffle(facts)
        out.append(("".join(_fact_sentence(*f) for f in facts), f"{place}的{job}{main}"))
    return out
