"""VectorQuantizer (spec core/11, https://kexue.fm/archives/6760): assignment, straight-through, gradient
routing, loss values, EMA codebook, dead codes, layouts."""
import math

import pytest
import torch

from kexue.nn.quantize import VectorQuantizer, code_perplexity, straight_through


def _vq(**kw):
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=16, embedding_size=4, **kw)
    with torch.no_grad():
        vq.weight.copy_(torch.randn(16, 4))
        if vq.ema:
            vq.ema_sum.copy_(vq.weight)
    return vq


def test_indices_equal_cdist_argmin_and_value_is_codebook():
    vq = _vq()
    z = torch.randn(3, 10, 4)
    out = vq(z)
    ref = torch.cdist(z.reshape(-1, 4), vq.codebook).argmin(-1).reshape(3, 10)
    assert torch.equal(out.indices, ref)
    torch.testing.assert_close(out.z_q_st, vq.codebook[ref], rtol=0, atol=1e-6)  # z + (e - z): within an ulp of e
    torch.testing.assert_close(vq.lookup(out.indices), vq.codebook[ref], rtol=0, atol=0)


def test_ties_go_to_lowest_index():
    vq = _vq()
    with torch.no_grad():
        vq.weight[5] = vq.weight[2]
    out = vq(vq.weight[2].clone()[None, :])
    assert out.indices.item() == 2


def test_straight_through_gradient_is_identity():
    vq = _vq()
    z = torch.randn(5, 4, requires_grad=True)
    out = vq(z)
    w = torch.randn(5, 4)
    (g_z,) = torch.autograd.grad((out.z_q_st.sin() * w).sum(), z)
    z_q = vq.codebook[out.indices].detach().requires_grad_(True)
    (g_q,) = torch.autograd.grad((z_q.sin() * w).sum(), z_q)
    torch.testing.assert_close(g_z, g_q)
    x = torch.randn(7, requires_grad=True)
    y = straight_through(x, x.relu())  # the article's ReLU with unit gradient
    y.sum().backward()
    assert torch.equal(y, x.relu()) and torch.equal(x.grad, torch.ones(7))


def test_gradient_routing_of_the_two_losses():
    vq = _vq()
    z = torch.randn(6, 4, requires_grad=True)
    out = vq(z)
    g_cb = torch.autograd.grad(out.codebook_loss, [z, vq.weight], allow_unused=True)
    assert g_cb[0] is None and g_cb[1].abs().sum() > 0
    out = vq(z)
    g_cm = torch.autograd.grad(out.commitment_loss, [z, vq.weight], allow_unused=True)
    assert g_cm[0].abs().sum() > 0 and g_cm[1] is None
    ema = _vq(ema=True)
    assert not ema.codebook.requires_grad and "weight" not in dict(ema.named_parameters())
    out = ema(z)
    assert out.loss.grad_fn is not None
    torch.testing.assert_close(out.loss, 0.25 * out.commitment_loss)


def test_loss_is_1_25_times_mean_squared_distance():
    vq = _vq()
    z = torch.randn(2, 8, 4)
    out = vq(z)
    mse = (z - vq.codebook[out.indices]).square().mean()
    torch.testing.assert_close(out.loss, 1.25 * mse)


def test_channels_first_conv_maps():
    vq = _vq(channel_dim=1)
    z = torch.randn(2, 4, 3, 5)  # [B, D, H, W]
    out = vq(z)
    assert out.indices.shape == (2, 3, 5) and out.z_q_st.shape == z.shape
    ref = torch.cdist(z.permute(0, 2, 3, 1).reshape(-1, 4), vq.codebook).argmin(-1).reshape(2, 3, 5)
    assert torch.equal(out.indices, ref)
    torch.testing.assert_close(out.z_q_st, vq.lookup(ref), rtol=0, atol=1e-6)


