"""A DialoGPT-style multi-turn chatbot: one causal LM over the concatenated turns with speaker segment ids,
replies sampled with top-k (https://kexue.fm/archives/7718; bert4keras nezha_gpt_dialog).

`DialogFormat` says how turns become one sequence: "sep_segments" (the article: `[CLS] u1 [SEP] u2 [SEP] ...`,
the i-th utterance and its [SEP] in segment i mod 2) or "speaker_tokens" (CDial-GPT: `[CLS] [s1] u1 [s2] u2 ...
[SEP]`, each token's type is its speaker token's id, an index into the word table); which tokens carry the loss
(every turn, the last turn, one speaker's turns); truncation of whole turns, oldest first by default.
`DialogCollator` encodes and batches; `dialog_lm_loss` is the next-token loss on the marked targets;
`ChatBot` keeps the history and replies through `kexue.generation.generate`, each row's generated tokens in the
flip of its last context segment.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_float, check_int
from kexue.data import sequence_padding
from kexue.nn.losses import masked_cross_entropy

__all__ = ["DialogFormat", "DialogCollator", "dialog_lm_loss", "build_dialog_lm", "train_dialog_lm", "ChatBot"]

_STYLES = ("sep_segments", "speaker_tokens")
_LOSS_ON = ("all_turns", "last_turn", "responses_of_speaker")


@dataclass
class DialogFormat:
    """style, max_len (tokens, [CLS] included), speaker_token_ids (the two speaker tokens of "speaker_tokens"),
    loss_on ("all_turns" | "last_turn" | "responses_of_speaker" with `speaker` 0 or 1, counted from the first
    turn of the dialogue), truncate ("oldest": drop the oldest turns, the right side for replying to a long
    history; "newest": the reference's training format, drop the first turn that overflows and all after it)."""
    style: str = "sep_segments"
    max_len: int = 512
    speaker_token_ids: tuple[int, int] | None = None
    loss_on: str = "all_turns"
    speaker: int = 1
    truncate: str = "oldest"

    def __post_init__(self):
        check_choice("style", self.style, _STYLES)
        check_int("max_len", self.max_len, 3)
        check_choice("loss_on", self.loss_on, _LOSS_ON)
        check_int("speaker", self.speaker, 0, 1)
        check_choice("truncate", self.truncate, ("oldest", "newest"))
        if self.style == "speaker_tokens":
            ids = self.speaker_token_ids
            if ids is None or len(ids) != 2 or ids[0] == ids[1]:
                raise ValueError(f"style='speaker_tokens' needs speaker_token_ids, two different token ids, "
                                 f"got {ids!r}")
            self.speaker_token_ids = (check_int("speaker_token_ids[0]", ids[0], 0),
                                      check_int("speaker_token_ids[1]", ids[1], 0))
        elif self.speaker_token_ids is not None:
            raise ValueError("speaker_token_ids are for style='speaker_tokens'; leave them unset for 'sep_segments'")


class DialogCollator:
    """Turns -> input_ids, token_type_ids, loss_mask (1 where the token is a next-token target) under a
    `DialogFormat`; `__call__` pads a batch of dialogues (right padding, with attention_mask)."""

    def __init__(self, tokenizer, fmt: DialogFormat | None = None):
        self.tokenizer, self.fmt = tokenizer, fmt or DialogFormat()
        if not isinstance(self.fmt, DialogFormat):
            raise TypeError(f"fmt must be a DialogFormat, got {type(fmt).__name__}")
        self.cls_id, self.sep_id, self.pad_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id

    def _utterance(self, text: str) -> list[int]:
        """The tokens of one turn: the tokenizer's encoding without [CLS] (sep_segments: with its [SEP])."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"every turn must be a non-empty string, got {text!r}")
        ids = self.tokenizer.encode(text)[0][1:]
        return ids if self.fmt.style == "sep_segments" else [self.fmt.speaker_token_ids[0]] + ids[:-1]

    def _pieces(self, turns: Sequence[str]) -> list[tuple[int, list[int]]]:
        """(turn index, token ids) of the kept turns; speaker tokens follow the turn index."""
        if isinstance(turns, str) or not turns:
            raise ValueError(f"turns must be a non-empty list of strings, got {turns!r}")
        pieces = []
        for i, t in enumerate(turns):
            ids = self._utterance(t)
            if self.fmt.style == "speaker_tokens":
                ids[0] = self.fmt.speaker_token_ids[i % 2]
            pieces.append((i, ids))
        room = self.fmt.max_len - 1 - (self.fmt.style == "speaker_tokens")     # [CLS] (and the final [SEP])
        kept, used = [], 0
        order = reversed(pieces) if self.fmt.truncate == "oldest" else pieces
        for i, ids in order:
            if used + len(ids) > room:
                break
            kept.append((i, ids))
            used += len(ids)
        if not kept:
            raise ValueError(f"max_len={self.fmt.max_len} cannot hold even one whole turn of {list(turns)!r}")
        return sorted(kept)

    def _segment(self, i: int) -> int:
        return i % 2 if self.fmt.style == "sep_segments" else self.fmt.speaker_token_ids[i % 2]

    def encode(self, turns: Sequence[str]) -> dict[str, list[int]]:
        """One whole dialogue for training."""
        pieces = self._pieces(turns)
        last = len(turns) - 1
        ids, seg, loss = [self.cls_id], [self._segment(pieces[0][0]) if self.fmt.style == "sep_segments"
                                          else self.cls_id], [0]
        for i, toks in pieces:
            target = (self.fmt.loss_on == "all_turns" or (self.fmt.loss_on == "last_turn" and i == last)
                      or (self.fmt.loss_on == "responses_of_speaker" and i % 2 == self.fmt.speaker))
            ids += toks
            seg += [self._segment(i)] * len(toks)
            # the speaker token opens a turn: the next speaker is given, not predicted
            n_target = len(toks) if self.fmt.style == "sep_segments" else len(toks) - 1
            loss += [0] * (len(toks) - n_target) + [int(target)] * n_target
        if self.fmt.style == "speaker_tokens":
            ids.append(self.sep_id)
            seg.append(seg[-1])
            loss.append(int(self.fmt.loss_on != "last_turn" or pieces[-1][0] == last))
        return {"input_ids": ids, "token_type_ids": seg, "loss_mask": loss}

    def encode_context(self, history: Sequence[str]) -> tuple[list[int], list[int], int]:
        """A history to reply to -> (input_ids, token_type_ids, segment of the reply). sep_segments: the
        reply's segment is the flip of the last context token's; speaker_tokens: the next speaker's token is
        appended and is the reply's type."""
        pieces = self._pieces(list(history) + (["_"] if self.fmt.style == "speaker_tokens" else []))
        if self.fmt.style == "speaker_tokens":
            i, _ = pieces.pop()                                        # room kept for the reply's speaker token
            spk = self.fmt.speaker_token_ids[i % 2]
            ids, seg = [self.cls_id], [self.cls_id]
            for j, toks in pieces:
                ids += toks
                seg += [self._segment(j)] * len(toks)
            return ids + [spk], seg + [spk], spk
        ids, seg = [self.cls_id], [self._segment(pieces[0][0])]
        for j, toks in pieces:
            ids += toks
            seg += [self._segment(j)] * len(toks)
        return ids, seg, 1 - seg[-1]

    def __call__(self, batch: Sequence[Sequence[str]]) -> dict[str, Tensor]:
        enc = [self.encode(turns) for turns in batch]
        out = {k: sequence_padding([e[k] for e in enc], value=self.pad_id if k == "input_ids" else 0)
               for k in ("input_ids", "token_type_ids", "loss_mask")}
        out["attention_mask"] = sequence_padding([[1] * len(e["input_ids"]) for e in enc])
        return out


def dialog_lm_loss(logits: Tensor, input_ids: Tensor, loss_mask: Tensor) -> Tensor:
    """Next-token cross-entropy averaged over the target tokens: logits [B, T, V] at t predict input_ids[:, t+1],
    counted where loss_mask[:, t+1] is 1 (padding is never a target)."""
    return masked_cross_entropy(logits[:, :-1], input_ids[:, 1:], loss_mask[:, 1:].bool())


def build_dialog_lm(vocab_size: int, hidden: int = 128, layers: int = 2, heads: int = 4, max_len: int = 512,
                    model: str = "bert", type_vocab_size: int = 2) -> nn.Module:
    """A small Transformer with a causal mask and an LM head tied to the embeddings (`application="lm"`),
    segment embeddings for the two speakers: the article's model at toy size, from scratch."""
    from kexue.models import build_transformer_model
    return build_transformer_model(config=dict(
        vocab_size=check_int("vocab_size", vocab_size, 2), hidden_size=check_int("hidden", hidden, 1),
        num_hidden_layers=check_int("layers", layers, 1), num_attention_heads=check_int("heads", heads, 1),
        intermediate_size=4 * hidden, max_position_embeddings=check_int("max_len", max_len, 2),
        type_vocab_size=check_int("type_vocab_size", type_vocab_size, 1)), model=model, application="lm",
        with_mlm=True)


def train_dialog_lm(model: nn.Module, collator: DialogCollator, dialogs: Sequence[Sequence[str]], *, steps: int,
                    batch_size: int = 32, lr: float = 1e-3, seed: int = 0, callback=None) -> list[float]:
    """AdamW on `dialog_lm_loss` for `steps` updates over shuffled batches of dialogues (turn lists);
    callback(step, model) after each update (e.g. to measure held-out perplexity). Returns the step losses."""
    steps, batch_size = check_int("steps", steps, 1), check_int("batch_size", batch_size, 1)
    lr, seed = check_float("lr", lr, 0.0, low_open=True), check_int("seed", seed, 0)
    if not dialogs:
        raise ValueError("train_dialog_lm needs at least one dialogue")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    losses, order, pos = [], [], 0
    for step in range(1, steps + 1):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(dialogs), generator=g).tolist(), 0
        batch = collator([dialogs[i] for i in order[pos:pos + batch_size]])
        pos += batch_size
        model.train()
        logits = model(batch["input_ids"], segment_ids=batch["token_type_ids"],
                       attention_mask=batch["attention_mask"]).logits
        loss = dialog_lm_loss(logits, batch["input_ids"], batch["loss_mask"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if callback is not None:
            callback(step, model)
    return losses


class ChatBot:
    """Keeps a history and replies: context = the formatted history (oldest turns dropped so that context and
    reply fit fmt.max_len), the reply in the flip of the last speaker's segment, sampled with top-k (default 5, temperature 1) / top-p, stopped at [SEP]
    (https://kexue.fm/archives/7718). `top_k=1` or `respond(..., greedy=True)` is greedy decoding."""

    def __init__(self, model: nn.Module, tokenizer, fmt: DialogFormat | None = None, max_new_tokens: int = 32,
                 top_k: int | None = 5, top_p: float | None = None, temperature: float = 1.0,
                 use_kv_cache: bool = True):
        self.model, self.tokenizer = model, tokenizer
        fmt = fmt or DialogFormat()
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, fmt.max_len - 3)
        # the context keeps the oldest-first truncation and leaves room for the reply in fmt.max_len
        self.collator = DialogCollator(tokenizer, replace(fmt, max_len=fmt.max_len - self.max_new_tokens,
                                                          truncate="oldest"))
        self.top_k = None if top_k is None else check_int("top_k", top_k, 1)
        self.top_p = None if top_p is None else check_float("top_p", top_p, 0.0, 1.0, low_open=True)
        self.temperature = check_float("temperature", temperature, 0.0, low_open=True)
        self.use_kv_cache = check_bool("use_kv_cache", use_kv_cache)
        self.history: list[str] = []

    def respond_batch(self, histories: Sequence[Sequence[str]], n: int = 1, seed: int | None = None,
                      greedy: bool = False) -> list[list[str]]:
        """n replies to each history (a list of B lists of n strings), all rows decoded together with left
        padding; each row's reply segment is its own speaker flip."""
        from kexue.generation import generate
        n = check_int("n", n, 1)
        if not histories:
            raise ValueError("respond_batch needs at least one history")
        enc = [self.collator.encode_context(h) for h in histories]
        T = max(len(e[0]) for e in enc)
        ids = torch.full((len(enc), T), self.collator.pad_id, dtype=torch.long)
        seg, mask = torch.zeros_like(ids), torch.zeros_like(ids)
        for b, (i, s, _) in enumerate(enc):                                       # left padding
            ids[b, T - len(i):], seg[b, T - len(s):], mask[b, T - len(i):] = torch.tensor(i), torch.tensor(s), 1
        new_segment = torch.tensor([e[2] for e in enc])                           # [B] per-row speaker flip
        sample = not greedy and self.top_k != 1
        was = self.model.training
        self.model.eval()
        out = generate(self.model, ids, seg, mask, new_segment=new_segment, max_new_tokens=self.max_new_tokens,
                       end_id=self.collator.sep_id, do_sample=sample, num_samples=n if sample else 1,
                       topk=self.top_k if sample else None, topp=self.top_p if sample else None,
                       temperature=self.temperature if sample else 1.0, seed=seed, use_cache=self.use_kv_cache)
        self.model.train(was)
        texts = [self.tokenizer.decode([t for t in row.tolist() if t != self.collator.sep_id])
                 for row in out.trimmed()]
        if not sample:
            texts = [t for t in texts for _ in range(n)]
        return [texts[b * n:(b + 1) * n] for b in range(len(enc))]

    def respond(self, history: Sequence[str], n: int = 1, seed: int | None = None, greedy: bool = False) -> list[str]:
        """n replies to one history (the spec's `respond`); the bot's own history is not changed."""
        return self.respond_batch([list(history)], n, seed, greedy)[0]

    def chat(self, text: str, seed: int | None = None) -> str:
        """Add the user's turn to the history, reply, and add the reply too."""
        self.history.append(text)
        reply = self.respond(self.history, 1, seed)[0]
        self.history.append(reply if reply.strip() else "…")
        return reply

    def reset(self) -> None:
        self.history = []
