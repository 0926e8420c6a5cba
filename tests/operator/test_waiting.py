"""Why an attempt waits (pod watch), the startup deadline, one writer per checkpoint, and the
resync that heals lost events — against kmock, which plays the scheduler/kubelet (pod status) and
the Job controller (Job status); kmock has no garbage collector, so the test deletes pods itself."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
from tests.operator.conftest import (
    COMPLETE, NAMESPACE, RUNNING, eventually, job_posts, phase_is, run_operator, set_job_status,
    status_of, training,
)  # fmt: skip

TRAININGS = kmock_lib.resource("nsm.dev/v1alpha1/nsmtrainings")
EVENTS = kmock_lib.resource("v1/events")
UNSCHEDULABLE = {"phase": "Pending", "conditions": [{
    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
    "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}
IMAGE_PULL = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
              "containerStatuses": [{"name": "trainer", "ready": False, "state": {"waiting": {
                  "reason": "ImagePullBackOff", "message": 'Back-off pulling image "nsm:nope"'}}}]}  # fmt: skip


async def add_pod(api, training_name: str, attempt: int, status: dict) -> str:
    """The pod the Job controller would create for attempt ``attempt``, with ``status``."""
    name = f"{training_name}-a{attempt}-pod"
    await api.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {
            "app.kubernetes.io/name": "nsm-trainer", "nsm.dev/training": training_name,
            "nsm.dev/attempt": str(attempt), "batch.kubernetes.io/job-name": f"{training_name}-a{attempt}"}},
    })  # fmt: skip
    await api.patch("Pod", NAMESPACE, name, {"status": status}, subresource="status")  # as the scheduler does
    return name


def warnings(k8s, reason: str) -> list:
    return [r for r in k8s["post", EVENTS] if (r.data or {}).get("reason") == reason]


def status_patches(k8s) -> int:
    return len(list(k8s["patch", TRAININGS, kmock_lib.subresource("status")]))


async def test_unschedulable_pod_reason_condition_event_metric_once(k8s, api, operator):
    await api.create(training("ns"))
    await eventually(lambda: api.get("Job", NAMESPACE, "ns-a1"))
    await eventually(lambda: phase_is(api, "ns", "Pending"))
    pod = await add_pod(api, "ns", 1, UNSCHEDULABLE)
    st = await eventually(lambda: _reason(api, "ns", "Unschedulable"))
    waiting = next(c for c in st["conditions"] if c["type"] == "Waiting")
    assert waiting["status"] == "True" and waiting["reason"] == "Unschedulable"
    assert waiting["message"] == UNSCHEDULABLE["conditions"][0]["message"]
    assert st["phase"] == "Pending" and "Unschedulable" in st["message"]
    await eventually(lambda: len(warnings(k8s, "Unschedulable")) == 1)
    registry = operator.ctx.metrics.registry
    await eventually(lambda: registry.get_sample_value("nsm_operator_trainings_waiting", {"reason": "Unschedulable"}) == 1)

    # The scheduler tries again (same reason, new message): no status write, no second event.
    patches = status_patches(k8s)
    again = {**UNSCHEDULABLE, "conditions": [{**UNSCHEDULABLE["conditions"][0], "message": "0/4 nodes …"}]}
    await api.patch("Pod", NAMESPACE, pod, {"status": again}, subresource="status")
    await asyncio.sleep(0.5)
    assert status_patches(k8s) == patches and len(warnings(k8s, "Unschedulable")) == 1

    # Scheduled and running: the waiting reason gives way to the phase's own (AttemptRunning).
    await api.patch("Pod", NAMESPACE, pod, {"status": {"phase": "Running", "conditions": []}}, subresource="status")
    await set_job_status(api, "ns-a1", RUNNING)
    st = await eventually(lambda: phase_is(api, "ns", "Running"))
    st = await eventually(lambda: _reason(api, "ns", "AttemptRunning"))
    assert {c["type"]: c["status"] for c in st["conditions"]}["Waiting"] == "False"
    await eventually(lambda: registry.get_sample_value("nsm_operator_trainings_waiting", {"reason": "Unschedulable"}) == 0)


async def test_image_pull_backoff_ends_at_startup_timeout_without_retry(k8s, api, operator):
    await api.create(training("img", startupTimeoutSeconds=2, retry={"maxRetries": 3, "initialDelaySeconds": 1}))
    await eventually(lambda: api.get("Job", NAMESPACE, "img-a1"))
    await set_job_status(api, "img-a1", {"active": 1, "ready": 0, "startTime": _now()})
    await add_pod(api, "img", 1, IMAGE_PULL)
    st = await eventually(lambda: _reason(api, "img", "ImagePullBackOff"))
    assert st["phase"] == "Pending"
    st = await eventually(lambda: phase_is(api, "img", "Failed"), timeout=15)
    assert st["failureReason"] == "ImagePullBackOff" and st["attempts"] == 1 and st.get("retries", 0) == 0
    assert "startupTimeoutSeconds (2s)" in st["message"] and 'Back-off pulling image "nsm:nope"' in st["message"]
    assert await eventually(lambda: _gone(api, "img-a1"))  # the stuck attempt was stopped
    assert len(job_posts(k8s)) == 1


async def test_unschedulable_timeout_retries_only_after_the_old_pod_is_gone(k8s, api, operator):
    await api.create(training("rt", startupTimeoutSeconds=2, retry={"maxRetries": 1, "initialDelaySeconds": 1}))
    await eventually(lambda: api.get("Job", NAMESPACE, "rt-a1"))
    await set_job_status(api, "rt-a1", {"active": 1, "ready": 0, "startTime": _now()})
    pod = await add_pod(api, "rt", 1, UNSCHEDULABLE)
    st = await eventually(lambda: phase_is(api, "rt", "Retrying"), timeout=15)
    assert st["failureReason"] == "Unschedulable" and st["retries"] == 1
    # kmock has no garbage collector: the old pod outlives its Job, so attempt 2 must wait.
    st = await eventually(lambda: _reason(api, "rt", "PreviousAttemptTerminating"), timeout=10)
    assert st["attempts"] == 2 and st["phase"] == "Pending" and pod in st["message"]
    assert await api.get("Job", NAMESPACE, "rt-a2") is None
    await api.delete("Pod", NAMESPACE, pod)
    await eventually(lambda: api.get("Job", NAMESPACE, "rt-a2"), timeout=10)
    st = await eventually(lambda: _reason(api, "rt", None))
    assert st["attempts"] == 2 and st["activeJob"] == "rt-a2"


async def job_ends_during_outage(k8s, api, monkeypatch, name: str, resync_seconds: int) -> tuple[str, dict]:
    """The API server refuses the training's status writes while its Job ends (so the Job event is
    spent after one try), then recovers; returns the phase during the outage and the status once
    it is Succeeded (or after 8 s)."""
    monkeypatch.setenv("NSM_OPERATOR_EVENT_RETRIES", "1")
    monkeypatch.setenv("NSM_OPERATOR_RESYNC_SECONDS", str(resync_seconds))
    outage = Outage()
    # kmock applies a request before it answers with an injected error, so the training's reads
    # fail too (the operator reads it before it writes; a real API server would store nothing).
    k8s["fetch", TRAININGS, outage.on] << 503
    k8s["patch", TRAININGS, kmock_lib.subresource("status"), outage.on] << 503
    async with run_operator():
        await api.create(training(name))
        await eventually(lambda: phase_is(api, name, "Pending"))
        outage.set()
        await asyncio.sleep(1.5)  # a reconcile that read the training before the outage writes Pending
        await set_job_status(api, f"{name}-a1", COMPLETE)
        await asyncio.sleep(4)  # well past the event handler's one try (and several resyncs)
        during = stored_status(k8s, name)["phase"]
        outage.clear()
        try:
            after = await eventually(lambda: phase_is(api, name, "Succeeded"), timeout=8)
        except AssertionError:
            after = await status_of(api, name)
    return during, after


async def test_lost_job_event_heals_by_resync(k8s, api, monkeypatch):
    # One try per event, then the resync (every second here; minutes by default) takes over.
    during, after = await job_ends_during_outage(k8s, api, monkeypatch, "heal", resync_seconds=1)
    assert during == "Pending"
    assert after["phase"] == "Succeeded" and after["attempts"] == 1


async def test_without_resync_a_lost_job_event_is_not_healed(k8s, api, monkeypatch):
    """The control for the test above: the same outage with the resync off stays Pending."""
    during, after = await job_ends_during_outage(k8s, api, monkeypatch, "stuck", resync_seconds=0)
    assert during == "Pending" and after["phase"] == "Pending"


class Outage:
    """A switch for a kmock reaction: the API server answers 503 while it is set."""

    def __init__(self) -> None:
        self.active = False

    def on(self) -> bool:
        return self.active

    def set(self) -> None:
        self.active = True

    def clear(self) -> None:
        self.active = False


def stored_status(k8s, name: str) -> dict:
    """The status kmock holds (read past the injected errors)."""
    return (k8s.objects[TRAININGS, NAMESPACE, name] or {}).get("status") or {}


async def _reason(api, name: str, reason: str | None) -> dict | None:
    st = await status_of(api, name)
    return st if st.get("attempts") and st.get("reason") == reason else None


async def _gone(api, job: str) -> bool:
    return await api.get("Job", NAMESPACE, job) is None


def _now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


async def test_one_waiting_pod_of_several_keeps_the_attempt_waiting(k8s, api, operator):
    """resources.nodes 2: pod 0 runs, pod 1 is Unschedulable. Pod 0's events must not clear the
    reason (the attempt still waits for pod 1), and the attempt is Running only once both are."""
    await api.create(training("mn", resources={"nodes": 2}))
    await eventually(lambda: api.get("Job", NAMESPACE, "mn-a1"))
    assert await api.get("Service", NAMESPACE, "mn-rdzv")
    await eventually(lambda: phase_is(api, "mn", "Pending"))
    running = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    pods = []  # as the Job controller names an Indexed Job's pods: one per completion index
    for index, status in ((0, running), (1, UNSCHEDULABLE)):
        name = f"mn-a1-{index}"
        await api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NAMESPACE,
                          "labels": {"app.kubernetes.io/name": "nsm-trainer", "nsm.dev/training": "mn",
                                     "nsm.dev/attempt": "1", "batch.kubernetes.io/job-name": "mn-a1"}}})  # fmt: skip
        await api.patch("Pod", NAMESPACE, name, {"status": status}, subresource="status")
        pods.append(name)
    await set_job_status(api, "mn-a1", {"active": 2, "ready": 1, "startTime": _now()})
    await eventually(lambda: _reason(api, "mn", "Unschedulable"))
    # Pod 0 changes (still running): the reason stays, the phase stays Pending.
    await api.patch("Pod", NAMESPACE, pods[0], {"status": {**running, "podIP": "10.0.0.1"}}, subresource="status")
    await asyncio.sleep(1.0)
    st = await status_of(api, "mn")
    assert st["reason"] == "Unschedulable" and st["phase"] == "Pending"
    # Pod 1 is scheduled: nothing waits any more; both ready: Running.
    await api.patch("Pod", NAMESPACE, pods[1], {"status": running}, subresource="status")
    await eventually(lambda: _reason(api, "mn", None))
    await set_job_status(api, "mn-a1", {"active": 2, "ready": 2, "startTime": _now()})
    await eventually(lambda: phase_is(api, "mn", "Running"))


async def test_a_pod_that_waits_before_the_launch_ends_is_in_the_launch_status(k8s, api, operator):
    """Under a burst the pod is Unschedulable before the launch's status patch lands (its event is
    held back): the launch writes phase, attempt and waiting reason in one status patch."""

    async def slow_job():
        await asyncio.sleep(1.5)  # the Job is stored; its answer (and so the launch's status) waits
        return {}

    k8s["post", kmock_lib.resource("batch/v1/jobs")][:1] << slow_job
    await api.create(training("early"))
    await eventually(lambda: api.get("Job", NAMESPACE, "early-a1"))
    assert status_patches(k8s) == 0  # the launch still waits for the Job's answer
    await add_pod(api, "early", 1, UNSCHEDULABLE)
    st = await eventually(lambda: _reason(api, "early", "Unschedulable"))
    assert st["phase"] == "Pending" and st["attempts"] == 1 and st["activeJob"] == "early-a1"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Waiting"] == "True"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert ready["message"] == st["message"]  # the summary says what the status says
    await asyncio.sleep(1.5)  # the held-back pod's second look finds nothing left to write
    assert status_patches(k8s) == 1
    assert len(warnings(k8s, "Unschedulable")) == 1


async def test_a_pod_starting_normally_writes_nothing(k8s, api, operator):
    """A launched attempt's pod that is scheduled and starting says no wait: the launch's status
    (reason AttemptCreated) stands, no second write, no waiting metric."""
    await api.create(training("calm"))
    await eventually(lambda: phase_is(api, "calm", "Pending"))
    patches = status_patches(k8s)
    await add_pod(api, "calm", 1, {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]})
    await set_job_status(api, "calm-a1", {"active": 1, "ready": 0, "startTime": _now()})
    await asyncio.sleep(1.0)
    st = await status_of(api, "calm")
    assert status_patches(k8s) == patches and st["reason"] == "AttemptCreated"
    registry = operator.ctx.metrics.registry
    assert not registry.get_sample_value("nsm_operator_trainings_waiting", {"reason": "AttemptCreated"})


async def test_a_waiting_write_leaves_the_job_event_nothing_to_correct(k8s, api, operator):
    """The pod handler's write carries the Ready summary too: the Job's next event (same
    attempt, still pending) finds the status as it would write it and patches nothing."""
    await api.create(training("once"))
    await eventually(lambda: phase_is(api, "once", "Pending"))
    await add_pod(api, "once", 1, UNSCHEDULABLE)
    await eventually(lambda: _reason(api, "once", "Unschedulable"))
    patches = status_patches(k8s)
    await set_job_status(api, "once-a1", {"active": 1, "ready": 0, "startTime": _now()})
    await asyncio.sleep(1.0)
    assert status_patches(k8s) == patches
