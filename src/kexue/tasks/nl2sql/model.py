"""The NL2SQL baseline's four heads over a BERT encoder (https://kexue.fm/archives/6771).

H = backbone(input_ids) [B, n, C]; H_h = H gathered at each header's [CLS] [B, h, C].
- connector: softmax over {none, AND, OR} from H[:, 0];
- select/aggregate: per column, softmax over the 6 aggs + "not selected" from H_h;
- condition op: per token, softmax over the 4 ops + "no condition" (a run of one op is a value span);
- condition column: per token, additive attention s(t, c) = w . tanh(W1 h_t + W2 h_c) over the real columns
  (col_hidden=0: the first version's linear s(t, c) = w1 . h_t + w2 . h_c).
`question_aware_select=True` (not in the article) feeds the select/agg head tanh(W_c h_c + W_q H[0]) instead
of h_c, so a column can be compared with the question summary without attending across segments.
`header_pooling="mean"` (not in the article) represents a column by the mean of its `[CLS] header [SEP]`
block instead of its [CLS] state: a small BERT trained from scratch finds the header names faster so.
The loss is the sum of the four masked cross-entropies of `nl2sql_baseline.py`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kexue._validate import check_bool, check_choice, check_int

__all__ = ["ColumnAttention", "NL2SQLModel", "NL2SQLOutput"]

# fields of an `NL2SQLEncoder.collate` batch that forward(**batch) passes over
_BATCH_EXTRAS = {"sel_agg", "conn", "cond_op", "cond_col", "dropped_conds", "overlapping_conds"}


@dataclass
class NL2SQLOutput:
    sel_agg_logits: Tensor        # [B, h, num_agg]
    conn_logits: Tensor           # [B, num_conn]
    cond_op_logits: Tensor        # [B, n, num_op]
    cond_col_logits: Tensor       # [B, n, h], padded headers at the dtype's minimum
    loss: Tensor | None = None
    losses: dict[str, Tensor] | None = None    # the four terms


class ColumnAttention(nn.Module):
    """Scores of token t for column c: w . tanh(W1 h_t + W2 h_c) (hidden > 0) or w1 . h_t + w2 . h_c (hidden 0)."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.hidden = check_int("col_hidden", hidden, low=0)
        out = hidden or 1
        self.token = nn.Linear(dim, out)
        self.column = nn.Linear(dim, out, bias=hidden == 0)
        self.score = nn.Linear(hidden, 1, bias=False) if hidden else None

    def forward(self, tokens: Tensor, columns: Tensor, column_mask: Tensor) -> Tensor:
        """tokens [B, n, C], columns [B, h, C], column_mask [B, h] (1 = real) -> scores [B, n, h]."""
        s = self.token(tokens)[:, :, None] + self.column(columns)[:, None]          # [B, n, h, k]
        s = self.score(torch.tanh(s))[..., 0] if self.score is not None else s[..., 0]
        return s.masked_fill(~column_mask.bool()[:, None], torch.finfo(s.dtype).min)


