"""RoFormer: BERT with rotary position embedding in every attention layer instead of an absolute position
table (https://kexue.fm/archives/8265, arXiv 2104.09864)."""
from __future__ import annotations

from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention
from ..nn.position import RotaryEmbedding, sinusoidal_table
from .bert import bert_config_from_hf, bert_keymap, embedding_pairs, encoder_pairs, wb
from .config import TransformerConfig
from .loading import KeyMap
from .registry import register_model
from .transformer import Transformer

__all__ = ["RoFormer"]


def roformer_config_from_hf(hf: dict) -> TransformerConfig:
    cfg = bert_config_from_hf({**hf, "position_embedding_type": "absolute"})
    return cfg.replace(position="rotary", rotary_value=hf.get("rotary_value", False))


def roformer_keymap(cfg: TransformerConfig) -> KeyMap:
    base = bert_keymap(cfg)
    pairs = (embedding_pairs(positions=False) + encoder_pairs() + wb("embeddings_project", "embeddings.project")
             + [(hf, kx) for hf, kx, _, _ in base.pairs if hf.startswith(("cls.", "pooler."))])
    return KeyMap(pairs, prefix="roformer.", ignore=tuple(p.pattern for p in base.ignore) + (r"embed_positions\.weight$",),
                  heads=("cls.",))


def roformer_convert_out(state: dict[str, Tensor], cfg: TransformerConfig) -> dict[str, Tensor]:
    """HF keeps the (fixed) sinusoidal table as a weight; write it so `transformers` finds it."""
    head_dim = cfg.head_dim or cfg.hidden_size // cfg.num_heads
    return {**state, "roformer.encoder.embed_positions.weight": sinusoidal_table(cfg.max_position, head_dim)}


@register_model("roformer", config_from_hf=roformer_config_from_hf, keymap=roformer_keymap,
                convert_out=roformer_convert_out)
class RoFormer(Transformer):
    """One RotaryEmbedding (a non-persistent table) shared by every layer's attention."""

    def build_attention(self, i: int) -> nn.Module:
        c = self.config
        if not hasattr(self, "_rotary"):
            head_dim = c.head_dim or c.hidden_size // c.num_heads
            self._rotary = RotaryEmbedding(c.max_position, head_dim, persistent=False)
        return MultiHeadAttention(c.hidden_size, c.num_heads, c.head_dim, bias=c.qkv_bias,
                                  dropout=c.attention_dropout, rotary=self._rotary, rotary_value=c.rotary_value,
                                  kernel=self.attention_kernel)
