"""Issue 8 sweep: an input of the wrong width, or a condition of another batch, is named in a ValueError
instead of surfacing as a RuntimeError from a matmul deep inside torch."""
import pytest
import torch
import torch.nn.functional as F

from kexue.nn.capsule import Capsule
from kexue.nn.feedforward import FeedForward
from kexue.nn.norm import ConditionalLayerNorm
from kexue.nn.pooling import AttentionPooling1d
from kexue.nn.reparam import GaussianHead
from kexue.nn.sparse_attention import SparseSelfAttention

CASES = {
    "capsule": (lambda: Capsule(4, 3, 2)(torch.zeros(2, 5, 6)), "u must"),
    "capsule_rank": (lambda: Capsule(4, 3, 2)(torch.zeros(2, 4)), "u must"),
    "feedforward": (lambda: FeedForward(4, 6, F.relu)(torch.zeros(2, 3, 5)), "x must"),
    "cln_batch": (lambda: ConditionalLayerNorm(4, 3)(torch.zeros(2, 5, 4), torch.zeros(3, 3)), "cond"),
    "attention_pooling": (lambda: AttentionPooling1d(4)(torch.zeros(2, 3, 5)), "x must"),
    "gaussian_head": (lambda: GaussianHead(4, 2)(torch.zeros(2, 5)), "h must"),
    "sparse_self_attention": (lambda: SparseSelfAttention(8, 2)(torch.zeros(2, 3, 6)), "x must"),
    "sparse_self_attention_mask": (lambda: SparseSelfAttention(8, 2)(torch.zeros(2, 3, 8), torch.ones(2, 4)),
                                   "attention_mask"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_input_width_is_named(case):
    call, name = CASES[case]
    with pytest.raises(ValueError, match=name):
        call()
