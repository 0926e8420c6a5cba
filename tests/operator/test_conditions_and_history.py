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
