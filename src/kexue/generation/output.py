"""The one return type of `generate` (greedy, beam search and sampling alike)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GenerationOutput"]


@dataclass
class GenerationOutput:
    """sequences [R, T] LongTensor of generated tokens (no prompt, no start token), each row ending with its
    end token when it met one and padded after it with `pad_id`; lengths [R] tokens generated per row (end
    token included); scores [R] float32 sum of the tokens' log-probs (for sampling: under the filtered
    distribution it drew from). R = B for greedy and beam search (the best beam of each input), B x
    num_samples for sampling with the samples of one input adjacent (row b * num_samples + j), as transformers
    orders them; T = max(lengths)."""
    sequences: Tensor
    lengths: Tensor
    scores: Tensor

    @classmethod
    def from_buffer(cls, tokens: Tensor, lengths: Tensor, scores: Tensor, pad_id: int) -> "GenerationOutput":
        """tokens [R, maxlen] (anything after each row's length is filler) -> padded, trimmed to max(lengths)."""
        T = int(lengths.max()) if lengths.numel() else 0
        tokens = tokens[:, :T]
        after = torch.arange(T, device=tokens.device)[None] >= lengths[:, None]          # [R, T]
        return cls(tokens.masked_fill(after, pad_id), lengths.long(), scores.float())

    def trimmed(self) -> list[Tensor]:
        """Each row without its padding: a list of R 1-D LongTensors."""
        return [row[:n] for row, n in zip(self.sequences, self.lengths.tolist())]

    def __len__(self) -> int:
        return self.sequences.shape[0]
