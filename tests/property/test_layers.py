"""The articles' layers and regularizers on generated input (issue 8).

Each test draws constructor arguments (valid sizes, zero, negative, float, bool, string, NaN, huge) and input
shapes (including B = 0 and n = 0).  The outcome must match an independent rule: arguments the rule calls
valid give finite outputs of the documented shape, and every other one a clear error (ValueError / TypeError
...) naming the argument at fault.  Nothing may hang (each test bounded), allocate O(huge), or return NaN."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.nn.capsule import Capsule
from kexue.nn.crf import CRF
from kexue.nn.dgcnn import DGCNN
from kexue.nn.losses import VAELoss, focal_loss
from kexue.nn.margin import CosineClassifier, MarginSoftmaxLoss
from kexue.nn.nce import nce_loss
from kexue.nn.on_lstm import ONLSTM
from kexue.nn.pooling import AttentionPooling1d, MaskedAvgPool1d, MaskedMaxPool1d
from kexue.nn.quantize import VectorQuantizer
from kexue.nn.reparam import LOGVAR_RANGE, GaussianHead
from kexue.nn.sparse_attention import allowed_pairs, sparse_attention, sparse_attention_mask
from kexue.regularizers.adversarial import FGM, PGD
from kexue.sim.gillespie import ReactionSystem, simulate_ensemble
from tests.property.clear_error import CLEAR, assert_finite

# each argument is valid 3 times in 4 (so that valid combinations of several arguments are common), else one of
# every kind of bad value: zero, negative, float, bool, string, None, NaN, inf
SIZE = st.one_of(*[st.integers(1, 4)] * 3, st.sampled_from([0, -2, 2.0, 1e6, float("nan"), True, "3", None]))
HUGE = st.one_of(*[st.one_of(st.integers(0, 9), st.sampled_from([10**12, 2**63]))] * 3,
                 st.sampled_from([-1, 1e6, 2.5, True, "2"]))
REAL = st.one_of(*[st.floats(-2, 2)] * 3, st.sampled_from([float("nan"), float("inf"), -float("inf"), True, "0.5"]))
DIM = st.integers(0, 3)  # batch / length, 0 included


def is_int(v, lo=1, hi=None) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


def is_real(v, lo=-math.inf, hi=math.inf, lo_open=False, hi_open=False) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


def outcome(valid: bool, names, fn):
    """Run fn: when `valid`, it must succeed; otherwise it must raise a clear error naming one of `names`."""
    if valid:
        return fn()
    with pytest.raises(CLEAR) as info:
        fn()
    msg = str(info.value)
    assert any(n in msg for n in names), f"error names none of {names}: {type(info.value).__name__}: {msg}"
    return None


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(num_codes=SIZE, dim=SIZE, ema=st.sampled_from([True, False, "yes", 1]), decay=REAL, N=DIM,
       dead=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 3),
       eps=st.sampled_from([1e-5, 1e-5, 1e-300, 1e-40, 0.0, -1.0, float("nan")]))
def test_vector_quantizer(num_codes, dim, ema, decay, N, dead, seed, eps):
    valid = is_int(num_codes) and is_int(dim) and isinstance(ema, bool) and is_real(decay, 0, 1, hi_open=True) \
        and is_real(eps, 0, lo_open=True)
    vq = outcome(valid, ["num_codes", "embedding_size", "ema", "decay", "eps"],
                 lambda: VectorQuantizer(num_codes, dim, ema=ema, decay=decay, eps=eps, dead_code_threshold=dead))
    if vq is None:
        return
    torch.manual_seed(seed)
    for n in (N, 0, N + 1):  # an empty batch among real ones must not poison the codebook
        out = vq(torch.randn(n, dim))
        assert out.z_q_st.shape == (n, dim) and out.indices.shape == (n,)
        assert_finite(out.z_q_st, out.loss, out.codebook_loss, out.commitment_loss, out.perplexity, out.usage,
                      vq.codebook)
        assert out.indices.numel() == 0 or 0 <= int(out.indices.min()) <= int(out.indices.max()) < num_codes


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(num_tags=SIZE, B=DIM, n=DIM, mask_kind=st.sampled_from(["none", "prefix", "bad_value", "hole", "empty_row"]),
       tag_shift=st.sampled_from([0, 0, -1, 5]), seed=st.integers(0, 3))
def test_crf(num_tags, B, n, mask_kind, tag_shift, seed):
    crf = outcome(is_int(num_tags), ["num_tags"], lambda: CRF(num_tags))
    if crf is None:
        return
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(B, n, num_tags, generator=g, requires_grad=True)
    tags = torch.randint(0, num_tags, (B, n), generator=g) + tag_shift
    lengths = torch.randint(1, max(n, 1) + 1, (B,), generator=g)
    mask = None if mask_kind == "none" else (torch.arange(n) < lengths[:, None]).float()
    if mask is not None and B and n:
        if mask_kind == "bad_value":
            mask[0, 0] = 0.4
        elif mask_kind == "hole":
            mask[0, 0] = 0.0
            mask[0, -1] = 1.0
        elif mask_kind == "empty_row":
            mask[0] = 0.0
    tags_ok = tags.numel() == 0 or (0 <= int(tags.min()) and int(tags.max()) < num_tags)
    mask_ok = mask_kind in ("none", "prefix") or B == 0 or n == 0 or (mask_kind == "hole" and n == 1)
    loss = outcome(n > 0 and tags_ok and mask_ok, ["emissions", "tags", "mask"], lambda: crf(em, tags, mask))
    if loss is not None:
        assert_finite(loss)
        loss.backward()
        assert_finite(em.grad, crf.transitions.grad)
        assert [len(p) for p in crf.decode(em.detach(), mask)] == (lengths.tolist() if mask is not None else [n] * B)


@pytest.mark.timeout(90)
@settings(max_examples=120)
@given(pattern=st.sampled_from(["full", "atrous", "local", "strided", "banded"]), rate=HUGE, window=HUGE,
       dilation=HUGE, B=DIM, H=st.integers(1, 2), n=st.integers(0, 9), causal=st.booleans(),
       impl=st.sampled_from(["auto", "dense_mask", "blocked"]), pad=st.booleans())
def test_sparse_attention(pattern, rate, window, dilation, B, H, n, causal, impl, pad):
    valid = pattern != "banded" and is_int(rate, 2 if pattern == "strided" else 1) and is_int(window, 0) \
        and is_int(dilation, 1)
    q, k, v = (torch.randn(B, H, n, 4, requires_grad=True) for _ in range(3))
    kp = None
    if pad and B:
        kp = torch.ones(B, n, dtype=torch.bool)
        kp[0, n // 2:] = False
    out = outcome(valid, ["pattern", "rate", "window", "dilation"],
                  lambda: sparse_attention(q, k, v, pattern=pattern, rate=rate, window=window, dilation=dilation,
                                           causal=causal, impl=impl, attention_mask=kp))
    if out is not None:
        assert out.shape == (B, H, n, 4)
        assert_finite(out)
        out.sum().backward()
        assert_finite(q.grad, k.grad, v.grad)


@pytest.mark.timeout(60)
@settings(max_examples=120)
@given(pattern=st.sampled_from(["full", "atrous", "local", "strided"]), rate=HUGE, window=HUGE, dilation=HUGE,
       n=st.integers(1, 12), causal=st.booleans())
def test_sparse_mask_and_closed_form_pair_count(pattern, rate, window, dilation, n, causal):
    """Huge sizes are clipped, not looped over or allocated: the closed form equals the mask's count."""
    valid = is_int(rate, 2 if pattern == "strided" else 1) and is_int(window, 0) and is_int(dilation, 1)
    kw = dict(rate=rate, window=window, dilation=dilation, causal=causal)
    m = outcome(valid, ["rate", "window", "dilation"], lambda: sparse_attention_mask(n, pattern, **kw))
    if m is not None:
        assert m.shape == (n, n) and m.diagonal().all()
        assert allowed_pairs(n, pattern, **kw) == int(m.sum())


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(in_dim=SIZE, num_capsule=SIZE, dim_capsule=SIZE, routings=SIZE, B=DIM, N=DIM,
       routing=st.sampled_from(["su", "hinton"]))
