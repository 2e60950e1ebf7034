"""Linear-chain CRF (https://kexue.fm/archives/5542) against brute-force enumeration of all tag paths."""
import itertools

import numpy as np
import pytest
import torch

from kexue.nn.crf import CRF, ViterbiDecoder


def _brute(crf, em, L):
    """All tag paths of length L for one sequence em [n, T]: (scores [T^L], paths)."""
    T = crf.num_tags
    paths = list(itertools.product(range(T), repeat=L))
    scores = []
    for p in paths:
        s = sum(em[t, p[t]] for t in range(L)) + sum(crf.transitions[p[t - 1], p[t]] for t in range(1, L))
        if crf.start_transitions is not None:
            s = s + crf.start_transitions[p[0]] + crf.end_transitions[p[-1]]
        scores.append(s)
    return torch.stack(scores), paths


def _setup(include_start_end, T=3, B=3, n=4, seed=0):
    torch.manual_seed(seed)
    crf = CRF(T, include_start_end=include_start_end).double()
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    em = torch.randn(B, n, T, dtype=torch.float64)
    lengths = torch.tensor([n, 2, 1][:B])
    mask = torch.arange(n) < lengths[:, None]
    tags = torch.randint(0, T, (B, n))
    return crf, em, mask, tags, lengths


@pytest.mark.parametrize("include_start_end", [True, False])
def test_log_partition_and_likelihood_match_enumeration(include_start_end):
    crf, em, mask, tags, lengths = _setup(include_start_end)
    logz = crf.log_partition(em, mask)
    ll = crf.log_likelihood(em, tags, mask)
    for b, L in enumerate(lengths.tolist()):
        scores, paths = _brute(crf, em[b], L)
        torch.testing.assert_close(logz[b], scores.logsumexp(0))
        gold = paths.index(tuple(tags[b, :L].tolist()))
        torch.testing.assert_close(ll[b], scores[gold] - scores.logsumexp(0))


def test_probabilities_of_all_paths_sum_to_one():
    crf, em, mask, _, _ = _setup(True, T=2, B=1, n=5)
    total = sum(crf.log_likelihood(em, torch.tensor([p]), mask).exp()
                for p in itertools.product(range(2), repeat=5))
    torch.testing.assert_close(total, torch.ones(1, dtype=torch.float64))


@pytest.mark.parametrize("include_start_end", [True, False])
def test_viterbi_is_the_enumerated_argmax(include_start_end):
    for seed in range(5):
        crf, em, mask, _, lengths = _setup(include_start_end, seed=seed)
        paths, best = crf.viterbi(em, mask)
        decoded = crf.decode(em, mask)
        for b, L in enumerate(lengths.tolist()):
            scores, all_paths = _brute(crf, em[b], L)
            assert tuple(decoded[b]) == all_paths[int(scores.argmax())]
            assert decoded[b] == paths[b, :L].tolist()
            torch.testing.assert_close(best[b], scores.max())


def test_padding_does_not_change_results():
    crf, em, mask, tags, _ = _setup(True)
    em2 = torch.cat([em, 50 * torch.randn(3, 3, 3, dtype=torch.float64)], 1)
    mask2 = torch.cat([mask, torch.zeros(3, 3, dtype=torch.bool)], 1)
    tags2 = torch.cat([tags, torch.randint(0, 3, (3, 3))], 1)
    torch.testing.assert_close(crf.log_likelihood(em2, tags2, mask2), crf.log_likelihood(em, tags, mask))
    assert crf.decode(em2, mask2) == crf.decode(em, mask)


def test_gradcheck_of_negative_log_likelihood():
    crf, em, mask, tags, _ = _setup(True)
    em.requires_grad_()
    params = {k: v.detach().clone().requires_grad_() for k, v in crf.named_parameters()}
    names = list(params)

    def nll(e, *ps):
        return torch.func.functional_call(crf, dict(zip(names, ps)), (e, tags, mask))
    assert torch.autograd.gradcheck(nll, (em, *params.values()))
    # gradient of -log p w.r.t. emissions = marginals - one-hot(gold): rows sum to zero on real steps
    g, = torch.autograd.grad(crf(em, tags, mask, reduction="sum"), em)
    torch.testing.assert_close(g.sum(-1) * mask, torch.zeros(3, 4, dtype=torch.float64))
    assert (g[~mask] == 0).all()