def test_ema_decay_zero_is_a_kmeans_m_step():
    vq = _vq(ema=True, decay=0.0, eps=1e-9)
    z = torch.randn(200, 4)
    out = vq(z)
    for k in out.indices.unique():
        torch.testing.assert_close(vq.codebook[k], z[out.indices == k].mean(0), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(vq.codebook).all()  # unused codes: Laplace smoothing, no 0/0


def test_ema_converges_geometrically_to_running_mean():
    """All vectors on one code: e_t = mu + lambda^t e_0 / (n (1 - lambda^t)) (buffers start at N = 0, m = e_0)."""
    vq = VectorQuantizer(num_codes=3, embedding_size=2, ema=True, decay=0.9, eps=1e-12)
    with torch.no_grad():
        vq.weight.copy_(torch.tensor([[0.5, 0.5], [50.0, 50.0], [-50.0, 50.0]]))
        vq.ema_sum.copy_(vq.weight)
    e0 = vq.codebook[0].clone()
    z = torch.tensor([[1.0, 2.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # mean (1, 1), n = 4
    for t in range(1, 31):
        vq(z)
        expected = z.mean(0) + 0.9**t * e0 / (4 * (1 - 0.9**t))
        torch.testing.assert_close(vq.codebook[0], expected, rtol=1e-5, atol=1e-6)
    assert (vq.codebook[0] - z.mean(0)).norm() < 1e-2


def test_ema_buffers_only_move_in_training_and_live_in_state_dict():
    vq = _vq(ema=True)
    assert {"weight", "ema_count", "ema_sum"} <= set(vq.state_dict())
    before = vq.codebook.clone()
    vq.eval()
    vq(torch.randn(20, 4))
    assert torch.equal(vq.codebook, before)
    vq.train()
    vq(torch.randn(20, 4))
    assert not torch.equal(vq.codebook, before)


def test_dead_codes_are_restarted_on_batch_vectors():
    vq = _vq(dead_code_threshold=1.0, decay=0.5)
    with torch.no_grad():
        vq.weight[8:] += 100.0  # codes 8..15 never win
    z = torch.randn(64, 4)
    plain = _vq()
    with torch.no_grad():
        plain.weight[8:] += 100.0
    for _ in range(3):
        vq(z)
    for k in range(8, 16):  # every dead code now sits on a batch vector
        assert (vq.codebook[k] - z).abs().sum(1).min() == 0
    assert code_perplexity(vq(z).indices, 16) > code_perplexity(plain(z).indices, 16)


def test_kmeans_init_uses_the_first_batch():
    torch.manual_seed(1)
    centers = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]])
    z = centers.repeat_interleave(50, 0) + 0.1 * torch.randn(150, 4)
    vq = VectorQuantizer(num_codes=3, embedding_size=4, init="kmeans")
    vq(z)
    d = torch.cdist(vq.codebook.detach(), centers)
    assert d.min(1).values.max() < 0.1 and bool(vq.initialized)


def test_perplexity_closed_forms():
    assert code_perplexity(torch.arange(8), 8).item() == pytest.approx(8.0)
    assert code_perplexity(torch.zeros(10, dtype=torch.long), 8).item() == pytest.approx(1.0)
    idx = torch.tensor([0, 0, 1, 2])
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert code_perplexity(idx, 4).item() == pytest.approx(math.exp(h))


def test_distances_in_float32_under_autocast_and_nonnegative():
    vq = _vq()
    z = torch.randn(32, 4) * 1e3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.indices, torch.cdist(z, vq.codebook).argmin(-1))
    assert (vq.distances(vq.codebook.detach()) >= 0).all()


