"""Reading-comprehension scores (specs nlp/06, nlp/07): normalisation, exact match, char F1 and its max over
accepted answers, Final = mean, all against hand-computed values."""
import pytest

from kexue.metrics import (char_f1, exact_match, max_char_f1, normalize_answer, sogou_qa_scores,
                           to_half_width)


def test_full_width_forms_map_to_ascii():
    assert to_half_width("ＡＢｃ１２３！？\u3000％") == "ABc123!? %"
    assert to_half_width("北京") == "北京"                              # CJK characters are not width forms


def test_normalize_strips_case_width_punctuation_and_spaces():
    assert normalize_answer("  《红楼梦》， Ｃａｏ  Xueqin。") == "红楼梦caoxueqin"
    assert normalize_answer("“1,234.5”") == "12345"
    assert normalize_answer("、；：！") == ""


def test_exact_match_over_accepted_answers():
    assert exact_match("北京。", ["上海", "北京"]) == 1.0
    assert exact_match("北京市", ["北京"]) == 0.0
    assert exact_match("", []) == 1.0 and exact_match("", [""]) == 1.0    # no-answer question, empty prediction
    assert exact_match("北京", []) == 0.0


def test_char_f1_closed_forms():
    # pred 北京市 vs gold 北京: overlap 2, P = 2/3, R = 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
    assert char_f1("北京市", "北京") == pytest.approx(0.8)
    # multiset overlap: pred 哈哈哈 vs gold 哈哈 -> overlap 2, P = 2/3, R = 1
    assert char_f1("哈哈哈", "哈哈") == pytest.approx(0.8)
    assert char_f1("abc", "xyz") == 0.0
    assert char_f1("", "") == 1.0 and char_f1("a", "") == 0.0 and char_f1("", "a") == 0.0
    assert char_f1("ＡＢ，", "ab") == 1.0


def test_max_f1_takes_the_best_accepted_answer():
    # vs 北京: 0.8; vs 北京市区: overlap 3, P = 1, R = 3/4 -> 6/7
    assert max_char_f1("北京市", ["北京", "北京市区"]) == pytest.approx(6 / 7)
    assert max_char_f1("上海", ["北京", "上海"]) == 1.0


def test_scores_average_and_final_is_the_mean():
    preds = {"q1": "北京", "q2": "北京市", "q3": "", "q4": "x"}
    answers = {"q1": ["北京"], "q2": ["北京"], "q3": [""], "q4": ["y"]}
    s = sogou_qa_scores(preds, answers)
    assert s["acc"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx((1 + 0.8 + 1 + 0) / 4)
    assert s["final"] == pytest.approx((s["acc"] + s["f1"]) / 2)


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="missing"):
        sogou_qa_scores({"q1": "a"}, {"q1": ["a"], "q2": ["b"]})
    with pytest.raises(ValueError, match="unknown"):
        sogou_qa_scores({"q1": "a", "q9": "b"}, {"q1": ["a"]})
    with pytest.raises(ValueError, match="at least one"):
        sogou_qa_scores({}, {})
    with pytest.raises(TypeError, match="single str"):
        exact_match("a", "a")
    with pytest.raises(TypeError, match="prediction"):
        max_char_f1(None, ["a"])
    with pytest.raises(TypeError, match="accepted answer"):
        exact_match("a", [1])
