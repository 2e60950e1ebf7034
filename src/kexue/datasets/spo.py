"""Seeded synthetic SPO (subject, predicate, object) sentences for relation extraction, the CPU stand-in for
the Baidu/LIC 2019 data of https://kexue.fm/archives/6736 (spec nlp/02: 5 predicates, 1-3 triples a sentence,
overlapping subjects, held-out templates with unseen entity strings).

Sentences are rendered from templates whose slots hold random persons, cities, schools, books and companies.
Overlap: one subject carries several triples, an entity is the object of one triple and the subject of another,
and a company named after its city holds its headquarters' span inside its own (nested spans). Split "train" uses the training templates and entity
strings; split "test" uses other templates and only entity strings never drawn for training (a fixed split
of the strings, `_entities.side_of`). Spans are character offsets (start, end), both inclusive.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from kexue._validate import check_choice, check_int

from ._entities import CITIES, entity

__all__ = ["PREDICATES", "SPOSentence", "spo_sentences", "SPO_TEMPLATES"]

PREDICATES = ("出生地", "毕业院校", "作者", "总部地点", "创始人")
BORN, SCHOOL, AUTHOR, HQ, FOUNDER = range(5)
KIND = {"p": "person", "q": "person", "c": "city", "s": "school", "b": "book", "o": "company", "k": "city_company"}

# template -> triples (subject slot, predicate, object slot); slot letters give the kind (KIND); "K" is the city
# that begins a "k" company's name (its headquarters), a span nested in the company's span
SPO_TEMPLATES = {
    "train": [
        ("{p}出生于{c}，毕业于{s}。", [("p", BORN, "c"), ("p", SCHOOL, "s")]),
        ("{p}，{c}人，{s}毕业。", [("p", BORN, "c"), ("p", SCHOOL, "s")]),
        ("《{b}》是{p}创作的小说。", [("b", AUTHOR, "p")]),
        ("{p}写了《{b}》，他出生在{c}。", [("b", AUTHOR, "p"), ("p", BORN, "c")]),
        ("{o}由{p}创办，总部设在{c}。", [("o", FOUNDER, "p"), ("o", HQ, "c")]),
        ("{o}的总部位于{c}。", [("o", HQ, "c")]),
        ("{p}创立了{o}。", [("o", FOUNDER, "p")]),
        ("{p}毕业于{s}，后来创办了{o}。", [("p", SCHOOL, "s"), ("o", FOUNDER, "p")]),
        ("来自{c}的{p}是《{b}》的作者。", [("p", BORN, "c"), ("b", AUTHOR, "p")]),
        ("{o}总部在{c}，创始人是{p}，其毕业于{s}。", [("o", HQ, "c"), ("o", FOUNDER, "p"), ("p", SCHOOL, "s")]),
        ("《{b}》一书的作者{p}出生于{c}，曾就读于{s}。", [("b", AUTHOR, "p"), ("p", BORN, "c"), ("p", SCHOOL, "s")]),
        ("{p}和{q}共同创办了{o}。", [("o", FOUNDER, "p"), ("o", FOUNDER, "q")]),
        ("{k}成立多年，创始人是{p}。", [("k", FOUNDER, "p"), ("k", HQ, "K")]),
        ("{p}是{k}的创办者。", [("k", FOUNDER, "p"), ("k", HQ, "K")]),
    ],
    "test": [
        ("{p}生于{c}，{s}毕业后写出了《{b}》。", [("p", BORN, "c"), ("p", SCHOOL, "s"), ("b", AUTHOR, "p")]),
        ("{o}是一家总部位于{c}的企业，由{p}创立。", [("o", HQ, "c"), ("o", FOUNDER, "p")]),
        ("小说《{b}》的作者是{p}。", [("b", AUTHOR, "p")]),
        ("{o}的创始人{p}出生于{c}。", [("o", FOUNDER, "p"), ("p", BORN, "c")]),
        ("毕业于{s}的{p}，出生在{c}。", [("p", SCHOOL, "s"), ("p", BORN, "c")]),
        ("{k}的老板{p}来自{c}。", [("k", FOUNDER, "p"), ("k", HQ, "K"), ("p", BORN, "c")]),
    ],
}

_SLOT = re.compile(r"\{(\w)\}")


@dataclass(frozen=True)
class SPOSentence:
    text: str
    triples: tuple[tuple[tuple[int, int], int, tuple[int, int]], ...]   # ((s0, s1), predicate, (o0, o1)), chars
    template: int                                                       # index in SPO_TEMPLATES[split]

    def string_triples(self) -> set[tuple[str, str, str]]:
        """(subject text, predicate name, object text) of every triple."""
        return {(self.text[s0:s1 + 1], PREDICATES[p], self.text[o0:o1 + 1]) for (s0, s1), p, (o0, o1) in self.triples}


def _render(template: str, triples: list, rng: random.Random, side: str, index: int) -> SPOSentence:
    while True:
        fill = {slot: entity(KIND[slot], rng, side) for slot in set(_SLOT.findall(template))}
        if len(set(fill.values())) == len(fill):          # distinct strings, so every mention is one entity
            break
    text, spans = "", {}
    for k, part in enumerate(_SLOT.split(template)):       # literal text at even k, slot names at odd k
        if k % 2:
            spans[part] = (len(text), len(text) + len(fill[part]) - 1)
            if part == "k":
                city = next(c for c in CITIES if fill[part].startswith(c))
                spans["K"] = (len(text), len(text) + len(city) - 1)
            text += fill[part]
        else:
            text += part
    out = tuple(sorted((spans[s], p, spans[o]) for s, p, o in triples))
    return SPOSentence(text, out, index)


def spo_sentences(n: int, split: str = "train", seed: int = 0) -> list[SPOSentence]:
    """`n` sentences of `split` ("train" or "test": held-out templates, unseen entity strings), seeded."""
    n = check_int("n", n, 0)
    check_choice("split", split, ("train", "test"))
    check_int("seed", seed, 0)
    rng = random.Random(f"spo-{split}-{seed}")
    templates = SPO_TEMPLATES[split]
    out = []
    for _ in range(n):
        i = rng.randrange(len(templates))
        out.append(_render(*templates[i], rng, split, i))
    return out
