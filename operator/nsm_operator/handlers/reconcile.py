"""One reconcile of one training: re-read it, observe the current attempt, step the lifecycle,
act (idempotently), write the status, post events, update metrics.

Every entry point (create/resume, suspend changes, Job events, the retry timer) calls
:func:`reconcile`; it serialises per training and always acts on the freshly read object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from nsm.contract import iso, now_utc, parse_time

from nsm_operator.diffbase import FIELD
from nsm_operator.errors import ForeignObject, InvalidSpec, Rejected, TargetUnavailable
from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.finishing import LaunchFailure, attempt_on, current, finish_later, finished_or_finishing
from nsm_operator.handlers.foreign import foreign_job_event
from nsm_operator.handlers.waiting import early_waiting, end_if_stuck, follow_up
from nsm_operator.lifecycle import (
    FAILED, RETRYING, SUSPENDED, TERMINAL, Action, ActionKind, Observation, Result, State, set_condition, step,
    summarize,
)  # fmt: skip
from nsm_operator.resource import Training
from nsm_operator.targets import Target, get_target
from nsm_operator.targets.base import TargetContext

__all__ = ["epoch_summary", "finish_resumed_launch", "mark_failed", "now_utc", "on_delete", "reconcile",
           "schedule_retry"]

log = logging.getLogger(__name__)


def epoch_summary(status: Mapping[str, Any], epochs: int) -> str:
    progress = status.get("progress") or {}
    return f"{progress.get('epoch') or 0}/{progress.get('epochs') or epochs}"


async def reconcile(
    ctx: OperatorContext,
    namespace: str,
    name: str,
    *,
    job: Mapping[str, Any] | None = None,
    body: Mapping[str, Any] | None = None,
    reread: bool = False,
    handled: str | None = None,
    failure: LaunchFailure | None = None,
) -> None:
    """Reconcile ``namespace/name``. ``job``: a Job body from a watch event (saves a GET);
    ``body``: the training as kopf just delivered it; ``handled``: the essence of ``body`` that
    kopf stores once its change handler returns (``diffbase.encoded_essence``), recorded by this
    reconcile's status write so that kopf needs no PATCH of its own; ``failure``: a launch that
    cannot be finished (``handlers/finishing``): its attempt, if still the current one, fails.

    The training is the newest of: ``body``, the last watch event, the response of our own last
    status patch (all kept in ``ctx.bodies``); a GET only when none is known, or ``reread``.
    """
    async with ctx.lock(namespace, name):
        if job is not None and not reread and ctx.folded.get((namespace, name)) == job:
            return  # this Job, as the last reconcile took it in (a launch's own Job echoed): nothing new
        if body is not None:
            ctx.remember(dict(body))
        fresh = None if reread else ctx.cached(namespace, name)
        if fresh is None:
            fresh = await ctx.kube.get("NSMTraining", namespace, name)
            if fresh is None:
                return
            ctx.remember(fresh)
        if (fresh.get("metadata") or {}).get("deletionTimestamp"):
            return
        await _reconcile_locked(ctx, fresh, job, handled, failure)


async def _reconcile_locked(ctx: OperatorContext, body: Mapping[str, Any], job: Mapping[str, Any] | None,
                            handled: str | None = None, failure: LaunchFailure | None = None) -> None:  # fmt: skip
    status: Mapping[str, Any] = body.get("status") or {}
    if status.get("phase") in TERMINAL:
        return
    try:
        training = Training.from_body(body)
        target = get_target(training.spec.target.value, ctx.settings)
    except (InvalidSpec, TargetUnavailable) as exc:
        await mark_failed(ctx, body, reason=type(exc).__name__, message=str(exc))
        raise
    try:
        await _advance(ctx, body, training, target, job, handled, failure)
    except Rejected as exc:
        # A permanent 4xx: the same request would be refused again, so fail instead of looping.
        await mark_failed(ctx, body, reason=exc.reason, message=str(exc))
        raise


async def _advance(ctx: OperatorContext, body: Mapping[str, Any], training: Training, target: Target,
                   job: Mapping[str, Any] | None, handled: str | None = None,
                   failure: LaunchFailure | None = None) -> None:  # fmt: skip
    """Observe, step, act and write the status of one validated training. The status write is
    the last thing that can fail, so ``handled`` is recorded only by a handling that succeeds;
    a launch's later children are started after it (``handlers/finishing``)."""
    status: Mapping[str, Any] = body.get("status") or {}
    if job is not None and foreign_job_event(ctx.events, body, training, job):
        return  # a Job this training does not control changes nothing (a Warning was posted)
    tctx = TargetContext(training=training, status=status, settings=ctx.settings, kube=ctx.kube, body=body)
    now = now_utc()
    if failure is not None:
        obs = await _failed_launch(target, tctx, failure)
        if obs is None:
            return  # that attempt is over already
    else:
        obs = await end_if_stuck(target, tctx, await _observe(target, tctx, job), now)
    result = step(training.spec, status, obs, now, ctx.settings.price_per_gpu_hour)
    patch: dict[str, Any] = dict(result.status)
    if obs is not None and obs.state in (State.succeeded, State.failed):
        patch.update(target.finished_fields(tctx))  # in the same patch as the phase it ends with
    patch.update(await _act_or_fail(ctx, target, tctx, result, {**status, **patch}, now))
    again = follow_up(ctx, target, tctx, obs, patch, now)
    patch.update(await _launched(ctx, target, tctx, result, {**status, **patch}, now))
    early_waiting(ctx, tctx, patch, now)
    if again is not None:
        schedule_retry(ctx, training.namespace, training.name, again)
    if obs is not None and obs.state == State.running and not status.get("attemptStartTime") and obs.created_at:
        ctx.metrics.time_to_running_seconds.observe(max(0.0, (now - obs.created_at).total_seconds()))
    handled = handled if ctx.record_handled else None
    if handled is not None:
        patch[FIELD] = handled
    patch = _status_patch(body, training, patch)
    if patch:
        await ctx.kube.patch_status(training.namespace, training.name, patch)  # cached by ctx
    if handled is not None:
        ctx.recorded[(training.namespace, training.name)] = handled  # written now, or already there
    if tctx.launched is not None or job is not None:
        # The Job as this status now reflects it: an event with nothing newer needs no reconcile.
        ctx.folded[(training.namespace, training.name)] = tctx.launched if tctx.launched is not None else job
    _record(ctx, body, training, patch, result)
    if tctx.unfinished is not None:
        _finish_later(ctx, target, tctx, tctx.unfinished)


