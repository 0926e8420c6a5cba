"""Learning-rate schedules, stepped once per epoch after validation.

- ``plateau``: :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` on the validation loss,
  halving the rate after :data:`PLATEAU_PATIENCE` epochs without improvement, down to
  ``learningRate * MIN_LR_FRACTION``.
- ``cosine``: :class:`~torch.optim.lr_scheduler.CosineAnnealingLR` over ``spec.epochs`` epochs,
  from ``learningRate`` to ``learningRate * MIN_LR_FRACTION``.
- ``none``: a constant rate (no scheduler object; ``None`` is checkpointed).
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, ReduceLROnPlateau

from nsm.spec import NSMTrainingSpec
from nsm.train.optim import make_adamw

PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 5
MIN_LR_FRACTION = 0.01

Scheduler = LRScheduler | ReduceLROnPlateau


def make_optimizer(model: torch.nn.Module, spec: NSMTrainingSpec) -> Optimizer:
    """AdamW with the spec's learning rate and weight decay (0 makes it plain Adam), fused where
    torch supports it (:func:`nsm.train.optim.make_adamw`)."""
    return make_adamw(model.parameters(), lr=spec.learning_rate, weight_decay=spec.optimization.weight_decay)


def make_scheduler(optimizer: Optimizer, spec: NSMTrainingSpec) -> Scheduler | None:
    kind = spec.optimization.lr_schedule.value
    min_lr = spec.learning_rate * MIN_LR_FRACTION
    if kind == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE, min_lr=min_lr
        )
    if kind == "cosine":
        return CosineAnnealingLR(optimizer, T_max=spec.epochs, eta_min=min_lr)
    return None


def step_scheduler(scheduler: Scheduler | None, val_loss: float) -> None:
    """Advance one epoch; the plateau scheduler looks at ``val_loss``."""
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
