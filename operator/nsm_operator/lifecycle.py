"""The attempt lifecycle as a pure state machine, shared by every target (Kubernetes, Modal).

``step(spec, status, observation, now, …)`` returns the status fields to write and one
:class:`Action`. Handlers observe the current attempt (a Job, a Modal call), call ``step``,
perform the action (idempotently: deterministic names) and write the status.

Counting: ``attempts`` is the number of the latest attempt started; ``retries`` is how many
failures were paid for with a retry. A failure that doesn't count (a disruption, a Modal
preemption) or a suspend/resume starts a new attempt without consuming ``maxRetries``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from nsm.contract import iso, parse_time
from nsm.spec import NSMTrainingSpec

PENDING, QUEUED, RUNNING, RETRYING = "Pending", "Queued", "Running", "Retrying"
SUCCEEDED, FAILED, SUSPENDED = "Succeeded", "Failed", "Suspended"
TERMINAL = frozenset({SUCCEEDED, FAILED})


class State(str, Enum):
    absent = "absent"  # the attempt's Job/call does not exist (yet, or any more)
    pending = "pending"
    queued = "queued"  # created but held by a queue (Kueue: Job suspended)
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class Observation:
    """What the target reports about the current attempt."""

    state: State
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    retryable: bool = True
    counts: bool = True  # False: a disruption/preemption, retried without consuming a retry
    started_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime | None = None


class ActionKind(str, Enum):
    none = "none"
    start = "start"  # create attempt `attempt` (create-if-absent) now
    wait = "wait"  # start attempt `attempt` at `at` (phase Retrying)
    stop = "stop"  # delete the active attempt (suspend)
    finish = "finish"  # terminal: nothing more to do


@dataclass(frozen=True)
class Action:
    kind: ActionKind = ActionKind.none
    attempt: int | None = None
    at: datetime | None = None


@dataclass
class Result:
    """New status fields (merge into status) and the action to take."""

    status: dict[str, Any] = field(default_factory=dict)
    action: Action = field(default_factory=Action)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)


def set_condition(
    conditions: Sequence[Mapping[str, Any]], type_: str, status: bool, reason: str, message: str, now: datetime
) -> list[dict[str, Any]]:
    """Upsert a standard condition; lastTransitionTime changes only when its status changes."""
    value = "True" if status else "False"
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        cond = dict(cond)
        if cond.get("type") == type_:
            found = True
            if cond.get("status") != value or "lastTransitionTime" not in cond:
                cond["lastTransitionTime"] = iso(now)  # formatted only when written: every reconcile calls this
            cond.update(status=value, reason=reason, message=message)
        out.append(cond)
    if not found:
        out.append({"type": type_, "status": value, "reason": reason, "message": message,
                    "lastTransitionTime": iso(now)})  # fmt: skip
    return out


def cost_estimate(gpu_seconds: float, price_per_gpu_hour: float) -> dict[str, float]:
    hours = gpu_seconds / 3600.0
    return {"gpuHours": round(hours, 4), "usd": round(hours * price_per_gpu_hour, 2)}


def running_gpu_seconds(spec: NSMTrainingSpec, status: Mapping[str, Any], now: datetime) -> float:
    """GPU-seconds of finished attempts plus the one running now."""
    total = float(status.get("gpuSeconds") or 0.0)
    started = parse_time(status.get("attemptStartTime"))
    if started and status.get("phase") == RUNNING:
        total += max(0.0, (now - started).total_seconds()) * spec.resources.total_gpus
    return total


class _Builder:
    """Accumulates status changes, conditions and events of one step."""

    def __init__(self, status: Mapping[str, Any], now: datetime):
        self.old = status
        self.now = now
        self.res = Result()
        self.conditions = [dict(c) for c in status.get("conditions") or []]

    def set(self, **fields: Any) -> None:
        self.res.status.update(fields)

    def cond(self, type_: str, value: bool, reason: str, message: str = "") -> None:
        self.conditions = set_condition(self.conditions, type_, value, reason, message, self.now)

    def phase(self, phase: str, message: str, event_reason: str, warning: bool = False,
              reason: str | None = None) -> None:
        # reason: why the training is in this phase (kubectl get -o wide's Reason column).
        self.set(phase=phase, message=message, reason=reason)
        if self.old.get("phase") != phase:
            self.res.events.append(("Warning" if warning else "Normal", event_reason, message))

    def done(self, action: Action) -> Result:
        if self.conditions != list(self.old.get("conditions") or []):
            self.res.status["conditions"] = self.conditions
        self.res.action = action
        return self.res


def _not_waiting(b: _Builder, reason: str) -> None:
    """The attempt waits no more: clear ``status.reason`` and the Waiting condition (if any)."""
    if b.old.get("reason"):
        b.set(reason=None)
    if any(c.get("type") == "Waiting" for c in b.conditions):
        b.cond("Waiting", False, reason, "")


def _start(b: _Builder, attempt: int, message: str) -> Action:
    b.set(attempts=attempt, activeJob=None, nextAttemptAt=None, attemptStartTime=None)
    _not_waiting(b, "AttemptCreated")
    b.phase(PENDING, message, "AttemptStarted", reason="AttemptCreated")
    b.cond("Created", True, "AttemptCreated", f"attempt {attempt} created")
    b.cond("Retrying", False, "AttemptCreated", "")
    return Action(ActionKind.start, attempt)


def _attempt_seconds(b: _Builder, obs: Observation, gpus: int) -> float:
    started = obs.started_at or parse_time(b.old.get("attemptStartTime"))
    ended = obs.finished_at or b.now
    secs = max(0.0, (ended - started).total_seconds()) if started else 0.0
    return float(b.old.get("gpuSeconds") or 0.0) + secs * gpus


def step(
    spec: NSMTrainingSpec,
    status: Mapping[str, Any],
    obs: Observation | None,
    now: datetime,
    price_per_gpu_hour: float = 0.0,
) -> Result:
    """Advance the lifecycle. ``obs`` is the current attempt's observation (None: none started)."""
    b = _Builder(status, now)
    phase = status.get("phase")
    attempt = int(status.get("attempts") or 0)
    if phase in TERMINAL:
        return b.done(Action(ActionKind.finish))
    if spec.suspend:
        return b.done(_suspend(b, spec, obs, attempt))
    if phase == SUSPENDED:
        b.cond("Suspended", False, "Resumed", "spec.suspend is false")
        return b.done(_start(b, attempt + 1, f"resumed: attempt {attempt + 1} started"))
    if attempt == 0:
        b.set(retries=0, gpuSeconds=0.0)
        return b.done(_start(b, 1, "attempt 1 started"))
    if phase == RETRYING:
        return b.done(_retry_when_due(b, attempt))
    if obs is None or obs.state == State.absent:
        # Created in a previous step (or the create was lost): create-if-absent again.
        return b.done(Action(ActionKind.start, attempt))
    if obs.state in (State.pending, State.queued, State.running):
        return b.done(_in_flight(b, obs, attempt))
    return b.done(_finished(b, spec, obs, attempt, price_per_gpu_hour))