@pytest.mark.parametrize("call, match", [
    (lambda: VectorQuantizer(8, 4)(torch.zeros(2, 5)), "embedding_size=4"),
    (lambda: VectorQuantizer(8, 4, decay=1.0), "decay"),
    (lambda: VectorQuantizer(8, 4, init="random"), "init"),
    (lambda: VectorQuantizer(8, 4).lookup(torch.tensor([8])), r"\[0, 8\)"),
    (lambda: VectorQuantizer(8, 4, init="kmeans")(torch.zeros(3, 4)), "num_codes"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kw", [dict(ema=True), dict(ema=True, dead_code_threshold=0.5),
                                dict(ema=False, dead_code_threshold=0.5), dict(ema=True, init="kmeans")])
def test_empty_batch_leaves_codebook_and_statistics_untouched(kw):
    """Issue 8: an empty first batch (legitimate under masking) used to make N = 0 and e = m / 0 (inf/NaN),
    after which every vector went to one code.  Now every buffer and the codebook are bitwise unchanged,
    the losses are 0 (not NaN) with a graph to z, and the next real batch trains as if the empty one never came."""
    vq, ref = _vq(**kw), _vq(**kw)
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    z0 = torch.zeros(0, 4, requires_grad=True)
    out = vq(z0)
    for k, v in vq.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert out.z_q_st.shape == (0, 4) and out.indices.shape == (0,)
    for t in (out.loss, out.codebook_loss, out.commitment_loss, out.perplexity, out.usage):
        assert torch.isfinite(t).all()
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    out.loss.backward()
    z = torch.randn(64, 4, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(5)
    a = vq(z)
    torch.manual_seed(5)
    b = ref(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(vq.codebook, ref.codebook)
    assert torch.isfinite(vq.codebook).all() and a.indices.unique().numel() > 1


def test_empty_batch_in_a_conv_map_and_eval_mode():
    vq = _vq(ema=True, channel_dim=1)
    out = vq(torch.zeros(0, 4, 3, 3))
    assert out.z_q_st.shape == (0, 4, 3, 3) and out.indices.shape == (0, 3, 3) and out.loss.item() == 0.0
    vq.eval()
    assert vq(torch.zeros(2, 4, 0, 3)).loss.item() == 0.0


def test_ema_division_is_guarded_after_a_batch_that_misses_most_codes():
    """Laplace smoothing: (N_i + eps) / (n + K eps) * n > 0 whenever n > 0, so codes that no vector chose
    stay finite; the used code is the batch mean as decay -> 0."""
    vq = _vq(ema=True, decay=0.0, eps=1e-5)
    z = torch.full((10, 4), 0.25)
    vq(z)
    assert torch.isfinite(vq.codebook).all() and torch.isfinite(vq.ema_count).all()
    vq(z)
    assert torch.isfinite(vq.codebook).all()


@pytest.mark.parametrize("kw, exc, name", [
    (dict(num_codes=0), ValueError, "num_codes"), (dict(embedding_size=-1), ValueError, "embedding_size"),
    (dict(num_codes=2.5), TypeError, "num_codes"), (dict(embedding_size="4"), TypeError, "embedding_size"),
    (dict(eps=float("nan")), ValueError, "eps"), (dict(eps=0.0), ValueError, "eps"),
    (dict(decay=float("nan")), ValueError, "decay"), (dict(commitment_weight=float("inf")), ValueError,
                                                       "commitment_weight"),
    (dict(codebook_weight=-1.0), ValueError, "codebook_weight"), (dict(ema="yes"), TypeError, "ema"),
    (dict(dead_code_threshold=float("nan")), ValueError, "dead_code_threshold"),
    (dict(channel_dim=1.0), TypeError, "channel_dim"),
])
def test_constructor_arguments_are_checked_with_their_names(kw, exc, name):
    with pytest.raises(exc, match=name):
        VectorQuantizer(**{"num_codes": 8, "embedding_size": 4, **kw})


def test_empty_rank_under_data_parallel_does_not_crash_the_restart(monkeypatch):
    """Under torch.distributed the skip is decided on the all-reduced counts, so one rank can be empty while
    the others are not; its dead-code restart must not draw from its empty batch (randint(0, 0))."""
    import kexue.nn.quantize as q
    monkeypatch.setattr(q, "_all_reduce", lambda t: t + 1.0)   # the other ranks saw one vector per code
    vq = _vq(ema=True, dead_code_threshold=5.0, decay=0.5)
    before = vq.codebook.clone()
    out = vq(torch.zeros(0, 4))
    assert torch.isfinite(vq.codebook).all() and out.loss.item() == 0.0
    assert (vq.usage_ema >= 5.0).all()          # every code that fell below the threshold was restarted
    assert vq.codebook.shape == before.shape


@pytest.mark.parametrize("eps", [1e-300, 1e-40])
def test_ema_with_an_eps_that_rounds_to_zero_keeps_the_codebook_finite(eps):
    """eps below float32's range made the Laplace-smoothed count of an unused code exactly 0: m / 0 = inf."""
    vq = _vq(ema=True, eps=eps)
    vq(torch.full((10, 4), 0.25))
    assert torch.isfinite(vq.codebook).all()
    assert vq(torch.randn(32, 4)).indices.unique().numel() > 1   # not collapsed onto one code
