"""kexue: the ideas of Scientific Spaces (kexue.fm, Su Jianlin) on today's PyTorch."""
from .models import CheckpointError, build_transformer_model

__version__ = "0.1.0"
__all__ = ["build_transformer_model", "CheckpointError", "__version__"]
