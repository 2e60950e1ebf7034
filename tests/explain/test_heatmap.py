"""Token heat maps (https://kexue.fm/archives/7533): HTML / ANSI rendering invariants."""
import re

import pytest
import torch

from kexue.explain import TokenAttribution, to_ansi, to_html, to_text, token_colors


def test_html_has_one_escaped_span_per_token_with_alpha_from_the_scores():
    tokens, scores = ["[CLS]", "<b>good</b>", "&", "bad"], [0.0, 2.0, 0.5, -1.0]
    out = to_html(tokens, scores)
    spans = re.findall(r'rgba\((\d+), (\d+), (\d+), ([\d.]+)\)[^>]*>([^<]*)</span>', out)
    assert [s[4] for s in spans] == ["[CLS]", "&lt;b&gt;good&lt;/b&gt;", "&amp;", "bad"]
    assert [float(s[3]) for s in spans] == [0.0, 1.0, 0.25, 0.5]              # |s| / max |s|
    assert spans[1][:3] == ("220", "38", "38") and spans[3][:3] == ("37", "99", "235")   # red +, blue -
    assert "<b>" not in out


def test_ansi_blends_from_white_by_magnitude():
    out = to_ansi(["a", "b", "c"], torch.tensor([0.0, 1.0, -1.0]))
    bgs = re.findall(r"\x1b\[48;2;(\d+);(\d+);(\d+)m", out)
    assert bgs == [("255", "255", "255"), ("220", "38", "38"), ("37", "99", "235")]
    assert out.count("\x1b[0m") == 3 and "a" in out and "c" in out


def test_colors_are_monotone_in_magnitude_and_zero_scores_are_neutral():
    assert [c[3] for c in token_colors([0.1, 0.4, -0.2, 0.8])] == [0.125, 0.5, 0.25, 1.0]
    assert all(c[3] == 0.0 for c in token_colors([0.0, 0.0]))
    assert to_text(["x", "y"], [0.5, -0.25], digits=2) == "x(0.50) y(-0.25)"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="scores has 1 entries but tokens has 2"):
        to_html(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="finite"):
        to_ansi(["a"], [float("nan")])
    with pytest.raises(TypeError, match="tokens"):
        to_html("ab", [1.0, 2.0])


def test_token_attribution_scores_and_render():
    v = torch.tensor([[3.0, -4.0], [1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    att = TokenAttribution(torch.tensor([1, 7, 2]), v, target=0, f_input=0.9, f_baseline=0.5, delta=-0.4,
                           special=torch.tensor([True, False, True]), tokens=["[CLS]", "ok", "[SEP]"])
    assert att.scores("sum").tolist() == [-1.0, 2.0, -2.0]
    assert att.scores("l2").tolist() == [5.0, 2 ** 0.5, 2.0]
    assert att.scores("max_abs").tolist() == [4.0, 1.0, 2.0]
    assert att.scores("sum", "max_abs").tolist() == [-0.5, 1.0, -1.0]
    mm = att.scores("l2", "minmax")
    assert float(mm.min()) == 0.0 and float(mm.max()) == 1.0
    assert att.scores("l2", "minmax", exclude_special=True).tolist() == [0.0, 0.0, 0.0]   # one token: no span
    assert abs(att.relative_error - 1.0) < 1e-12
    assert att.summary() == "target=0 F(x)=0.9 F(x')=0.5 delta=-0.4 (100.00% of F(x) - F(x'))"
    assert "ok" in att.render("html") and "\x1b[" in att.render("ansi") and att.render("text").startswith("[CLS](")
    with pytest.raises(ValueError, match="reduce"):
        att.scores("mean")
    with pytest.raises(ValueError, match="fmt"):
        att.render("svg")
