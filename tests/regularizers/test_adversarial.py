"""Spec core/07 items 2-4, 6, 7: FGM/PGD geometry and exact restore, FGM ~ GP to O(eps^2), the
double-backprop gradient penalty, and VAT's power iteration."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.regularizers.adversarial import FGM, PGD, VAT, adversarial_step, input_gradient_penalty


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()


class _Text(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(11, 4).double(), nn.Linear(4, 3).double()

    def forward(self, ids):
        return self.head(torch.tanh(self.embed(ids)).mean(1))


@pytest.mark.parametrize("norm", ["global", "per_sample"])
def test_fgm_norm_direction_and_bit_exact_restore(norm):
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    m = _mlp()
    F.cross_entropy(m(x), torch.tensor([0, 1, 2, 0])).backward()
    g, orig = x.grad.clone(), x.detach().clone()
    fgm = FGM(target=x, epsilon=0.3, norm=norm)
    fgm.attack()
    delta = x.detach() - orig
    if norm == "global":
        assert delta.norm().item() == pytest.approx(0.3, rel=1e-12)
        assert F.cosine_similarity(delta.flatten(), g.flatten(), dim=0).item() == pytest.approx(1.0, abs=1e-12)
    else:
        torch.testing.assert_close(delta.norm(dim=1), torch.full((4,), 0.3, dtype=torch.float64))
        torch.testing.assert_close(F.cosine_similarity(delta, g, dim=1), torch.ones(4, dtype=torch.float64))
    fgm.restore()
    assert torch.equal(x.detach(), orig)


def test_fgm_on_embedding_matrix_by_name_module_and_sign():
    model = _Text()
    ids = torch.tensor([[1, 2, 3], [3, 4, 4]])
    F.cross_entropy(model(ids), torch.tensor([0, 2])).backward()
    W0, g = model.embed.weight.detach().clone(), model.embed.weight.grad.clone()
    for fgm in (FGM(model, "embedding", epsilon=0.5), FGM(model, "embed.weight", epsilon=0.5),
                FGM(target=model.embed, epsilon=0.5)):
        assert fgm.targets == [model.embed.weight]
        with fgm:
            delta = model.embed.weight.detach() - W0
            assert delta.norm().item() == pytest.approx(0.5, rel=1e-12)
            assert delta[[0, 5, 6]].abs().max() == 0               # rows of absent tokens stay put
        assert torch.equal(model.embed.weight.detach(), W0)
    with FGM(model, epsilon=0.1, use_sign=True):
        torch.testing.assert_close(model.embed.weight.detach() - W0, 0.1 * g.sign(), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="matches no parameter"):
        FGM(model, "word_embeddings")


def test_fgm_gradient_matches_gradient_penalty_to_second_order():
    m, x, y = _mlp(), torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    params = list(m.parameters())

    def discrepancy(eps):
        xr = x.clone().requires_grad_(True)
        loss = F.cross_entropy(m(xr), y)
        gp_total = loss + input_gradient_penalty(loss, xr, eps, normalized=True)    # l + eps ||grad_x l||
        g_gp = torch.autograd.grad(gp_total, params)
        (gx,) = torch.autograd.grad(F.cross_entropy(m(xr), y), xr)
        fgm = FGM(target=xr, epsilon=eps)
        fgm.attack([gx])
        g_fgm = torch.autograd.grad(F.cross_entropy(m(xr), y), params)
        fgm.restore()
        return sum((a - b).pow(2).sum() for a, b in zip(g_fgm, g_gp)).sqrt().item()

    d2, d3 = discrepancy(1e-2), discrepancy(1e-3)
    assert 50 < d2 / d3 < 200                                      # O(eps^2): about 100x


def test_gradient_penalty_matches_finite_differences_on_embedding():
    model, ids, y = _Text(), torch.tensor([[1, 2, 3], [3, 4, 4]]), torch.tensor([0, 2])
    W = model.head.weight

    def penalised():
        loss = F.cross_entropy(model(ids), y)
        return loss + input_gradient_penalty(loss, model.embed, epsilon=1.0)
    (g,) = torch.autograd.grad(penalised(), W)
    h = 1e-6
    for idx in [(0, 0), (1, 2), (2, 3)]:
        with torch.no_grad():
            W[idx] += h
        up = penalised().item()
        with torch.no_grad():
            W[idx] -= 2 * h
        down = penalised().item()
        with torch.no_grad():
            W[idx] += h
        fd = (up - down) / (2 * h)
        assert abs(fd - g[idx].item()) <= 1e-5 * max(abs(fd), 1e-3)


def test_gradient_penalty_update_is_double_backprop_not_twice_the_gradient():
    # f = w.x, l = (w.x - y)^2 / 2, grad_x l = r w with r = w.x - y; P = eps/2 r^2 ||w||^2
    eps, y = 0.5, 0.3
    w0, x0 = torch.tensor([0.4, -1.1, 0.7], dtype=torch.float64), torch.tensor([1.0, 0.5, -2.0], dtype=torch.float64)
    w, x = w0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=0.1)
    loss = 0.5 * (w @ x - y) ** 2
    (loss + input_gradient_penalty(loss, x, eps)).backward()
    opt.step()
    r = (w0 @ x0 - y).item()
    grad = r * x0 + eps * (r * x0 * w0.pow(2).sum() + r ** 2 * w0)            # hand-computed double backprop
    torch.testing.assert_close(w.detach(), w0 - 0.1 * grad, rtol=0, atol=1e-14)
    assert not torch.allclose(w.detach(), w0 - 0.1 * 2 * r * x0)             # not "twice the plain update"


def test_pgd_stays_in_the_ball_and_one_full_step_equals_fgm():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    m, y = _mlp(), torch.tensor([0, 1, 2])
    orig = x.detach().clone()
    F.cross_entropy(m(x), y).backward()
    pgd = PGD(target=x, epsilon=0.2, alpha=0.15, steps=4)
    pgd.attack_steps(lambda: F.cross_entropy(m(x), y))
    assert (x.detach() - orig).norm().item() <= 0.2 + 1e-12
    assert F.cross_entropy(m(x), y).item() > F.cross_entropy(m(orig), y).item()
    pgd.restore()
    assert torch.equal(x.detach(), orig)
    one, fgm = PGD(target=x, epsilon=0.2, alpha=0.2, steps=1), FGM(target=x, epsilon=0.2)
    one.attack()
    after_pgd = x.detach().clone()
    one.restore()
    fgm.attack()
    torch.testing.assert_close(after_pgd, x.detach(), rtol=0, atol=1e-15)
    fgm.restore()


def _fisher_top(W, x):
    p = (W @ x).softmax(-1)
    H = W.T @ (torch.diag(p) - torch.outer(p, p)) @ W                            # [D, D]
    return torch.linalg.eigh(H).eigenvectors[:, -1]


def test_vat_power_iteration_finds_the_top_fisher_eigenvector():
    torch.manual_seed(0)
    W, x = torch.randn(4, 8, dtype=torch.float64), torch.randn(1, 8, dtype=torch.float64)
    v = _fisher_top(W, x[0])
    found = []

    def model_fn(z):
        found.append(z - x)
        return z @ W.T

    def cos_of(iters, seed):
        found.clear()
        VAT(model_fn, epsilon=1.0, xi=1e-4, iters=iters, generator=torch.Generator().manual_seed(seed)).loss(x)
        return F.cosine_similarity(found[-1][0], v, dim=0).abs().item()
    assert min(cos_of(10, s) for s in range(5)) >= 0.99
    one = sum(cos_of(1, s) for s in range(20)) / 20
    rand = sum(cos_of(0, s) for s in range(20)) / 20                              # iters=0: a random direction
    assert one > 0.6 and one > 2 * rand


def test_vat_loss_is_a_nonnegative_kl_with_clean_pass_under_no_grad():
    m, x = _mlp(), torch.randn(5, 5, dtype=torch.float64)
    grad_flags = []

    def model_fn(z):
        grad_flags.append(torch.is_grad_enabled())
        return m(z)
    loss = VAT(model_fn, epsilon=0.5, xi=1e-3).loss(x)
    assert grad_flags[0] is False and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    b = nn.Parameter(torch.randn(3, dtype=torch.float64))
    const = VAT(lambda z: b.expand(z.shape[0], 3), epsilon=1.0).loss(x)
    assert const.item() == 0.0


@pytest.mark.parametrize("where", ["weight", "output"])
def test_vat_on_embeddings(where):
    model, ids = _Text(), torch.tensor([[1, 2, 3], [3, 4, 4]])
    W0 = model.embed.weight.detach().clone()
    box = []
    model.embed.register_forward_hook(lambda mod, i, o: box.append(o))
    loss = VAT(model, target=model.embed, epsilon=1.0, xi=1e-2, perturb=where).loss(ids)
    shape = (11, 4) if where == "weight" else (2, 3, 4)        # matrix vs embedding outputs [B, n, d]
    assert box[0].shape == (2, 3, 4)
    vat = VAT(model, target=model.embed, perturb=where)
    assert tuple(vat.target.shape if vat.mode == "param" else box[0].shape) == shape
    assert loss.item() > 0
    loss.backward()
    assert model.embed.weight.grad.abs().sum() > 0 and torch.equal(model.embed.weight.detach(), W0)


def test_adversarial_step_without_trainer_matches_manual_fgm():
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    m1, m2 = _mlp(), _mlp()
    out = adversarial_step(m1, F.cross_entropy, (x, y), torch.optim.SGD(m1.parameters(), lr=0.1),
                           method="fgm", target="0.weight", epsilon=0.3)
    opt = torch.optim.SGD(m2.parameters(), lr=0.1)
    F.cross_entropy(m2(x), y).backward()
    with FGM(m2, target=m2[0].weight, epsilon=0.3):
        F.cross_entropy(m2(x), y).backward()
    opt.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    assert out["reg"] > out["loss"]
    for method, kw in [("gp", {"wrt": m1[0].weight}), ("pgd", {"target": "0.weight", "epsilon": 0.3}),
                       ("vat", {"epsilon": 0.5, "xi": 1e-3})]:
        assert adversarial_step(m1, F.cross_entropy, (x, y), torch.optim.SGD(m1.parameters(), lr=0.1),
                                method=method, **kw)["reg"] >= 0
    with pytest.raises(ValueError, match="method"):
        adversarial_step(m1, F.cross_entropy, (x, y), torch.optim.SGD(m1.parameters(), lr=0.1), method="awp")


_TINY = {
    "bert": dict(model_type="bert", vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=20, max_position_embeddings=32),
    "gpt2": dict(model_type="gpt2", vocab_size=40, n_embd=16, n_layer=1, n_head=2, n_positions=32),
    "t5": dict(model_type="t5", vocab_size=40, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2),
}


@pytest.mark.parametrize("family", ["bert", "gpt2", "t5"])
@pytest.mark.parametrize("cls", [FGM, PGD])
def test_default_target_is_the_token_embedding_only(family, cls):
    """Issue 8 / https://kexue.fm/archives/7234: bert4keras perturbs the token embedding ("Embedding-Token")
    only.  target="embedding" (the default) used to match every parameter whose name contains "embedding":
    position and segment tables and the embedding LayerNorm too."""
    import kexue
    model = kexue.build_transformer_model(config=dict(_TINY[family]))
    token = model.shared if family == "t5" else model.embeddings.word
    for atk in (cls(model), cls(model, "embedding"), cls(model, target="token_embedding")):
        assert len(atk.targets) == 1 and atk.targets[0] is token.weight
    if family != "t5":  # the others stay selectable, by name or with "all_embeddings"
        every = [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]
        assert len(every) > 1
        assert {id(p) for p in cls(model, "all_embeddings").targets} == {id(p) for p in every}
        assert {n for n, p in model.named_parameters() if any(p is t for t in cls(model, "embeddings.").targets)} \
            == {n for n, _ in model.named_parameters() if "embeddings." in n}


def test_default_target_perturbs_nothing_but_the_token_matrix():
    import kexue
    model = kexue.build_transformer_model(config=dict(_TINY["bert"]))
    ids = torch.tensor([[1, 5, 7, 2]])
    model(ids).last_hidden_state.square().sum().backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with FGM(model, epsilon=0.5):
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"embeddings.word.weight"}
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_token_embedding_of_an_ambiguous_model_is_a_clear_error():
    class TwoTables(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Embedding(5, 3), nn.Embedding(7, 3)
    with pytest.raises(ValueError, match="token embedding"):
        FGM(TwoTables())
    m = TwoTables()
    assert [id(t) for t in FGM(m, "all_embeddings").targets] == [id(m.a.weight), id(m.b.weight)]
    assert [id(t) for t in FGM(m, target=m.b).targets] == [id(m.b.weight)]


def test_model_with_get_input_embeddings_uses_it():
    class HFStyle(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos, self.tok = nn.Embedding(5, 3), nn.Embedding(9, 3)

        def get_input_embeddings(self):
            return self.tok
    m = HFStyle()
    assert FGM(m).targets == [m.tok.weight]


@pytest.mark.parametrize("call, exc, name", [
    (lambda x: FGM(target=x, epsilon=float("nan")), ValueError, "epsilon"),
    (lambda x: FGM(target=x, epsilon=float("inf")), ValueError, "epsilon"),
    (lambda x: FGM(target=x, use_sign="no"), TypeError, "use_sign"),
    (lambda x: PGD(target=x, steps=True), TypeError, "steps"),
    (lambda x: PGD(target=x, steps=0), ValueError, "steps"),
    (lambda x: PGD(target=x, alpha=float("nan")), ValueError, "alpha"),
    (lambda x: VAT(lambda t: t, xi=0.0), ValueError, "xi"),
    (lambda x: VAT(lambda t: t, iters=1.5), TypeError, "iters"),
    (lambda x: input_gradient_penalty(x.sum(), x, epsilon=float("nan")), ValueError, "epsilon"),
])
def test_attack_hyperparameters_checked_by_name(call, exc, name):
    x = torch.randn(3, requires_grad=True)
    with pytest.raises(exc, match=name):
        call(x)
