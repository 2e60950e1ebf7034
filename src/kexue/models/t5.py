"""T5 (arXiv 1910.10683) and T5 1.1 / mT5 (gated-GELU feed-forward, untied LM head): pre-RMSNorm
encoder-decoder with bucketed relative position bias and unscaled dot-product attention.

`encode` runs the encoder once; `decode` runs the decoder, and with a `KVCache` keeps the self-attention
keys and the cross-attention keys of the encoder output (computed on the first cached call)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention
from ..nn.feedforward import FeedForward, activation
from ..nn.kv_cache import KVCache
from ..nn.position import T5RelativeBias
from .._validate import check_bool
from .config import TransformerConfig
from .inputs import ValueChecks, check_ids, check_mask, compute_dtype, type_name
from .loading import KeyMap
from .registry import register_model
from .seq2seq_decoding import EncoderDecoderDecoding
from .transformer import TransformerOutput, build_attention_bias, run_layers

__all__ = ["T5", "T5Block"]


def t5_config_from_hf(hf: dict) -> TransformerConfig:
    proj = hf.get("feed_forward_proj", "relu")
    gated = proj.startswith("gated-")
    act = proj[len("gated-"):] if gated else proj
    act = "gelu_new" if act == "gelu" and gated else act
    return TransformerConfig(
        model_type=hf.get("model_type", "t5"), vocab_size=hf["vocab_size"], hidden_size=hf["d_model"],
        num_layers=hf["num_layers"], num_heads=hf["num_heads"], intermediate_size=hf["d_ff"],
        head_dim=hf.get("d_kv", 64), hidden_act=act, max_position=0, type_vocab_size=0,
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6), pad_token_id=hf.get("pad_token_id", 0),
        dropout=hf.get("dropout_rate", 0.1), attention_dropout=0.0, norm_first=True, embedding_norm=False,
        final_norm=True, position="relative_t5", qkv_bias=False,
        # T5 1.1 / mT5 checkpoints say tie_word_embeddings=False (own lm_head, no output scaling); configs
        # written by transformers 5 keep tie=True and state the scaling in scale_decoder_outputs.
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        scale_logits=hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False),
        num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128), gated_ffn=gated,
        decoder_start_token_id=hf.get("decoder_start_token_id", 0), eos_token_id=hf.get("eos_token_id", 1), hf=hf)


def t5_keymap(cfg: TransformerConfig) -> KeyMap:
    pairs = [("shared.weight", "shared.weight"), ("lm_head.weight", "lm_head.weight"),
             ("encoder.final_layer_norm.weight", "encoder_norm.weight"),
             ("decoder.final_layer_norm.weight", "decoder_norm.weight"),
             ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "encoder_bias.embedding.weight"),
             ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "decoder_bias.embedding.weight")]
    ffn = {"wi_0": "gate", "wi_1": "up", "wo": "down"} if cfg.gated_ffn else {"wi": "up", "wo": "down"}
    for stack, layers in (("encoder", ["SelfAttention"]), ("decoder", ["SelfAttention", "EncDecAttention"])):
        names = {"SelfAttention": ("attn", "attn_norm"), "EncDecAttention": ("cross", "cross_norm")}
        for j, layer in enumerate(layers):
            mod, norm = names[layer]
            pre = f"{stack}.block.{{i}}.layer.{j}"
            pairs += [(f"{pre}.{layer}.{p}.weight", f"{stack}_blocks.{{i}}.{mod}.{p}.weight") for p in "qkvo"]
            pairs.append((f"{pre}.layer_norm.weight", f"{stack}_blocks.{{i}}.{norm}.weight"))
        pre = f"{stack}.block.{{i}}.layer.{len(layers)}"
        pairs += [(f"{pre}.DenseReluDense.{hf}.weight", f"{stack}_blocks.{{i}}.ffn.{kx}.weight") for hf, kx in ffn.items()]
        pairs.append((f"{pre}.layer_norm.weight", f"{stack}_blocks.{{i}}.ffn_norm.weight"))
    ignore = (r"^(encoder|decoder)\.embed_tokens\.weight$",)
    if cfg.tie_word_embeddings:
        ignore += (r"^lm_head\.weight$",)
    return KeyMap(pairs, ignore=ignore)


class T5Block(nn.Module):
    """x += attn(norm(x)); [x += cross(norm(x), context)]; x += ffn(norm(x))."""

    def __init__(self, cfg: TransformerConfig, cross: bool):
        super().__init__()
        C, H, D, eps = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.layer_norm_eps
        attn = lambda: MultiHeadAttention(C, H, D, bias=False, scale=1.0)   # noqa: E731
        self.attn, self.attn_norm = attn(), nn.RMSNorm(C, eps=eps)
        self.cross, self.cross_norm = (attn(), nn.RMSNorm(C, eps=eps)) if cross else (None, None)
        self.ffn = FeedForward(C, cfg.intermediate_size, activation(cfg.hidden_act), bias=False, gated=cfg.gated_ffn)
        self.ffn_norm = nn.RMSNorm(C, eps=eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, bias: Tensor | None, empty: Tensor | None, context: Tensor | None = None,
                cross_bias: Tensor | None = None, cross_empty: Tensor | None = None, cache: KVCache | None = None,
                layer_idx: int = 0, output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        h, w = self.attn(self.attn_norm(x), attention_bias=bias, empty_rows=empty, cache=cache, layer_idx=layer_idx,
                         output_attentions=output_attentions)
        x = x + self.dropout(h)
        if self.cross is not None:
            h, _ = self.cross(self.cross_norm(x), context=context, attention_bias=cross_bias, empty_rows=cross_empty,
                              cache=cache, layer_idx=layer_idx)
            x = x + self.dropout(h)
        return x + self.dropout(self.ffn(self.ffn_norm(x))), w


@register_model("t5", config_from_hf=t5_config_from_hf, keymap=t5_keymap, aliases=("mt5",))
class T5(EncoderDecoderDecoding, nn.Module):
    """Encoder-decoder T5; `model(input_ids, decoder_input_ids=...)` returns `.logits` and both stacks' states."""

    def __init__(self, config: TransformerConfig, application: str | None = None, with_pool: bool = False,
                 with_mlm: bool = False):
        super().__init__()
        check_bool("with_pool", with_pool)
        check_bool("with_mlm", with_mlm)
        if application not in (None, "seq2seq"):
            raise ValueError(f"application={application!r} is not supported by T5; it is an encoder-decoder "
                             "(leave application unset)")
        if with_pool:
            raise ValueError("with_pool=True is not supported by T5")
        c = self.config = config
        self.application = "seq2seq"
        self.shared = nn.Embedding(c.vocab_size, c.hidden_size)
        self.encoder_bias = T5RelativeBias(c.relative_buckets, c.relative_max_distance, c.num_heads, bidirectional=True)
        self.decoder_bias = T5RelativeBias(c.relative_buckets, c.relative_max_distance, c.num_heads, bidirectional=False)
        self.encoder_blocks = nn.ModuleList([T5Block(c, cross=False) for _ in range(c.num_layers)])
        self.decoder_blocks = nn.ModuleList([T5Block(c, cross=True) for _ in range(c.num_decoder_layers)])
        self.encoder_norm, self.decoder_norm = nn.RMSNorm(c.hidden_size, eps=c.layer_norm_eps), nn.RMSNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.lm_head = None if c.tie_word_embeddings else nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.dropout = nn.Dropout(c.dropout)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=c.hidden_size ** -0.5)

    @staticmethod
    def hf_config_updates(cfg: TransformerConfig) -> dict:
        act = "gelu" if cfg.gated_ffn and cfg.hidden_act == "gelu_new" else cfg.hidden_act
        return {"model_type": cfg.model_type, "vocab_size": cfg.vocab_size, "d_model": cfg.hidden_size,
                "d_kv": cfg.head_dim, "d_ff": cfg.intermediate_size, "num_heads": cfg.num_heads,
                "num_layers": cfg.num_layers, "num_decoder_layers": cfg.num_decoder_layers,
                "feed_forward_proj": ("gated-" if cfg.gated_ffn else "") + act,
                "relative_attention_num_buckets": cfg.relative_buckets,
                "relative_attention_max_distance": cfg.relative_max_distance,
                "layer_norm_epsilon": cfg.layer_norm_eps, "dropout_rate": cfg.dropout,
                "pad_token_id": cfg.pad_token_id, "eos_token_id": cfg.eos_token_id,
                "decoder_start_token_id": cfg.decoder_start_token_id,
                "tie_word_embeddings": cfg.tie_word_embeddings, "scale_decoder_outputs": cfg.scale_logits}

    def make_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        p = self.shared.weight
        return KVCache(self.config.num_decoder_layers, batch_size, self.config.num_heads, max_len,
                       self.config.head_dim, dtype=dtype or p.dtype, device=p.device)

    def default_attention_mask(self, input_ids: Tensor) -> Tensor | None:
        """The encoder mask used when none is given: tokens equal to `config.pad_token_id` are padding
        (bert4keras masks token 0 the same way). The decoder's own tokens are always real (its start token is
        the pad id)."""
        pad = self.config.pad_token_id
        return None if pad is None else input_ids.ne(pad)                            # [B, n] bool

    def _check_ids(self, name: str, ids: Tensor, checks: ValueChecks) -> tuple[int, int]:
        B, n = check_ids(name, ids)
        checks.in_range(name, ids, 0, self.config.vocab_size, "the vocabulary")
        return B, n

    def _check_mask(self, name: str, mask: Tensor | None, shape: tuple[int, int], device: torch.device,
                    checks: ValueChecks) -> None:
        if mask is not None:
            check_mask(name, mask, (shape,), device)
            checks.binary(name, mask)

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               output_hidden_states: bool = False) -> Tensor | tuple[Tensor, tuple[Tensor, ...]]:
        """input_ids [B, n] -> encoder output [B, n, C] (and every layer's state when asked).
        attention_mask [B, n] (bool or 0/1); without one the pad id is masked (`default_attention_mask`)."""
        check_bool("output_hidden_states", output_hidden_states)
        checks = ValueChecks()
        B, n = self._check_ids("input_ids", input_ids, checks)
        self._check_mask("attention_mask", attention_mask, (B, n), input_ids.device, checks)
        checks.run()
        if attention_mask is None:
            attention_mask = self.default_attention_mask(input_ids)
        pos = torch.arange(n, device=input_ids.device)
        bias, empty = build_attention_bias("encoder", B, n, attention_mask, None, None, input_ids.device,
                                     self.encoder_bias(pos, pos))
        step = lambda i, h: self.encoder_blocks[i](h, bias, empty, layer_idx=i)             # noqa: E731
        x, states, _ = run_layers(step, range(len(self.encoder_blocks)), self.apply_embeddings(input_ids),
                                  output_hidden_states=output_hidden_states)
        x = self.dropout(self.encoder_norm(x))
        if states is not None:
            states[-1] = x
        return (x, tuple(states)) if output_hidden_states else x

    def apply_embeddings(self, ids: Tensor) -> Tensor:
        """The embedding stage of both stacks: the shared table, then dropout -> [B, n, C]."""
        return self.dropout(self.shared(ids))

    def decode(self, decoder_input_ids: Tensor, encoder_hidden_states: Tensor,
               encoder_attention_mask: Tensor | None = None, decoder_attention_mask: Tensor | None = None,
               cache: KVCache | None = None, output_hidden_states: bool = False) -> TransformerOutput:
        """decoder_input_ids [B, t] (the new tokens when a cache is given) -> logits [B, t, V].
        encoder_hidden_states [B, S, C]; encoder_attention_mask [B, S] (None: every encoder position is real,
        so pass the mask `encode` used when the source is padded); decoder_attention_mask [B, t]."""
        checks = ValueChecks()
        B, t = self._check_ids("decoder_input_ids", decoder_input_ids, checks)
        device = decoder_input_ids.device
        C = self.config.hidden_size
        if not isinstance(encoder_hidden_states, Tensor) or not encoder_hidden_states.is_floating_point() \
                or encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[0] != B \
                or encoder_hidden_states.shape[2] != C or encoder_hidden_states.shape[1] == 0:
            got = (f"{encoder_hidden_states.dtype} {tuple(encoder_hidden_states.shape)}"
                   if isinstance(encoder_hidden_states, Tensor) else type_name(encoder_hidden_states))
            raise ValueError(f"encoder_hidden_states must be a float tensor [B, S, C] = [{B}, S >= 1, {C}] "
                             f"(B of decoder_input_ids), got {got}")
        S = encoder_hidden_states.shape[1]
        self._check_mask("encoder_attention_mask", encoder_attention_mask, (B, S), device, checks)
        self._check_mask("decoder_attention_mask", decoder_attention_mask, (B, t), device, checks)
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache must be a KVCache made by model.make_cache(batch_size, max_len), "
                                f"got {type_name(cache)}")
            cache.check_fits(batch_size=B, num_layers=self.config.num_decoder_layers,
                             num_heads=self.config.num_heads, head_dim=self.config.head_dim,
                             dtype=compute_dtype(self.shared.weight, device), device=device)
            cache.check_room(t)
            held = cache.cross_length()
            if held is not None and held != S:
                raise ValueError(f"cache holds the cross-attention keys of an encoder output of length "
                                 f"{held}, but encoder_hidden_states has length {S}; use a fresh "
                                 "cache (cache.reset()) for a new source")
        check_bool("output_hidden_states", output_hidden_states)
        checks.run()
        if cache is not None:                           # keys are every slot of the static cache
            qpos, kpos = cache.cache_pos + torch.arange(t, device=device), torch.arange(cache.max_len, device=device)
        else:
            qpos = kpos = torch.arange(t, device=device)
        bias, empty = build_attention_bias("lm", B, t, decoder_attention_mask, None, cache, device,
                                     self.decoder_bias(qpos, kpos))
        cross_bias, cross_empty = build_attention_bias("encoder", B, t, encoder_attention_mask, None, None, device)
        step = lambda i, h: self.decoder_blocks[i](h, bias, empty, context=encoder_hidden_states,  # noqa: E731
                                                   cross_bias=cross_bias, cross_empty=cross_empty, cache=cache,
                                                   layer_idx=i)
        x, states, _ = run_layers(step, range(len(self.decoder_blocks)), self.apply_embeddings(decoder_input_ids),
                                  output_hidden_states=output_hidden_states)
        if cache is not None:
            cache.advance(t)
        x = self.dropout(self.decoder_norm(x))
        if states is not None:
            states[-1] = x
        if self.config.scale_logits:
            x = x * self.config.hidden_size ** -0.5
        logits = self.lm_head(x) if self.lm_head is not None else nn.functional.linear(x, self.shared.weight)
        return TransformerOutput(last_hidden_state=x, logits=logits,
                                 hidden_states=tuple(states) if states is not None else None,
                                 encoder_last_hidden_state=encoder_hidden_states)

    def forward(self, input_ids: Tensor, decoder_input_ids: Tensor, attention_mask: Tensor | None = None,
                decoder_attention_mask: Tensor | None = None, output_hidden_states: bool = False) -> TransformerOutput:
        """input_ids [B, n], decoder_input_ids [B, t]; without attention_mask the encoder masks the pad id
        (and the decoder's cross-attention with it); the decoder's own tokens are real unless
        decoder_attention_mask [B, t] says otherwise."""
        check_bool("output_hidden_states", output_hidden_states)
        check_ids("input_ids", input_ids)
        check_ids("decoder_input_ids", decoder_input_ids)
        if decoder_input_ids.shape[0] != input_ids.shape[0]:
            raise ValueError(f"decoder_input_ids has batch size {decoder_input_ids.shape[0]} but input_ids has "
                             f"{input_ids.shape[0]}; expected the same B")
        if attention_mask is None:
            attention_mask = self.default_attention_mask(input_ids)
        enc = self.encode(input_ids, attention_mask, output_hidden_states=output_hidden_states)
        enc, enc_states = enc if output_hidden_states else (enc, None)
        out = self.decode(decoder_input_ids, enc, attention_mask, decoder_attention_mask,
                          output_hidden_states=output_hidden_states)
        out.encoder_hidden_states = enc_states
        return out

    def save_pretrained(self, directory: str, allow_nonfinite: bool = False) -> None:
        """HF-format config.json + model.safetensors that `transformers` loads back; NaN/inf weights are
        refused unless `allow_nonfinite=True`."""
        from .saving import save_pretrained
        save_pretrained(self, directory, allow_nonfinite=allow_nonfinite)
