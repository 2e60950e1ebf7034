"""The single-stack Transformer every encoder / decoder-only family builds on (BERT, RoBERTa, ALBERT,
ELECTRA, NEZHA, RoFormer, GPT, GPT-2), with bert4keras's application modes:

- ``encoder``: bidirectional attention with a key padding mask;
- ``lm``: causal (lower-triangular) mask, also on top of a bidirectionally pretrained checkpoint;
- ``unilm``: allowed(i, j) iff cumsum(seg)[j] <= cumsum(seg)[i], intersected with padding
  (UniLM seq2seq, https://kexue.fm/archives/6933).

Padding: an explicit `attention_mask` (bool or 0/1) always decides. Without one, encoder and UniLM models mask
every token equal to `config.pad_token_id` (bert4keras masks token 0 the same way), while causal LMs and
`inputs_embeds` treat every token as real (`Transformer.default_attention_mask`).

Template method as in bert4keras: a family subclass overrides only what differs (`build_attention`,
`default_positions`, ...). Shapes: B batch, n new tokens, L cached tokens, m = L + n keys, C hidden.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..nn.attention import MultiHeadAttention, mask_to_bias
from ..nn.feedforward import FeedForward, activation
from ..nn.kv_cache import KVCache
from .._validate import check_bool, check_int
from .config import TransformerConfig
from .lm_decoding import TransformerDecoding
from .inputs import (ValueChecks, check_bias, check_embeds, check_ids, check_mask, check_same_shape,
                     compute_dtype, type_name)

__all__ = ["Transformer", "TransformerOutput", "TransformerBlock", "Embeddings", "MLMHead", "APPLICATIONS",
           "build_attention_bias", "run_layers"]

APPLICATIONS = ("encoder", "lm", "unilm")


@dataclass
class TransformerOutput:
    last_hidden_state: Tensor                       # [B, n, C]
    pooled: Tensor | None = None                    # [B, C]
    logits: Tensor | None = None                    # [B, n, V]
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings + one per layer
    attentions: tuple[Tensor, ...] | None = None    # [B, H, n, m] per layer
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None

    def __getitem__(self, key: str | int | slice) -> Any:
        """out["logits"] by name; out[0] / out[:2] over the fields that are set, as transformers' ModelOutput."""
        if isinstance(key, str):
            return getattr(self, key)
        if isinstance(key, (int, slice)) and not isinstance(key, bool):
            return tuple(v for v in vars(self).values() if v is not None)[key]
        raise TypeError(f"TransformerOutput indices must be int, slice or str, got {type(key).__name__}")


class Embeddings(nn.Module):
    """word + position + segment embeddings, then LayerNorm, dropout and an optional E -> C projection."""

    def __init__(self, cfg: TransformerConfig, segment_via_word: bool = False):
        super().__init__()
        E = cfg.input_embedding_size
        self.word = nn.Embedding(cfg.vocab_size, E, padding_idx=None)
        self.position = nn.Embedding(cfg.max_position, E) if cfg.position == "learned" and cfg.max_position else None
        self.segment = nn.Embedding(cfg.type_vocab_size, E) if cfg.type_vocab_size and not segment_via_word else None
        self.segment_via_word = segment_via_word
        self.norm = nn.LayerNorm(E, eps=cfg.layer_norm_eps) if cfg.embedding_norm else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(E, cfg.hidden_size) if E != cfg.hidden_size else None

    def forward(self, input_ids: Tensor | None, segment_ids: Tensor | None, position_ids: Tensor,
                inputs_embeds: Tensor | None = None) -> Tensor:
        x = self.word(input_ids) if inputs_embeds is None else inputs_embeds          # [B, n, E]
        if self.position is not None:
            x = x + self.position(position_ids)
        if segment_ids is not None and self.segment_via_word:
            x = x + self.word(segment_ids)
        elif self.segment is not None:
            x = x + (self.segment(segment_ids) if segment_ids is not None else self.segment.weight[0])
        if self.norm is not None:
            x = self.norm(x)
        x = self.dropout(x)
        return self.project(x) if self.project is not None else x                    # [B, n, C]