def test_capsule(in_dim, num_capsule, dim_capsule, routings, B, N, routing):
    valid = all(is_int(v) for v in (in_dim, num_capsule, dim_capsule, routings))
    caps = outcome(valid, ["in_features", "num_capsule", "dim_capsule", "routings"],
                   lambda: Capsule(in_dim, num_capsule, dim_capsule, routings=routings, routing=routing))
    if caps is not None:
        out = caps(torch.randn(B, N, in_dim))
        assert out.shape == (B, num_capsule, dim_capsule)
        assert_finite(out)
        assert (out.norm(dim=-1) < 1).all()  # squashed


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(input_size=SIZE, hidden_size=st.sampled_from([4, 6, 0, -4, 4.0]), levels=st.sampled_from([None, 1, 2, 3, 0, 8]),
       num_layers=SIZE, B=DIM, T=DIM, batch_first=st.booleans())
def test_on_lstm(input_size, hidden_size, levels, num_layers, B, T, batch_first):
    valid = is_int(input_size) and is_int(hidden_size) and is_int(num_layers, 1, 3) and \
        (levels is None or (is_int(levels) and hidden_size % levels == 0 if is_int(hidden_size) else False))
    if is_int(num_layers) and num_layers > 3:
        return  # bigger stacks are valid but slow; sizes are what is under test
    layer = outcome(valid, ["input_size", "hidden_size", "levels", "num_layers"],
                    lambda: ONLSTM(input_size, hidden_size, num_layers, levels=levels, batch_first=batch_first))
    if layer is None:
        return
    x = torch.randn(B, T, input_size) if batch_first else torch.randn(T, B, input_size)
    res = outcome(T > 0, ["x"], lambda: layer(x))
    if res is not None:
        out, (h, c), info = res
        assert out.shape == ((B, T, hidden_size) if batch_first else (T, B, hidden_size))
        assert h.shape == c.shape == (num_layers, B, hidden_size)
        assert_finite(out, h, c, info["distance"])


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(channels=SIZE, dilations=st.lists(SIZE, max_size=3), kernel_size=st.sampled_from([1, 3, 5, 2, 0, 3.0]),
       B=DIM, n=DIM, masked=st.booleans())
