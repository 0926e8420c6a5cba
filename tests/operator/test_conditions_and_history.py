"""The Ready summary and observedGeneration on every condition; at most N old attempt Jobs kept."""

from __future__ import annotations


import kmock as kmock_lib
from tests.operator.conftest import (
    COMPLETE, NAMESPACE, RUNNING, eventually, failed, phase_is, run_operator, set_job_status, training,
)  # fmt: skip

JOBS = kmock_lib.resource("batch/v1/jobs")


def _conditions(status):
    return {c["type"]: c for c in status.get("conditions") or []}


async def test_ready_follows_the_phase_and_every_condition_has_observed_generation(k8s, api, operator):
    await api.create(training("r1"))
    await eventually(lambda: api.get("Job", NAMESPACE, "r1-a1"))
    pending = _conditions(await eventually(lambda: phase_is(api, "r1", "Pending")))
    assert (pending["Ready"]["status"], pending["Ready"]["reason"]) == ("False", "Pending")
    await set_job_status(api, "r1-a1", RUNNING)
    running = _conditions(await eventually(lambda: phase_is(api, "r1", "Running")))
    assert (running["Ready"]["status"], running["Ready"]["reason"]) == ("False", "Running")
    await set_job_status(api, "r1-a1", COMPLETE)
    st = await eventually(lambda: phase_is(api, "r1", "Succeeded"))
    conds = _conditions(st)
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "Succeeded"
    assert conds["Ready"]["message"] == "attempt 1 succeeded"
    for cond in conds.values():
        assert cond["observedGeneration"] == 1 and cond["lastTransitionTime"], cond
        assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


async def test_old_attempt_jobs_beyond_the_history_limit_are_deleted(k8s, api, monkeypatch):
    monkeypatch.setenv("NSM_OPERATOR_JOB_HISTORY_LIMIT", "1")
    async with run_operator():
        await api.create(training("h1", retry={"maxRetries": 5, "initialDelaySeconds": 0, "maxDelaySeconds": 0}))
        for attempt in (1, 2):
            await eventually(lambda: api.get("Job", NAMESPACE, f"h1-a{attempt}"))
            await set_job_status(api, f"h1-a{attempt}", failed())
        # Attempt 3 runs; attempt 2 is the one old Job kept; attempt 1 is gone.
        await eventually(lambda: api.get("Job", NAMESPACE, "h1-a3"))
        await eventually(async_not(lambda: api.get("Job", NAMESPACE, "h1-a1")))
        assert await api.get("Job", NAMESPACE, "h1-a2")
        assert [r.name for r in k8s["delete", JOBS]] == ["h1-a1"]


def async_not(fetch):
    async def check():
        return await fetch() is None

    return check


async def test_a_queued_launch_is_one_status_write(k8s, api, operator):
    """The launch of a Job that a queue holds (created suspended) writes Pending and Queued in one
    status patch: the step after the launch is computed from the Job as created, so the Job's own
    watch event changes nothing (issue #18: one status write per transition)."""
    trainings = kmock_lib.resource("nsm.dev/v1alpha1/nsmtrainings")
    await api.create(training("q1", queueName="team-a"))
    st = await eventually(lambda: phase_is(api, "q1", "Queued"))
    assert st["reason"] == "WaitingForAdmission" and st["activeJob"] == "q1-a1" and st["attempts"] == 1
    assert _conditions(st)["Created"]["status"] == "True"
    assert (_conditions(st)["Ready"]["reason"], _conditions(st)["Ready"]["status"]) == ("Queued", "False")
    events = kmock_lib.resource("v1/events")
    await eventually(lambda: {"AttemptStarted", "Queued"} <= {(r.data or {}).get("reason") for r in k8s["post", events]})
    # Admitted: the Job's later event is handled after its ADDED (one queue per object in kopf).
    await set_job_status(api, "q1-a1", RUNNING)
    await eventually(lambda: phase_is(api, "q1", "Running"))
    patches = [r.data["status"] for r in k8s["patch", trainings, kmock_lib.subresource("status")]]
    assert [p.get("phase") for p in patches] == ["Queued", "Running"], patches
