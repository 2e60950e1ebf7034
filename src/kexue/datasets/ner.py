"""A seeded synthetic Chinese NER corpus (persons PER, places LOC, organisations ORG in template sentences,
character-level BIO tags), the CPU stand-in for the People's Daily NER data of bert4keras's
task_sequence_labeling_ner_crf.py (BERT + CRF, https://kexue.fm/archives/5542 and /archives/6736).

Split "train" and "test" share the templates; "test" uses only entity strings never drawn for "train" (a fixed
split of the strings). A city inside a company name is part of the ORG (flat, outermost entities)."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from kexue._validate import check_choice, check_int

from ._entities import entity

__all__ = ["NER_TAGS", "NER_TYPES", "NERSentence", "ner_sentences"]

NER_TYPES = ("PER", "LOC", "ORG")
NER_TAGS = ("O",) + tuple(f"{b}-{t}" for t in NER_TYPES for b in "BI")
_KIND = {"PER": ("person",), "LOC": ("city",), "ORG": ("company", "school")}
NER_TEMPLATES = (
    "{PER}昨天在{LOC}参观了{ORG}。", "{ORG}宣布将在{LOC}设立新总部。", "{PER}是{ORG}的工程师。",
    "记者从{LOC}获悉，{PER}已加入{ORG}。", "{PER}和{PER}在{LOC}见面。", "{LOC}今天的天气很好。",
    "{ORG}在{LOC}举办了发布会，{PER}出席。", "今天{PER}去了{LOC}。", "{PER}毕业于{ORG}，现居{LOC}。",
    "据{ORG}消息，{LOC}将迎来降温。", "{PER}说，{ORG}的产品很受欢迎。", "这次会议由{PER}主持。",
)
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class NERSentence:
    text: str
    entities: tuple[tuple[int, int, str], ...]     # (start, end inclusive, type), character offsets

    def tags(self) -> list[str]:
        """One BIO tag per character."""
        out = ["O"] * len(self.text)
        for s, e, t in self.entities:
            out[s] = f"B-{t}"
            for i in range(s + 1, e + 1):
                out[i] = f"I-{t}"
        return out


def ner_sentences(n: int, split: str = "train", seed: int = 0) -> list[NERSentence]:
    """`n` sentences of `split` ("train" / "test": unseen entity strings), seeded."""
    n = check_int("n", n, 0)
    check_choice("split", split, ("train", "test"))
    check_int("seed", seed, 0)
    rng = random.Random(f"ner-{split}-{seed}")
    out = []
    for _ in range(n):
        parts = _SLOT.split(rng.choice(NER_TEMPLATES))
        while True:
            fills = [entity(rng.choice(_KIND[t]), rng, split) for t in parts[1::2]]
            if len(set(fills)) == len(fills):
                break
        text, ents = "", []
        for k, part in enumerate(parts):
            if k % 2:
                value = fills[k // 2]
                ents.append((len(text), len(text) + len(value) - 1, part))
                text += value
            else:
                text += part
        out.append(NERSentence(text, tuple(ents)))
    return out