def test_bad_inputs_raise():
    crf = CRF(3)
    em = torch.randn(2, 4, 3)
    with pytest.raises(ValueError, match="emissions"):
        crf(torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="tags"):
        crf(em, torch.full((2, 4), 3))
    with pytest.raises(ValueError, match="mask"):
        crf(em, torch.zeros(2, 4, dtype=torch.long), torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]]).bool())
    with pytest.raises(ValueError, match="reduction"):
        crf(em, torch.zeros(2, 4, dtype=torch.long), reduction="max")
    with pytest.raises(ValueError, match="num_tags"):
        CRF(0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batch_loss_is_zero_with_a_graph_to_the_parameters(reduction):
    """Issue 8: a batch of size 0 gave a NaN loss (mean over nothing).  The loss of no sequence is 0 (sum
    and mean), [] for "none"; backward works and gives zero gradients; decode / viterbi return nothing."""
    crf, *_ = _setup(True)
    em = torch.randn(0, 4, 3, dtype=torch.float64, requires_grad=True)
    tags = torch.zeros(0, 4, dtype=torch.long)
    loss = crf(em, tags, torch.zeros(0, 4, dtype=torch.bool), reduction=reduction)
    assert torch.isfinite(loss).all()
    if reduction == "none":
        assert loss.shape == (0,)
        return
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None and (p.grad == 0).all() for p in crf.parameters())
    assert crf.decode(em) == [] and crf.viterbi(em)[0].shape == (0, 4)


@pytest.mark.parametrize("mask, why", [
    ([[1.0, 0.4, 0.0]], "0.4"), ([[1, -1, 0]], "-1"), ([[1, 2, 0]], "2"),
    ([[0, 1, 1]], "prefix"), ([[0, 0, 0]], "at least one"),
])
def test_masks_that_are_not_01_right_padding_prefixes_are_refused(mask, why):
    crf, em, _, tags, _ = _setup(True, B=1, n=3)
    with pytest.raises(ValueError, match="mask"):
        crf(em, tags, torch.tensor(mask))
    with pytest.raises(ValueError, match="mask"):
        crf.decode(em, torch.tensor(mask))


@pytest.mark.parametrize("tags, exc", [
    (torch.full((1, 3), -1), ValueError), (torch.full((1, 3), 3), ValueError),
    (torch.zeros(1, 3), TypeError), (torch.zeros(1, 3, dtype=torch.bool), TypeError),
])
def test_tags_out_of_range_or_not_integer_are_refused(tags, exc):
    crf, em, *_ = _setup(True, B=1, n=3)
    with pytest.raises(exc, match="tags"):
        crf(em, tags)


def test_mask_of_integers_and_floats_equals_bool_mask():
    crf, em, mask, tags, _ = _setup(True)
    ref = crf(em, tags, mask)
    for m in (mask.long(), mask.double(), mask.to(torch.uint8)):
        torch.testing.assert_close(crf(em, tags, m), ref, rtol=0, atol=0)


