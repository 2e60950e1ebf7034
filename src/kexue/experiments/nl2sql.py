"""基于Bert的NL2SQL模型：一个简明的Baseline (https://kexue.fm/archives/6771) on a synthetic table world.

The article's baseline (four heads over BERT: connector, per-column select/agg, per-token condition op,
column attention; table-aware decoding) reaches about 58 % logic-form accuracy on the Tianchi TableQA data with
BERT-wwm. Here (spec nlp/03, section 4): toy tables and questions from `kexue.datasets.make_nl2sql_world`,
a small character BERT trained from scratch, logic-form and execution accuracy on held-out tables, and the
post-processing ablation on the questions whose value was corrupted (one character dropped). The recipe only:
model, decoding and metrics are `kexue.tasks.nl2sql`.
"""
from __future__ import annotations

import torch

from kexue._validate import check_choice, check_int
from kexue.datasets import make_nl2sql_world
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.models import build_transformer_model
from kexue.tasks.nl2sql import NL2SQLDecoder, NL2SQLEncoder, NL2SQLModel, Table
from kexue.tasks.nl2sql.fit import encode_examples, nl2sql_scores, predict_nl2sql_ablation, train_nl2sql
from kexue.tokenizers import Tokenizer, build_char_vocab

# mode -> tables, questions per train / test table, corrupted share of text equality values, layers, hidden
# size, column-head hidden units, Adam steps, batch, learning rate
_BUDGET = {
    "smoke": dict(tables=10, questions=6, test_questions=6, corrupt=0.6, layers=1, hidden=32, col_hidden=16,
                  steps=4, batch=8, lr=3e-3),
    "quick": dict(tables=60, questions=20, test_questions=60, corrupt=0.2, layers=2, hidden=64, col_hidden=64,
                  steps=1500, batch=16, lr=2e-3),
    "full": dict(tables=200, questions=20, test_questions=60, corrupt=0.2, layers=3, hidden=128, col_hidden=256,
                 steps=3000, batch=32, lr=1.5e-3),
}
BACKBONE, HEADER_POOLING, QUESTION_AWARE_SELECT = "roformer", "mean", True    # see the deviations
DECODERS = {"full post-processing": NL2SQLDecoder(),
            "no value snapping": NL2SQLDecoder(value_snapping=False),
            "no column repair": NL2SQLDecoder(column_repair=False),
            "no post-processing": NL2SQLDecoder(value_snapping=False, column_repair=False,
                                                numeric_ops_only_for_numbers=False)}


def build_model(vocab_size: int, layers: int, hidden: int, col_hidden: int) -> NL2SQLModel:
    backbone = build_transformer_model(config=dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(2, hidden // 32),
        intermediate_size=4 * hidden, max_position_embeddings=160, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0), model=BACKBONE)
    return NL2SQLModel(backbone, col_hidden=col_hidden, header_pooling=HEADER_POOLING,
                       question_aware_select=QUESTION_AWARE_SELECT)


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    b = _BUDGET[check_choice("mode", mode, tuple(_BUDGET))]
    seed = check_int("seed", seed, low=0)
    world = make_nl2sql_world(b["tables"], b["questions"], corrupt_prob=b["corrupt"], seed=seed,
                              test_questions_per_table=b["test_questions"])
    tables = {k: Table.from_dict(v) for k, v in world.tables.items()}
    train_ids = {e["table_id"] for e in world.train}
    vocab = build_char_vocab([e["question"] for e in world.train] +
                             [h for k in sorted(train_ids) for h in tables[k].headers], min_count=1)
    encoder = NL2SQLEncoder(Tokenizer(vocab, char_level_mapping=True))
    items = encode_examples(encoder, world.train, tables)
    torch.manual_seed(seed)
    model = build_model(len(vocab), b["layers"], b["hidden"], b["col_hidden"])
    losses = train_nl2sql(model, encoder, items, b["steps"], b["batch"], b["lr"], seed=seed)
    subsets = {"all": list(range(len(world.test))),
               "corrupted": [i for i, e in enumerate(world.test) if e["corrupted"]],
               "column omitted": [i for i, e in enumerate(world.test) if e["column_omitted"]]}
    rows, acc = [], {}
    all_preds = predict_nl2sql_ablation(model, encoder, DECODERS, world.test, tables)
    for name, preds in all_preds.items():
        row = {"decoder": name}
        for subset, idx in subsets.items():
            s = nl2sql_scores([preds[i] for i in idx], [world.test[i] for i in idx], tables) if idx else \
                {"logic_form_acc": float("nan"), "execution_acc": float("nan")}
            acc[name, subset] = s["logic_form_acc"]
            row[f"logic form, {subset} ({len(idx)})"] = s["logic_form_acc"]
            if subset == "all":
                row["execution, all"] = s["execution_acc"]
                acc[name, "execution"] = s["execution_acc"]
        rows.append(row)
    full = "full post-processing"
    metrics = {
        "logic_form_acc": acc[full, "all"], "execution_acc": acc[full, "execution"],
        "corrupted_acc": acc[full, "corrupted"],
        "snapping_gain_corrupted_pt": 100 * (acc[full, "corrupted"] - acc["no value snapping", "corrupted"]),
        "repair_gain_corrupted_pt": 100 * (acc[full, "corrupted"] - acc["no column repair", "corrupted"]),
        "postprocessing_gain_pt": 100 * (acc[full, "all"] - acc["no post-processing", "all"]),
        "corrupted_questions": float(len(subsets["corrupted"])),
        "dropped_label_conds": float(sum(int(i["dropped_conds"]) for i in items)),
        "overlapping_label_conds": float(sum(int(i["overlapping_conds"]) for i in items)),
        "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
    }
    steps = list(range(1, len(losses) + 1))
    fig = Figure("training_loss", "NL2SQL training loss (sum of the four cross-entropies)", "step", "loss",
                 {"train loss": (steps, losses)})
    return Measurement(metrics, tables={"accuracy_by_decoder": rows}, figures=[fig])


