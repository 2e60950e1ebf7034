"""A user training script, run in-process, under `python` and under `torchrun` by the tests.

It uses dropout, Adam, a warmup schedule, gradient accumulation and a numpy/python-random input
augmentation, so an exact resume must restore every RNG, the data position and all states.
"""
import argparse
import os
import random
import signal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kexue.train import LambdaCallback, ModelCheckpoint, PiecewiseLinearSchedule, Trainer


def parse(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--ckpt-every", type=int, default=4)
    p.add_argument("--kill-at", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--accum", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--augment", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(48, 6, generator=g, dtype=torch.float64)
    y = (x[:, :3].sum(1) > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(args.dropout), nn.Linear(16, 2)).double()
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=0.05), F.cross_entropy,
                      accum_steps=args.accum)

    def augment(batch):
        xb, yb = batch
        noise = torch.from_numpy(np.random.randn(*xb.shape)) * (0.05 * random.random())
        return xb + noise, yb

    def kill(batch, logs):
        if trainer.global_step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [PiecewiseLinearSchedule({5: 1.0, 15: 0.2})]
    if args.augment:
        callbacks.append(LambdaCallback(on_train_batch_data=augment))
    if args.ckpt:
        callbacks.append(ModelCheckpoint(args.ckpt, every_n_steps=args.ckpt_every))
    if args.kill_at is not None:
        callbacks.append(LambdaCallback(on_train_batch_end=kill))
    trainer.fit(TensorDataset(x, y), epochs=args.epochs, batch_size=args.batch_size, callbacks=callbacks,
                resume_from="auto" if args.ckpt else None, verbose=0)
    if trainer.is_main:
        torch.save({"model": model.state_dict(), "global_step": trainer.global_step,
                    "history": trainer.history.history}, args.out)


if __name__ == "__main__":
    main()
