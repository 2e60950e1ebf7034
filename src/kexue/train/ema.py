"""EMA-of-weights callback: update after every optimizer step, evaluate and save with the averaged
weights swapped in, then restore (https://kexue.fm/archives/5765; bert4keras EMA extension, kexue.optim.EMAWeights).
"""
from __future__ import annotations

from .._validate import check_bool, check_choice, check_float
from .callbacks import Callback

__all__ = ["EMA"]


class EMA(Callback):
    """Keeps `kexue.optim.EMAWeights` of the model; `trainer.averaged_weights()` applies it.

    The Trainer's validation during fit and `EvaluateAndSaveBest(use_ema=True)` run under the
    averaged weights; training always continues from the raw weights.
    """

    def __init__(self, decay: float = 0.999, init: str = "zeros", bias_correction: bool = True,
                 include_buffers: bool = True) -> None:
        check_float("decay", decay, low=0.0, high=1.0, high_open=True)
        check_choice("init", init, ("zeros", "copy"))
        check_bool("bias_correction", bias_correction)
        check_bool("include_buffers", include_buffers)
        self.decay, self.init, self.bias_correction = decay, init, bias_correction
        self.include_buffers, self.ema = include_buffers, None

    def set_trainer(self, trainer) -> None:
        fresh = self.trainer is not trainer
        super().set_trainer(trainer)
        if fresh or self.ema is None:
            self.reset_average()
        trainer.ema = self.ema

    def reset_average(self) -> None:
        """Start a new average from the current weights (after a restart or weight reload)."""
        from ..optim import EMAWeights          # train uses optim (DESIGN arrows)
        if self.ema is not None and self.ema.tensors[0] is next(self.trainer.module.parameters()):
            self.ema.reset()
        else:
            self.ema = EMAWeights(self.trainer.module, decay=self.decay, init=self.init,
                                  bias_correction=self.bias_correction, include_buffers=self.include_buffers)
        self.trainer.ema = self.ema

    def on_train_batch_end(self, batch, logs=None):
        if self.trainer.last_step_updated:          # not after a skipped step or an accumulation micro-step
            self.ema.update()

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)
