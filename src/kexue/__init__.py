"""kexue: the ideas of Scientific Spaces (kexue.fm, Su Jianlin) on today's PyTorch."""
from .models import CheckpointError, build_transformer_model
from .tokenizers import SpTokenizer, Tokenizer, load_vocab

__version__ = "0.1.0"
__all__ = ["build_transformer_model", "CheckpointError", "Tokenizer", "SpTokenizer", "load_vocab", "__version__"]
