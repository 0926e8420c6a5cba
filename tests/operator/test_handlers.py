"""Handlers against kmock: the lifecycle driven by Job events, validation, suspend, progress."""

from __future__ import annotations

import asyncio
import sys

from tests.operator.conftest import (
    COMPLETE, NAMESPACE, RUNNING, add_failed_pod, eventually, failed, job_posts, phase_is, set_job_status,
    status_of, training,
)  # fmt: skip


async def test_create_builds_children_and_attempt_1(k8s, api, operator):
    await api.create(training("t1"))
    job = await eventually(lambda: api.get("Job", NAMESPACE, "t1-a1"))
    assert job["metadata"]["labels"]["nsm.dev/attempt"] == "1"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-t1"
    assert await api.get("ServiceAccount", NAMESPACE, "t1-trainer")  # before the Job: pod admission needs it
    for kind, name in [("PersistentVolumeClaim", "t1-checkpoints"), ("ConfigMap", "t1-spec"),
                       ("Role", "t1-trainer"), ("RoleBinding", "t1-trainer")]:  # fmt: skip
        assert await eventually(lambda: api.get(kind, NAMESPACE, name)), (kind, name)  # after the launch
    st = await eventually(lambda: status_of(api, "t1"))
    assert st["phase"] == "Pending" and st["attempts"] == 1 and st["activeJob"] == "t1-a1"
    assert st["epochSummary"] == "0/100"

    await set_job_status(api, "t1-a1", RUNNING)
    st = await eventually(lambda: phase_is(api, "t1", "Running"))
    assert st["startTime"] == "2026-01-01T00:00:00Z"
    await set_job_status(api, "t1-a1", COMPLETE)
    st = await eventually(lambda: phase_is(api, "t1", "Succeeded"))
    assert st["costEstimate"] == {"gpuHours": 1.0, "usd": 2.0}
    assert {c["type"]: c["status"] for c in st["conditions"]}["Succeeded"] == "True"
    assert len(job_posts(k8s)) == 1


async def test_invalid_spec_fails_without_children(k8s, api, operator):
    bad = training("bad")
    bad["spec"]["poolRatio"] = 1.5
    await api.create(bad)
    st = await eventually(lambda: phase_is(api, "bad", "Failed"))
    assert st["failureReason"] == "InvalidSpec" and "spec.poolRatio" in st["message"]
    assert job_posts(k8s) == []
    assert await api.get("ConfigMap", NAMESPACE, "bad-spec") is None


async def test_retryable_failure_retries_after_backoff(k8s, api, operator):
    await api.create(training("r", retry={"maxRetries": 1, "initialDelaySeconds": 1}))
    await eventually(lambda: api.get("Job", NAMESPACE, "r-a1"))
    await set_job_status(api, "r-a1", RUNNING)
    await eventually(lambda: phase_is(api, "r", "Running"))
    await add_failed_pod(api, "r-a1", 1)
    await set_job_status(api, "r-a1", failed())
    st = await eventually(lambda: phase_is(api, "r", "Retrying"))
    assert st["retries"] == 1 and st["failureReason"] == "Error" and st["nextAttemptAt"]
    job2 = await eventually(lambda: api.get("Job", NAMESPACE, "r-a2"), timeout=5)
    assert job2["spec"]["template"]["spec"]["containers"][0]["env"][2] == {"name": "NSM_ATTEMPT", "value": "2"}
    st = await eventually(lambda: phase_is(api, "r", "Pending"))
    assert st["attempts"] == 2
    # The second failure exhausts maxRetries=1.
    await set_job_status(api, "r-a2", failed())
    st = await eventually(lambda: phase_is(api, "r", "Failed"))
    assert "maxRetries (1) exhausted" in st["message"]
    assert len(job_posts(k8s)) == 2


async def test_non_retryable_exit_is_final(k8s, api, operator):
    await api.create(training("nr"))
    await eventually(lambda: api.get("Job", NAMESPACE, "nr-a1"))
    await add_failed_pod(api, "nr-a1", 3)
    await set_job_status(api, "nr-a1", failed("PodFailurePolicy", "Container trainer failed with exit code 3"))
    st = await eventually(lambda: phase_is(api, "nr", "Failed"))
    assert st["failureReason"] == "PodFailurePolicy" and "exit code 3" in st["message"]
    assert len(job_posts(k8s)) == 1


async def test_suspend_deletes_the_job_and_resume_starts_a_new_attempt(k8s, api, operator):
    await api.create(training("s"))
    await eventually(lambda: api.get("Job", NAMESPACE, "s-a1"))
    await set_job_status(api, "s-a1", RUNNING)
    await eventually(lambda: phase_is(api, "s", "Running"))
    await api.patch("NSMTraining", NAMESPACE, "s", {"spec": {"suspend": True}, "metadata": {"generation": 2}})
    st = await eventually(lambda: phase_is(api, "s", "Suspended"))
    assert await eventually(lambda: _gone(api, "s-a1"))
    assert st["activeJob"] is None if "activeJob" in st else True
    await api.patch("NSMTraining", NAMESPACE, "s", {"spec": {"suspend": False}, "metadata": {"generation": 3}})
    await eventually(lambda: api.get("Job", NAMESPACE, "s-a2"))
    st = await eventually(lambda: phase_is(api, "s", "Pending"))
    assert st["attempts"] == 2 and st["retries"] == 0


