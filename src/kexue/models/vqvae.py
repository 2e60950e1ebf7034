"""Reference VQ-VAE model and an autoregressive prior over its codes (https://kexue.fm/archives/6760).

    x [B, input_size] -> encoder -> z [B, num_tokens, embedding_size] -> nearest code e_k (VectorQuantizer,
    straight-through) -> decoder -> x_hat [B, input_size]
    loss = |x - x_hat|^2 + codebook_weight |sg[z] - z_q|^2 + commitment_weight |z - sg[z_q]|^2
    (the codebook term is replaced by the EMA update when ema=True)

The code of an input is a short sequence of `num_tokens` ids; `CodePrior` models it autoregressively,
p(k_1..k_T) = prod_t p(k_t | k_<t), so new codes can be sampled and decoded.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_float, check_int
from kexue.nn import VectorQuantizer, VQOutput

__all__ = ["VQAutoencoder", "CodePrior"]


class VQAutoencoder(nn.Module):
    """MLP VQ-VAE: input_size -> hidden_size -> num_tokens x embedding_size, quantised against num_codes
    codes, then the mirror decoder.  quantize=False gives the continuous autoencoder with the same code
    width (num_tokens * embedding_size), the baseline arm.  forward(x) returns a dict with "loss"
    (reconstruction MSE + VQ loss), "recon_mse", "x_hat", and for quantize=True "indices" [B, num_tokens]
    and "vq" (the VQOutput)."""

    def __init__(self, input_size: int, num_tokens: int = 4, embedding_size: int = 8, num_codes: int = 32,
                 hidden_size: int = 128, quantize: bool = True, ema: bool = False, decay: float = 0.99,
                 codebook_weight: float = 1.0, commitment_weight: float = 0.25, init: str = "uniform"):
        super().__init__()
        self.input_size = check_int("input_size", input_size, 1)
        self.num_tokens = check_int("num_tokens", num_tokens, 1)
        self.embedding_size = check_int("embedding_size", embedding_size, 1)
        hidden_size = check_int("hidden_size", hidden_size, 1)
        self.quantize = check_bool("quantize", quantize)
        code_width = self.num_tokens * self.embedding_size
        self.encoder = nn.Sequential(nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, code_width))
        self.decoder = nn.Sequential(nn.Linear(code_width, hidden_size), nn.ReLU(), nn.Linear(hidden_size, input_size))
        self.quantizer = VectorQuantizer(num_codes, embedding_size, codebook_weight=codebook_weight,
                                         commitment_weight=commitment_weight, ema=ema, decay=decay,
                                         init=init) if self.quantize else None

    @property
    def num_codes(self) -> int:
        return self.quantizer.num_codes if self.quantizer is not None else 0

    def encode(self, x: Tensor) -> Tensor:
        """x [B, input_size] -> continuous codes z [B, num_tokens, embedding_size]."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"VQAutoencoder: x must be [batch, input_size={self.input_size}], got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"VQAutoencoder: x must be finite, got a non-finite value {x[~torch.isfinite(x)][0].item()}")
        return self.encoder(x).unflatten(1, (self.num_tokens, self.embedding_size))

    def decode(self, z_q: Tensor) -> Tensor:
        """z_q [B, num_tokens, embedding_size] -> x_hat [B, input_size]."""
        if z_q.dim() != 3 or z_q.shape[1:] != (self.num_tokens, self.embedding_size):
            raise ValueError(f"VQAutoencoder.decode: z_q must be [batch, {self.num_tokens}, {self.embedding_size}], "
                             f"got shape {tuple(z_q.shape)}")
        return self.decoder(z_q.flatten(1))

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code ids [B, num_tokens] (e.g. sampled from a CodePrior) -> x_hat [B, input_size]."""
        if self.quantizer is None:
            raise ValueError("VQAutoencoder.decode_indices: this model has quantize=False (no codebook)")
        if indices.dim() != 2 or indices.shape[1] != self.num_tokens:
            raise ValueError(f"VQAutoencoder.decode_indices: indices must be [batch, num_tokens={self.num_tokens}], "
                             f"got shape {tuple(indices.shape)}")
        return self.decode(self.quantizer.lookup(indices))

    def forward(self, x: Tensor) -> dict:
        z = self.encode(x)  # [B, T, D]
        out: dict = {}
        if self.quantizer is not None:
            vq: VQOutput = self.quantizer(z)
            z, out["vq"], out["indices"] = vq.z_q_st, vq, vq.indices
        x_hat = self.decode(z)
        out["x_hat"], out["recon_mse"] = x_hat, F.mse_loss(x_hat, x)
        out["loss"] = out["recon_mse"] + (out["vq"].loss if "vq" in out else 0.0)
        return out


class CodePrior(nn.Module):
    """Autoregressive prior p(k_1..k_T) = prod_t softmax(logits_t)[k_t] over code sequences (the article's
    PixelCNN / attention prior, here a GRU over the right-shifted sequence: position t sees only k_<t).
    indices [B, T] with ids in [0, num_codes)."""

    def __init__(self, num_codes: int, embedding_size: int = 32, hidden_size: int = 128):
        super().__init__()
        self.num_codes = check_int("num_codes", num_codes, 1)
        embedding_size, hidden_size = check_int("embedding_size", embedding_size, 1), check_int("hidden_size", hidden_size, 1)
        self.embedding = nn.Embedding(self.num_codes + 1, embedding_size)  # the last row is the start token
        self.rnn = nn.GRU(embedding_size, hidden_size, batch_first=True)
        self.out = nn.Linear(hidden_size, self.num_codes)

    def _check(self, indices: Tensor) -> None:
        if indices.dim() != 2 or indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"CodePrior: indices must be int64 [batch, length], got {indices.dtype} "
                             f"of shape {tuple(indices.shape)}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"CodePrior: indices must be in [0, {self.num_codes}), got range "
                             f"[{indices.min().item()}, {indices.max().item()}]")

    def forward(self, indices: Tensor) -> Tensor:
        """indices [B, T] -> logits [B, T, num_codes]; logits[:, t] depend on indices[:, :t] only."""
        self._check(indices)
        start = indices.new_full((indices.shape[0], 1), self.num_codes)
        h, _ = self.rnn(self.embedding(torch.cat([start, indices[:, :-1]], 1).long()))  # [B, T, H]
        return self.out(h)

    def log_prob(self, indices: Tensor) -> Tensor:
        """log p(k_1..k_T) [B]."""
        logp = self.forward(indices).log_softmax(-1)
        return logp.gather(-1, indices.long().unsqueeze(-1)).squeeze(-1).sum(-1)

    def loss(self, indices: Tensor) -> Tensor:
        """Mean negative log-likelihood (nats per sequence)."""
        return -self.log_prob(indices).mean()

    @torch.no_grad()
    def sample(self, n: int, length: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """n code sequences [n, length] drawn token by token from p(k_t | k_<t) (softmax(logits / temperature))."""
        n, length = check_int("n", n, 1), check_int("length", length, 1)
        temperature = check_float("temperature", temperature, 0.0, low_open=True)
        ref = self.out.weight
        token = torch.full((n, 1), self.num_codes, dtype=torch.long, device=ref.device)
        state, out = None, []
        for _ in range(length):
            h, state = self.rnn(self.embedding(token), state)  # [n, 1, H]
            logits = self.out(h[:, -1]).double()  # shift, float64: (l - max) / T has no 0/0 for any float T > 0
            probs = ((logits - logits.amax(-1, keepdim=True)) / temperature).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator)  # [n, 1]
            out.append(token)
        return torch.cat(out, 1)
