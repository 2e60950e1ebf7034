"""kexue: the ideas of Scientific Spaces (kexue.fm) on PyTorch."""
__version__ = "0.1.0"
