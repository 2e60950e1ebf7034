"""VAT keeps a float64 model's precision: its finite-difference power iteration with a tiny xi (spec 07: xi
must be small relative to the input scale) needs the distance in float64, not cast down to float32."""
import torch

from kexue.regularizers import VAT


def test_float64_vat_with_tiny_xi_finds_the_top_fisher_eigenvector():
    g = torch.Generator().manual_seed(0)
    W = 0.3 * torch.randn(10, 64, generator=g, dtype=torch.float64)
    x = torch.randn(1, 64, generator=g, dtype=torch.float64)
    f = lambda z: z @ W.T                                                    # noqa: E731
    p = f(x).softmax(-1)[0]
    top = torch.linalg.eigh(W.T @ (torch.diag(p) - torch.outer(p, p)) @ W).eigenvectors[:, -1]   # Fisher H
    vat = VAT(f, "input", epsilon=1.0, xi=1e-6, iters=10, generator=torch.Generator().manual_seed(1))
    captured = []
    vat.model_fn = lambda z: captured.append(z.detach() - x) or f(z)     # noqa: E731  (last call: x + r_adv)
    loss = vat.loss(x)
    assert loss.dtype == torch.float64
    r_adv = captured[-1][0]
    assert torch.nn.functional.cosine_similarity(r_adv, top, dim=0).abs() > 0.99
