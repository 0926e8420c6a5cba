"""The rest of a launch, made after its status write and without the training's lock.

A launch creates what the attempt needs to start (the ServiceAccount, the Job) under the
training's lock, writes the status and returns; what the pod needs only later (the checkpoint
PVC, the ConfigMaps, the trainer's RBAC: ``Target.finish_launch``) is made here, in the
background. Under a burst those children wait for the low-priority request slots for many
seconds; while they did so inside the reconcile, every Job and pod event of the training queued
behind its lock, and kopf kept the creation's handler state (docs/performance.md, session 6).

What can go wrong goes back through the reconcile, under the lock:

* a child whose name someone else's object holds (``ForeignObject``) or that the API server
  refuses for good (``Rejected``): the attempt fails, final, and its Job is deleted first, so
  that no pod starts with an object the training does not control;
* anything transient: tried again with doubling delays (capped) for as long as the attempt is
  the training's current one; an attempt that cannot start ends by its own
  ``startupTimeoutSeconds``.

An operator restart loses nothing: when the create or resume handler finds an attempt on that
this process has not finished (an earlier operator launched it, and may have stopped before its
children were made), it makes sure of them (``resumed=True``: one GET when they are all there).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nsm_operator.errors import ForeignObject, Rejected, TransientError
from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.lifecycle import RETRYING, SUSPENDED, TERMINAL
from nsm_operator.targets import Target
from nsm_operator.targets.base import TargetContext
from nsm_operator.watches import backoff_delay

log = logging.getLogger(__name__)

MAX_DELAY = 60.0  # seconds between tries at most: an API server away for minutes is noticed soon
_OVER = TERMINAL | {RETRYING, SUSPENDED}


@dataclass(frozen=True)
class LaunchFailure:
    """Attempt ``attempt`` cannot go on: a child it needs was refused (``reason``, ``message``)."""

    attempt: int
    reason: str
    message: str


Fail = Callable[[LaunchFailure], Awaitable[None]]


def attempt_on(status: Mapping[str, Any], attempt: int) -> bool:
    """Whether ``status`` says attempt ``attempt`` is the current one and on (not ended, retrying
    or suspended)."""
    return int(status.get("attempts") or 0) == attempt and status.get("phase") not in _OVER


def current(ctx: OperatorContext, namespace: str, name: str, attempt: int) -> bool:
    """Whether attempt ``attempt`` is the training's current one and on, as last seen: by the
    cached body, else (a body without a resourceVersion is not cached) by the last phase seen."""
    body = ctx.cached(namespace, name)
    if body is None:
        key = (namespace, name)
        return key in ctx.phases and ctx.phases[key] not in _OVER  # not in: deleted (forgotten)
    status = body.get("status") or {}
    return bool(status.get("activeJob")) and attempt_on(status, attempt)


def finished_or_finishing(ctx: OperatorContext, namespace: str, name: str, attempt: int) -> bool:
    """Whether this process makes, or has made, attempt ``attempt``'s later children."""
    return (namespace, name, attempt) in ctx.finishing or ctx.finished.get((namespace, name)) == attempt


def finish_later(ctx: OperatorContext, target: Target, tctx: TargetContext, attempt: int, fail: Fail,
                 resumed: bool = False) -> None:  # fmt: skip
    """Start finishing attempt ``attempt``'s launch in the background, unless that runs already
    (or, ``resumed``, has been done by this process)."""
    key = (tctx.training.namespace, tctx.training.name, attempt)
    if key in ctx.finishing or (resumed and finished_or_finishing(ctx, *key)):
        return
    ctx.finishing.add(key)
    # Only what finish_launch reads: under a burst a thousand of these wait for the slots, and
    # the reconcile's body and status are stale by then anyway (failures re-read them).
    slim = TargetContext(training=tctx.training, status={}, settings=tctx.settings, kube=tctx.kube)
    ctx.spawn(_finish(ctx, target, slim, attempt, fail, resumed))


async def _finish(ctx: OperatorContext, target: Target, tctx: TargetContext, attempt: int, fail: Fail,
                  resumed: bool) -> None:  # fmt: skip
    namespace, name = tctx.training.namespace, tctx.training.name
    failures = 0
    try:
        while current(ctx, namespace, name, attempt):
            try:
                await target.finish_launch(tctx, resumed=resumed)
                ctx.finished[(namespace, name)] = attempt
                return
            except (ForeignObject, Rejected) as exc:
                reason = exc.reason if isinstance(exc, Rejected) else "ForeignObject"
                failure = LaunchFailure(attempt, reason, str(exc))
                await in_background(ctx, "children", lambda: fail(failure))
                return
            except TransientError as exc:
                failures += 1
                delay = backoff_delay(failures, base=exc.delay, cap=MAX_DELAY)
                ctx.metrics.reconcile_errors_total.labels("children").inc()
                log.warning("%s/%s: children of attempt %d: %s (try %d, again in %.1fs)",
                            namespace, name, attempt, exc, failures, delay)  # fmt: skip
                await asyncio.sleep(delay)
    except Exception:  # noqa: BLE001 - a background task: say so, never die silently
        log.exception("%s/%s: children of attempt %d: unexpected error; the attempt's startupTimeoutSeconds "
                      "ends it if its pod cannot start", namespace, name, attempt)  # fmt: skip
    finally:
        ctx.finishing.discard((namespace, name, attempt))