def _setup(mode: str) -> str:
    b = _BUDGET[mode]
    return (f"{b['tables']} tables, 20 % held out, {b['questions']} questions per train table and "
            f"{b['test_questions']} per test table (for a larger corrupted-value subset); BERT with rotary "
            f"positions (RoFormer) from scratch, "
            f"{b['layers']} layers, d={b['hidden']}, char vocabulary; column head {b['col_hidden']} tanh units; "
            f"{b['steps']} Adam steps of {b['batch']}, lr {b['lr']:g}")


EXPERIMENT = Experiment(
    name="nl2sql",
    title="基于Bert的NL2SQL模型：一个简明的Baseline (A BERT-based NL2SQL model: a concise baseline)",
    url="https://kexue.fm/archives/6771",
    claim="The article's baseline reaches about 58 % logic-form accuracy on Tianchi TableQA with BERT-wwm (50 % "
          "before the tanh column head); spec target on a synthetic table world: logic-form accuracy > 0.8 on "
          "held-out tables with a small char BERT from scratch, and value snapping and column repair each "
          "raise the accuracy on the questions whose value was corrupted.",
    setup="Synthetic table world (kexue.datasets.make_nl2sql_world): 4-8 columns of syllable names and numbers, "
          "one selected column with an agg word, one or two conditions (并且/或者, 大于/小于/是/不是), 30 % of "
          "text equalities without their column name, 20 % of text equality values with one character dropped; "
          "train and test tables disjoint. kexue.tasks.nl2sql: NL2SQLEncoder (1:1 char tokenizer), NL2SQLModel "
          "(connector, per-column select/agg, per-token op tagging, tanh column attention; the summed masked "
          "losses of nl2sql_baseline.py), NL2SQLDecoder (the reference's post-processing; ablated one switch at "
          f"a time), logic-form full match and sqlite3 execution accuracy. Quick: {_setup('quick')}. "
          f"Full: {_setup('full')}.",
    checks=[
        Check("logic_form_acc", ">", 0.8, "logic-form accuracy on held-out tables"),
        Check("snapping_gain_corrupted_pt", ">", 0.0, "value snapping's gain on corrupted questions (pt)"),
        Check("repair_gain_corrupted_pt", ">", 0.0, "column repair's gain on corrupted questions (pt)"),
    ],
    run=run,
    seeds={"quick": 1, "full": 1},
    deviations={
        "quick": f"{_setup('quick')} instead of the spec's 200 tables and 3-layer d=128 BERT for ~10 min. Three "
                 "changes to the model so that it learns from scratch within a CPU budget, from 60-table probes "
                 "(d=64, 2 layers, batch 16, lr 2e-3): BERT with [CLS] pooling had select accuracy 0.01 after 800 "
                 "steps and 0.02 with mean pooling after 900; RoFormer (rotary positions) + mean pooling + a "
                 "question-aware select head reached logic-form accuracy 0.57 at 1000 steps and 0.90 at 2000 "
                 "(RoFormer + mean pooling with the plain head: select 0.03 at 600 steps, not run longer). So: "
                 "rotary instead of learned absolute positions, each column represented by the mean of its [CLS] "
                 "header [SEP] block instead of its [CLS] state, the select/agg head fed tanh(W_c h_c + W_q h_[CLS]) "
                 "instead of h_c. Also: Adam with a linear warm-up and decay at a from-scratch learning rate "
                 "instead of 5e-5 -> 1e-5 over 15 epochs, no best-epoch selection, value location in training by "
                 "character windows instead of jieba n-grams, 60 questions per test table (for a larger "
                 "corrupted-value subset), 1 seed. The quick budget sits at the edge of the plateau and of "
                 "generalising from 48 train tables: measured at this budget, seed 0 gives logic-form 0.85 but "
                 "seeds 1 and 2 give 0.34 and 0.29 (train loss 0.22, still on the plateau); with 3000 steps seed 1 "
                 "gives 0.55 (train loss 0.005: it overfits the train tables) and seed 2 0.81; lr 4e-3 (seed 1, "
                 "1500 steps) 0.26.",
        "full": f"{_setup('full')}; the same model, schedule and data departures as quick; 1 seed.",
    },
)
