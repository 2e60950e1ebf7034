"""ALBERT (arXiv 1909.11942): factorized embeddings (E != C, projected up) and cross-layer parameter
sharing: `num_hidden_groups` blocks serve all layers (1 = fully shared). Used for the IG demo of
https://kexue.fm/archives/7533 (albert_small_zh)."""
from __future__ import annotations

from .bert import bert_config_from_hf, embedding_pairs, wb
from .config import TransformerConfig
from .loading import KeyMap
from .registry import register_model
from .transformer import Transformer

__all__ = ["ALBERT"]


def albert_config_from_hf(hf: dict) -> TransformerConfig:
    if hf.get("inner_group_num", 1) != 1:
        raise ValueError(f"inner_group_num={hf['inner_group_num']} is not supported; expected 1")
    cfg = bert_config_from_hf({"hidden_act": "gelu_new", **hf})
    return cfg.replace(embedding_size=hf.get("embedding_size", 128), num_hidden_groups=hf.get("num_hidden_groups", 1),
                       dropout=hf.get("hidden_dropout_prob", 0.0),
                       attention_dropout=hf.get("attention_probs_dropout_prob", 0.0))


def albert_keymap(cfg: TransformerConfig) -> KeyMap:
    layer = "encoder.albert_layer_groups.{i}.albert_layers.0"
    pairs = (embedding_pairs() + wb("encoder.embedding_hidden_mapping_in", "embeddings.project")
             + wb(f"{layer}.attention.query", "blocks.{i}.attn.q") + wb(f"{layer}.attention.key", "blocks.{i}.attn.k")
             + wb(f"{layer}.attention.value", "blocks.{i}.attn.v") + wb(f"{layer}.attention.dense", "blocks.{i}.attn.o")
             + wb(f"{layer}.attention.LayerNorm", "blocks.{i}.attn_norm") + wb(f"{layer}.ffn", "blocks.{i}.ffn.up")
             + wb(f"{layer}.ffn_output", "blocks.{i}.ffn.down")
             + wb(f"{layer}.full_layer_layer_norm", "blocks.{i}.ffn_norm")
             + wb("pooler", "pooler") + wb("predictions.dense", "mlm.dense") + wb("predictions.LayerNorm", "mlm.norm")
             + [("predictions.bias", "mlm.bias"), ("predictions.decoder.weight", "mlm.decoder")])
    ignore = (r"position_ids$", r"^sop_classifier\.", r"^predictions\.decoder\.bias$")
    if cfg.tie_word_embeddings:
        ignore += (r"^predictions\.decoder\.weight$",)
    return KeyMap(pairs, prefix="albert.", ignore=ignore, heads=("predictions.", "sop_classifier."))


@register_model("albert", config_from_hf=albert_config_from_hf, keymap=albert_keymap)
class ALBERT(Transformer):
    """ALBERT: layer i runs block `i * num_hidden_groups // num_layers` (see Transformer.layer)."""
