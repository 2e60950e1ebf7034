"""kexue.train: a Keras-style Trainer with callbacks, exact resume and DDP (https://kexue.fm/archives/5765)."""
from .best import EvaluateAndSaveBest, RestartPolicy
from .callbacks import (Callback, CallbackList, CSVLogger, EarlyStopping, History, LambdaCallback,
                        TerminateOnNaN)
from .checkpoint import ModelCheckpoint, atomic_save
from .data import ResumableSampler
from .distributed import setup_distributed
from .ema import EMA
from .mlm import mlm_eval_loss, mlm_mask, pretrain_mlm
from .regularization import AdversarialTraining, GradientPenalty, Mixup, VirtualAdversarial
from .schedule import PiecewiseLinearSchedule, ScalarSchedule, linear_warmup_decay
from .trainer import Trainer

__all__ = ["Trainer", "Callback", "CallbackList", "History", "LambdaCallback", "CSVLogger", "EarlyStopping",
           "TerminateOnNaN", "ModelCheckpoint", "atomic_save", "EvaluateAndSaveBest", "RestartPolicy", "EMA",
           "PiecewiseLinearSchedule", "GradientPenalty", "AdversarialTraining", "VirtualAdversarial", "Mixup",
           "ResumableSampler", "setup_distributed", "linear_warmup_decay", "ScalarSchedule", "mlm_mask", "pretrain_mlm",
           "mlm_eval_loss"]
