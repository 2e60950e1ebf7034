"""Fault injection for the Trainer: SIGKILL a training run at random moments (inside steps, saves, loads) and
resume it until it finishes; its final weights, EMA and optimizer state must equal an uninterrupted run's.

Run as `python fault_script.py --dir D --kills 20`: this supervisor process imports torch but computes
nothing, and forks one child per attempt (a fork is ~ms, an interpreter start several seconds), so 20 kills
fit in well under a minute on one core. It prints one JSON line and exits 0 when every trial matched.
"""
import argparse
import json
import os
import random
import signal
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.optim import GradientAccumulation, Lookahead
from kexue.train import EMA, ModelCheckpoint, PiecewiseLinearSchedule, Trainer, atomic_save

CONFIGS = {   # both callback orders; trainer-level and optimizer-level (in .grad) accumulation
    "ckpt_first": dict(ckpt_first=True, trainer_accum=2, opt_accum=1),
    "ema_first": dict(ckpt_first=False, trainer_accum=1, opt_accum=2),
}


def train(run_dir: str, config: str) -> None:
    """One attempt: resume from the newest checkpoint if any, train to the end, write final.pt."""
    cfg = CONFIGS[config]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(44, 5, generator=g, dtype=torch.float64)       # 11 micro-batches of 4: cycles cross epochs
    ds = TensorDataset(x, (x[:, 0] - x[:, 2] > 0).long())
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 2)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    if cfg["opt_accum"] > 1:
        opt = GradientAccumulation(opt, cfg["opt_accum"], accumulate_in_grad=True)
    opt = Lookahead(opt, k=3, alpha=0.5)
    trainer = Trainer(model, opt, F.cross_entropy, accum_steps=cfg["trainer_accum"], seed=3)
    ema = EMA(0.9)
    ckpt = ModelCheckpoint(os.path.join(run_dir, "ck.pt"), every_n_steps=1, every_n_epochs=1)
    callbacks = [ckpt, ema] if cfg["ckpt_first"] else [ema, ckpt]
    trainer.fit(ds, epochs=3, batch_size=4, callbacks=[PiecewiseLinearSchedule({4: 1.0, 20: 0.3})] + callbacks,
                resume_from="auto", verbose=0)
    atomic_save({"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                 "global_step": trainer.global_step}, os.path.join(run_dir, "final.pt"))


def _kill_inside_save(n: int) -> None:
    """SIGKILL this process inside the n-th atomic save, after its temp file is written, before the rename."""
    replace, calls = os.replace, [0]

    def replace_then_die(src, dst):
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    os.replace = replace_then_die


def _child(run_dir: str, config: str, save_kill: int | None = None) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if save_kill is not None:
                _kill_inside_save(save_kill)
            train(run_dir, config)
        except BaseException as e:                      # report, never fall back into the supervisor loop
            print(f"attempt failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = 3
        os._exit(code)
    return pid


def _wait(pid: int, timeout: float):
    """Exit status of `pid` if it ends within `timeout` seconds, else None."""
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= end:
            return None
        time.sleep(0.002)


def _diff(a, b, where="state") -> list:
    """Paths at which two nested checkpoints differ (bitwise for tensors); [] when equal."""
    if isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
        return [] if same else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            return [where + " (keys)"]
        return [d for k in a for d in _diff(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [where + " (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [where]


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    refs, durations = {}, {}
    for config in CONFIGS:                              # the uninterrupted runs
        d = os.path.join(args.dir, f"ref-{config}")
        os.makedirs(d)
        t0 = time.monotonic()
        code = _wait(_child(d, config), 600)
        durations[config] = time.monotonic() - t0
        if code != 0:
            print(json.dumps({"error": f"reference run {config} exited {code}"}))
            return 1
        refs[config] = os.path.join(d, "final.pt")
    kills, trials, attempts, save_kills, temp_seen = 0, [], 0, 0, 0
    while kills < args.kills:
        config = list(CONFIGS)[len(trials) % len(CONFIGS)]
        d = os.path.join(args.dir, f"trial{len(trials)}-{config}")
        os.makedirs(d)
        while True:                                     # kill at random moments until it finishes
            attempts += 1
            in_save = kills < args.kills and attempts % 4 == 0          # every 4th: inside a checkpoint write
            pid = _child(d, config, rng.randint(1, 6) if in_save else None)
            limit = rng.uniform(0.0, durations[config]) if kills < args.kills and not in_save else 600
            code = _wait(pid, limit)
            if code is None:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                code = -signal.SIGKILL
            if code == -signal.SIGKILL:
                kills += 1
                save_kills += in_save
                temp_seen += any(n.startswith(".tmp-") for n in os.listdir(d))
                continue
            if code != 0:
                print(json.dumps({"error": f"attempt in {d} exited {code}"}))
                return 1
            break
        trials.append((config, d))
    mismatches, temp_left = [], []
    for config, d in trials:
        a, b = torch.load(refs[config]), torch.load(os.path.join(d, "final.pt"))
        diff = _diff(a, b)
        if diff:
            mismatches.append({"trial": d, "differs": diff[:5]})
        temp_left += [os.path.join(d, n) for n in os.listdir(d) if n.startswith(".tmp-")]
    print(json.dumps({"kills": kills, "kills_inside_save": save_kills, "kills_leaving_temp_files": temp_seen,
                      "trials": len(trials), "attempts": attempts, "mismatches": mismatches,
                      "temp_files_left": temp_left, "reference_seconds": durations}))
    return 0 if not mismatches and not temp_left else 2


if __name__ == "__main__":
    sys.exit(main())
