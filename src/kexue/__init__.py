"""kexue: the ideas of Scientific Spaces (kexue.fm, Su Jianlin) on today's PyTorch."""
from __future__ import annotations

import importlib

from ._cpu import SlowBF16Warning
from .models import CheckpointError, build_transformer_model
from .tokenizers import SpTokenizer, Tokenizer, load_vocab

__version__ = "0.1.0"
__all__ = ["build_transformer_model", "CheckpointError", "Tokenizer", "SpTokenizer", "load_vocab", "SlowBF16Warning",
           "__version__"]

# Subpackages imported on first access (`kexue.optim.WeightDecay` after a bare `import kexue`), as numpy/scipy do.
_SUBPACKAGES = ("compress", "corpus", "data", "datasets", "explain", "generation", "metrics", "models", "nn", "ode", "ops",
                "optim", "regularizers", "sim", "tasks", "tokenizers", "train")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kexue' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES))
