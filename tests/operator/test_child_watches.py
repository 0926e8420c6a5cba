"""The operator's own child watches (nsm_operator/watches.py) against kmock, with kmock used for
fault injection only: a watch stream held silent and then closed, a 410 Gone, a 500 on the
relist and a 403 are answers the real API server gives but cannot be made to give on demand."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
from tests.operator.conftest import (
    NAMESPACE, RUNNING, eventually, phase_is, run_operator, set_job_status, training,
)  # fmt: skip

JOBS = kmock_lib.resource("batch/v1/jobs")


def _paged(request) -> bool:
    """The watch loop's LIST (paged); the reconcile's own Job lists are not."""
    return request.params.get("limit") == "500"


def watch_sample(op, name: str, **labels: str) -> float:
    return op.ctx.metrics.registry.get_sample_value(name, {"kind": "Job", **labels}) or 0.0


def stray_job(name: str, owner: str) -> dict:
    """A trainer-labelled Job whose training does not exist (its events reconcile nothing)."""
    labels = {"app.kubernetes.io/name": "nsm-trainer", "nsm.dev/training": owner}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "labels": labels}}  # fmt: skip


async def test_a_cut_watch_recovers_without_losing_a_job_event_or_a_deletion(k8s, api):
    cut = asyncio.Event()

    async def silent_then_closed():
        yield b""  # headers out: the stream is open, but carries none of the events below
        await cut.wait()

    # Injected in order: the first Job watch is silent until cut, the re-watch gets 410 Gone, and
    # the relist that follows a 500 (the loop backs off and lists again).
    k8s["watch", JOBS][:1] << silent_then_closed
    k8s["watch", JOBS][1:2] << 410  # (slices count the requests matching the filter)
    await api.create(stray_job("gone-a1", "gone"))  # listed at start, deleted during the gap
    async with run_operator() as op:
        await api.create(training("cw"))  # its event starts the child watches
        await eventually(lambda: api.get("Job", NAMESPACE, "cw-a1"))
        await eventually(lambda: watch_sample(op, "nsm_operator_watch_events_total", type="LISTED") >= 1)
        k8s["list", JOBS][_paged][1:2] << 500  # the relist after the 410
        await eventually(lambda: phase_is(api, "cw", "Pending"))
        await asyncio.sleep(1)  # the training's own echoes (which read the Job) have settled
        await set_job_status(api, "cw-a1", RUNNING)  # lost in the silent stream
        await api.delete("Job", NAMESPACE, "gone-a1")  # likewise
        await asyncio.sleep(0.5)
        assert (await phase_is(api, "cw", "Pending")) is not None  # the control: nothing seen yet
        assert watch_sample(op, "nsm_operator_watch_events_total", type="MODIFIED") == 0
        cut.set()
        await eventually(lambda: phase_is(api, "cw", "Running"), timeout=15)
        # The relist found gone-a1 missing and delivered it as DELETED.
        assert watch_sample(op, "nsm_operator_watch_events_total", type="DELETED") == 1
        for reason in ("closed", "gone", "error"):
            assert watch_sample(op, "nsm_operator_watch_restarts_total", reason=reason) >= 1, reason
        # Later events flow on the recovered watch.
        await set_job_status(api, "cw-a1", {**RUNNING, "ready": 0})
        before = watch_sample(op, "nsm_operator_watch_events_total", type="MODIFIED")
        await eventually(lambda: watch_sample(op, "nsm_operator_watch_events_total", type="MODIFIED") > before)


async def test_a_forbidden_watch_is_retried_slowly_not_in_a_loop(k8s, api):
    k8s["list", JOBS][_paged] << 403  # the ClusterRole lost list on Jobs
    async with run_operator() as op:
        await api.create(training("fb"))
        # The rest of the operator works: the training gets its Job.
        await eventually(lambda: api.get("Job", NAMESPACE, "fb-a1"))
        await asyncio.sleep(1.5)
        assert len(list(k8s["list", JOBS][_paged])) == 1
        assert watch_sample(op, "nsm_operator_watch_restarts_total", reason="forbidden") == 1


async def test_one_watch_per_kind_however_many_trainings(k8s, api, operator):
    # kopf hands each object its own shallow copy of the memo: the watches must start once.
    for name in ("m1", "m2", "m3"):
        await api.create(training(name))
    for name in ("m1", "m2", "m3"):
        await eventually(lambda n=name: api.get("Job", NAMESPACE, f"{n}-a1"))
    await asyncio.sleep(0.5)
    assert len(list(k8s["list", JOBS][_paged])) == 1
    assert sorted(w.spec.kind for w in operator.memo.watchers) == ["ConfigMap", "Job", "NSMTraining", "Pod"]
