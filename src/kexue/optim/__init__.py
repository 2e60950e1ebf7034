"""kexue.optim: derived optimizers that wrap ANY `torch.optim.Optimizer` instance (https://kexue.fm/archives/7094).

Every wrapper shares the inner optimizer's `param_groups` (torch LR schedulers work on it), round-trips
`state_dict()`, never touches parameters whose `.grad` is None, and counts only *real* updates
(`last_step_updated`), so the wrappers compose in any order. The order changes the algorithm; the one to use,
written outermost first, is

    ExponentialMovingAverage(           # averages the weights after each real update
      Lookahead(                        # k real updates forward, one step back
        GradientAccumulation(           # one real update every k calls, on the mean gradient
          GradientClipping(             # clips the *accumulated* gradient
            PiecewiseLinearLR(          # lr × m(t) for everything inside (decay and trust ratio too)
              LazyUpdate(               # masks absent embedding rows, decay included
                LayerAdaptation(        # trust ratio of (Adam update + decay) = LAMB
                  WeightDecay(          # decoupled decay = AdamW
                    torch.optim.Adam(params, lr))))))))

`extend_with(Adam, "weight_decay", "layer_adaptation", ...)` builds the same chain innermost first.

The wrappers are torch optimizers built with public torch API only: `Optimizer.__init__` runs (step hooks,
torch LR schedulers, pickling and deepcopy work), and every per-group hyperparameter (`weight_decay_rate`,
`max_trust_ratio`, `lr_schedule`, `lookahead_alpha`, ...) lives in `defaults` and every group, as in torch.optim.
bert4keras's per-weight options are param groups (`param_groups_by_name`): `lr_multiplier` (the CRF's),
`exclude_from_weight_decay` / `exclude_from_layer_adaptation` (also accepted by `extend_with` classes given
`model.named_parameters()`).

Checkpoints and restarts of a whole stack: `state_dict()` records the stack (`describe_stack`) and resumes
exactly (mid accumulation cycle too); `load_optimizer_state(opt, sd)` (any optimizer) and `load_state_dict`
check everything first and change nothing on a mismatch; `reset_state(opt)` clears every level;
`last_step_updated(opt)` says whether the last `step()` changed the weights.
"""
from kexue.ops import piecewise_linear
from kexue.optim.accumulation import GradientAccumulation, SchedulerOnUpdate, no_sync_if_accumulating
from kexue.optim.base import (DerivedOptimizer, base_optimizer, check_state_dict, describe_stack, last_step_updated,
                              load_optimizer_state, reset_state)
from kexue.optim.clipping import ClipGrad, GradientClipping, clip_grads_, clip_scale, smoothness_probe
from kexue.optim.dynamics import (HeavyBall, LangevinSGD, effective_lr, gradient_flow, momentum_from_ode,
                                   ode_from_momentum, quadratic_stationary_variance, second_order_flow,
                                   sgd_temperature)
from kexue.optim.derived import LayerAdaptation, PiecewiseLinearLR, WeightDecay, piecewise_linear_lambda
from kexue.optim.ema import EMAWeights, ExponentialMovingAverage
from kexue.optim.factory import extend_with, param_groups_by_name
from kexue.optim.lazy import LazyUpdate
from kexue.optim.lookahead import Lookahead
from kexue.optim.schedule import PiecewiseLinearScheduler, linear_warmup_decay
from kexue.optim.search import importance_weights, effective_sample_size, ParamSpaceSearch, sampled_update

__all__ = [
    "DerivedOptimizer", "base_optimizer", "check_state_dict", "describe_stack", "last_step_updated",
    "load_optimizer_state", "reset_state", "WeightDecay", "LayerAdaptation", "PiecewiseLinearLR",
    "piecewise_linear", "piecewise_linear_lambda", "PiecewiseLinearScheduler", "linear_warmup_decay",
    "GradientAccumulation", "SchedulerOnUpdate",
    "no_sync_if_accumulating", "Lookahead", "LazyUpdate", "EMAWeights", "ExponentialMovingAverage",
    "GradientClipping", "ClipGrad", "clip_grads_", "clip_scale", "smoothness_probe", "extend_with",
    "param_groups_by_name", 'importance_weights', 'effective_sample_size', 'ParamSpaceSearch', 'sampled_update',
    "HeavyBall", "LangevinSGD", "effective_lr", "gradient_flow", "momentum_from_ode", "ode_from_momentum",
    "quadratic_stationary_variance", "second_order_flow", "sgd_temperature",
]
