"""Keras-style epoch lines (`Epoch 2/5 - 1s - loss: ... - val_loss: ...`) and EvaluateAndSaveBest's
best-so-far messages, read back from stdout and checked against the History they summarise."""
import re

import pytest
import torch
import torch.nn.functional as F

from kexue.train import EvaluateAndSaveBest, Trainer

from . import tiny

_LINE = re.compile(r"^Epoch (\d+)/(\d+) - (\d+)s((?: - \w+: \S+)+)$")


def _parse(out: str) -> list[tuple[int, int, dict]]:
    rows = []
    for line in out.splitlines():
        m = _LINE.match(line.strip())
        if m:
            vals = dict(kv.split(": ") for kv in m.group(4).split(" - ")[1:])
            rows.append((int(m.group(1)), int(m.group(2)), {k: float(v) for k, v in vals.items()}))
    return rows


def _acc(out, y):
    return (out.argmax(-1) == y).double().mean()


def _trainer():
    m = tiny.model()
    return Trainer(m, torch.optim.SGD(m.parameters(), lr=0.5), F.cross_entropy, metrics={"acc": _acc})


@pytest.mark.parametrize("verbose", [1, 2])
def test_epoch_line_per_epoch_matches_history(capsys, verbose):
    ds = tiny.data()
    hist = _trainer().fit(ds, epochs=3, batch_size=8, valid_data=ds, verbose=verbose)
    rows = _parse(capsys.readouterr().out)
    assert [(e, n) for e, n, _ in rows] == [(1, 3), (2, 3), (3, 3)]
    for k, (_, _, vals) in enumerate(rows):
        assert list(vals) == ["loss", "acc", "val_loss", "val_acc"]          # Keras order: train, then val
        for key, v in vals.items():
            assert v == pytest.approx(hist.history[key][k], abs=5e-5)


def test_verbose_0_prints_nothing(capsys):
    _trainer().fit(tiny.data(), epochs=2, batch_size=8, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and "Epoch" not in captured.err


def test_evaluate_and_save_best_reports_best_so_far(capsys, tmp_path):
    scores = iter([0.5, 0.75, 0.625, 0.875])
    path = tmp_path / "best.pt"
    best = EvaluateAndSaveBest(lambda model: {"val_acc": next(scores)}, monitor="val_acc", path=path,
                               use_ema=False)
    _trainer().fit(tiny.data(), epochs=4, batch_size=8, callbacks=[best], verbose=1)
    out = capsys.readouterr().out
    msgs = [line.strip() for line in out.splitlines() if "improve" in line]
    assert msgs == [f"Epoch 1: val_acc improved from -inf to 0.5000, saved to {path}",
                    f"Epoch 2: val_acc improved from 0.5000 to 0.7500, saved to {path}",
                    "Epoch 3: val_acc did not improve from 0.7500",
                    f"Epoch 4: val_acc improved from 0.7500 to 0.8750, saved to {path}"]
    rows = _parse(out)
    assert [r[2]["val_acc"] for r in rows] == [0.5, 0.75, 0.625, 0.875]       # the score is in the epoch line
    scores2 = iter([3.0, 2.0])
    best = EvaluateAndSaveBest(lambda model: next(scores2), mode="min", path=None, use_ema=False)
    _trainer().fit(tiny.data(), epochs=2, batch_size=8, callbacks=[best], verbose=0)
    assert capsys.readouterr().out == ""                                      # follows the fit's verbose=0
    scores3 = iter([3.0, 2.0])
    best = EvaluateAndSaveBest(lambda model: next(scores3), mode="min", path=None, use_ema=False, verbose=1)
    _trainer().fit(tiny.data(), epochs=2, batch_size=8, callbacks=[best], verbose=0)
    assert capsys.readouterr().out.splitlines() == ["Epoch 1: score improved from inf to 3.0000",
                                                    "Epoch 2: score improved from 3.0000 to 2.0000"]


def test_restart_is_announced(capsys):
    from kexue.train import RestartPolicy
    scores = iter([0.5, 0.25, 0.75])
    best = EvaluateAndSaveBest(lambda model: next(scores), path=None, use_ema=False,
                               restart=RestartPolicy(patience=1, every=None, lr=0.01))
    _trainer().fit(tiny.data(), epochs=3, batch_size=8, callbacks=[best], verbose=1)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch 2:")]
    assert lines == ["Epoch 2: score did not improve from 0.5000",
                     "Epoch 2: restart from the best weights (score 0.5000 at epoch 1), optimizer state reset, "
                     "lr = 0.01"]
    assert best.restarts == 1
