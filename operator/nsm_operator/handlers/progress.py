"""Mirror the trainer's progress ConfigMap into its training's status (the progress channel).

The watch selects ``nsm.dev/channel=progress`` server-side; every event carries the whole
ConfigMap, and the training comes from the operator's body cache, so an event costs no GET (one
only when the cache has never seen the training) and at most one status patch (progress,
lastCheckpoint, result, and the epochSummary/costEstimate they imply, together).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from nsm.contract import PROGRESS_CONFIGMAP_SUFFIX, now_utc, progress_configmap_name

from nsm_operator.builders.names import LABEL_TRAINING
from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.foreign import warn_once
from nsm_operator.handlers.training import progress_patch
from nsm_operator.mirror import changed, read_document, summary
from nsm_operator.ownership import describe_owner, owned_by

log = logging.getLogger(__name__)


async def on_progress_event(ctx: OperatorContext, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
    if event.get("type") == "DELETED":
        return
    meta = body.get("metadata") or {}
    namespace, cm_name = meta.get("namespace"), meta.get("name") or ""
    training = (meta.get("labels") or {}).get(LABEL_TRAINING)
    if not namespace or not training or cm_name != progress_configmap_name(training):
        return
    await in_background(ctx, "progress", lambda: mirror(ctx, namespace, training, body))


async def mirror(ctx: OperatorContext, namespace: str, name: str, configmap: Mapping[str, Any]) -> None:
    """Validate ``configmap`` and patch what changed into ``namespace/name``'s status."""
    async with ctx.lock(namespace, name):
        training = ctx.cached(namespace, name)
        if training is None:
            training = await ctx.kube.get("NSMTraining", namespace, name)
            if training is None:
                return
            ctx.remember(training)
        tmeta = training.get("metadata") or {}
        if tmeta.get("deletionTimestamp"):
            return
        uid = tmeta.get("uid") or ""
        if not owned_by(configmap, uid):
            message = (f"ConfigMap {name}{PROGRESS_CONFIGMAP_SUFFIX} is not this training's (controller: "
                       f"{describe_owner(configmap)}); its progress is ignored")  # fmt: skip
            warn_once(ctx.events, training, uid, "ConfigMap", "progress", "ForeignProgress", message)
            return
        doc = read_document(configmap.get("data"))
        status = training.get("status") or {}
        patch = changed(doc.fields, status)
        if patch:
            merged = {**training, "status": {**status, **patch}}
            patch.update(progress_patch(merged, ctx.settings.price_per_gpu_hour, now_utc()))
            await ctx.kube.patch_status(namespace, name, patch)  # cached by ctx
    if doc.problems:
        warn_once(ctx.events, training, uid, "ConfigMap", "rejected", "ProgressRejected",
                  f"progress document of {namespace}/{name}: {summary(doc.problems)}")
    moved = doc.moved_aside
    if moved:
        warn_once(ctx.events, training, uid, "ConfigMap", "moved", "CheckpointsMovedAside",
                  f"the checkpoint volume held another training's files (uid {moved.get('previousUid')}); "
                  f"{moved.get('files')} file(s) moved to {moved.get('path')}, nothing deleted", warning=False)
