"""Injected API faults: the operator retries, never crashes, never duplicates a Job."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
from nsm_operator.kube import Kube, connection_info
from tests.operator.conftest import (
    NAMESPACE, RUNNING, eventually, job_posts, phase_is, run_operator, set_job_status, status_of, training,
)  # fmt: skip

JOBS = kmock_lib.resource("batch/v1/jobs")
TRAININGS = kmock_lib.resource("nsm.dev/v1alpha1/nsmtrainings")


def job_objects(k8s) -> list:
    return [key for key in k8s.objects if key[0] == JOBS]


async def test_conflict_on_job_create_is_success(k8s, api, operator):
    # Someone (an earlier operator that died after POST) already created the Job.
    await api.create(training("c1"))
    await eventually(lambda: api.get("Job", NAMESPACE, "c1-a1"))
    await api.request("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs", body={
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "c1-a2", "namespace": NAMESPACE}})
    assert (await api.create({"apiVersion": "batch/v1", "kind": "Job",
                              "metadata": {"name": "c1-a1", "namespace": NAMESPACE}})) is False  # fmt: skip
    st = await eventually(lambda: phase_is(api, "c1", "Pending"))
    assert st["attempts"] == 1


async def test_500_on_job_create_is_retried_without_duplicates(k8s, api, operator):
    k8s["post", JOBS][:2] << 500  # the first two creations fail (after the emulator stored one)
    await api.create(training("f1"))
    st = await eventually(lambda: phase_is(api, "f1", "Pending"), timeout=20)
    assert st["attempts"] == 1 and st["activeJob"] == "f1-a1"
    assert len(job_posts(k8s)) >= 2
    assert [k for k in job_objects(k8s) if k[2] == "f1-a1"] and len(job_objects(k8s)) == 1
    assert operator.ctx.metrics.registry.get_sample_value(
        "nsm_operator_reconcile_errors_total", {"handler": "create"}) >= 1  # fmt: skip


async def test_500_on_status_patch_is_retried(k8s, api, operator):
    k8s["patch", TRAININGS, kmock_lib.subresource("status")][:1] << 500
    await api.create(training("f2"))
    st = await eventually(lambda: phase_is(api, "f2", "Pending"), timeout=20)
    assert st["attempts"] == 1
    assert len(job_objects(k8s)) == 1


async def test_timeouts_are_transient(k8s, api, operator):
    async def slow():
        await asyncio.sleep(3)  # longer than NSM_OPERATOR_REQUEST_TIMEOUT_SECONDS=2
        return {}

    k8s["fetch", TRAININGS][:1] << slow
    await api.create(training("f3"))
    st = await eventually(lambda: phase_is(api, "f3", "Pending"), timeout=25)
    assert st["attempts"] == 1 and len(job_objects(k8s)) == 1


async def test_job_events_during_errors_do_not_lose_the_transition(k8s, api, operator):
    await api.create(training("f4"))
    await eventually(lambda: api.get("Job", NAMESPACE, "f4-a1"))
    k8s["patch", TRAININGS, kmock_lib.subresource("status")][:1] << 503
    await set_job_status(api, "f4-a1", RUNNING)
    await eventually(lambda: phase_is(api, "f4", "Running"), timeout=20)


def fresh_api() -> Kube:
    # A stopped in-process kopf leaves the test client's pooled kmock connections hanging.
    return Kube(connection_info(), request_timeout=5)


async def test_restart_mid_run_continues_without_duplicates(k8s, api):
    async with run_operator():
        await api.create(training("rs", retry={"initialDelaySeconds": 1}))
        await eventually(lambda: api.get("Job", NAMESPACE, "rs-a1"))
        await set_job_status(api, "rs-a1", RUNNING)
        await eventually(lambda: phase_is(api, "rs", "Running"))
    # While the operator is down the attempt finishes (stored directly: nobody watches).
    k8s.objects[JOBS, NAMESPACE, "rs-a1"].patch({"status": {"active": 0, "ready": 0, "succeeded": 1,
                                                 "conditions": [{"type": "Complete", "status": "True"}]}})
    api = fresh_api()
    assert (await status_of(api, "rs"))["phase"] == "Running"
    async with run_operator():
        st = await eventually(lambda: phase_is(api, "rs", "Succeeded"))
        assert st["attempts"] == 1
    assert len(job_posts(k8s)) == 1


async def test_restart_during_backoff_still_starts_the_retry(k8s, api):
    async with run_operator():
        await api.create(training("rb", retry={"initialDelaySeconds": 2}))
        await eventually(lambda: api.get("Job", NAMESPACE, "rb-a1"))
        await set_job_status(api, "rb-a1", {"failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}]})
        await eventually(lambda: phase_is(api, "rb", "Retrying"))
    api = fresh_api()
    async with run_operator():
        await eventually(lambda: api.get("Job", NAMESPACE, "rb-a2"), timeout=10)
        st = await eventually(lambda: phase_is(api, "rb", "Pending"))
        assert st["attempts"] == 2
    assert len(job_posts(k8s)) == 2


async def test_children_are_created_without_reading_them_back_but_the_job_is(k8s, api, operator):
    """Only the created Job's response is decoded (the launch reads its status); the other
    children's responses are drained unread, and they exist all the same."""
    await api.create(training("nd"))
    await eventually(lambda: phase_is(api, "nd", "Pending"))
    for kind, name in (("ServiceAccount", "nd-trainer"), ("PersistentVolumeClaim", "nd-checkpoints"),
                       ("ConfigMap", "nd-spec"), ("Role", "nd-trainer"), ("RoleBinding", "nd-trainer")):  # fmt: skip
        # The ServiceAccount before the Job; the rest after the launch's status write (finishing.py).
        assert await eventually(lambda: api.get(kind, NAMESPACE, name)), (kind, name)