class TransformerBlock(nn.Module):
    """Attention + feed-forward with residuals; post-LN (BERT, GPT) or pre-LN (GPT-2)."""

    def __init__(self, attn: nn.Module, ffn: nn.Module, attn_norm: nn.Module, ffn_norm: nn.Module,
                 norm_first: bool, dropout: float):
        super().__init__()
        self.attn, self.ffn, self.attn_norm, self.ffn_norm = attn, ffn, attn_norm, ffn_norm
        self.norm_first = norm_first
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, attention_bias: Tensor | None = None, empty_rows: Tensor | None = None,
                positions: Tensor | None = None, cache: KVCache | None = None, layer_idx: int = 0,
                output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        kw = dict(attention_bias=attention_bias, empty_rows=empty_rows, positions=positions, cache=cache,
                  layer_idx=layer_idx, output_attentions=output_attentions)
        if self.norm_first:
            h, w = self.attn(self.attn_norm(x), **kw)
            x = x + self.dropout(h)
            return x + self.dropout(self.ffn(self.ffn_norm(x))), w
        h, w = self.attn(x, **kw)
        x = self.attn_norm(x + self.dropout(h))
        return self.ffn_norm(x + self.dropout(self.ffn(x))), w


class MLMHead(nn.Module):
    """Masked-LM / LM head: optional transform (dense C -> E, act, LayerNorm), then the output projection
    tied to the token embedding (or its own weight), with an optional bias."""

    def __init__(self, cfg: TransformerConfig, word: nn.Embedding, transform: bool = True, bias: bool = True,
                 tied: bool = True):
        super().__init__()
        E = cfg.input_embedding_size
        self.dense = nn.Linear(cfg.hidden_size, E) if transform else None
        self.norm = nn.LayerNorm(E, eps=cfg.layer_norm_eps) if transform else None
        self.act = activation(cfg.hidden_act)
        self.word = [word]                                   # a list, so the tied weight is not registered twice
        self.decoder = None if tied else nn.Parameter(torch.empty(cfg.vocab_size, E).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if self.dense is not None:
            x = self.norm(self.act(self.dense(x)))                                   # [B, n, E]
        weight = self.word[0].weight if self.decoder is None else self.decoder
        return nn.functional.linear(x, weight, self.bias)                            # [B, n, V]


def build_attention_bias(application: str, B: int, n: int, attention_mask: Tensor | None, segment_ids: Tensor | None,
                   cache: KVCache | None, device: torch.device,
                   extra_bias: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
    """The application mode's mask as an additive bias broadcastable to [B, H, n, m], plus the flag of
    query rows that may see no key [B, 1, n, 1] (None when every row sees something).

    attention_mask: [B, n] padding (1 = real) or a bool [B, n, m] mask; ranks implement lm / unilm:
    query i sees key j iff rank[j] <= rank[i] (rank = position for lm, cumsum(segment_ids) for unilm)."""
    past = cache.cache_pos if cache is not None else 0                              # a tensor with a cache
    user = attention_mask.bool() if attention_mask is not None and attention_mask.dim() == 3 else None
    valid = attention_mask.bool() if attention_mask is not None and attention_mask.dim() == 2 else None
    if application == "lm":
        rank = (past + torch.arange(n, device=device)).expand(B, n)                  # [B, n]
    elif application == "unilm":
        last = cache.last_rank() if cache is not None else torch.zeros(B, dtype=torch.long, device=device)
        rank = last[:, None] + segment_ids.long().cumsum(1)                          # [B, n]
    else:
        rank = None
    key_rank = rank
    if cache is not None:
        new_valid = valid if valid is not None else torch.ones(B, n, dtype=torch.bool, device=device)
        new_rank = rank if rank is not None else torch.zeros(B, n, dtype=torch.long, device=device)
        valid, key_rank = cache.write_masks(new_valid, new_rank)                     # [B, S]: every slot
        if user is not None:                                                          # [B, n, m] -> [B, n, S]
            user = torch.nn.functional.pad(user, (0, cache.max_len - user.shape[-1]))
    allowed = None if valid is None else valid[:, None, None, :]                     # [B, 1, 1, m]
    # one new token (a decoding step): its rank is the largest so far, so only padding can hide a key
    if rank is not None and not (cache is not None and n == 1):
        order = key_rank[:, None, None, :] <= rank[:, None, :, None]                 # [B, 1, n, m]
        allowed = order if allowed is None else allowed & order
    if user is not None:
        allowed = user[:, None] if allowed is None else allowed & user[:, None]
    if allowed is None:
        return extra_bias, None
    any_key = allowed.any(-1, keepdim=True)                                           # [B, 1, n|1, 1]
    # static shapes, no host sync (a cached step always masks unfilled slots; under torch.compile the
    # no-padding shortcut below would break the graph, and a zero bias gives the same result)
    if cache is not None or torch.compiler.is_compiling():
        bias = mask_to_bias(allowed)
        return (bias if extra_bias is None else bias + extra_bias), ~any_key
    everything, every_row = torch.stack([allowed.all(), any_key.all()]).tolist()     # one host sync
    if everything:                                                                    # no padding: no mask
        return extra_bias, None
    bias = mask_to_bias(allowed)
    if extra_bias is not None:
        bias = bias + extra_bias
    return bias, (None if every_row else ~any_key)


def run_layers(step: Callable[[int, Tensor], tuple[Tensor, Tensor | None]], layers: Iterable[int], x: Tensor, *,
               output_hidden_states: bool = False,
               output_attentions: bool = False) -> tuple[Tensor, list[Tensor] | None, list | None]:
    """The main-layers stage shared by every stack (Transformer, T5's encoder and decoder): x [B, n, C] through
    `step(i, x) -> (x, weights)` for each layer index i -> (x, [x_in, then one state per layer] or None,
    [weights per layer] or None)."""
    hidden, attns = [x] if output_hidden_states else None, [] if output_attentions else None
    for i in layers:
        x, w = step(i, x)
        if hidden is not None:
            hidden.append(x)
        if attns is not None:
            attns.append(w)
    return x, hidden, attns


class Transformer(TransformerDecoding, nn.Module):
    """Encoder / decoder-only Transformer with heads and application modes (see module docstring)."""

    segment_via_word = False     # GPT-style models embed segment ids with the word table
    mlm_transform = True         # BERT-style MLM head has dense + LayerNorm before the decoder
    mlm_bias = True
    # the attention kernel every layer is built with (see kexue.nn.attention): "sdpa", "eager", or a function
    # with SDPA's signature, e.g. staticmethod(functools.partial(sparse_attention, pattern="local", window=64))
    attention_kernel: Any = "sdpa"

    def __init__(self, config: TransformerConfig, application: str = "encoder", with_pool: bool = False,
                 with_mlm: bool = False):
        super().__init__()
        check_bool("with_pool", with_pool)
        check_bool("with_mlm", with_mlm)
        if application not in APPLICATIONS:
            raise ValueError(f"application={application!r} is not supported; expected one of {APPLICATIONS}")
        self.config, self.application = config, application
        self.embeddings = Embeddings(config, self.segment_via_word)
        groups = config.num_hidden_groups or config.num_layers
        if groups < 1 or config.num_layers % groups:
            raise ValueError(f"num_hidden_groups={groups} must divide num_layers={config.num_layers}")
        self.blocks = nn.ModuleList([self.build_block(i) for i in range(groups)])
        self.layer_map = [i * groups // config.num_layers for i in range(config.num_layers)]
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.final_norm else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if with_pool else None
        self.mlm = MLMHead(config, self.embeddings.word, self.mlm_transform, self.mlm_bias,
                           tied=config.tie_word_embeddings) if with_mlm else None
        self.apply(self._init_weights)

    # ---- construction hooks -------------------------------------------------------------------------
    def build_attention(self, i: int) -> nn.Module:
        c = self.config
        return MultiHeadAttention(c.hidden_size, c.num_heads, c.head_dim, bias=c.qkv_bias,
                                  dropout=c.attention_dropout, kernel=self.attention_kernel)

    def build_block(self, i: int) -> TransformerBlock:
        c = self.config
        ffn = FeedForward(c.hidden_size, c.intermediate_size, activation(c.hidden_act), dropout=0.0)
        norm = lambda: nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)   # noqa: E731
        return TransformerBlock(self.build_attention(i), ffn, norm(), norm(), c.norm_first, c.dropout)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # ---- structured access --------------------------------------------------------------------------
    def layer(self, i: int) -> TransformerBlock:
        """The block applied as layer i (ALBERT shares one block between layers)."""
        return self.blocks[self.layer_map[i]]

    @property
    def num_layers(self) -> int:
        return len(self.layer_map)

    def default_positions(self, input_ids: Tensor | None, n: int, past: int, device: torch.device) -> Tensor:
        return torch.arange(past, past + n, device=device)[None]                    # [1, n]

    def embed(self, input_ids: Tensor | None = None, segment_ids: Tensor | None = None,
              position_ids: Tensor | None = None, inputs_embeds: Tensor | None = None) -> Tensor:
        """The embedding output [B, n, C] (integrated gradients and adversarial training hook here)."""
        self.check_inputs(input_ids, segment_ids, None, inputs_embeds, 0, position_ids, embedding_only=True)
        return self.apply_embeddings(input_ids, segment_ids, position_ids, inputs_embeds)

    def make_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None) -> KVCache:
        """A pre-allocated K/V cache for incremental decoding (`application` "lm" or "unilm")."""
        attn = self.blocks[0].attn
        p = next(self.parameters())
        return KVCache(self.num_layers, batch_size, attn.num_heads, max_len, attn.head_dim,
                       dtype=dtype or p.dtype, device=p.device)

    # ---- inputs -------------------------------------------------------------------------------------
    def position_table_size(self) -> int | None:
        """Rows of the table that position ids index (learned or rotary); None when positions are relative."""
        c = self.config
        return c.max_position if self.embeddings.position is not None or c.position == "rotary" else None

    def position_offset(self) -> int:
        """The default position of the first token (RoBERTa counts from pad_token_id + 1)."""
        return 0

    def max_length(self) -> int | None:
        """How many tokens (cached + new) the default positions can number; None: no limit from positions."""
        table = self.position_table_size()
        return None if table is None else table - self.position_offset()

    def default_attention_mask(self, input_ids: Tensor | None) -> Tensor | None:
        """The mask used when none is given: encoder and UniLM models mask the configured pad id (as
        bert4keras masks token 0); causal LMs, models without a pad id and inputs_embeds see every token."""
        pad = self.config.pad_token_id
        if input_ids is None or pad is None or self.application == "lm":
            return None
        return input_ids.ne(pad)                                                     # [B, n] bool

    def check_inputs(self, input_ids: Tensor | None, segment_ids: Tensor | None, attention_mask: Tensor | None,
                     inputs_embeds: Tensor | None, past: int = 0, position_ids: Tensor | None = None,
                     cache: KVCache | None = None, attention_bias: Tensor | None = None,
                     embedding_only: bool = False) -> tuple[int, int]:
        """Every input argument against the model, before anything is computed -> (B, n). Errors name the
        argument, the bad value and what was expected (`embedding_only`: for `embed`, no attention mask)."""
        c = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        checks = ValueChecks()
        if input_ids is not None:
            B, n = check_ids("input_ids", input_ids)
            checks.in_range("input_ids", input_ids, 0, c.vocab_size, "the vocabulary")
            device = input_ids.device
        else:
            B, n = check_embeds("inputs_embeds", inputs_embeds, c.input_embedding_size)
            device = inputs_embeds.device
        if cache is not None:
            self.check_cache(cache, B, n, device)
            past = cache.length
        table = self.position_table_size()
        if position_ids is not None:
            check_same_shape("position_ids", position_ids, (B, n), device)
            if table is not None:
                checks.in_range("position_ids", position_ids, 0, table, "the position table")
        elif table is not None and past + n > self.max_length():
            offset = self.position_offset()
            why = (f" less the first {offset} positions (they start at pad_token_id + 1 = {offset})"
                   if offset else "")
            held = f" ({past} cached + {n} in input_ids)" if past else " of input_ids"
            raise ValueError(f"sequence length {past + n}{held} exceeds the position table max_position={table}"
                             f"{why}: at most {self.max_length()} tokens fit")
        if segment_ids is not None:
            check_same_shape("segment_ids", segment_ids, (B, n), device)
            if self.segment_via_word:
                checks.in_range("segment_ids", segment_ids, 0, c.vocab_size,
                                "the vocabulary (segment ids are embedded with the word table)")
            elif self.embeddings.segment is not None:
                checks.in_range("segment_ids", segment_ids, 0, c.type_vocab_size, "the segment table")
            elif self.application == "unilm":
                checks.in_range("segment_ids", segment_ids, 0, 2, "the UniLM segments (0 = source, 1 = target)")
            else:
                raise ValueError("segment_ids were given but this model has no segment embedding "
                                 f"(type_vocab_size={c.type_vocab_size}); leave segment_ids unset")
        elif self.application == "unilm" and not embedding_only:
            raise ValueError("application='unilm' needs segment_ids (0 = source, 1 = target)")
        if attention_mask is not None:
            check_mask("attention_mask", attention_mask, ((B, n), (B, n, past + n)), device)
            checks.binary("attention_mask", attention_mask)
        if attention_bias is not None:
            check_bias("attention_bias", attention_bias, (B, self.blocks[0].attn.num_heads, n, past + n))
        checks.run()
        return B, n

    def check_cache(self, cache: Any, B: int, n: int, device: torch.device) -> None:
        """The cache fits this model and input: a KVCache (lm / unilm only) made for this batch, these
        layers and heads, on this device, in the dtype attention computes in, with room for n more keys."""
        if not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache made by model.make_cache(batch_size, max_len), "
                            f"got {type_name(cache)}")
        if self.application == "encoder":
            raise ValueError("cache is for incremental decoding with application 'lm' or 'unilm'; an encoder "
                             "sees every token at once (build the model with application='lm' or 'unilm')")
        attn = self.blocks[0].attn
        cache.check_fits(batch_size=B, num_layers=self.num_layers, num_heads=attn.num_heads,
                         head_dim=attn.head_dim, dtype=compute_dtype(attn.q.weight, device), device=device)
        cache.check_room(n)

    # ---- forward: named stages (bert4keras's apply_embeddings / apply_main_layers / apply_final_layers) ----
    # forward = check_inputs -> apply_embeddings -> attention_bias -> apply_main_layers -> apply_final_layers.
    # The stages do not check their inputs (forward, `embed` and TheseusModel check first); a subclass or a
    # wrapper (TheseusModel, SequenceClassifier) changes or reuses one stage without copying the others.
    def apply_embeddings(self, input_ids: Tensor | None, segment_ids: Tensor | None = None,
                         position_ids: Tensor | None = None, inputs_embeds: Tensor | None = None,
                         past: int | Tensor = 0) -> Tensor:
        """Stage 1: word + position + segment embeddings -> x [B, n, C]; position_ids None: the default
        positions after `past` cached tokens."""
        if position_ids is None:
            ref = input_ids if input_ids is not None else inputs_embeds
            position_ids = self.default_positions(input_ids, ref.shape[1], past, ref.device)
        return self.embeddings(input_ids, segment_ids, position_ids, inputs_embeds)

    def attention_bias(self, attention_mask: Tensor | None, segment_ids: Tensor | None = None, *,
                       batch_size: int, length: int, device: torch.device, cache: KVCache | None = None,
                       extra_bias: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
        """Stage 2: this model's application mask (encoder / lm / unilm) with the padding mask as one additive
        bias broadcastable to [B, H, n, m], and the empty-row flag [B, 1, n, 1] (see `build_attention_bias`)."""
        return build_attention_bias(self.application, batch_size, length, attention_mask, segment_ids, cache,
                                    device, extra_bias)

    def apply_block(self, i: int, x: Tensor, *, attention_bias: Tensor | None = None, empty_rows: Tensor | None = None,
                    positions: Tensor | None = None, cache: KVCache | None = None,
                    output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        """Layer i on x [B, n, C] -> (x [B, n, C], attention weights [B, H, n, m] or None)."""
        return self.layer(i)(x, attention_bias=attention_bias, empty_rows=empty_rows, positions=positions, cache=cache,
                             layer_idx=i, output_attentions=output_attentions)

    def apply_main_layers(self, x: Tensor, *, attention_bias: Tensor | None = None, empty_rows: Tensor | None = None,
                          positions: Tensor | None = None, cache: KVCache | None = None,
                          layers: Sequence[int] | None = None, output_hidden_states: bool = False,
                          output_attentions: bool = False) -> tuple[Tensor, list[Tensor] | None, list | None]:
        """Stage 3: the blocks `layers` (default: all, in order) on x [B, n, C] -> (x, hidden states [x_in,
        then one per layer] or None, attention weights per layer or None)."""
        if layers is None:
            layers = range(self.num_layers)
        else:
            layers = list(layers)
            bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.num_layers]
            if bad:
                raise ValueError(f"layers must hold layer indices in [0, {self.num_layers}), got {bad[0]!r} in "
                                 f"{layers}")
        step = lambda i, h: self.apply_block(i, h, attention_bias=attention_bias, empty_rows=empty_rows,  # noqa: E731
                                             positions=positions, cache=cache, output_attentions=output_attentions)
        return run_layers(step, layers, x, output_hidden_states=output_hidden_states,
                          output_attentions=output_attentions)

    def apply_final_layers(self, x: Tensor, *, hidden_states: list[Tensor] | None = None,
                           attentions: list[Tensor] | None = None, logits_to_keep: int = 0,
                           with_logits: bool = True) -> TransformerOutput:
        """Stage 4: final norm (pre-LN models), pooler on [CLS] and the LM/MLM head on x [B, n, C] -> output.
        The final norm replaces the last hidden state; with_logits=False skips the LM/MLM head."""
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden_states is not None:
                hidden_states[-1] = x
        head = self.mlm if with_logits else None
        return TransformerOutput(
            last_hidden_state=x,
            pooled=torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None,
            logits=head(x[:, -logits_to_keep:] if logits_to_keep else x) if head is not None else None,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None)

    def forward(self, input_ids: Tensor | None = None, segment_ids: Tensor | None = None,
                attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                cache: KVCache | None = None, inputs_embeds: Tensor | None = None,
                attention_bias: Tensor | None = None, output_hidden_states: bool = False,
                output_attentions: bool = False, logits_to_keep: int = 0) -> TransformerOutput:
        """input_ids [B, n] (new tokens when a cache is given); segment_ids [B, n]; attention_mask [B, n]
        (bool or 0/1, 1 = real token) or a [B, n, m] mask; position_ids [B, n]; attention_bias broadcastable
        to [B, H, n, m] (added to the scores); logits_to_keep > 0 computes the head only for the last that
        many positions (a decoding prefill needs one; 0 = all, as in transformers).

        Padding: without attention_mask, encoder and UniLM models mask every token equal to
        `config.pad_token_id` (bert4keras masks token 0 the same way); causal LMs (application "lm") and
        inputs_embeds treat every token as real; an explicit attention_mask always wins (see
        `default_attention_mask`).

        Under torch.compile the value checks run inside the graph (see `inputs.ValueChecks`), so the forward
        has no graph break."""
        B, n = self.check_inputs(input_ids, segment_ids, attention_mask, inputs_embeds, 0, position_ids, cache,
                                 attention_bias)
        logits_to_keep = check_int("logits_to_keep", logits_to_keep, low=0)
        check_bool("output_hidden_states", output_hidden_states)
        check_bool("output_attentions", output_attentions)
        past = cache.length if cache is not None else 0
        if attention_mask is None:
            attention_mask = self.default_attention_mask(input_ids)
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if position_ids is None:
            position_ids = self.default_positions(input_ids, n, past, device)
        x = self.apply_embeddings(input_ids, segment_ids, position_ids, inputs_embeds)      # [B, n, C]
        bias, empty = self.attention_bias(attention_mask, segment_ids, batch_size=B, length=n, device=device,
                                          cache=cache, extra_bias=attention_bias)
        x, hidden, attns = self.apply_main_layers(x, attention_bias=bias, empty_rows=empty, positions=position_ids,
                                                  cache=cache, output_hidden_states=output_hidden_states,
                                                  output_attentions=output_attentions)
        if cache is not None:
            cache.advance(n)
        return self.apply_final_layers(x, hidden_states=hidden, attentions=attns, logits_to_keep=logits_to_keep)

    @staticmethod
    def hf_config_updates(cfg: TransformerConfig) -> dict:
        """Every HF (BERT-style) config key kexue's config determines, so a config-built model saves a
        complete config.json and overrides / vocabulary surgery are written back."""
        out = {"model_type": cfg.model_type, "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
               "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
               "intermediate_size": cfg.intermediate_size, "hidden_act": cfg.hidden_act,
               "max_position_embeddings": cfg.max_position, "type_vocab_size": cfg.type_vocab_size,
               "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_token_id,
               "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attention_dropout,
               "tie_word_embeddings": cfg.tie_word_embeddings}
        if cfg.embedding_size is not None:
            out["embedding_size"] = cfg.embedding_size
        if cfg.num_hidden_groups is not None:
            out["num_hidden_groups"] = cfg.num_hidden_groups
        if cfg.position == "nezha":
            out["max_relative_position"] = cfg.max_relative_position
        if cfg.position == "rotary":
            out["rotary_value"] = cfg.rotary_value
        return out

    def save_pretrained(self, directory: str, allow_nonfinite: bool = False) -> None:
        """HF-format config.json + model.safetensors that `transformers` loads back; NaN/inf weights are
        refused unless `allow_nonfinite=True`."""
        from .saving import save_pretrained
        save_pretrained(self, directory, allow_nonfinite=allow_nonfinite)
