"""spo_sentences (nlp/02): seeded, spans point at their strings, 1-3 triples over the 5 predicates, overlapping
roles, and the test split uses held-out templates with entity strings never drawn for training."""
import pytest

from kexue.datasets import PREDICATES, spo_sentences
from kexue.datasets.spo import CLAUSES


def _entities(sentences):
    return {x.text[a:b + 1] for x in sentences for subj, _, obj in x.triples for a, b in (subj, obj)}


def test_seeded_and_repeatable():
    assert spo_sentences(50, "train", 3) == spo_sentences(50, "train", 3)
    assert spo_sentences(50, "train", 3) != spo_sentences(50, "train", 4)
    assert spo_sentences(0) == []


def test_spans_triples_and_predicates():
    data = spo_sentences(400, "train", 0) + spo_sentences(200, "test", 0)
    for s in data:
        assert 1 <= len(s.triples) <= 3
        for (s0, s1), p, (o0, o1) in s.triples:
            assert 0 <= s0 <= s1 < len(s.text) and 0 <= o0 <= o1 < len(s.text) and 0 <= p < 5
            assert "{" not in s.text and "《" not in s.text[s0:s1 + 1] + s.text[o0:o1 + 1]
        assert len(s.string_triples()) == len(s.triples)
    assert {p for s in data for _, p, _ in s.triples} == set(range(len(PREDICATES)))


def test_overlapping_roles_occur():
    data = spo_sentences(300, "train", 0)
    shared_subject = any(len({t[0] for t in s.triples}) < len(s.triples) for s in data)
    subject_and_object = any({t[0] for t in s.triples} & {t[2] for t in s.triples} for s in data)
    assert shared_subject and subject_and_object
    assert {len(s.triples) for s in data} == {1, 2, 3}


def test_test_split_has_held_out_templates_and_unseen_entity_strings():
    train, test = spo_sentences(3000, "train", 0), spo_sentences(500, "test", 1)
    assert not _entities(train) & _entities(test)
    held_out = {p for topic in CLAUSES.values() for _, _, pools in topic.values() for p in pools["test"]}
    assert not any(p in held_out for s in train for p in s.template.split(":")[1].split("|"))
    assert all(any(p in held_out for p in s.template.split(":")[1].split("|")) for s in test)
    assert not {s.template for s in train} & {s.template for s in test}


@pytest.mark.parametrize("kwargs, err", [(dict(n=-1), ValueError), (dict(n=2, split="dev"), ValueError),
                                         (dict(n=2.0), TypeError), (dict(n=2, seed=-1), ValueError)])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        spo_sentences(**kwargs)
