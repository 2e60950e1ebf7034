"""ner_sentences: seeded, BIO tags consistent with the entity spans, every type present, test entity strings
never drawn for training."""
import pytest

from kexue.datasets import NER_TAGS, ner_sentences


def test_seeded_and_repeatable():
    assert ner_sentences(30, "train", 1) == ner_sentences(30, "train", 1)
    assert ner_sentences(30, "train", 1) != ner_sentences(30, "train", 2)


def test_tags_follow_the_entities():
    data = ner_sentences(300, "train", 0)
    for s in data:
        tags = s.tags()
        assert len(tags) == len(s.text) and set(tags) <= set(NER_TAGS)
        for a, b, t in s.entities:
            assert tags[a] == f"B-{t}" and tags[a + 1:b + 1] == [f"I-{t}"] * (b - a)
        assert sum(t.startswith("B-") for t in tags) == len(s.entities)
        inside = {i for a, b, _ in s.entities for i in range(a, b + 1)}
        assert all((tags[i] == "O") == (i not in inside) for i in range(len(tags)))
    assert {t for s in data for _, _, t in s.entities} == {"PER", "LOC", "ORG"}


def test_test_entity_strings_are_unseen():
    strings = lambda data: {s.text[a:b + 1] for s in data for a, b, _ in s.entities}   # noqa: E731
    assert not strings(ner_sentences(2000, "train", 0)) & strings(ner_sentences(300, "test", 0))


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        ner_sentences(3, "valid")
