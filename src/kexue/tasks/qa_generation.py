"""Question-answer pair generation from a passage with one UniLM seq2seq model (学会提问的BERT,
https://kexue.fm/archives/7630; bert4keras `task_question_answer_generation_by_seq2seq.py`).

Layout (answer first): `[CLS] passage [SEP] answer [SEP] question [SEP]`, passage segment 0, answer and
question segment 1; the loss (`kexue.nn.seq2seq_lm_loss`) covers the answer and the question. Generation runs
the same model twice: sample an answer with nucleus top-p (so repeated calls give different pairs), then
decode the question given passage + answer (greedy = beam size 1, as the reference). `layout="question_first"`
swaps the two segments (the spec's ablation): sample a question, then decode its answer.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_int
from ..generation import NgramIndex, generate
from ..ops import sequence_padding
from .seq2seq import collate_seq2seq, seq2seq_loss, train_seq2seq

__all__ = ["QAPairGenerator", "LAYOUTS", "TOP_P_SAMPLING"]

LAYOUTS = ("answer_first", "question_first")
TOP_P_SAMPLING = {"top_p": 0.95, "top_k": None, "temperature": 1.0}     # the reference's first stage


def _check_sampling(value) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"top_p", "top_k", "temperature"}:
        raise ValueError(f"answer_sampling must be None (greedy) or a dict with keys top_p, top_k, temperature, "
                         f"got {value!r}")
    out = {"topp": value.get("top_p"), "topk": value.get("top_k"), "temperature": value.get("temperature", 1.0)}
    if out["topp"] is not None:
        check_float("answer_sampling['top_p']", out["topp"], 0.0, 1.0, low_open=True)
    if out["topk"] is not None:
        check_int("answer_sampling['top_k']", out["topk"], 1)
    check_float("answer_sampling['temperature']", out["temperature"], 0.0, low_open=True)
    return out


def _check_search(value) -> dict:
    if not isinstance(value, dict) or set(value) - {"num_beams", "length_penalty"}:
        raise ValueError(f"question_search must be a dict with keys num_beams, length_penalty, got {value!r}")
    return {"num_beams": check_int("question_search['num_beams']", value.get("num_beams", 1), 1),
            "length_penalty": check_float("question_search['length_penalty']", value.get("length_penalty", 0.0))}


class QAPairGenerator(nn.Module):
    """A UniLM model (built with application="unilm", with_mlm=True) and its tokenizer as a QA-pair generator.

    `encode(passage, answer, question)` / `collate(examples)` / `loss(batch)` train it; `generate(passage, n,
    seed)` returns n (question, answer) pairs; `generate_batch(passages, n, seed)` does many passages at once.
    answer_sampling: dict(top_p, top_k, temperature) for the first stage, or None for greedy (deterministic:
    one pair per passage however large n). question_search: dict(num_beams, length_penalty) for the second.
    constrain_answer_to_passage: every first-stage answer token continues a passage substring (answer-first
    only; `kexue.generation.NgramIndex`), so each answer is supported by the passage.
    """

    def __init__(self, model: nn.Module, tokenizer, max_passage_len: int = 128, max_answer_len: int = 16,
                 max_question_len: int = 64, answer_sampling: dict | None = TOP_P_SAMPLING,
                 question_search: dict | None = None, constrain_answer_to_passage: bool = False,
                 layout: str = "answer_first"):
        super().__init__()
        if getattr(model, "application", None) != "unilm" or getattr(model, "mlm", None) is None:
            raise ValueError("QAPairGenerator needs a UniLM model with an LM head: build_transformer_model(..., "
                             "application='unilm', with_mlm=True)")
        for name in ("token_to_id", "encode", "decode"):
            if not callable(getattr(tokenizer, name, None)):
                raise TypeError(f"tokenizer must be a kexue Tokenizer (with {name}), got {type(tokenizer).__name__}")
        self.model, self.tokenizer = model, tokenizer
        self.max_passage_len = check_int("max_passage_len", max_passage_len, 1)
        self.max_answer_len = check_int("max_answer_len", max_answer_len, 1)
        self.max_question_len = check_int("max_question_len", max_question_len, 1)
        self.sampling = _check_sampling(answer_sampling)
        self.search = _check_search(question_search if question_search is not None else dict(num_beams=1))
        self.constrain = check_bool("constrain_answer_to_passage", constrain_answer_to_passage)
        self.layout = check_choice("layout", layout, LAYOUTS)
        if self.constrain and self.layout != "answer_first":
            raise ValueError("constrain_answer_to_passage applies to the sampled answer: it needs "
                             "layout='answer_first'")
        self.sep_id = tokenizer.token_to_id("[SEP]")
        self.pad_id = tokenizer.token_to_id("[PAD]")

    @classmethod
    def greedy(cls, model: nn.Module, tokenizer, **kwargs) -> "QAPairGenerator":
        """The ablation: a greedy first stage (one answer per passage)."""
        return cls(model, tokenizer, answer_sampling=None, **kwargs)

    # ------------------------------------------------------------------------------------------ training
    def _pieces(self, text: str, cap: int) -> list[int]:
        """Token ids of text without [CLS], ending with [SEP], at most cap + 1 ids."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"expected a non-empty str, got {text!r}")
        ids, _ = self.tokenizer.encode(text, maxlen=cap + 2)
        return list(ids[1:])

    def _caps(self) -> tuple[int, int]:
        """Length caps of the first and the second generated segment."""
        a, q = self.max_answer_len, self.max_question_len
        return (a, q) if self.layout == "answer_first" else (q, a)

    def encode(self, passage: str, answer: str, question: str) -> tuple[list[int], list[int]]:
        """(token_ids, segment_ids) of one training example in this generator's layout."""
        src, _ = self.tokenizer.encode(passage, maxlen=self.max_passage_len + 2)
        first, second = (answer, question) if self.layout == "answer_first" else (question, answer)
        cap1, cap2 = self._caps()
        tgt = self._pieces(first, cap1) + self._pieces(second, cap2)
        return list(src) + tgt, [0] * len(src) + [1] * len(tgt)

    def collate(self, examples: Sequence[tuple[list[int], list[int]]]) -> dict[str, Tensor]:
        """Right-padded batch: input_ids, segment_ids, attention_mask [B, n]."""
        return collate_seq2seq(examples, self.pad_id)

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Next-token cross-entropy over the answer and question tokens (and their [SEP]s)."""
        return seq2seq_loss(self.model, batch)

    def fit(self, examples: Sequence[tuple[str, str, str]], *, steps: int, batch_size: int = 32, lr: float = 1e-3,
            seed: int = 0, **kwargs) -> list[float]:
        """Fine-tune on (passage, answer, question) triples with `kexue.tasks.train_seq2seq`; the step losses."""
        encoded = [self.encode(p, a, q) for p, a, q in examples]
        return train_seq2seq(self.model, encoded, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                             pad_id=self.pad_id, **kwargs)

    # ---------------------------------------------------------------------------------------- generation
    def _text(self, ids: Sequence[int]) -> str:
        ids = [i for i in ids if i not in (self.sep_id, self.pad_id)]
        return self.tokenizer.decode(ids).strip() if ids else ""

    def _allowed(self, passages: list[list[int]], V: int, device):
        """allowed_next for the first stage: the answer continues a passage substring; [SEP] once non-empty."""
        indexes = [NgramIndex(p[1:-1]) for p in passages]

        def allowed(output_ids: Tensor, batch_index: Tensor) -> Tensor:
            out = torch.zeros(output_ids.shape[0], V, dtype=torch.bool, device=device)
            for r, (row, b) in enumerate(zip(output_ids.tolist(), batch_index.tolist())):
                if self.sep_id in row:
                    out[r, self.sep_id] = True                   # finished row: only its filler
                    continue
                nxt = indexes[b].next_tokens(row)
                out[r, list(nxt)] = True
                if row or not nxt:
                    out[r, self.sep_id] = True
            return out
        return allowed

    @torch.no_grad()
    def generate_batch(self, passages: Sequence[str], n: int = 1,
                       seed: int | None = None) -> list[list[tuple[str, str]]]:
        """n (question, answer) pairs for each passage: [len(passages)][n]."""
        if isinstance(passages, str) or not isinstance(passages, Sequence) or not passages:
            raise TypeError("passages must be a non-empty list of str (use generate() for one passage)")
        n = check_int("n", n, 1)
        if seed is not None:
            check_int("seed", seed)
        src = [list(self.tokenizer.encode(p, maxlen=self.max_passage_len + 2)[0]) for p in passages]
        was_training = self.model.training
        self.model.eval()
        try:
            first = self._first_stage(src, n, seed)                                   # B*n lists of ids
            rows = [src[r // n] for r in range(len(first))]
            second = self._second_stage(rows, first)
        finally:
            self.model.train(was_training)
        pairs = []
        for f, s in zip(first, second):
            a, q = (f, s) if self.layout == "answer_first" else (s, f)
            pairs.append((self._text(q), self._text(a)))
        return [pairs[i * n:(i + 1) * n] for i in range(len(passages))]

    def generate(self, passage: str, n: int = 1, seed: int | None = None) -> list[tuple[str, str]]:
        """n (question, answer) pairs generated from one passage."""
        if not isinstance(passage, str):
            raise TypeError(f"passage must be a str, got {type(passage).__name__}")
        return self.generate_batch([passage], n, seed)[0]

    def _prompt(self, rows: list[list[int]], segs: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
        device = next(self.model.parameters()).device
        ids = torch.as_tensor(sequence_padding(rows, value=self.pad_id), device=device).long()
        seg = torch.as_tensor(sequence_padding(segs, value=0), device=device).long()
        mask = torch.as_tensor(sequence_padding([[1] * len(r) for r in rows], value=0), device=device).long()
        return ids, seg, mask

    def _first_stage(self, src: list[list[int]], n: int, seed: int | None) -> list[list[int]]:
        """The sampled (or greedy) first segment for each passage, n per passage, ending with [SEP]."""
        cap, _ = self._caps()
        sample = self.sampling is not None
        rows = src if sample else [s for s in src for _ in range(n)]
        ids, seg, mask = self._prompt(rows, [[0] * len(r) for r in rows])
        kw = dict(max_new_tokens=cap + 1, end_id=self.sep_id)
        if self.constrain:
            kw["allowed_next"] = self._allowed(rows, self.model.config.vocab_size, ids.device)
        if sample:
            kw.update(do_sample=True, num_samples=n, seed=seed, **self.sampling)
        out = generate(self.model, ids, seg, mask, **kw)
        return [self._ended(t.tolist()) for t in out.trimmed()]

    def _second_stage(self, src: list[list[int]], first: list[list[int]]) -> list[list[int]]:
        """The decoded second segment given passage + first segment (segment 1) for each row."""
        _, cap = self._caps()
        rows = [s + f for s, f in zip(src, first)]
        segs = [[0] * len(s) + [1] * len(f) for s, f in zip(src, first)]
        ids, seg, mask = self._prompt(rows, segs)
        out = generate(self.model, ids, seg, mask, max_new_tokens=cap + 1, end_id=self.sep_id, **self.search)
        return [t.tolist() for t in out.trimmed()]

    def _ended(self, ids: list[int]) -> list[int]:
        """A first segment that ran to its cap gets its [SEP] (the second stage reads `... [SEP]`)."""
        return ids if ids and ids[-1] == self.sep_id else ids + [self.sep_id]
