"""rouge_l / lcs_length: the LCS against a brute-force enumeration of subsequences, the F1 closed form."""
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.metrics import lcs_length, rouge_l


def _brute_lcs(a: str, b: str) -> int:
    subs_b = {"".join(c) for k in range(len(b) + 1) for c in itertools.combinations(b, k)}
    return max(k for k in range(len(a) + 1) for c in itertools.combinations(a, k) if "".join(c) in subs_b)


@settings(max_examples=150, deadline=None)
@given(a=st.text(alphabet="甲乙丙丁", max_size=7), b=st.text(alphabet="甲乙丙丁", max_size=7))
def test_lcs_equals_brute_force_and_is_symmetric(a, b):
    assert lcs_length(a, b) == _brute_lcs(a, b) == lcs_length(b, a)


def test_rouge_l_closed_form():
    # LCS("北京的医生阿巴", "北京医生巴") = 5: P = 5/7, R = 5/5
    assert rouge_l("北京的医生阿巴", "北京医生巴") == pytest.approx(2 * (5 / 7) / (5 / 7 + 1))
    assert rouge_l("甲乙", "甲乙") == 1.0 and rouge_l("甲", "乙") == 0.0
    assert rouge_l("", "") == 1.0 and rouge_l("", "甲") == 0.0
    assert rouge_l(["北京", "医生"], ["北京", "的", "医生"]) == pytest.approx(0.8)


def test_bad_input_is_refused_by_name():
    with pytest.raises(TypeError, match="prediction"):
        rouge_l(None, "甲")
    with pytest.raises(TypeError, match="b must"):
        lcs_length("甲", 3)
