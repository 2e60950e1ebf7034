"""kexue.generation: autoregressive decoding (greedy / beam / sampling) on a step function or a model."""
from .decoder import AutoRegressiveDecoder
from .logits import apply_temperature, ban_tokens, repetition_penalty, restrict_tokens, top_k_filter, top_p_filter

__all__ = ["AutoRegressiveDecoder", "apply_temperature", "ban_tokens", "repetition_penalty", "restrict_tokens",
           "top_k_filter", "top_p_filter"]
