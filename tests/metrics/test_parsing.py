"""Parsing evaluation of ON-LSTM distances (https://kexue.fm/archives/6621): tree, spans, unlabelled F1."""
import pytest

from kexue.metrics import build_tree, tree_to_spans, unlabeled_f1


def test_build_tree_cases():
    assert build_tree([0.1, 0.9, 0.2, 0.3], list("abcd")) == ["a", ["b", ["c", "d"]]]
    assert build_tree([0.5], ["x"]) == "x"
    assert build_tree([0.9, 0.1, 0.2], list("abc")) == ["a", ["b", "c"]]
    assert build_tree([0.1, 0.2, 0.9], list("abc")) == [["a", "b"], "c"]
    assert build_tree([0.3, 0.7, 0.7, 0.1], list("abcd")) == ["a", ["b", [["c", "d"]][0]]]   # ties -> first max
    assert tree_to_spans(["a", ["b", ["c", "d"]]]) == {(0, 4), (1, 4), (2, 4)}
    assert unlabeled_f1({(0, 4), (1, 4)}, {(0, 4), (0, 2)}) == 0.5
    assert unlabeled_f1(set(), set()) == 1.0
    with pytest.raises(ValueError, match="equal length"):
        build_tree([0.1], ["a", "b"])