def _suspend(b: _Builder, spec: NSMTrainingSpec, obs: Observation | None, attempt: int) -> Action:
    """spec.suspend: stop the running attempt once, keep its checkpoint and GPU-seconds."""
    if b.old.get("phase") == SUSPENDED:
        return Action()
    if obs is not None and obs.state == State.running:
        b.set(gpuSeconds=_attempt_seconds(b, obs, spec.resources.total_gpus))
    b.set(activeJob=None, nextAttemptAt=None, attemptStartTime=None)
    b.phase(SUSPENDED, f"suspended; attempt {attempt} stopped, checkpoint kept", "Suspended",
            reason="SuspendRequested")
    b.cond("Suspended", True, "SuspendRequested", "spec.suspend is true")
    b.cond("Running", False, "Suspended", "")
    return Action(ActionKind.stop, attempt or None)


def _retry_when_due(b: _Builder, attempt: int) -> Action:
    at = parse_time(b.old.get("nextAttemptAt")) or b.now
    if b.now >= at:
        b.set(retries=int(b.old.get("retries") or 0))
        return _start(b, attempt + 1, f"retry: attempt {attempt + 1} started")
    return Action(ActionKind.wait, attempt + 1, at)


def _in_flight(b: _Builder, obs: Observation, attempt: int) -> Action:
    """The attempt exists and has not finished: pending, queued or running."""
    if obs.state == State.queued:
        b.phase(QUEUED, f"attempt {attempt} queued", "Queued", reason="WaitingForAdmission")
    elif obs.state == State.running:
        started = obs.started_at or b.now
        b.set(attemptStartTime=b.old.get("attemptStartTime") or iso(started))
        if not b.old.get("startTime"):
            b.set(startTime=iso(started))
        _not_waiting(b, "AttemptRunning")
        b.phase(RUNNING, f"attempt {attempt} running", "Running", reason="AttemptRunning")
        b.cond("Running", True, "AttemptRunning", f"attempt {attempt} running")
    return Action()


