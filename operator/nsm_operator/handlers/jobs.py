"""Handlers of the attempt Jobs (label app.kubernetes.io/name=nsm-trainer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsm_operator.builders.names import LABEL_TRAINING
from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.reconcile import reconcile


async def on_job_event(ctx: OperatorContext, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
    """Fold a Job change into its training's status (owner found by label nsm.dev/training; the
    reconcile uses the Job only when it is ``<name>-a<n>`` controlled by that training's UID).

    A deleted Job (by someone else than the operator's suspend) is re-created by the reconcile,
    which re-reads the training first: after the training's own deletion it finds nothing.
    """
    deleted = event.get("type") == "DELETED"
    meta = body.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(LABEL_TRAINING)
    namespace = meta.get("namespace")
    if not owner or not namespace:
        return
    job = None if deleted else dict(body)
    await in_background(ctx, "job", lambda: reconcile(ctx, namespace, owner, job=job, reread=deleted))
