"""Seeded synthetic SPO (subject, predicate, object) sentences for relation extraction, the CPU stand-in for
the Baidu/LIC 2019 data of https://kexue.fm/archives/6736 (spec nlp/02: 5 predicates, 1-3 triples a sentence,
overlapping subjects, held-out templates with unseen entity strings).

A sentence is a topic entity (a person, a company or a book) followed by 1-3 clauses, each stating one fact
about it (the subject is dropped after the first clause, as Chinese does, or resumed by 其), and sometimes a
last clause about the person that a clause introduced (他 / 其). So one subject carries several triples, a
person is the object of one triple (a book's author, a company's founder) and the subject of another, and
city names sit inside school and company names. Every clause pattern belongs to one split: a "test" sentence
uses at least one pattern never seen in training, so its template is held out, and only entity strings never
drawn for training (a fixed split of the strings, `_entities.side_of`). Spans are character offsets (start,
end), both inclusive.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from kexue._validate import check_choice, check_int

from ._entities import entity

__all__ = ["PREDICATES", "SPOSentence", "spo_sentences", "CLAUSES"]

PREDICATES = ("出生地", "毕业院校", "作者", "总部地点", "创始人")
BORN, SCHOOL, AUTHOR, HQ, FOUNDER = range(5)

# topic kind -> predicate -> (other entity's kind, the topic is the subject?, {"train": [...], "test": [...]})
# a pattern holds "{}" for the other entity; a leading "的" attaches to the topic and becomes "其" later on.
# The held-out ("test") patterns rephrase with characters the training patterns use, so a model that reads
# characters could know them; the entity strings still hold characters rare or absent in training.
CLAUSES = {
    "person": {
        BORN: ("city", True, {"train": ["出生于{}", "是{}人", "来自{}"], "test": ["出生在{}", "生于{}"]}),
        SCHOOL: ("school", True, {"train": ["毕业于{}", "曾就读于{}"], "test": ["就读于{}"]}),
        AUTHOR: ("book", False, {"train": ["写了《{}》", "是《{}》的作者"], "test": ["创作了《{}》"]}),
        FOUNDER: ("company", False, {"train": ["创办了{}", "是{}的创始人"], "test": ["是{}的创办人"]}),
    },
    "company": {
        HQ: ("city", True, {"train": ["总部位于{}", "的总部在{}"], "test": ["的总部位于{}"]}),
        FOUNDER: ("person", True, {"train": ["由{}创办", "的创始人是{}"], "test": ["是{}创办的"]}),
    },
    "book": {
        AUTHOR: ("person", True, {"train": ["的作者是{}", "由{}所著"], "test": ["是{}写的"]}),
    },
}
TOPIC_WEIGHTS = {"person": 0.5, "company": 0.3, "book": 0.2}
PRONOUN = {"train": "他", "test": "其"}


@dataclass(frozen=True)
class SPOSentence:
    text: str
    triples: tuple[tuple[tuple[int, int], int, tuple[int, int]], ...]   # ((s0, s1), predicate, (o0, o1)), chars
    template: str                                                       # the clause patterns, e.g. "X出生于{}|毕业于{}"

    def token_triples(self, offset: int = 1) -> list[tuple[tuple[int, int], int, tuple[int, int]]]:
        """The triples at token positions when char k is token k + offset (1: behind [CLS], 1:1 char tokens)."""
        return [((s0 + offset, s1 + offset), p, (o0 + offset, o1 + offset)) for (s0, s1), p, (o0, o1) in self.triples]

    def string_triples(self) -> set[tuple[str, str, str]]:
        """(subject text, predicate name, object text) of every triple."""
        return {(self.text[s0:s1 + 1], PREDICATES[p], self.text[o0:o1 + 1]) for (s0, s1), p, (o0, o1) in self.triples}


class _Builder:
    def __init__(self, rng: random.Random, split: str):
        self.rng, self.split, self.text, self.triples, self.used, self.patterns = rng, split, "", [], set(), []

    def mention(self, kind: str, wrap: str = "{}") -> tuple[int, int]:
        while True:
            name = entity(kind, self.rng, self.split)
            if name not in self.used:
                break
        self.used.add(name)
        left = wrap.index("{}")
        start = len(self.text) + left
        self.text += wrap.format(name)
        return start, start + len(name) - 1

    def clause(self, topic: tuple[int, int], kind: str, predicate: int, pattern: str, first: bool):
        other, topic_is_subject, _ = CLAUSES[kind][predicate]
        self.patterns.append(pattern)
        if not first:
            self.text += "，" + ("其" if pattern.startswith("的") else "")
            pattern = pattern[1:] if pattern.startswith("的") else pattern
        before, after = pattern.split("{}")
        self.text += before
        span = self.mention(other) if "《" not in before else self._book(after)
        if "《" not in before:
            self.text += after
        self.triples.append((topic, predicate, span) if topic_is_subject else (span, predicate, topic))
        return span

    def _book(self, after: str) -> tuple[int, int]:
        span = self.mention("book")
        self.text += after
        return span


def _pick(rng: random.Random, options: dict, split: str, held_out: bool) -> str:
    """A clause pattern: from the training patterns ("train"), from all ("test"), or a held-out one."""
    return rng.choice(options["test"] if held_out else options["train"] + (options["test"] if split == "test" else []))


def _sentence(rng: random.Random, split: str) -> SPOSentence:
    b = _Builder(rng, split)
    kind = rng.choices(list(TOPIC_WEIGHTS), weights=list(TOPIC_WEIGHTS.values()))[0]
    preds = list(CLAUSES[kind])
    rng.shuffle(preds)
    preds = preds[:rng.randint(1, min(3, len(preds)))]
    topic = b.mention(kind, rng.choice(("《{}》", "小说《{}》")) if kind == "book" else "{}")
    held_out = False
    for i, p in enumerate(preds):
        options = CLAUSES[kind][p][2]
        pattern = _pick(rng, options, split, split == "test" and not held_out and i == len(preds) - 1)
        held_out |= pattern in options["test"]
        span = b.clause(topic, kind, p, pattern, i == 0)
    if CLAUSES[kind][p][0] == "person" and len(b.triples) < 3 and rng.random() < 0.5:
        q = rng.choice((BORN, SCHOOL))                 # a fact about the person the last clause introduced
        b.text += "，" + PRONOUN[split]
        b.clause(span, "person", q, _pick(rng, CLAUSES["person"][q][2], split, False), True)
    b.text += "。"
    return SPOSentence(b.text, tuple(sorted(b.triples)), kind + ":" + "|".join(b.patterns))


def spo_sentences(n: int, split: str = "train", seed: int = 0) -> list[SPOSentence]:
    """`n` sentences of `split` ("train", or "test": held-out clause patterns, unseen entity strings), seeded."""
    n = check_int("n", n, 0)
    check_choice("split", split, ("train", "test"))
    check_int("seed", seed, 0)
    rng = random.Random(f"spo-{split}-{seed}")
    return [_sentence(rng, split) for _ in range(n)]
