"""Handlers of trainer pods (labels app.kubernetes.io/name=nsm-trainer and nsm.dev/training,
filtered by the API server): why the current attempt's pod waits.

Cheap by construction, since every pod change of every training comes here: the pod is judged
from the event alone (:func:`nsm_operator.diagnosis.diagnose`, no GET) against the cached
training, and the status is patched only when the waiting reason changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from nsm.contract import now_utc

from nsm_operator.builders.names import LABEL_ATTEMPT, LABEL_TRAINING
from nsm_operator.diagnosis import PREVIOUS_ATTEMPT, Diagnosis, diagnose, waiting_reason
from nsm_operator.errors import TransientError
from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.reconcile import reconcile
from nsm_operator.handlers.waiting import waiting_patch, warn_once
from nsm_operator.lifecycle import PENDING, RUNNING

_FINISHED = ("Succeeded", "Failed")


async def on_pod_event(ctx: OperatorContext, event: Mapping[str, Any], body: Mapping[str, Any]) -> None:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    namespace, owner, attempt = meta.get("namespace"), labels.get(LABEL_TRAINING), labels.get(LABEL_ATTEMPT)
    if not namespace or not owner:
        return
    cached = await _training(ctx, namespace, owner)
    if cached is None:
        return  # gone
    status = cached.get("status") or {}
    if status.get("reason") == PREVIOUS_ATTEMPT:
        # A new attempt waits for earlier pods: any of them ending may let it start. A live pod
        # of the current attempt means its Job was just created: judge it once the status says so.
        gone = event.get("type") == "DELETED" or (body.get("status") or {}).get("phase") in _FINISHED
        if gone:
            await in_background(ctx, "pod", lambda: reconcile(ctx, namespace, owner))
        elif attempt == str(status.get("attempts")) and not meta.get("deletionTimestamp"):
            _later(ctx, namespace, owner, event, body)
        return
    if event.get("type") == "DELETED":
        return
    if not _is_current(status, attempt):
        if attempt and attempt.isdigit() and int(attempt) > int(status.get("attempts") or 0):
            _later(ctx, namespace, owner, event, body)  # the launch's status patch is still on its way
        return
    ctx.early_pods.pop((namespace, owner), None)  # this event is newer than any held back
    diagnosis = diagnose(body)
    if diagnosis is None and waiting_reason(status) and _nodes(cached) > 1:
        # One of several pods is fine: the attempt still waits while any other pod does.
        try:
            diagnosis = await _other_pod_waiting(ctx, namespace, owner, attempt, meta.get("name"))
        except TransientError:
            return  # the next pod event or the resync judges again
    if (diagnosis.reason if diagnosis else None) == waiting_reason(status):
        return  # the common case: nothing new, no write (a launch's AttemptCreated is no wait to clear)

    async def write() -> None:
        async with ctx.lock(namespace, owner):
            fresh = await _training(ctx, namespace, owner) or {}
            st = fresh.get("status") or {}
            if not _is_current(st, attempt) or (diagnosis.reason if diagnosis else None) == waiting_reason(st):
                return
            generation = (fresh.get("metadata") or {}).get("generation")
            await ctx.kube.patch_status(namespace, owner, waiting_patch(st, diagnosis, now_utc(), generation))
            if diagnosis is not None:
                warn_once(ctx, fresh, int(attempt or 0), diagnosis)

    await in_background(ctx, "pod", write)


_POD_METADATA = ("name", "namespace", "uid", "labels", "creationTimestamp", "deletionTimestamp", "resourceVersion")
_POD_STATUS = ("phase", "conditions", "containerStatuses", "initContainerStatuses")


def pod_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What this handler and :func:`diagnose` read of a pod (no spec: most of a pod's bytes),
    cut before its event is queued or held back (``_later``)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return {"metadata": {k: meta[k] for k in _POD_METADATA if k in meta},
            "status": {k: status[k] for k in _POD_STATUS if k in status}}  # fmt: skip


def _nodes(training: Mapping[str, Any]) -> int:
    nodes = ((training.get("spec") or {}).get("resources") or {}).get("nodes")
    return nodes if isinstance(nodes, int) else 1


async def _other_pod_waiting(ctx: OperatorContext, namespace: str, owner: str, attempt: str | None,
                             name: str | None) -> Diagnosis | None:  # fmt: skip
    """Why another pod of the attempt waits (one LIST, only when a multi-node attempt's waiting
    reason would be cleared), or None when none does."""
    pods = await ctx.kube.list("Pod", namespace, f"{LABEL_TRAINING}={owner},{LABEL_ATTEMPT}={attempt}")
    others = (diagnose(p) for p in pods if (p.get("metadata") or {}).get("name") != name)
    return next((d for d in others if d is not None), None)


async def _training(ctx: OperatorContext, namespace: str, owner: str) -> dict[str, Any] | None:
    """The training as last seen by the watch or our own patches; a GET only for one never seen
    (its first watch event not processed yet, or a deleted one's last pods)."""
    body = ctx.cached(namespace, owner)
    if body is None:
        try:
            body = await ctx.kube.get("NSMTraining", namespace, owner)
        except TransientError:
            return None  # the next pod event or the resync tries again
        if body is not None:
            ctx.remember(body)
    return body


def _later(ctx: OperatorContext, namespace: str, owner: str, event: Mapping[str, Any], body: Mapping[str, Any],
           delay: float = 1.0) -> None:  # fmt: skip
    """Judge a pod that came before its attempt's status once more, ``delay`` seconds later: the
    scheduler reports Unschedulable once, often before the operator's own status patch lands.
    Only the newest such pod per training is kept, and a later event of it supersedes it."""
    key = (namespace, owner)
    first = key not in ctx.early_pods
    ctx.early_pods[key] = body
    if not first:
        return

    async def again() -> None:
        await asyncio.sleep(delay)
        held = ctx.early_pods.pop(key, None)
        if held is not None:
            await on_pod_event(ctx, event, held)

    ctx.spawn(again())


def _is_current(status: Mapping[str, Any], attempt: str | None) -> bool:
    """The pod belongs to the training's current attempt, which has not started running yet
    (or runs: a reason set while pending is cleared by the lifecycle then)."""
    return attempt is not None and str(status.get("attempts") or "") == attempt and status.get("phase") in (
        PENDING, RUNNING)
