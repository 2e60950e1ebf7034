"""kexue.tokenizers (https://kexue.fm/archives/6736): WordPiece and SentencePiece tokenizers, bert4keras API."""
from .base import TokenizerBase, longest_first
from .char_vocab import build_char_vocab
from .sentencepiece import SpTokenizer
from .vocab import is_cjk_character, is_punctuation, is_redundant_token, load_vocab, save_vocab
from .wordpiece import Tokenizer

__all__ = ["Tokenizer", "SpTokenizer", "load_vocab", "save_vocab", "TokenizerBase", "longest_first",
           "is_cjk_character", "is_punctuation", "is_redundant_token", "build_char_vocab"]
