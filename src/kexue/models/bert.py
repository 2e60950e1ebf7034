"""BERT (arXiv 1810.04805), RoBERTa (arXiv 1907.11692) and ELECTRA (arXiv 2003.10555): the same post-LN
encoder; they differ in key names, RoBERTa's padding-offset positions and ELECTRA's embedding projection.
Used throughout https://kexue.fm/archives/6736 (fine-tuning BERT) and bert4keras."""
from __future__ import annotations

import torch
from torch import Tensor

from .config import TransformerConfig
from .loading import KeyMap
from .registry import register_model
from .transformer import Transformer

__all__ = ["BERT", "RoBERTa", "ELECTRA", "bert_config_from_hf", "wb"]


def wb(hf: str, kx: str) -> list[tuple[str, str]]:
    """Weight and bias pairs of one linear / norm layer."""
    return [(f"{hf}.weight", f"{kx}.weight"), (f"{hf}.bias", f"{kx}.bias")]


def bert_config_from_hf(hf: dict) -> TransformerConfig:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type={hf['position_embedding_type']!r} is not supported; "
                         "expected 'absolute'")
    return TransformerConfig(
        model_type=hf.get("model_type", "bert"), vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"], hidden_act=hf.get("hidden_act", "gelu"),
        max_position=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-12), embedding_size=hf.get("embedding_size"),
        pad_token_id=hf.get("pad_token_id", 0), dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        tie_word_embeddings=hf.get("tie_word_embeddings", True), hf=hf)


def encoder_pairs(layer: str = "encoder.layer.{i}") -> list[tuple[str, str]]:
    """HF BERT-layout block keys <-> kexue `blocks.{i}`."""
    return (wb(f"{layer}.attention.self.query", "blocks.{i}.attn.q")
            + wb(f"{layer}.attention.self.key", "blocks.{i}.attn.k")
            + wb(f"{layer}.attention.self.value", "blocks.{i}.attn.v")
            + wb(f"{layer}.attention.output.dense", "blocks.{i}.attn.o")
            + wb(f"{layer}.attention.output.LayerNorm", "blocks.{i}.attn_norm")
            + wb(f"{layer}.intermediate.dense", "blocks.{i}.ffn.up")
            + wb(f"{layer}.output.dense", "blocks.{i}.ffn.down")
            + wb(f"{layer}.output.LayerNorm", "blocks.{i}.ffn_norm"))


def embedding_pairs(positions: bool = True) -> list[tuple[str, str]]:
    pairs = [("embeddings.word_embeddings.weight", "embeddings.word.weight"),
             ("embeddings.token_type_embeddings.weight", "embeddings.segment.weight")]
    if positions:
        pairs.append(("embeddings.position_embeddings.weight", "embeddings.position.weight"))
    return pairs + wb("embeddings.LayerNorm", "embeddings.norm")


def bert_keymap(cfg: TransformerConfig) -> KeyMap:
    pairs = (embedding_pairs() + encoder_pairs() + wb("pooler.dense", "pooler")
             + wb("cls.predictions.transform.dense", "mlm.dense") + wb("cls.predictions.transform.LayerNorm", "mlm.norm")
             + [("cls.predictions.bias", "mlm.bias"), ("cls.predictions.decoder.weight", "mlm.decoder")])
    ignore = (r"position_ids$", r"^cls\.seq_relationship\.", r"^cls\.predictions\.decoder\.bias$")
    if cfg.tie_word_embeddings:
        ignore += (r"^cls\.predictions\.decoder\.weight$",)
    return KeyMap(pairs, prefix="bert.", ignore=ignore, heads=("cls.",))



@register_model("bert", config_from_hf=bert_config_from_hf, keymap=bert_keymap)
class BERT(Transformer):
    """BERT: post-LN encoder, learned absolute positions, segment embeddings, pooler and tied MLM head."""


def roberta_keymap(cfg: TransformerConfig) -> KeyMap:
    pairs = (embedding_pairs() + encoder_pairs() + wb("pooler.dense", "pooler")
             + wb("lm_head.dense", "mlm.dense") + wb("lm_head.layer_norm", "mlm.norm")
             + [("lm_head.bias", "mlm.bias"), ("lm_head.decoder.weight", "mlm.decoder")])
    ignore = (r"position_ids$", r"^lm_head\.decoder\.bias$")
    if cfg.tie_word_embeddings:
        ignore += (r"^lm_head\.decoder\.weight$",)
    return KeyMap(pairs, prefix="roberta.", ignore=ignore, heads=("lm_head.",))


@register_model("roberta", config_from_hf=bert_config_from_hf, keymap=roberta_keymap,
                aliases=("xlm-roberta", "camembert"))
class RoBERTa(Transformer):
    """RoBERTa: BERT whose positions count real tokens from padding_idx + 1 (fairseq `make_positions`), so
    at most max_position - pad_token_id - 1 tokens fit."""

    def position_offset(self) -> int:
        return (self.config.pad_token_id or 0) + 1

    def default_positions(self, input_ids: Tensor | None, n: int, past: int, device: torch.device) -> Tensor:
        pad, start = self.config.pad_token_id, self.position_offset() + past
        if input_ids is None or pad is None:                                          # every token real
            return torch.arange(start, start + n, device=device)[None]              # [1, n]
        real = input_ids.ne(pad).long()
        return (real.cumsum(1) + past) * real + pad                                  # [B, n]


def electra_keymap(cfg: TransformerConfig) -> KeyMap:
    pairs = (embedding_pairs() + encoder_pairs() + wb("embeddings_project", "embeddings.project")
             + wb("generator_predictions.dense", "mlm.dense") + wb("generator_predictions.LayerNorm", "mlm.norm")
             + [("generator_lm_head.bias", "mlm.bias"), ("generator_lm_head.weight", "mlm.decoder")])
    ignore = (r"position_ids$", r"^discriminator_predictions\.")
    if cfg.tie_word_embeddings:
        ignore += (r"^generator_lm_head\.weight$",)
    return KeyMap(pairs, prefix="electra.", ignore=ignore,
                  heads=("generator_predictions.", "generator_lm_head.", "discriminator_predictions."))


@register_model("electra", config_from_hf=bert_config_from_hf, keymap=electra_keymap)
class ELECTRA(Transformer):
    """ELECTRA: BERT with embedding_size != hidden_size projected up; `with_mlm` is the generator's head."""
