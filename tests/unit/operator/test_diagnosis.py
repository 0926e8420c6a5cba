"""diagnosis.py: a pod's status -> why it waits (the components' own reason and message), and the
startup deadline that ends a stuck attempt with that reason."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nsm_operator.diagnosis import (
    PREVIOUS_ATTEMPT, REASONS, STARTUP_TIMEOUT, UNBOUND_CLAIM, UNSCHEDULABLE, Diagnosis, diagnose, is_retryable,
    startup_deadline, startup_expired,
)  # fmt: skip
from nsm_operator.lifecycle import Observation, State

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def pod(phase="Pending", conditions=(), containers=(), init=(), deleting=False):
    meta = {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {"name": "p"}
    return {"metadata": meta, "status": {"phase": phase, "conditions": list(conditions),
                                         "containerStatuses": list(containers), "initContainerStatuses": list(init)}}


def unschedulable(message):
    return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}


def waiting(reason, message=None, name="trainer"):
    return {"name": name, "state": {"waiting": {"reason": reason, **({"message": message} if message else {})}}}


def test_unschedulable_keeps_the_schedulers_message():
    msg = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    assert diagnose(pod(conditions=[unschedulable(msg)])) == Diagnosis(UNSCHEDULABLE, msg)


@pytest.mark.parametrize("msg", ['persistentvolumeclaim "ckpt" not found',
                                 "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."])
def test_a_claim_named_by_the_scheduler_is_its_own_reason(msg):
    d = diagnose(pod(conditions=[unschedulable(msg)]))
    assert d == Diagnosis(UNBOUND_CLAIM, msg) and d.retryable


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                    "CreateContainerConfigError", "CreateContainerError"])
def test_container_waiting_reasons_are_final(reason):
    d = diagnose(pod(conditions=[{"type": "PodScheduled", "status": "True"}], containers=[waiting(reason, "why")]))
    assert d == Diagnosis(reason, "container trainer: why") and not d.retryable


def test_an_init_container_counts_and_a_waiting_reason_beats_scheduling():
    d = diagnose(pod(conditions=[unschedulable("x")], init=[waiting("ErrImagePull", name="init")]))
    assert d == Diagnosis("ErrImagePull", "container init: ErrImagePull")


@pytest.mark.parametrize("p", [
    pod(containers=[waiting("ContainerCreating")]),  # on its way: no reason
    pod(phase="Running", conditions=[unschedulable("stale")]),
    pod(phase="Failed", containers=[waiting("ImagePullBackOff")]),
    pod(conditions=[unschedulable("x")], deleting=True),
    pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
    {"metadata": {}},
], ids=["creating", "running", "failed", "deleting", "gated", "no-status"])
def test_no_reason(p):
    assert diagnose(p) is None


def test_retryability_and_reasons():
    assert is_retryable(UNSCHEDULABLE) and is_retryable(STARTUP_TIMEOUT) and is_retryable(None)
    assert not is_retryable("ImagePullBackOff") and not is_retryable("CreateContainerConfigError")
    assert len(set(REASONS)) == len(REASONS) and PREVIOUS_ATTEMPT in REASONS


def test_startup_deadline_counts_from_the_job_start_else_its_creation():
    assert startup_deadline(60, Observation(State.pending, started_at=T0, created_at=T0 - timedelta(hours=1))) == \
        T0 + timedelta(seconds=60)
    assert startup_deadline(60, Observation(State.pending, created_at=T0)) == T0 + timedelta(seconds=60)
    for obs in (None, Observation(State.running, started_at=T0), Observation(State.queued, created_at=T0),
                Observation(State.pending)):
        assert startup_deadline(60, obs) is None


def test_startup_expired_carries_the_waiting_reason_message_and_retryability():
    obs = Observation(State.pending, started_at=T0)
    status = {"reason": "ImagePullBackOff", "conditions": [
        {"type": "Waiting", "status": "True", "reason": "ImagePullBackOff", "message": "container trainer: nope"}]}
    assert startup_expired(60, status, obs, T0 + timedelta(seconds=59)) is None
    out = startup_expired(60, status, obs, T0 + timedelta(seconds=60))
    assert out is not None and out.state == State.failed and out.reason == "ImagePullBackOff"
    assert not out.retryable and out.counts
    assert out.message == "not started within startupTimeoutSeconds (60s): container trainer: nope"
    retried = startup_expired(60, {"reason": "Unschedulable"}, obs, T0 + timedelta(hours=1))
    assert retried.reason == "Unschedulable" and retried.retryable
    silent = startup_expired(60, {}, obs, T0 + timedelta(hours=1))
    assert silent.reason == STARTUP_TIMEOUT and silent.retryable
    assert silent.message == "not started within startupTimeoutSeconds (60s)"
    assert startup_expired(60, {"reason": "Bogus"}, obs, T0 + timedelta(hours=1)).reason == STARTUP_TIMEOUT


@pytest.mark.parametrize("p", [
    pod(conditions=[unschedulable("0/3 nodes are available")]),
    pod(containers=[waiting("ImagePullBackOff", "Back-off pulling image")]),
    pod(init=[waiting("CreateContainerConfigError", "secret x not found")], conditions=[unschedulable("x")]),
    pod(deleting=True, conditions=[unschedulable("x")]),
    pod(phase="Running"),
])  # fmt: skip
def test_the_pod_watch_view_keeps_what_the_diagnosis_reads(p):
    from nsm_operator.handlers.pods import pod_view

    full = {**p, "spec": {"containers": [{"name": "trainer", "image": "x"}]},
            "metadata": {**p["metadata"], "labels": {"nsm.dev/attempt": "1"}, "managedFields": [{}]}}  # fmt: skip
    view = pod_view(full)
    assert diagnose(view) == diagnose(full)
    assert "spec" not in view and "managedFields" not in view["metadata"]
    assert view["metadata"]["labels"] == {"nsm.dev/attempt": "1"}
