"""A waiting attempt says what it waits for: ``status.reason``, the ``Waiting`` condition, one
Warning event per reason per attempt, and ``spec.startupTimeoutSeconds`` ending it.

Used by the reconcile (startup deadline, an attempt held back by an earlier attempt's pod) and by
the pod watch (``handlers/pods.py``: scheduling, image and container-config failures).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nsm_operator.builders.names import LABEL_ATTEMPT
from nsm_operator.diagnosis import (
    PREVIOUS_ATTEMPT, WAITING, Diagnosis, diagnose, startup_deadline, startup_expired,
)  # fmt: skip
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.lifecycle import PENDING, Observation, set_condition, summarize
from nsm_operator.targets import Target
from nsm_operator.targets.base import TargetContext

RECHECK_SECONDS = 5.0
"""How soon a launch held back by an earlier attempt's pod is tried again (the pod's deletion
event usually comes first)."""


def waiting_patch(status: Mapping[str, Any], diagnosis: Diagnosis | None, now: datetime,
                  generation: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The status fields that say the current attempt waits for ``diagnosis`` (None: no more),
    the Ready summary included (its message is the status message), so this one write leaves
    nothing for the next reconcile to correct."""
    attempt = int(status.get("attempts") or 0)
    conditions = status.get("conditions") or []
    if diagnosis is None:
        patch = {"reason": None, "message": f"attempt {attempt} pending",
                 "conditions": set_condition(conditions, WAITING, False, "PodStarting", "", now)}  # fmt: skip
    else:
        patch = {
            "reason": diagnosis.reason,
            "message": f"attempt {attempt} waiting: {diagnosis.reason}: {diagnosis.message}",
            "conditions": set_condition(conditions, WAITING, True, diagnosis.reason, diagnosis.message, now),
        }
    patch["conditions"] = summarize(patch["conditions"], status.get("phase"), patch["message"],
                                    generation or status.get("observedGeneration"), now)  # fmt: skip
    return patch


def early_waiting(ctx: OperatorContext, tctx: TargetContext, patch: dict[str, Any], now: datetime) -> None:
    """A launch whose pod already said why it waits (its event came before the launch's status,
    held in ``ctx.early_pods``, as under a burst) says so in the launch's own status patch: one
    write for the whole transition instead of a second one from the pod handler."""
    stepped = {**tctx.status, **patch}
    key = (tctx.training.namespace, tctx.training.name)
    pod = ctx.early_pods.get(key)
    if pod is None or not patch.get("activeJob") or stepped.get("phase") != PENDING:
        return
    attempt = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ATTEMPT)
    diagnosis = diagnose(pod) if attempt == str(stepped.get("attempts")) else None
    if diagnosis is None:
        return  # starting normally, or not this attempt's: the pod handler judges it later
    del ctx.early_pods[key]
    patch.update(waiting_patch(stepped, diagnosis, now))
    warn_once(ctx, tctx.body, int(attempt or 0), diagnosis)


def warn_once(ctx: OperatorContext, body: Mapping[str, Any], attempt: int, diagnosis: Diagnosis) -> None:
    """A Warning event for ``diagnosis``, once per reason per attempt (per operator process)."""
    meta = body.get("metadata") or {}
    key = (meta.get("namespace") or "", meta.get("name") or "", attempt, diagnosis.reason)
    if key in ctx.warned:
        return
    ctx.warned.add(key)
    ctx.events.record(body, "Warning", diagnosis.reason, f"attempt {attempt}: {diagnosis.message}")


async def end_if_stuck(target: Target, tctx: TargetContext, obs: Observation | None, now: datetime) -> Observation | None:
    """``obs``, or a failed observation with the waiting reason once the startup deadline passed;
    then the stuck attempt is stopped first, so it neither holds its node nor starts late."""
    expired = startup_expired(tctx.training.spec.startup_timeout_seconds, tctx.status, obs, now)
    if expired is None:
        return obs
    await target.stop(tctx)
    return expired


def follow_up(ctx: OperatorContext, target: Target, tctx: TargetContext, obs: Observation | None,
              patch: dict[str, Any], now: datetime) -> float | None:  # fmt: skip
    """After the action: a launch held back says so in ``patch`` (condition, event); returns
    when to reconcile again (seconds), if a deadline or a re-check needs it."""
    if patch.get("reason") == PREVIOUS_ATTEMPT:
        diagnosis = Diagnosis(PREVIOUS_ATTEMPT, str(patch.get("message") or ""))
        merged = {**tctx.status, **patch}
        patch["conditions"] = waiting_patch(merged, diagnosis, now)["conditions"]
        warn_once(ctx, tctx.body, int(merged.get("attempts") or 0), diagnosis)
        return RECHECK_SECONDS
    if tctx.status.get("reason") == PREVIOUS_ATTEMPT and patch.get("activeJob"):
        patch.update(waiting_patch({**tctx.status, **patch}, None, now))  # held back no more: started
    deadline = startup_deadline(tctx.training.spec.startup_timeout_seconds, obs)
    if deadline is not None and not target.polling:
        return max(0.0, (deadline - now).total_seconds())
    return None