class NL2SQLModel(nn.Module):
    """`NL2SQLModel(backbone)` with a kexue encoder (`build_transformer_model(..., application="encoder")`);
    `forward(..., labels=batch)` also returns the loss."""

    def __init__(self, backbone: nn.Module, num_agg: int = 7, num_op: int = 5, num_conn: int = 3,
                 col_hidden: int = 256, header_pooling: str = "cls", question_aware_select: bool = False):
        super().__init__()
        self.header_pooling = check_choice("header_pooling", header_pooling, ("cls", "mean"))
        dim = getattr(getattr(backbone, "config", None), "hidden_size", None)
        if not isinstance(dim, int):
            raise TypeError(f"backbone must be a kexue Transformer with config.hidden_size, got "
                            f"{type(backbone).__name__}")
        self.num_agg = check_int("num_agg", num_agg, low=2)
        self.num_op = check_int("num_op", num_op, low=2)
        self.num_conn = check_int("num_conn", num_conn, low=2)
        self.backbone = backbone
        self.conn = nn.Linear(dim, num_conn)
        self.sel_agg = nn.Linear(dim, num_agg)
        self.sel_context = (nn.ModuleDict({"column": nn.Linear(dim, dim), "question": nn.Linear(dim, dim, bias=False)})
                            if check_bool("question_aware_select", question_aware_select) else None)
        self.cond_op = nn.Linear(dim, num_op)
        self.cond_col = ColumnAttention(dim, col_hidden)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, header_pos: Tensor, header_mask: Tensor,
                question_mask: Tensor | None = None, labels: dict | None = None, **_unused) -> NL2SQLOutput:
        """input_ids, token_type_ids [B, n]; header_pos, header_mask [B, h]; question_mask [B, n] (needed with
        labels); labels: a dict with sel_agg [B, h], conn [B], cond_op [B, n], cond_col [B, n]; `forward(**batch,
        labels=batch)` with a collated batch passes over its label fields, any other keyword is refused."""
        unknown = set(_unused) - _BATCH_EXTRAS
        if unknown:
            raise TypeError(f"NL2SQLModel.forward got unexpected arguments {sorted(unknown)}; beyond the inputs it "
                            f"accepts only the label fields of a collated batch {sorted(_BATCH_EXTRAS)}")
        if header_pos.shape != header_mask.shape or header_pos.dim() != 2:
            raise ValueError(f"header_pos and header_mask must both be [B, h], got {tuple(header_pos.shape)} "
                             f"and {tuple(header_mask.shape)}")
        if not bool((header_mask.sum(-1) > 0).all()):
            raise ValueError("every example needs at least one real header (a header_mask row is all 0)")
        if header_pos.numel() and (int(header_pos.min()) < 0 or int(header_pos.max()) >= input_ids.shape[1]):
            raise ValueError(f"header_pos must index into the {input_ids.shape[1]} tokens, got values in "
                             f"[{int(header_pos.min())}, {int(header_pos.max())}]")
        H = self.backbone(input_ids, token_type_ids).last_hidden_state                     # [B, n, C]
        H_h = (torch.gather(H, 1, header_pos[..., None].expand(-1, -1, H.shape[-1])) if self.header_pooling == "cls"
               else self.header_blocks(input_ids, header_pos, header_mask) @ H)            # [B, h, C]
        sel_in = H_h if self.sel_context is None else torch.tanh(
            self.sel_context["column"](H_h) + self.sel_context["question"](H[:, :1]))      # [B, h, C]
        out = NL2SQLOutput(self.sel_agg(sel_in), self.conn(H[:, 0]), self.cond_op(H),
                           self.cond_col(H, H_h, header_mask))
        if labels is not None:
            if question_mask is None:
                raise ValueError("the loss needs question_mask (which tokens are question characters)")
            out.losses = self.losses(out, labels, question_mask.float(), header_mask.float())
            out.loss = sum(out.losses.values())
        return out

    def header_blocks(self, input_ids: Tensor, header_pos: Tensor, header_mask: Tensor) -> Tensor:
        """[B, h, n] averaging weights over each header's block, from its [CLS] to the next header's (the last
        one to the last non-padding token)."""
        pad = getattr(self.backbone.config, "pad_token_id", None) or 0
        length = (input_ids != pad).long().sum(-1, keepdim=True)                           # [B, 1]
        nxt = torch.cat([header_pos[:, 1:], length], 1)                                     # [B, h]
        real_next = torch.cat([header_mask[:, 1:], torch.zeros_like(header_mask[:, :1])], 1).bool()
        end = torch.where(real_next, nxt, length)
        t = torch.arange(input_ids.shape[1], device=input_ids.device)
        w = ((t >= header_pos[..., None]) & (t < end[..., None]) & header_mask.bool()[..., None]).float()
        return w / w.sum(-1, keepdim=True).clamp(min=1)

    def losses(self, out: NL2SQLOutput, labels: dict, xm: Tensor, hm: Tensor) -> dict[str, Tensor]:
        """The reference's four terms: select (mean over real columns), connector (mean over the batch), op
        (mean over question tokens), column (mean over question tokens inside a condition value)."""
        missing = {"sel_agg", "conn", "cond_op", "cond_col"} - set(labels)
        if missing:
            raise ValueError(f"labels lack {sorted(missing)}")
        ce = lambda logits, y: F.cross_entropy(logits.transpose(1, -1), y, reduction="none")   # noqa: E731
        cm = xm * (labels["cond_op"] != self.num_op - 1).float()
        masked = lambda loss, mask: (loss * mask).sum() / mask.sum().clamp(min=1)              # noqa: E731
        return {"sel_agg": masked(ce(out.sel_agg_logits, labels["sel_agg"]), hm),
                "conn": F.cross_entropy(out.conn_logits, labels["conn"]),
                "cond_op": masked(ce(out.cond_op_logits, labels["cond_op"]), xm),
                "cond_col": masked(ce(out.cond_col_logits, labels["cond_col"]), cm)}
