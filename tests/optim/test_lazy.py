"""LazyUpdate: embedding rows without gradient stay bit-identical; skip_state matches torch.optim.SparseAdam."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.optim import LazyUpdate


class Bag(nn.Module):
    """Embedding -> mean -> linear; ids are drawn from a few rows so most rows get no gradient."""

    def __init__(self, vocab=20, dim=4, sparse=False, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(vocab, dim, sparse=sparse)
        self.out = nn.Linear(dim, 1)

    def forward(self, ids):
        return self.out(self.emb(ids).mean(1)).squeeze(-1)


def id_batches(n, vocab=20, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (4, 3), generator=g), torch.randn(4, generator=g)) for _ in range(n)]


def step(model, opt, ids, y):
    opt.zero_grad()
    ((model(ids) - y) ** 2).mean().backward()
    opt.step()


def test_absent_rows_untouched_while_adam_moves_them():
    lazy_m, adam_m = Bag(), Bag()
    lazy = LazyUpdate(torch.optim.Adam(lazy_m.parameters(), lr=0.1), params=[lazy_m.emb.weight])
    adam = torch.optim.Adam(adam_m.parameters(), lr=0.1)
    first, second = torch.tensor([[0, 1, 2]]), torch.tensor([[3, 4, 5]])
    for ids in (first, second):
        step(lazy_m, lazy, ids, torch.ones(1))
        step(adam_m, adam, ids, torch.ones(1))
    after_first = {0, 1, 2}
    w_lazy, w_adam = lazy_m.emb.weight, adam_m.emb.weight
    # rows 0..2 were absent in step 2: Adam's momentum moved them, the lazy wrapper did not
    assert not torch.equal(w_adam[:3], w_lazy[:3])
    before = Bag().emb.weight
    untouched = [r for r in range(20) if r not in after_first | {3, 4, 5}]
    assert torch.equal(w_lazy[untouched], before[untouched])


def test_present_rows_and_other_tensors_follow_the_inner_optimizer():
    a, b = Bag(), Bag()
    oa = LazyUpdate(torch.optim.Adam(a.parameters(), lr=0.1), params=[a.emb.weight])
    ob = torch.optim.Adam(b.parameters(), lr=0.1)
    ids, y = torch.tensor([[0, 1, 2], [2, 3, 3]]), torch.randn(2)
    snapshot_rows = a.emb.weight.detach().clone()
    step(a, oa, ids, y)
    step(b, ob, ids, y)
    rows = [0, 1, 2, 3]
    assert torch.equal(a.emb.weight[rows], b.emb.weight[rows])
    assert torch.equal(a.emb.weight[4:], snapshot_rows[4:])
    assert torch.equal(a.out.weight, b.out.weight) and torch.equal(a.out.bias, b.out.bias)


def test_plain_sgd_lazy_equals_base():
    a, b = Bag(), Bag()
    oa = LazyUpdate(torch.optim.SGD(a.parameters(), lr=0.1), params=[a.emb.weight])
    ob = torch.optim.SGD(b.parameters(), lr=0.1)
    for ids, y in id_batches(10):
        step(a, oa, ids, y)
        step(b, ob, ids, y)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_skip_state_matches_sparse_adam():
    """LazyUpdate(Adam, skip_state) on sparse gradients == SparseAdam (per-tensor step count in both).

    SparseAdam adds eps to sqrt(v) before bias correction, Adam after: a tiny eps makes that moot."""
    a, b = Bag(sparse=True), Bag(sparse=True)
    oa = LazyUpdate(torch.optim.Adam([a.emb.weight], lr=0.05, eps=1e-15), params=[a.emb.weight], mode="skip_state")
    ob = torch.optim.SparseAdam([b.emb.weight], lr=0.05, eps=1e-15)
    for ids, y in id_batches(15):
        step(a, oa, ids, y)
        step(b, ob, ids, y)
    assert torch.allclose(a.emb.weight, b.emb.weight, atol=1e-12, rtol=0)
    sa, sb = oa.inner.state[a.emb.weight], ob.state[b.emb.weight]
    assert torch.allclose(sa["exp_avg"], sb["exp_avg"], atol=1e-12, rtol=0)
    assert torch.allclose(sa["exp_avg_sq"], sb["exp_avg_sq"], atol=1e-12, rtol=0)


def test_group_key_and_padding_row():
    model = Bag()
    model.emb.padding_idx = 0
    groups = [{"params": [model.emb.weight], "lazy": True}, {"params": list(model.out.parameters())}]
    opt = LazyUpdate(torch.optim.Adam(groups, lr=0.1))
    pad_row = model.emb.weight[0].detach().clone()
    for ids, y in [(torch.tensor([[0, 1, 2]]), torch.ones(1)), (torch.tensor([[0, 5, 6]]), torch.ones(1))]:
        step(model, opt, ids, y)
    assert torch.equal(model.emb.weight[0], pad_row)            # padding gets a zero gradient


def test_bad_arguments_raise():
    model = Bag()
    with pytest.raises(ValueError, match=r"mode must be one of \['mask_update', 'skip_state'\], got 'x'"):
        LazyUpdate(torch.optim.Adam(model.parameters()), mode="x")
    with pytest.raises(ValueError, match="params must be parameters of the wrapped optimizer"):
        LazyUpdate(torch.optim.Adam(model.out.parameters()), params=[model.emb.weight])


@pytest.mark.parametrize("row_dim", [0, 1])
def test_present_row_with_some_exact_zeros_is_updated(row_dim):
    """A row is present when ANY entry of its gradient is non-zero (https://kexue.fm/archives/6869): a row
    whose gradient is exactly zero in some entries (ReLU, masked features) must follow Adam in every entry,
    the zero-gradient ones included (momentum moves them); a row with an all-zero gradient stays still."""
    rows, dim = 5, 4
    w0 = torch.randn(rows, dim)
    grads = [torch.randn(rows, dim), torch.zeros(rows, dim)]
    grads[1][0] = torch.tensor([1.5, 0.0, 0.0, -2.0])            # present, exact zeros in 2 of 4 entries
    grads[1][3] = torch.tensor([0.0, 0.0, 0.0, 0.7])             # present, one non-zero entry

    def run(lazy: bool) -> torch.Tensor:
        w = nn.Parameter(w0.clone() if row_dim == 0 else w0.t().contiguous())
        opt = torch.optim.Adam([w], lr=0.1)
        if lazy:
            opt = LazyUpdate(opt, params=[w], row_dim=row_dim)
        for g in grads:
            w.grad = g.clone() if row_dim == 0 else g.t().contiguous()
            opt.step()
        return w.detach() if row_dim == 0 else w.detach().t()

    lazy_w, adam_w = run(True), run(False)
    w = nn.Parameter(w0.clone())                                  # θ after step 1 only (both agree there)
    w.grad = grads[0].clone()
    torch.optim.Adam([w], lr=0.1).step()
    run_first = w.detach()
    present, absent = [0, 3], [1, 2, 4]
    assert torch.equal(lazy_w[present], adam_w[present])
    assert not torch.equal(lazy_w[0, 1:3], run_first[0, 1:3])   # the zero-gradient entries moved too
    assert torch.equal(lazy_w[absent], run_first[absent])
