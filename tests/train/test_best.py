"""EvaluateAndSaveBest / RestartPolicy: a restart clears the state of every optimizer wrapper level, and a
non-finite model is never kept or saved as the best (issue 8)."""
import math

import torch
import torch.nn.functional as F

from kexue.optim import Lookahead
from kexue.optim.base import base_optimizer
from kexue.train import EvaluateAndSaveBest, LambdaCallback, RestartPolicy, Trainer

from . import tiny


def test_restart_with_lookahead_clears_inner_moments_and_restarts_slow_weights():
    ds, m = tiny.data(), tiny.model()
    opt = Lookahead(torch.optim.Adam(m.parameters(), lr=0.05), k=2)
    tr = Trainer(m, opt, F.cross_entropy)
    scores, seen = iter([0.5, 0.7, 0.6, 0.8]), {}
    best = EvaluateAndSaveBest(lambda model: next(scores), path=None, use_ema=False,
                               restart=RestartPolicy(patience=1, every=None, lr=1e-3))

    def check(epoch, logs):
        if epoch == 1:
            seen["best"] = tiny.snap(m)
        if epoch == 2:
            seen["adam_state"] = len(base_optimizer(opt).state)
            seen["slow"] = [opt.state[p]["slow_param"].clone() for p in m.parameters()]
            seen["weights"] = [p.detach().clone() for p in m.parameters()]
    tr.fit(ds, epochs=3, batch_size=8, callbacks=[best, LambdaCallback(on_epoch_end=check)], verbose=0)
    assert best.restarts == 1 and seen["adam_state"] == 0
    tiny.equal_trees(seen["slow"], seen["weights"])              # slow weights restart from the reloaded best
    tiny.equal_trees(seen["weights"], list(seen["best"].values()))


def test_non_finite_weights_are_never_the_best(tmp_path):
    ds, m = tiny.data(), tiny.model()
    tr = Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), F.cross_entropy, terminate_on_nan=False)
    path = tmp_path / "best.pt"

    def poison(epoch, logs):
        if epoch == 1:
            with torch.no_grad():
                m[0].weight[0, 0] = math.nan
    best = EvaluateAndSaveBest(lambda model: float(epoch_scores.pop(0)), path=path, use_ema=False,
                               restore_best_at_end=False)
    epoch_scores = [0.1, 0.9]                     # the poisoned epoch scores best, yet its weights are not kept
    tr.fit(ds, epochs=2, batch_size=8, callbacks=[LambdaCallback(on_epoch_end=poison), best], verbose=0)
    assert best.best_epoch == 0 and best.best == 0.1
    assert all(torch.isfinite(v).all() for v in torch.load(path).values())