def _finished(b: _Builder, spec: NSMTrainingSpec, obs: Observation, attempt: int, price_per_gpu_hour: float) -> Action:
    """The attempt ended: account its GPU time, then succeed, retry or fail."""
    gpu_seconds = _attempt_seconds(b, obs, spec.resources.total_gpus)
    b.set(gpuSeconds=gpu_seconds, costEstimate=cost_estimate(gpu_seconds, price_per_gpu_hour),
          attemptStartTime=None)  # fmt: skip
    b.cond("Running", False, "AttemptFinished", "")
    if obs.state == State.succeeded:
        b.set(completionTime=iso(obs.finished_at or b.now), failureReason=None)
        b.phase(SUCCEEDED, f"attempt {attempt} succeeded", "Succeeded")
        b.cond("Succeeded", True, "TrainingSucceeded", f"attempt {attempt} succeeded")
        return Action(ActionKind.finish)
    b.set(failureReason=obs.reason or "Failed")
    retries = int(b.old.get("retries") or 0)
    if obs.retryable and (not obs.counts or retries < spec.retry.max_retries):
        return _retry(b, spec, obs, attempt, retries)
    what = _describe(attempt, obs)
    final = what if not obs.retryable else f"{what}; maxRetries ({spec.retry.max_retries}) exhausted"
    b.set(completionTime=iso(b.now), nextAttemptAt=None)
    b.phase(FAILED, final, "Failed", warning=True, reason=obs.reason or "AttemptFailed")
    b.cond("Failed", True, obs.reason or "AttemptFailed", final)
    b.cond("Retrying", False, "Final", "")
    return Action(ActionKind.finish)


def _retry(b: _Builder, spec: NSMTrainingSpec, obs: Observation, attempt: int, retries: int) -> Action:
    """A retryable failure: the next attempt now (no delay) or at ``nextAttemptAt``."""
    what = _describe(attempt, obs)
    retries_after = retries + (1 if obs.counts else 0)
    delay = spec.retry.delay(max(1, retries_after)) if obs.counts else 0.0
    at = b.now + timedelta(seconds=delay)
    b.set(retries=retries_after)
    if delay <= 0:
        b.res.events.append(("Warning", "AttemptFailed", f"{what}; retrying now"))
        return _start(b, attempt + 1, f"{what}; attempt {attempt + 1} started")
    b.set(nextAttemptAt=iso(at))
    b.phase(RETRYING, f"{what}; attempt {attempt + 1} in {delay:g}s", "Retrying", warning=True,
            reason=obs.reason or "AttemptFailed")
    b.cond("Retrying", True, obs.reason or "AttemptFailed", what)
    return Action(ActionKind.wait, attempt + 1, at)


def _describe(attempt: int, obs: Observation) -> str:
    parts = [f"attempt {attempt} failed"]
    detail = []
    if obs.reason:
        detail.append(f"reason {obs.reason}")
    if obs.exit_code is not None:
        detail.append(f"exit code {obs.exit_code}")
    if detail:
        parts.append(f" ({', '.join(detail)})")
    if obs.message:
        parts.append(f": {obs.message}")
    return "".join(parts)


# --- the Ready summary (API conventions) --------------------------------------------------------

READY = "Ready"


def summarize(conditions: Sequence[Mapping[str, Any]], phase: str | None, message: str | None,
              generation: int | None, now: datetime) -> list[dict[str, Any]]:  # fmt: skip
    """``conditions`` plus the ``Ready`` summary, each stamped with ``observedGeneration``.

    A training is Ready when it has succeeded (its model is trained): ``kubectl wait
    --for=condition=Ready`` returns then. Until then Ready is False with the phase as reason
    (Pending, Queued, Running, Retrying, Suspended; Failed for good).
    """
    done = phase == SUCCEEDED
    out = set_condition(conditions, READY, done, phase or PENDING, message or "", now)
    if generation:
        for cond in out:
            cond["observedGeneration"] = generation
    return out
