"""Open-set retrieval top-k accuracy (https://kexue.fm/archives/5743)."""
import pytest
import torch

from kexue.metrics import retrieval_topk_accuracy


def test_retrieval_topk_on_hand_built_groups():
    """3 groups on 3 axes; sentence 6 of group 2 points to group 0's axis, so only k >= 3 finds its group."""
    e = torch.eye(3)
    vectors = torch.stack([e[0], e[0] + 0.1 * e[1], e[1], e[1] + 0.1 * e[2], e[2], e[2] + 0.1 * e[0], e[0] + 0.2 * e[2]])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    acc = retrieval_topk_accuracy(vectors, groups, ks=(1, 2, 3))
    assert acc == {1: 6 / 7, 2: 6 / 7, 3: 1.0}
    # without excluding itself every query trivially finds its own group at rank 0
    assert retrieval_topk_accuracy(vectors, groups, ks=(1,), exclude_self=False)[1] == 1.0
    # exclusion is by index: two identical vectors of different groups still exclude only themselves
    dup = retrieval_topk_accuracy(torch.stack([e[0], e[0], e[1]]), torch.tensor([0, 1, 1]), ks=(1,))
    assert dup[1] == 0.0


def test_retrieval_chunked_equals_full():
    g = torch.Generator().manual_seed(11)
    v, grp = torch.randn(100, 8, generator=g), torch.randint(0, 10, (100,), generator=g)
    assert retrieval_topk_accuracy(v, grp, chunk=7) == retrieval_topk_accuracy(v, grp, chunk=4096)


@pytest.mark.parametrize("kw, exc, name", [(dict(chunk=0), ValueError, "chunk"), (dict(ks=(1.5,)), TypeError, "ks"),
                                           (dict(ks=()), ValueError, "ks")])
def test_retrieval_arguments_checked_by_name(kw, exc, name):
    """chunk=0 was `range() arg 3 must not be zero`; ks=() a bare `max() arg is an empty sequence`."""
    with pytest.raises(exc, match=name):
        retrieval_topk_accuracy(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2]), **kw)
