"""Handlers of NSMTraining objects."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nsm_operator.errors import InvalidSpec
from nsm_operator.handlers.boundary import guarded, in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.reconcile import (
    epoch_summary, finish_resumed_launch, mark_failed, now_utc, on_delete, reconcile,
)  # fmt: skip
from nsm_operator.lifecycle import TERMINAL, cost_estimate, running_gpu_seconds
from nsm_operator.resource import Training

log = logging.getLogger(__name__)


async def on_create_or_resume(ctx: OperatorContext, body: Mapping[str, Any], namespace: str, name: str) -> None:
    """Validate before anything is created; then children and the current attempt. An attempt
    that is on and that this process did not launch also makes sure of its later children (an
    earlier operator may have stopped before it made them)."""

    async def work() -> None:
        try:
            Training.from_body(body)
        except InvalidSpec as exc:
            await mark_failed(ctx, body, reason="InvalidSpec", message=str(exc))
            raise
        await reconcile(ctx, namespace, name, body=body, handled=ctx.essence(body))
        await finish_resumed_launch(ctx, body)

    await guarded(ctx, "create", work)


async def on_spec_change(ctx: OperatorContext, body: Mapping[str, Any], namespace: str, name: str) -> None:
    """spec.suspend flips act now; other spec changes apply from the next attempt."""
    await guarded(ctx, "update", lambda: reconcile(ctx, namespace, name, body=body, handled=ctx.essence(body)))


async def on_external_delete(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    """A training of an out-of-cluster target is being deleted: stop its attempt first."""
    await guarded(ctx, "delete", lambda: on_delete(ctx, body))


def progress_patch(body: Mapping[str, Any], price_per_gpu_hour: float, now: datetime) -> dict[str, Any]:
    """epochSummary, valAccuracySummary and costEstimate derived from the trainer's progress (empty if
    unchanged)."""
    status = body.get("status") or {}
    spec = body.get("spec") or {}
    patch: dict[str, Any] = {}
    summary = epoch_summary(status, int(spec.get("epochs") or 0))
    accuracy = (status.get("progress") or {}).get("valAccuracy")
    if isinstance(accuracy, (int, float)) and status.get("valAccuracySummary") != f"{accuracy:.3f}":
        # kubectl's printer columns cannot format numbers: Val-Acc prints this string.
        patch["valAccuracySummary"] = f"{accuracy:.3f}"
    if status.get("epochSummary") != summary:
        patch["epochSummary"] = summary
        try:
            parsed = Training.from_body(body).spec
        except InvalidSpec:
            return patch
        if status.get("phase") not in TERMINAL:
            patch["costEstimate"] = cost_estimate(running_gpu_seconds(parsed, status, now), price_per_gpu_hour)
    return patch


async def on_training_event(ctx: OperatorContext, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
    """Every event of a training (the operator's own watch, main.own_watches; a relist's objects
    come with type None): the body cache, metrics; epochSummary/cost when progress moved without
    them (the progress mirror writes them itself). A deletion forgets the training."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not namespace or not name:
        return
    domain = str((body.get("spec") or {}).get("domain") or "unknown")
    if event.get("type") == "DELETED":
        ctx.metrics.forget_training(namespace, name, domain)
        ctx.forget(namespace, name)
        return
    ctx.remember(body)
    status = body.get("status") or {}
    ctx.metrics.observe_training(namespace, name, domain, status)
    if not status.get("progress") or meta.get("deletionTimestamp"):
        return
    patch = progress_patch(body, ctx.settings.price_per_gpu_hour, now_utc())
    if patch:

        async def write() -> None:
            async with ctx.lock(namespace, name):
                await ctx.kube.patch_status(namespace, name, patch)

        await in_background(ctx, "progress", write)
