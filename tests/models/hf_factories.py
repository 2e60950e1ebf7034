"""Tiny random Hugging Face models of each family, saved with `save_pretrained` (the reference side)."""
from __future__ import annotations

import torch
import transformers as T

SMALL = dict(vocab_size=101, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=64)


def hf_model(family: str, head: str = "mlm", **kw):
    """Build an HF model of `family` in eval mode. head: 'base' | 'mlm' | 'pretraining'."""
    torch.manual_seed(0)
    if family == "bert":
        cfg = T.BertConfig(**{**SMALL, **kw})
        cls = {"base": T.BertModel, "mlm": T.BertForMaskedLM, "pretraining": T.BertForPreTraining}[head]
    elif family == "roberta":
        cfg = T.RobertaConfig(**{**SMALL, "max_position_embeddings": 66, "pad_token_id": 1, "type_vocab_size": 1, **kw})
        cls = {"base": T.RobertaModel, "mlm": T.RobertaForMaskedLM}[head]
    elif family == "albert":
        cfg = T.AlbertConfig(**{**SMALL, "embedding_size": 16, **kw})
        cls = {"base": T.AlbertModel, "mlm": T.AlbertForMaskedLM}[head]
    elif family == "electra":
        cfg = T.ElectraConfig(**{**SMALL, "embedding_size": 16, **kw})
        cls = {"base": T.ElectraModel, "mlm": T.ElectraForMaskedLM}[head]
    elif family == "roformer":
        cfg = T.RoFormerConfig(**{**SMALL, **kw})
        cls = {"base": T.RoFormerModel, "mlm": T.RoFormerForMaskedLM}[head]
    elif family == "gpt2":
        cfg = T.GPT2Config(**{**dict(vocab_size=101, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0), **kw})
        cls = {"base": T.GPT2Model, "mlm": T.GPT2LMHeadModel}[head]
    elif family == "gpt":
        cfg = T.OpenAIGPTConfig(**{**dict(vocab_size=101, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0), **kw})
        cls = {"base": T.OpenAIGPTModel, "mlm": T.OpenAIGPTLMHeadModel}[head]
    elif family == "t5":
        cfg = T.T5Config(**{**dict(vocab_size=101, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1), **kw})
        cls = T.T5ForConditionalGeneration
    else:
        raise ValueError(family)
    return cls(cfg).eval()


def save(model, path) -> str:
    model.save_pretrained(str(path))
    return str(path)
