"""VQAutoencoder and CodePrior (https://kexue.fm/archives/6760): straight-through gradients, the loss
decomposition, EMA mode, and an autoregressive prior that is causal and exactly normalised."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from kexue.models import CodePrior, VQAutoencoder


def _model(**kw):
    torch.manual_seed(0)
    return VQAutoencoder(6, num_tokens=3, embedding_size=4, num_codes=5, hidden_size=16, **kw)


def test_codes_are_nearest_codebook_entries_and_loss_decomposes():
    m = _model()
    x = torch.rand(7, 6)
    out = m(x)
    z = m.encode(x)  # [7, 3, 4]
    e = m.quantizer.codebook
    brute = torch.cdist(z.reshape(-1, 4), e).argmin(-1).view(7, 3)
    assert torch.equal(out["indices"], brute)
    z_q = e[brute]
    torch.testing.assert_close(out["x_hat"], m.decode(z_q))
    mse_x = F.mse_loss(m.decode(z_q), x)
    torch.testing.assert_close(out["loss"], mse_x + 1.25 * F.mse_loss(z, z_q))  # beta 1 + gamma 0.25


def test_straight_through_gives_the_encoder_the_decoders_gradient():
    m = _model()
    x = torch.rand(7, 6)
    out = m(x)
    out["recon_mse"].backward()
    enc_grad = [p.grad.clone() for p in m.encoder.parameters()]
    # reference: decoder gradient w.r.t. z_q, pushed through the encoder as if quantisation were the identity
    m.zero_grad()
    z = m.encode(x)
    z_q = m.quantizer.codebook.detach()[out["indices"]].requires_grad_(True)
    F.mse_loss(m.decode(z_q), x).backward()
    m.zero_grad()
    z.backward(z_q.grad)
    for a, p in zip(enc_grad, m.encoder.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_ema_codebook_gets_no_gradient_and_moves_only_in_training():
    m = _model(ema=True, decay=0.0)
    x = torch.rand(50, 6)
    m.eval()
    before = m.quantizer.codebook.clone()
    m(x)
    assert torch.equal(before, m.quantizer.codebook)
    m.train()
    out = m(x)
    out["loss"].backward()
    assert not m.quantizer.codebook.requires_grad
    z = m.encode(x).detach().reshape(-1, 4)
    idx = out["indices"].reshape(-1)
    for k in idx.unique():  # decay 0: each used code becomes the mean of its vectors (Laplace eps aside)
        torch.testing.assert_close(m.quantizer.codebook[k], z[idx == k].mean(0), atol=1e-3, rtol=1e-3)


def test_continuous_arm_has_no_codebook():
    m = _model(quantize=False)
    out = m(torch.rand(4, 6))
    assert "indices" not in out and out["loss"] == out["recon_mse"]
    with pytest.raises(ValueError, match="quantize=False"):
        m.decode_indices(torch.zeros(4, 3, dtype=torch.long))


def test_decode_indices_is_decode_of_the_codebook_rows():
    m = _model()
    idx = torch.tensor([[0, 4, 2], [1, 1, 3]])
    torch.testing.assert_close(m.decode_indices(idx), m.decode(m.quantizer.codebook[idx]))


def test_code_prior_is_normalised_over_all_sequences():
    torch.manual_seed(0)
    prior = CodePrior(3, embedding_size=4, hidden_size=8)
    seqs = torch.tensor(list(itertools.product(range(3), repeat=3)))  # all 27 sequences
    total = prior.log_prob(seqs).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0), atol=1e-5, rtol=0)


def test_code_prior_is_causal():
    torch.manual_seed(0)
    prior = CodePrior(5, embedding_size=4, hidden_size=8)
    a = torch.tensor([[1, 2, 3, 4]])
    b = torch.tensor([[1, 2, 0, 0]])  # differs from position 2 on
    la, lb = prior(a), prior(b)
    torch.testing.assert_close(la[:, :3], lb[:, :3])  # logits at t <= 2 see only tokens < t
    assert not torch.allclose(la[:, 3], lb[:, 3])


def test_code_prior_samples_follow_its_probabilities():
    torch.manual_seed(0)
    prior = CodePrior(2, embedding_size=4, hidden_size=8)
    seqs = torch.tensor(list(itertools.product(range(2), repeat=2)))
    p = prior.log_prob(seqs).exp().detach()  # [4]
    s = prior.sample(20000, 2, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(s[:, 0] * 2 + s[:, 1], minlength=4).float() / 20000
    se = (p * (1 - p) / 20000).sqrt()
    assert ((freq - p).abs() < 4 * se).all()


def test_code_prior_learns_a_fixed_distribution():
    torch.manual_seed(0)
    prior = CodePrior(4, embedding_size=8, hidden_size=16)
    data = torch.tensor([[0, 1, 2], [3, 3, 0]]).repeat(50, 1)  # two sequences, each p = 1/2
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        prior.loss(data).backward()
        opt.step()
    assert abs(prior.loss(data).item() - torch.log(torch.tensor(2.0)).item()) < 0.05


def test_bad_inputs_are_named():
    m = _model()
    with pytest.raises(ValueError, match="input_size=6"):
        m(torch.rand(2, 5))
    with pytest.raises(ValueError, match="num_tokens=3"):
        m.decode_indices(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="num_codes"):
        VQAutoencoder(6, num_codes=0)
    prior = CodePrior(4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        prior.log_prob(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match="int64"):
        prior(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="temperature"):
        prior.sample(2, 3, temperature=0.0)


def test_non_finite_input_is_refused():
    x = torch.rand(2, 6)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="x must be finite"):
        _model()(x)


def test_sampling_at_a_tiny_temperature_is_greedy_not_nan():
    torch.manual_seed(0)
    prior = CodePrior(5, embedding_size=4, hidden_size=8)
    codes = prior.sample(3, 4, temperature=5e-287)  # 5e-287 is 0 in float32: (l - max) / T was 0 / 0
    greedy = torch.zeros(1, 0, dtype=torch.long)
    for _ in range(4):  # argmax decoding, token by token
        nxt = prior(torch.cat([greedy, greedy.new_zeros(1, 1)], 1))[:, -1].argmax(-1, keepdim=True)
        greedy = torch.cat([greedy, nxt], 1)
    assert torch.equal(codes, greedy.expand(3, 4))
