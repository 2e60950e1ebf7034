"""kexue.generation: autoregressive decoding (greedy / beam / sampling) on a step function or a model,
synchronous bidirectional beam search, and MLM slot filling."""
from .bidirectional import SyncBidirectionalBeamSearch, make_r2l_targets
from .decoder import AutoRegressiveDecoder
from .generate import generate, left_align
from .output import GenerationOutput
from .logits import apply_temperature, ban_tokens, repetition_penalty, restrict_tokens, top_k_filter, top_p_filter
from .slot_filling import MLMSlotReader, NgramIndex, SlotReaderOutput, passage_constrained_decode, vote_answers

__all__ = ["AutoRegressiveDecoder", "generate", "GenerationOutput", "left_align", "SyncBidirectionalBeamSearch",
           "make_r2l_targets",
           "apply_temperature", "ban_tokens", "repetition_penalty", "restrict_tokens", "top_k_filter", "top_p_filter",
           "MLMSlotReader", "NgramIndex", "SlotReaderOutput", "passage_constrained_decode", "vote_answers"]
