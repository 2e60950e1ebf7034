"""The verdict is computed from measurements: hand-made numbers in both directions."""
import math

import pytest

from kexue.experiments import NOT_REPRODUCED, PARTLY, REPRODUCED, Check, verdict

CHECKS = [Check("error", "<=", 0.12, "search"), Check("fano", "~", 2.25, "noise", tol=0.25)]


@pytest.mark.parametrize("metrics, expected", [
    ({"error": 0.10, "fano": 2.4}, REPRODUCED),
    ({"error": 0.12, "fano": 2.0}, REPRODUCED),           # boundaries hold (exact in binary)
    ({"error": 0.20, "fano": 2.25}, PARTLY),
    ({"error": 0.20, "fano": 3.0}, NOT_REPRODUCED),
    ({"error": math.nan, "fano": 2.25}, PARTLY),          # a NaN never holds
    ({"fano": 2.25}, PARTLY),                             # a missing metric never holds
])
def test_verdict_from_hand_made_numbers(metrics, expected):
    assert verdict(CHECKS, metrics) == expected


def test_checks_are_validated():
    with pytest.raises(ValueError, match="op"):
        Check("a", "=", 1.0)
    with pytest.raises(ValueError, match="tol"):
        Check("a", "~", 1.0)
    with pytest.raises(ValueError, match="at least one Check"):
        verdict([], {"a": 1.0})