def test_dgcnn(channels, dilations, kernel_size, B, n, masked):
    valid = is_int(channels) and len(dilations) > 0 and all(is_int(d) for d in dilations) and \
        is_int(kernel_size) and kernel_size % 2 == 1
    net = outcome(valid, ["channels", "dilation", "kernel_size"],
                  lambda: DGCNN(channels, dilations=dilations, kernel_size=kernel_size, gate_dropout=None))
    if net is None:
        return
    x = torch.randn(B, n, channels)
    mask = (torch.arange(n) < torch.randint(0, n + 1, (B,))[:, None]) if masked else None
    y = net(x, mask)
    assert y.shape == (B, n, channels)
    assert_finite(y)
    if mask is not None:
        assert (y[~mask] == 0).all()


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(kind=st.sampled_from(["softmax", "am", "aam", "a_simple", "cos"]), scale=REAL, margin=REAL,
       B=DIM, C=st.integers(1, 4), zero_rows=st.booleans())
def test_margin_softmax(kind, scale, margin, B, C, zero_rows):
    valid = kind != "cos" and is_real(scale, 0, lo_open=True) and is_real(margin, 0)
    loss_fn = outcome(valid, ["kind", "scale", "margin"], lambda: MarginSoftmaxLoss(kind, scale, margin))
    if loss_fn is None:
        return
    clf = CosineClassifier(3, C)
    z = torch.randn(B, 3, requires_grad=True)
    if zero_rows and B:
        z = z * torch.tensor([0.0] + [1.0] * (B - 1))[:, None]  # zero-norm feature vectors
    loss = loss_fn(clf(z), torch.randint(0, C, (B,)))
    assert_finite(loss)
    loss.backward()
    assert_finite(clf.weight.grad)


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(N=DIM, k=st.integers(1, 3), log_z=REAL, zero_noise=st.sampled_from([None, "data", "noise"]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_nce_loss(N, k, log_z, zero_noise, reduction):
    s, sn = torch.randn(N, requires_grad=True), torch.randn(N, k)
    lu, lun = torch.randn(N), torch.randn(N, k)
    if zero_noise == "data" and N:
        lu[0] = -math.inf
    if zero_noise == "noise" and N:
        lun[0, 0] = -math.inf
    valid = is_real(log_z) and (zero_noise is None or N == 0)
    loss = outcome(valid, ["log_z", "log_noise_data", "log_noise_noise"],
                   lambda: nce_loss(s, sn, lu, lun, log_z=log_z, reduction=reduction))
    if loss is not None:
        assert loss.shape == ((N,) if reduction == "none" else ())
        assert_finite(loss)


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(B=DIM, C=st.integers(1, 4), gamma=REAL, beta=REAL, shift=st.sampled_from([0, 0, 4, -1]))
def test_losses(B, C, gamma, beta, shift):
    logits, target = torch.randn(B, C), torch.randint(0, C, (B,)) + shift
    t_ok = B == 0 or (0 <= int(target.min()) and int(target.max()) < C)
    out = outcome(is_real(gamma, 0) and t_ok, ["gamma", "target"], lambda: focal_loss(logits, target, gamma=gamma))
    if out is not None:
        assert_finite(out)
    vae = outcome(is_real(beta, 0), ["beta"], lambda: VAELoss("mse", beta=beta))
    if vae is not None:
        res = vae(torch.randn(B, 5), torch.randn(B, 5), torch.randn(B, 2), torch.randn(B, 2) * 50)
        assert_finite(*res.values())


@pytest.mark.timeout(60)
@settings(max_examples=80)
@given(B=DIM, n=DIM, C=st.integers(1, 3), mask_kind=st.sampled_from(["none", "bool", "zeros", "float01", "half"]),
       eps=REAL)
def test_pooling(B, n, C, mask_kind, eps):
    x = torch.randn(B, n, C) * 1e3
    mask = {"none": None, "bool": torch.rand(B, n) > 0.5, "zeros": torch.zeros(B, n, dtype=torch.bool),
            "float01": (torch.rand(B, n) > 0.5).float(), "half": torch.full((B, n), 0.5)}[mask_kind]
    mask_ok = mask_kind != "half" or B * n == 0
    avg = outcome(is_real(eps, 0, lo_open=True), ["eps"], lambda: MaskedAvgPool1d(eps))
    for pool in (AttentionPooling1d(C), MaskedMaxPool1d(), avg):
        if pool is None:
            continue
        out = outcome(mask_ok, ["mask"], lambda: pool(x, mask))
        if out is not None:
            assert out.shape == (B, C)
            assert_finite(out)
            if mask is not None and n:
                assert (out[~mask.bool().any(1)] == 0).all()  # a row with no real token pools to zeros


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(in_features=SIZE, latent=SIZE, scale=st.sampled_from([1.0, 1e3, 1e6, 1e30]), B=DIM)
def test_gaussian_head(in_features, latent, scale, B):
    head = outcome(is_int(in_features) and is_int(latent), ["in_features", "latent_size"],
                   lambda: GaussianHead(in_features, latent))
    if head is None:
        return
    mu, lv = head(torch.randn(B, in_features) * scale)
    assert mu.shape == lv.shape == (B, latent)
    assert ((lv >= LOGVAR_RANGE[0]) & (lv <= LOGVAR_RANGE[1])).all()
    assert_finite(lv.exp(), (0.5 * lv).exp())


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(epsilon=REAL, alpha=REAL, steps=SIZE, target=st.sampled_from(["embedding", "token_embedding",
                                                                      "all_embeddings", "nothing"]))
def test_fgm_pgd(epsilon, alpha, steps, target):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(7, 3), torch.nn.Linear(3, 2)).double()
    model(torch.tensor([1, 2, 3])).square().sum().backward()
    W0 = model[0].weight.detach().clone()
    valid = is_real(epsilon, 0, lo_open=True) and target != "nothing"
    fgm = outcome(valid, ["epsilon", "target"], lambda: FGM(model, target, epsilon=epsilon))
    if fgm is not None:
        with fgm:
            delta = model[0].weight.detach() - W0
            assert delta.norm().item() == pytest.approx(epsilon, rel=1e-4)
        assert torch.equal(model[0].weight.detach(), W0)
    valid = valid and is_real(alpha, 0, lo_open=True) and is_int(steps)
    outcome(valid, ["epsilon", "target", "alpha", "steps"], lambda: PGD(model, target, epsilon, alpha, steps))


@pytest.mark.timeout(60)
@settings(max_examples=60)
@given(t_max=REAL, n_runs=SIZE, burn_in=st.sampled_from([0.0, 0.5, -1.0, float("nan")]),
       x0=st.sampled_from([[3], [0], [1.5], [-1], [2.0]]))
def test_gillespie_ensemble(t_max, n_runs, burn_in, x0):
    s = ReactionSystem(1)
    s.add_reaction(2.0, [0], [1])
    s.add_reaction(1.0, [1], [0])
    valid = is_real(t_max, 0, lo_open=True) and is_int(n_runs) and is_real(burn_in, 0) and burn_in < t_max \
        and x0[0] >= 0 and float(x0[0]).is_integer()
    res = outcome(valid, ["t_max", "n_runs", "burn_in", "x0"],
                  lambda: simulate_ensemble(s, x0, t_max=t_max, n_runs=n_runs, seed=0, burn_in=burn_in))
    if res is not None:
        assert res.final_states.shape == (n_runs, 1) and np.isfinite(res.time_mean).all()
        assert (res.time_mean >= 0).all()
