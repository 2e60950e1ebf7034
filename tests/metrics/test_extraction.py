"""triple_f1 (nlp/02): micro F1 over triples against hand-computed closed forms, empty sets, bad input."""
import pytest

from kexue.metrics import triple_f1

A, B, C, D, E = (((0, 1), 0, (3, 4)), ((0, 1), 1, (5, 5)), ((2, 2), 0, (0, 1)), ((6, 7), 2, (0, 0)),
                 ((6, 7), 2, (1, 1)))


def test_one_text_closed_form():
    f1, p, r = triple_f1([{A, B, C}], [{B, C, D, E}])
    assert (p, r) == (2 / 3, 2 / 4) and f1 == pytest.approx(2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2))


def test_micro_pools_counts_over_texts_not_the_mean_of_per_text_scores():
    f1, p, r = triple_f1([{A}, {B, C, D}], [{A}, {E}])
    assert (p, r) == (1 / 4, 1 / 2) and f1 == pytest.approx(1 / 3)
    macro = (1.0 + 0.0) / 2
    assert f1 != pytest.approx(macro)


def test_empty_sets_and_duplicates():
    assert triple_f1([set(), set()], [set(), set()]) == (1.0, 1.0, 1.0)
    assert triple_f1([set()], [{A}]) == (0.0, 1.0, 0.0)
    assert triple_f1([{A}], [set()]) == (0.0, 0.0, 1.0)
    assert triple_f1([], []) == (1.0, 1.0, 1.0)
    assert triple_f1([[A, A, B]], [[A]]) == pytest.approx((2 / 3, 1 / 2, 1.0))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one set per text"):
        triple_f1([{A}], [{A}, {B}])
    with pytest.raises(TypeError, match="string"):
        triple_f1(["abc"], [{A}])


def test_bio_entities_hand_made():
    from kexue.metrics import bio_entities
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-ORG", "I-ORG", "O", "B-ORG"]
    assert bio_entities(tags) == [(0, 1, "PER"), (3, 3, "LOC"), (4, 5, "LOC"), (6, 7, "ORG"), (9, 9, "ORG")]
    assert bio_entities([]) == [] and bio_entities(["O", "O"]) == []
    with pytest.raises(ValueError, match="position 1"):
        bio_entities(["O", "PER"])