async def test_modal_target_unavailable(k8s, api, operator, monkeypatch):
    import nsm_operator.targets as targets

    monkeypatch.setitem(sys.modules, "nsm_operator.targets.modal", None)  # import fails
    monkeypatch.setattr(targets, "_CACHE", {})
    body = training("m", target="modal")
    body["metadata"]["resourceVersion"] = "1"  # kopf's finalizer JSON patch tests it
    await api.create(body)
    st = await eventually(lambda: phase_is(api, "m", "Failed"))
    assert "modal target not available" in st["message"]
    assert job_posts(k8s) == []


async def test_progress_updates_summary_cost_and_metrics(k8s, api, operator):
    await api.create(training("p", epochs=10))
    await eventually(lambda: api.get("Job", NAMESPACE, "p-a1"))
    await set_job_status(api, "p-a1", RUNNING)
    await eventually(lambda: phase_is(api, "p", "Running"))
    progress = {"epoch": 3, "epochs": 10, "valAccuracy": 0.75, "bestValLoss": 0.5,
                "classAccuracy": {"0": 0.7, "1": 0.8}, "updatedAt": "2026-01-01T00:10:00Z"}  # fmt: skip
    await api.patch_status(NAMESPACE, "p", {"progress": progress})
    st = await eventually(lambda: _summary(api, "p", "3/10"))
    assert st["costEstimate"]["gpuHours"] > 0
    registry = operator.ctx.metrics.registry
    labels = {"namespace": NAMESPACE, "name": "p", "domain": "causal"}
    assert registry.get_sample_value("nsm_operator_training_epoch", labels) == 3
    assert registry.get_sample_value("nsm_operator_training_min_class_accuracy", labels) == 0.7
    assert registry.get_sample_value("nsm_operator_training_phase", {**labels, "phase": "Running"}) == 1


async def _gone(api, job):
    return await api.get("Job", NAMESPACE, job) is None


async def _summary(api, name, summary):
    st = await status_of(api, name)
    return st if st.get("epochSummary") == summary else None


async def test_a_job_deleted_by_someone_else_is_recreated(k8s, api, operator):
    await api.create(training("d"))
    await eventually(lambda: api.get("Job", NAMESPACE, "d-a1"))
    await eventually(lambda: phase_is(api, "d", "Pending"))
    await api.delete("Job", NAMESPACE, "d-a1")
    await eventually(lambda: api.get("Job", NAMESPACE, "d-a1"))
    assert (await status_of(api, "d"))["attempts"] == 1
    assert len(job_posts(k8s)) == 2


async def test_a_job_event_with_nothing_new_is_not_reconciled(k8s, api, operator, monkeypatch):
    """The launch's own Job, echoed by the watch, and a Job change outside what the reconcile
    reads (an annotation) reach no reconcile; a status change does."""
    from nsm_operator.handlers import reconcile as module
    from nsm_operator.targets.kubernetes import observed_part

    taken = []
    inner = module._reconcile_locked

    async def spy(ctx, body, job, *args, **kwargs):
        if job is not None:
            taken.append(dict(job.get("status") or {}))
        return await inner(ctx, body, job, *args, **kwargs)

    monkeypatch.setattr(module, "_reconcile_locked", spy)
    await api.create(training("quiet"))
    job = await eventually(lambda: api.get("Job", NAMESPACE, "quiet-a1"))
    await eventually(lambda: (operator.ctx.folded.get((NAMESPACE, "quiet")) or {}).get("metadata"))
    assert operator.ctx.folded[(NAMESPACE, "quiet")] == observed_part(job)  # the launch took it in
    await api.patch("Job", NAMESPACE, "quiet-a1", {"metadata": {"annotations": {"note": "unrelated"}}})
    await eventually(lambda: _job_events(operator) >= 2)  # ADDED and MODIFIED delivered
    await asyncio.sleep(0.3)  # and handled, before the next change could supersede the last one
    await set_job_status(api, "quiet-a1", RUNNING)
    await eventually(lambda: phase_is(api, "quiet", "Running"))
    assert taken == [RUNNING]  # neither the echo nor the annotation's event was reconciled


def _job_events(op) -> float:
    """Job watch events the operator has delivered (its metric)."""
    metric = op.ctx.metrics.watch_events_total
    return sum(s.value for m in metric.collect() for s in m.samples
               if s.name.endswith("_total") and s.labels.get("kind") == "Job")  # fmt: skip