async def _failed_launch(target: Target, tctx: TargetContext, failure: LaunchFailure) -> Observation | None:
    """The failure of the current attempt's launch, its Job deleted first (no pod may start with
    a child the training does not control); None if that attempt is no longer the current one."""
    if not attempt_on(tctx.status, failure.attempt):
        return None
    await target.stop(tctx)
    return Observation(State.failed, reason=failure.reason, message=failure.message, retryable=False)


def _finish_later(ctx: OperatorContext, target: Target, tctx: TargetContext, attempt: int,
                  resumed: bool = False) -> None:  # fmt: skip
    namespace, name = tctx.training.namespace, tctx.training.name
    finish_later(ctx, target, tctx, attempt, resumed=resumed,
                 fail=lambda failure: reconcile(ctx, namespace, name, failure=failure))  # fmt: skip


async def finish_resumed_launch(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    """The current attempt, if on and not launched and finished by this process, makes sure of
    its later children: an earlier operator may have stopped before it made them. kopf calls the
    create handler, not the resume one, for a training whose launch an earlier operator wrote from
    a Job event before its creation was recorded. ``body``: as kopf delivered it, for when no newer
    one is cached."""
    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace") or "default", meta.get("name") or ""
    body = ctx.cached(namespace, name) or body
    status = body.get("status") or {}
    attempt = int(status.get("attempts") or 0)
    if not attempt or not status.get("activeJob") or not current(ctx, namespace, name, attempt):
        return
    if finished_or_finishing(ctx, namespace, name, attempt):
        return  # launched by this process (a fresh creation): nothing to read, not even the spec
    try:
        training = Training.from_body(body)
        target = get_target(training.spec.target.value, ctx.settings)
    except (InvalidSpec, TargetUnavailable):
        return
    tctx = TargetContext(training=training, status=status, settings=ctx.settings, kube=ctx.kube, body=body)
    _finish_later(ctx, target, tctx, attempt, resumed=True)


async def _observe(target: Target, tctx: TargetContext, job: Mapping[str, Any] | None) -> Observation | None:
    """The current attempt's observation; None when no attempt runs (none yet, retrying, suspended).
    A Job from a watch event answers without a GET when it belongs to the current attempt."""
    status = tctx.status
    if not int(status.get("attempts") or 0) or status.get("phase") in (RETRYING, SUSPENDED):
        return None
    obs = await target.observe_event(tctx, job) if job is not None else None
    return obs if obs is not None else await target.observe(tctx)


async def _act(ctx: OperatorContext, target: Target, tctx: TargetContext, action: Action) -> dict[str, Any]:
    """Perform ``action`` (idempotently); returns the status fields the target adds."""
    training, attempt = tctx.training, int(tctx.status.get("attempts") or 0)
    fields: dict[str, Any] = {}
    if action.kind == ActionKind.start and action.attempt is not None:
        created = parse_time(tctx.body["metadata"].get("creationTimestamp"))
        if action.attempt == 1 and attempt == 0 and created:
            tctx.on_created = lambda: ctx.metrics.job_creation_seconds.observe(
                max(0.0, (now_utc() - created).total_seconds()))
        fields = await target.launch(tctx, action.attempt)
        tctx.created()  # targets that don't report it themselves
        if action.attempt != attempt:
            ctx.metrics.attempts_total.labels(training.namespace, training.spec.domain.value).inc()
    elif action.kind == ActionKind.stop:
        await target.stop(tctx)
    elif action.kind == ActionKind.wait and action.at is not None:
        schedule_retry(ctx, training.namespace, training.name, (action.at - now_utc()).total_seconds())
    if target.polling and action.kind in (ActionKind.none, ActionKind.start):
        # Polling targets (Modal) report nothing by themselves: look again in a while.
        schedule_retry(ctx, training.namespace, training.name, ctx.settings.modal_poll_seconds)
    return fields


async def _act_or_fail(ctx: OperatorContext, target: Target, tctx: TargetContext, result: Result,
                       stepped: Mapping[str, Any], now: datetime) -> dict[str, Any]:  # fmt: skip
    """:func:`_act`; when a child's name is taken by someone else's object (``ForeignObject``),
    the attempt just started fails, final: the fields of that failure (``stepped``: the status
    after this step), its events added to ``result``."""
    try:
        return await _act(ctx, target, tctx, result.action)
    except ForeignObject as exc:
        failed = Observation(State.failed, reason="ForeignObject", message=str(exc), retryable=False)
        again = step(tctx.training.spec, stepped, failed, now, ctx.settings.price_per_gpu_hour)
        result.events.extend(again.events)
        return dict(again.status)


async def _launched(ctx: OperatorContext, target: Target, tctx: TargetContext, result: Result,
                    stepped: Mapping[str, Any], now: datetime) -> dict[str, Any]:  # fmt: skip
    """The step after a launch, from the attempt as created (a suspended Job: Queued), so the
    whole transition goes out in one status patch; its watch event then changes nothing."""
    if tctx.launched is None or not stepped.get("activeJob"):
        return {}
    obs = await target.observe_event(replace(tctx, status=stepped), tctx.launched)
    if obs is None or obs.state not in (State.pending, State.queued):
        return {}  # running or ended: the ordinary path on its event (metrics, failed pods)
    again = step(tctx.training.spec, stepped, obs, now, ctx.settings.price_per_gpu_hour)
    result.events.extend(again.events)
    return dict(again.status)


def _status_patch(body: Mapping[str, Any], training: Training, patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` plus the bookkeeping fields, without what the status already says."""
    meta, status = body["metadata"], body.get("status") or {}
    if not status.get("epochSummary"):
        patch["epochSummary"] = epoch_summary(status, training.spec.epochs)
    if meta.get("generation") and status.get("observedGeneration") != meta["generation"]:
        patch["observedGeneration"] = meta["generation"]
    patch["conditions"] = _summarized(body, patch)
    return {k: v for k, v in patch.items() if status.get(k) != v}


def _summarized(body: Mapping[str, Any], patch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions after ``patch``, with the Ready summary and observedGeneration."""
    status = body.get("status") or {}
    new = {**status, **patch}
    return summarize(new.get("conditions") or [], new.get("phase"), new.get("message"),
                     (body.get("metadata") or {}).get("generation"), now_utc())  # fmt: skip


def _record(ctx: OperatorContext, body: Mapping[str, Any], training: Training, patch: Mapping[str, Any],
            result: Result) -> None:
    """Metrics, events and the log line of one reconcile."""
    status = body.get("status") or {}
    domain = training.spec.domain.value
    new_phase = patch.get("phase")
    if new_phase == RETRYING:
        ctx.metrics.retries_total.labels(training.namespace, domain, patch.get("failureReason") or "Failed").inc()
    elif new_phase == FAILED:
        ctx.metrics.failures_total.labels(training.namespace, domain, patch.get("failureReason") or "Failed").inc()
    for type_, reason, message in result.events:
        ctx.events.record(body, type_, reason, message)
    log.info("%s/%s: %s -> %s (%s)", training.namespace, training.name, status.get("phase"),
             patch.get("phase", status.get("phase")), result.action.kind.value)  # fmt: skip


def schedule_retry(ctx: OperatorContext, namespace: str, name: str, delay: float) -> None:
    """Reconcile again after ``delay`` seconds (a retry due, a poll; 50 ms margin so that
    ``now >= nextAttemptAt``). In memory: after a restart, on.resume reconciles and reschedules."""
    ctx.schedule(namespace, name, delay + 0.05,
                 lambda: in_background(ctx, "retry", lambda: reconcile(ctx, namespace, name)))  # fmt: skip


async def on_delete(ctx: OperatorContext, body: Mapping[str, Any]) -> None:
    """Deleting a training whose target runs outside the cluster (Modal): stop its attempt.
    Kubernetes children need nothing: owner references cascade."""
    try:
        training = Training.from_body(body)
        target = get_target(training.spec.target.value, ctx.settings)
    except (InvalidSpec, TargetUnavailable):
        return
    tctx = TargetContext(training=training, status=body.get("status") or {}, settings=ctx.settings,
                         kube=ctx.kube, body=body)  # fmt: skip
    async with ctx.lock(training.namespace, training.name):
        message = await target.delete(tctx)
    if message:
        # Deletion goes on (the finalizer is removed): a hung namespace helps nobody.
        log.warning("%s/%s: %s", training.namespace, training.name, message)
        ctx.events.record(body, "Warning", "CancelFailed", message)


async def mark_failed(ctx: OperatorContext, body: Mapping[str, Any], *, reason: str, message: str) -> None:
    """Terminal failure that needs no attempt (invalid spec, unavailable target); no children."""
    meta = body["metadata"]
    status = body.get("status") or {}
    now = now_utc()
    conditions = set_condition(status.get("conditions") or [], "Failed", True, reason, message, now)
    conditions = summarize(conditions, FAILED, message, meta.get("generation"), now)
    patch = {"phase": FAILED, "message": message, "failureReason": reason, "reason": reason,
             "conditions": conditions, "completionTime": iso(now)}  # fmt: skip
    if status.get("phase") != FAILED:
        await ctx.kube.patch_status(meta.get("namespace") or "default", meta["name"], patch)
        domain = str((body.get("spec") or {}).get("domain"))
        domain = domain if domain in ("planning", "causal", "kg") else "invalid"  # bounded label
        ctx.metrics.failures_total.labels(meta.get("namespace") or "default", domain, reason).inc()
        ctx.events.record(body, "Warning", reason, message)
