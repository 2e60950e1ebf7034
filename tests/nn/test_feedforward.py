"""Position-wise feed-forward block: the two forms against a hand computation, and its arguments."""
import pytest
import torch
import torch.nn.functional as F

from kexue.nn.feedforward import FeedForward, activation


def test_plain_and_gated_forms_match_the_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4)
    ff = FeedForward(4, 6, F.relu)
    torch.testing.assert_close(ff(x), ff.down(F.relu(ff.up(x))))
    g = FeedForward(4, 6, F.silu, gated=True)
    torch.testing.assert_close(g(x), g.down(F.silu(g.gate(x)) * g.up(x)))
    assert ff(torch.zeros(0, 3, 4)).shape == (0, 3, 4) and ff(torch.zeros(2, 0, 4)).shape == (2, 0, 4)


@pytest.mark.parametrize("kw, exc, name", [
    (dict(hidden_size=0), ValueError, "hidden_size"), (dict(intermediate_size=-1), ValueError, "intermediate_size"),
    (dict(hidden_size=4.0), TypeError, "hidden_size"),
    (dict(dropout=1.5), ValueError, "dropout"), (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(act="relu"), TypeError, "act"), (dict(gated="yes"), TypeError, "gated"),
])
def test_arguments_checked_by_name(kw, exc, name):
    """intermediate_size=-1 was a negative-dimension error from torch; hidden_size=0 built empty matrices."""
    with pytest.raises(exc, match=name):
        FeedForward(**{"hidden_size": 4, "intermediate_size": 6, "act": F.relu, **kw})


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match="hidden_act='mish'"):
        activation("mish")
