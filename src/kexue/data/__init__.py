"""kexue.data (https://kexue.fm/archives/7031): padding, batching, truncation, text splitting, parallel_apply."""
from .generator import DataGenerator
from .padding import collate_padded, sequence_padding, sequence_padding_nd
from .parallel import ParallelWorkerError, batched, count_tokens, parallel_apply, parallel_apply_generator
from .text import split_passage, text_segmentate, truncate_sequences

__all__ = ["sequence_padding", "sequence_padding_nd", "collate_padded", "DataGenerator", "truncate_sequences",
           "text_segmentate", "split_passage", "parallel_apply", "parallel_apply_generator", "batched", "count_tokens",
           "ParallelWorkerError"]
