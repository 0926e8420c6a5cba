"""Why an attempt's pod has not started: a pure mapping from a Pod to (reason, message, retryable).

The reasons are the Kubernetes components' own (the scheduler's ``Unschedulable``, the kubelet's
``ImagePullBackOff`` …) and the messages are theirs verbatim, so ``status.reason`` and the
Warning event say what ``kubectl describe pod`` would. Whether a stuck attempt is retried when
``spec.startupTimeoutSeconds`` ends it follows the reason (:func:`is_retryable`): capacity and
volumes may appear later, so a scheduling wait is retried; a wrong image reference or a missing
Secret/ConfigMap key gives the same answer every time, so those are final.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nsm_operator.lifecycle import Observation, State

WAITING = "Waiting"
"""The condition that says what the current attempt waits for (True) or that it waits no more."""

UNSCHEDULABLE = "Unschedulable"
UNBOUND_CLAIM = "UnboundPersistentVolumeClaim"
PREVIOUS_ATTEMPT = "PreviousAttemptTerminating"  # set by the operator, not by a pod
STARTUP_TIMEOUT = "StartupTimeout"  # the deadline passed without a more specific reason

IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
FINAL_REASONS = IMAGE_REASONS | CONFIG_REASONS
"""Reasons no retry can fix: the attempt that timed out on one of them fails the training."""

REASONS = (UNSCHEDULABLE, UNBOUND_CLAIM, PREVIOUS_ATTEMPT, STARTUP_TIMEOUT, *sorted(FINAL_REASONS))
"""Every value ``status.reason`` can take (bounded: it labels a metric)."""


@dataclass(frozen=True)
class Diagnosis:
    """Why a pod waits: ``reason`` (one of :data:`REASONS`) and the component's own message."""

    reason: str
    message: str

    @property
    def retryable(self) -> bool:
        return is_retryable(self.reason)


def waiting_reason(status: Mapping[str, Any]) -> str | None:
    """``status.reason`` when it says what the current attempt waits for (one of :data:`REASONS`),
    else None: a lifecycle reason such as a launch's ``AttemptCreated`` is no wait to clear."""
    reason = status.get("reason")
    return reason if reason in REASONS else None


def is_retryable(reason: str | None) -> bool:
    """Whether a new attempt may get past ``reason`` (None: the deadline passed for no known reason)."""
    return reason not in FINAL_REASONS


def diagnose(pod: Mapping[str, Any]) -> Diagnosis | None:
    """Why ``pod`` waits to start, or None when it doesn't (running, finished, creating, gone).

    Container waiting reasons win over scheduling: they come later in a pod's life.
    """
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") not in (None, "Pending"):
        return None
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in FINAL_REASONS:
            name = cs.get("name") or "?"
            return Diagnosis(reason, f"container {name}: {waiting.get('message') or reason}")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == UNSCHEDULABLE:
            message = cond.get("message") or UNSCHEDULABLE
            # The scheduler names the claim ("persistentvolumeclaim \"x\" not found", "unbound
            # immediate PersistentVolumeClaims"): a distinct reason, the fix is elsewhere.
            reason = UNBOUND_CLAIM if "persistentvolumeclaim" in message.lower() else UNSCHEDULABLE
            return Diagnosis(reason, message)
    return None


def startup_deadline(timeout_seconds: int, obs: Observation | None) -> datetime | None:
    """When a pending attempt's startup time runs out: ``timeout_seconds`` after its Job started
    (a Job held by a queue has not started: queue time doesn't count); None when not pending."""
    if obs is None or obs.state != State.pending:
        return None
    since = obs.started_at or obs.created_at
    return since + timedelta(seconds=timeout_seconds) if since else None


def startup_expired(timeout_seconds: int, status: Mapping[str, Any], obs: Observation | None,
                    now: datetime) -> Observation | None:  # fmt: skip
    """The failed observation that ends a pending attempt past its startup deadline, with the
    reason it waited for (``status.reason``) and that reason's retryability; None otherwise."""
    deadline = startup_deadline(timeout_seconds, obs)
    if deadline is None or now < deadline:
        return None
    reason = waiting_reason(status)
    reason = reason if reason and reason != PREVIOUS_ATTEMPT else STARTUP_TIMEOUT
    detail = next((c.get("message") for c in status.get("conditions") or []
                   if c.get("type") == WAITING and c.get("status") == "True"), None)  # fmt: skip
    message = f"not started within startupTimeoutSeconds ({timeout_seconds}s)"
    return Observation(State.failed, reason=reason, message=f"{message}: {detail}" if detail else message,
                       retryable=is_retryable(reason), created_at=obs.created_at if obs else None)  # fmt: skip
