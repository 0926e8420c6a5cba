"""One training epoch and one evaluation pass; everything else lives in :mod:`nsm.train.trainer`.

Loss = cross-entropy(logits, y) + ``cycle_weight`` · cycle loss (0.7·L1 + 0.3·L2, from the model).

Divergence check without a host sync per step: on CUDA the loop accumulates
``all(isfinite(loss))`` on the device and the caller reads it once per epoch (together with the
loss sums it reads anyway); on CPU there is no sync to avoid, so it stops at the first
non-finite loss, before the optimizer step can poison the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from nsm.train.device import AmpPolicy
from nsm.train.errors import TrainingDiverged
from nsm.train.metrics import classification_metrics
from nsm.train.optim import FlatGradients
from nsm.train.preemption import EpochInterrupted, PartialEpoch


def _never() -> bool:
    return False


@dataclass
class StepContext:
    """What :func:`train_epoch` and :func:`evaluate` need besides the model and the batches."""

    device: torch.device
    amp: AmpPolicy
    cycle_weight: float
    gradient_clip: float = 0.0
    epoch: int = 0
    # Preemption (nsm.train.preemption): an interrupted epoch to continue (its loader skips the
    # batches already done), and a flag polled after every optimiser step.
    resume: PartialEpoch | None = None
    stop_requested: Callable[[], bool] = _never
    # Data parallelism (nsm.train.distributed), None in a single process: this rank's share of
    # each global batch, and the per-step and per-epoch agreements between the ranks.
    shard: Any = None  # .plan(step) -> (graphs of this rank, graphs of the global batch)
    agree: Callable[[bool, bool], tuple[bool, bool]] | None = None  # (diverged, stop) of any rank
    reduce: Callable[[Tensor, int, bool], tuple[Tensor, int, bool]] | None = None  # epoch sums
    loss_scale: float = 1.0  # set per step from ``shard``: the gradient is the global batch mean
    stop_agreed: bool = False


def _loss(model: torch.nn.Module, batch, ctx: StepContext) -> tuple[Tensor, object]:
    with ctx.amp.autocast():
        out = model(batch)
    ce = F.cross_entropy(out.logits.float(), batch.y)
    return ce + ctx.cycle_weight * out.cycle_loss.float(), out


def train_step(model, batch, optimizer, scaler, grads: FlatGradients, ctx: StepContext) -> tuple[Tensor, Any]:
    """One optimisation step on ``batch``: forward, loss, backward, clipping, optimizer step.

    ``grads`` holds the gradients of the optimizer's parameters (zeroed here); returns the loss
    and the model's output. The benchmark (``bench/throughput.py``) times exactly this function.
    """
    loss, out = _loss(model, batch, ctx)
    diverged = ctx.device.type == "cpu" and not torch.isfinite(loss)
    if ctx.agree is not None:  # every rank takes (or skips) the same backward: no collective hangs
        diverged, ctx.stop_agreed = ctx.agree(diverged, ctx.stop_requested())
    if diverged:
        raise TrainingDiverged(ctx.epoch)
    grads.zero_()
    scaler.scale(loss * ctx.loss_scale if ctx.loss_scale != 1.0 else loss).backward()
    if ctx.gradient_clip > 0:
        scaler.unscale_(optimizer)
        grads.clip_norm_(ctx.gradient_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss, out


def optimizer_gradients(optimizer) -> FlatGradients:
    """A :class:`~nsm.train.optim.FlatGradients` over every parameter ``optimizer`` updates."""
    return FlatGradients(p for group in optimizer.param_groups for p in group["params"])


def train_epoch(model, loader: Iterable, optimizer, scaler, ctx: StepContext) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy and cycle losses (sample-weighted)."""
    model.train()
    grads = optimizer_gradients(optimizer)
    # loss, correct, cycle L1, cycle L2 — summed on the device, read once at the end.
    sums = torch.zeros(4, dtype=torch.float64, device=ctx.device)
    samples, steps = 0, 0
    finite = torch.ones((), dtype=torch.bool, device=ctx.device)
    if ctx.resume is not None:
        sums += torch.tensor(ctx.resume.sums, dtype=torch.float64, device=ctx.device)
        samples, steps = ctx.resume.samples, ctx.resume.steps
        finite &= ctx.resume.finite
    for batch in loader:
        batch = batch.to(ctx.device, non_blocking=True)
        n = batch.num_graphs
        if ctx.shard is not None:  # n = 0: a stand-in graph on a rank the ragged last batch missed
            n, global_n = ctx.shard.plan(steps)
            ctx.loss_scale = n * ctx.shard.world_size / global_n
        loss, out = train_step(model, batch, optimizer, scaler, grads, ctx)
        finite &= torch.isfinite(loss)
        correct = (out.logits.detach().argmax(1) == batch.y).sum() if n else loss.new_zeros(())
        samples += n
        sums += torch.stack([loss.detach() * n, correct.double(),
                             out.cycle_loss_l1.detach() * n, out.cycle_loss_l2.detach() * n]).double()
        steps += 1
        if ctx.stop_agreed if ctx.agree is not None else ctx.stop_requested():
            raise EpochInterrupted(PartialEpoch(ctx.epoch, steps, sums.tolist(), samples, bool(finite)))
    if ctx.reduce is not None:  # the epoch's metrics over every rank's graphs
        sums, samples, finite = ctx.reduce(sums, samples, bool(finite))
    if not bool(finite):
        raise TrainingDiverged(ctx.epoch)
    loss_sum, correct, l1, l2 = sums.tolist()
    samples = max(samples, 1)
    return {"loss": loss_sum / samples, "accuracy": correct / samples,
            "cycle_loss_l1": l1 / samples, "cycle_loss_l2": l2 / samples, "samples": samples}


@torch.no_grad()
def evaluate(model, loader: Iterable, ctx: StepContext) -> dict[str, object]:
    """Loss and :func:`~nsm.train.metrics.classification_metrics` over ``loader`` (eval mode)."""
    model.eval()
    logits, labels = [], []
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.device)
    for batch in loader:
        batch = batch.to(ctx.device, non_blocking=True)
        loss, out = _loss(model, batch, ctx)
        n = batch.num_graphs
        sums += torch.stack([loss * n, out.cycle_loss_l1 * n, out.cycle_loss_l2 * n]).double()
        logits.append(out.logits.float())
        labels.append(batch.y)
    samples = max(sum(t.numel() for t in labels), 1)
    loss_sum, l1, l2 = sums.tolist()
    metrics = classification_metrics(torch.cat(logits), torch.cat(labels)) if labels else {}
    return {"loss": loss_sum / samples, "cycle_loss_l1": l1 / samples,
            "cycle_loss_l2": l2 / samples, **metrics}
