"""Pretrained Transformers loaded strictly from Hugging Face checkpoints; `build_transformer_model` is the
entry point. Importing this package registers every family."""
from .albert import ALBERT
from .bert import BERT, ELECTRA, RoBERTa
from .config import TransformerConfig
from .gpt import GPT, GPT2
from .loading import CheckpointError, KeyMap, LoadReport, read_state_dict
from .nezha import NEZHA
from .registry import build_transformer_model, model_names, register_model
from .saving import save_pretrained
from .roformer import RoFormer
from .seq2seq_bidirectional import BidirectionalDecoderSeq2Seq, CrossDirectionAttention, EncoderState, Seq2SeqOutput
from .t5 import T5
from .transformer import APPLICATIONS, Transformer, TransformerOutput
from .vae import CVAE, VAE, GeneratorAnchor, iwae_bound
from .vqvae import CodePrior, VQAutoencoder

__all__ = ["ALBERT", "BERT", "ELECTRA", "RoBERTa", "NEZHA", "RoFormer", "GPT", "GPT2", "T5", "Transformer",
           "TransformerOutput", "TransformerConfig", "CheckpointError", "KeyMap", "LoadReport", "read_state_dict",
           "build_transformer_model", "model_names", "register_model", "save_pretrained", "APPLICATIONS",
           "BidirectionalDecoderSeq2Seq", "CrossDirectionAttention", "EncoderState", "Seq2SeqOutput",
           "VAE", "CVAE", "GeneratorAnchor", "iwae_bound", "VQAutoencoder", "CodePrior"]
