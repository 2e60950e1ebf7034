"""Hand-made step functions for decoder tests: Markov tables with closed-form scores and brute force."""
from __future__ import annotations

import itertools

import torch


def markov_tables(B: int, V: int, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    """[B, V + 1, V] next-token logits; row V is used before any token has been generated."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V + 1, V, generator=g, dtype=torch.float64).float() * scale


def markov_predict(tables: torch.Tensor):
    """predict(inputs=[batch index [N]], output_ids [N, t], states) -> logits of the row's table."""
    V = tables.shape[-1]

    def predict(inputs, output_ids, states):
        (b,) = inputs
        last = output_ids[:, -1] if output_ids.shape[1] else torch.full_like(b, V)
        return tables[b, last]
    return predict


def sequence_logprob(table: torch.Tensor, seq) -> float:
    """Closed form: sum of log-softmax(table[prev])[tok] along seq (prev = V at the start)."""
    V = table.shape[-1]
    lp = table.double().log_softmax(-1)
    prev, total = V, 0.0
    for t in seq:
        total += float(lp[prev, t])
        prev = t
    return total


def brute_force_best(table: torch.Tensor, end_id: int, maxlen: int, length_penalty: float = 0.0):
    """Exhaustive optimum over all sequences that stop at their first end_id, or reach maxlen."""
    V = table.shape[-1]
    best, best_seq = float("-inf"), None
    for L in range(1, maxlen + 1):
        for seq in itertools.product(range(V), repeat=L):
            if end_id in seq[:-1] or (L < maxlen and seq[-1] != end_id):
                continue
            s = sequence_logprob(table, seq) / L ** length_penalty
            if s > best:
                best, best_seq = s, list(seq)
    return best_seq, best


def greedy_reference(table: torch.Tensor, end_id: int, maxlen: int) -> list[int]:
    V = table.shape[-1]
    prev, out = V, []
    for _ in range(maxlen):
        prev = int(table[prev].argmax())
        out.append(prev)
        if prev == end_id:
            break
    return out