@pytest.mark.parametrize("num_tags, exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)])
def test_num_tags_checked(num_tags, exc):
    with pytest.raises(exc, match="num_tags"):
        CRF(num_tags)


def _constrained_argmax(crf, em, L, starts, ends):
    """Best enumerated path of length L whose first tag is in `starts` and last tag in `ends`."""
    scores, paths = _brute(crf, em, L)
    ok = [k for k, p in enumerate(paths) if p[0] in starts and p[-1] in ends]
    k = max(ok, key=lambda i: scores[i].item())
    return paths[k], scores[k]


@pytest.mark.parametrize("include_start_end", [True, False])
def test_viterbi_with_allowed_starts_and_ends_is_the_constrained_enumerated_argmax(include_start_end):
    starts, ends = [0, 2], [1, 2]                   # tag 2 in both: a length-1 sequence has a valid path
    for seed in range(5):
        crf, em, mask, _, lengths = _setup(include_start_end, T=4, seed=seed)
        paths, best = crf.viterbi(em, mask, starts=starts, ends=ends)
        decoded = crf.decode(em, mask, starts=starts, ends=ends)
        for b, L in enumerate(lengths.tolist()):
            path, score = _constrained_argmax(crf, em[b], L, starts, ends)
            assert tuple(decoded[b]) == path and paths[b, :L].tolist() == list(path)
            torch.testing.assert_close(best[b], score)


def test_viterbi_decoder_bert4keras_style_matches_enumeration():
    """bert4keras's ViterbiDecoder(trans, starts, ends).decode(nodes [n, T]): no start/end scores."""
    crf, em, _, _, _ = _setup(False, T=4, B=1, n=5, seed=3)
    trans = crf.transitions.detach().numpy()
    for starts, ends in ((None, None), ([1], None), (None, [0, 3]), ([1, 2], [3])):
        dec = ViterbiDecoder(trans, starts=starts, ends=ends)
        got = dec.decode(em[0].numpy())
        path, _ = _constrained_argmax(crf, em[0], 5, starts or range(4), ends or range(4))
        assert list(got) == list(path)
    with pytest.raises(ValueError, match=r"trans must be a square \[T, T\]"):
        ViterbiDecoder(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"starts must hold tag ids in \[0, 4\).*got \[4\]"):
        ViterbiDecoder(trans, starts=[4])
    with pytest.raises(ValueError, match=r"nodes must be \[n, 4\]"):
        ViterbiDecoder(trans).decode(np.zeros((3, 2)))


def test_starts_and_ends_that_no_path_can_meet_are_refused():
    crf, em, mask, _, _ = _setup(True, T=3)
    with pytest.raises(ValueError, match=r"no tag path.*starts=\[0\].*ends=\[1\].*length 1"):
        crf.decode(em, mask, starts=[0], ends=[1])          # row 2 has length 1: it must start and end on one tag
    with pytest.raises(ValueError, match="starts must hold"):
        crf.decode(em, mask, starts=[])
    with pytest.raises(TypeError, match="ends must hold"):
        crf.decode(em, mask, ends=[True])


def test_sparse_loss_and_accuracy_against_enumeration_and_counting():
    """bert4keras's sparse_loss (NLL with integer tags) and sparse_accuracy (framewise argmax accuracy over
    real tokens); pads may hold any id (e.g. -100) when a mask is given."""
    crf, em, mask, tags, lengths = _setup(True, T=3)
    padded = tags.masked_fill(~mask, -100)
    nll = []
    for b, L in enumerate(lengths.tolist()):
        scores, paths = _brute(crf, em[b], L)
        nll.append(scores.logsumexp(0) - scores[paths.index(tuple(tags[b, :L].tolist()))])
    torch.testing.assert_close(crf.sparse_loss(em, padded, mask), torch.stack(nll).mean())
    torch.testing.assert_close(crf.sparse_loss(em, padded[..., None], mask, reduction="none"), torch.stack(nll))
    hits = sum(int(em[b, t].argmax() == tags[b, t]) for b, L in enumerate(lengths.tolist()) for t in range(L))
    assert crf.sparse_accuracy(em, padded, mask).item() == pytest.approx(hits / int(lengths.sum()))
    decoded = crf.decode(em, mask)
    hits = sum(int(decoded[b][t] == tags[b, t]) for b, L in enumerate(lengths.tolist()) for t in range(L))
    assert crf.sparse_accuracy(em, padded, mask, viterbi=True).item() == pytest.approx(hits / int(lengths.sum()))
    with pytest.raises(ValueError, match="tags"):
        crf.sparse_loss(em, padded)                           # without a mask every position is real


def test_non_tensor_arguments_and_nan_scores_are_named():
    crf, em, mask, tags, _ = _setup(True)
    with pytest.raises(TypeError, match="mask must be a tensor"):
        crf.decode(em, mask.tolist())
    with pytest.raises(TypeError, match="emissions must be a floating-point tensor"):
        crf(em.numpy(), tags)
    with pytest.raises(TypeError, match="tags must be an integer tensor"):
        crf(em, tags.tolist())
    bad = em.clone()
    bad[1, 0, 2] = float("nan")
    with pytest.raises(ValueError, match="emissions hold NaN.*sequence 1"):
        crf.decode(bad, mask)
    nodes = em[0].numpy().copy()
    nodes[2, 1] = np.nan
    with pytest.raises(ValueError, match="nodes hold NaN"):
        ViterbiDecoder(crf.transitions.detach().numpy()).decode(nodes)


def test_bert4keras_lr_multiplier_keyword_points_to_param_groups():
    import re

    import torch

    from kexue.optim import param_groups_by_name
    with pytest.raises(TypeError, match="param_groups_by_name") as info:
        CRF(5, lr_multiplier=100)
    pattern = re.search(r"\{r'(.*?)'", str(info.value)).group(1).replace("\\\\", "\\")

    class Tagger(torch.nn.Module):                      # the advice, followed literally, scales the CRF's lr
        def __init__(self):
            super().__init__()
            self.dense, self.crf = torch.nn.Linear(4, 5), CRF(5)
    model = Tagger()
    groups = param_groups_by_name(model, {pattern: {"lr_multiplier": 100}}, lr=1e-3)
    opt = torch.optim.SGD(groups, lr=1e-3)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert all(lr_of[id(p)] == pytest.approx(0.1) for p in model.crf.parameters())
    assert all(lr_of[id(p)] == pytest.approx(1e-3) for p in model.dense.parameters())
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['num_labels'\\]"):
        CRF(5, num_labels=3)
