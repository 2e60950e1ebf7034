"""Corpus statistics: PMI of a co-occurrence matrix (https://kexue.fm/archives/5617)."""
import math

import pytest
import torch

from kexue.corpus import pmi_matrix


def test_pmi_matrix_closed_form():
    c = torch.tensor([[2.0, 1.0], [1.0, 4.0]])
    p = c / 8
    ref = torch.log(p / (p.sum(1, keepdim=True) * p.sum(0, keepdim=True))) - math.log(5)
    torch.testing.assert_close(pmi_matrix(c, shift_k=5).float(), ref)


@pytest.mark.parametrize("call, exc, name", [
    (lambda: pmi_matrix(torch.zeros(3, 3)), ValueError, "cooccurrence"),
    (lambda: pmi_matrix(torch.ones(3, 3), shift_k=0), ValueError, "shift_k"),
])
def test_arguments_checked_by_name(call, exc, name):
    with pytest.raises(exc, match=name):
        call()
