"""The operator's Event recorder (nsm_operator/events.py) against a recording stand-in for the API
client: the unit tier has no API server (tests/operator and tests/e2e post to kmock and to the real
one). The stand-in also injects failures (5xx, 4xx, transport)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import kopf
import pytest

from nsm_operator import events as ev
from nsm_operator.errors import TransientError
from nsm_operator.kube import ApiError, Kube
from nsm_operator.metrics import EVENT_QUEUE_DEPTH, EVENTS_TOTAL, OperatorMetrics


class FakeKube(Kube):
    """The real client with its HTTP round trip replaced: answers POST with the Event and PATCH
    with {}; ``fail`` holds the errors (ApiError: an HTTP status) of the next requests, in order."""

    def __init__(self) -> None:
        super().__init__(kopf.ConnectionInfo(server="https://api.invalid"))
        self.requests: list[tuple[str, str, dict, str]] = []
        self.fail: list[Exception] = []

    async def request(self, method, path, *, body=None, params=None, content_type="application/json", decode=True):
        self.requests.append((method, path, body, content_type))
        await asyncio.sleep(0)
        if self.fail:
            raise self.fail.pop(0)
        return body if method == "POST" else {}


class Body(dict):
    """A training body that can be weakly referenced (to show the recorder does not keep it)."""


def training(name="t1", uid="uid-1", **extra) -> Body:
    return Body(apiVersion="nsm.dev/v1alpha1", kind="NSMTraining", spec={"big": "x" * 10_000},
                status={"phase": "Pending"}, metadata={"name": name, "namespace": "ml", "uid": uid,
                                                       "resourceVersion": "42", "managedFields": [{}], **extra})  # fmt: skip


def outcome(metrics: OperatorMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(EVENTS_TOTAL, {"outcome": name}) or 0.0


async def drain(rec: ev.EventRecorder) -> None:
    rec.start()
    await rec.stop(flush_seconds=5.0)


@pytest.fixture
def parts():
    return FakeKube(), OperatorMetrics()


async def test_event_shape_and_compact_reference(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=2, instance="pod-0")
    body = training()
    ref = weakref.ref(body)
    rec.record(body, "Normal", "AttemptStarted", "attempt 1 started")
    del body
    gc.collect()
    assert ref() is None  # only the compact reference is queued, never the body
    await drain(rec)
    [(method, path, event, _)] = kube.requests
    assert (method, path) == ("POST", "/api/v1/namespaces/ml/events")
    assert event["involvedObject"] == {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "name": "t1",
                                       "namespace": "ml", "uid": "uid-1", "resourceVersion": "42"}  # fmt: skip
    assert event["metadata"]["namespace"] == "ml" and event["metadata"]["name"].startswith("t1.")
    assert (event["type"], event["reason"], event["message"], event["count"]) == (
        "Normal", "AttemptStarted", "attempt 1 started", 1)  # fmt: skip
    assert event["source"] == {"component": "nsm-operator"} and event["reportingComponent"] == "nsm-operator"
    assert event["reportingInstance"] == "pod-0"
    assert event["firstTimestamp"] == event["lastTimestamp"] and event["firstTimestamp"].endswith("Z")
    assert event["eventTime"].startswith(event["firstTimestamp"][:-1] + ".")
    assert outcome(metrics, "posted") == 1


def test_message_truncated_to_the_api_limit():
    long = "a" * 600 + "b" * 600
    cut = ev.truncate(long)
    assert len(cut) == ev.MAX_MESSAGE_LENGTH and cut.startswith("a" * 500) and cut.endswith("b" * 500)
    assert "..." in cut and ev.truncate("short") == "short"


async def test_repeat_patches_count_of_the_first_event(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=4)
    rec.start()
    rec.record(training(), "Warning", "Unschedulable", "attempt 1: 0/3 nodes")
    assert await rec.flush(5)
    rec.record(training(), "Warning", "Unschedulable", "attempt 1: 0/3 nodes")
    assert await rec.flush(5)
    rec.record(training(), "Warning", "Unschedulable", "attempt 1: 0/3 nodes")
    await rec.stop()
    methods = [(m, body) for m, _, body, _ in kube.requests]
    assert [m for m, _ in methods] == ["POST", "PATCH", "PATCH"]
    name = kube.requests[0][2]["metadata"]["name"]
    assert kube.requests[1][1] == f"/api/v1/namespaces/ml/events/{name}"
    assert kube.requests[1][3] == "application/merge-patch+json"
    assert [body["count"] for _, body in methods[1:]] == [2, 3] and "lastTimestamp" in methods[2][1]
    assert (outcome(metrics, "posted"), outcome(metrics, "patched"), outcome(metrics, "deduplicated")) == (1, 2, 2)


async def test_repeats_while_queued_or_in_flight_fold_into_one_event(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=8)
    for _ in range(5):  # queued before any worker runs: one POST with count 5
        rec.record(training(), "Warning", "Unschedulable", "same")
    rec.record(training(name="t2", uid="uid-2"), "Warning", "Unschedulable", "same")  # another object
    rec.record(training(), "Warning", "Unschedulable", "other message")  # another message
    await drain(rec)
    posts = [body for m, _, body, _ in kube.requests if m == "POST"]
    assert sorted((p["involvedObject"]["name"], p["message"], p["count"]) for p in posts) == [
        ("t1", "other message", 1), ("t1", "same", 5), ("t2", "same", 1)]  # fmt: skip
    assert len(kube.requests) == 3


async def test_queue_is_bounded_dropping_the_oldest(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=1, queue_limit=3)
    for i in range(5):
        rec.record(training(name=f"t{i}", uid=f"u{i}"), "Normal", "AttemptStarted", "started")
    assert rec.depth == 3 and metrics.registry.get_sample_value(EVENT_QUEUE_DEPTH) == 3
    assert outcome(metrics, "dropped_overflow") == 2
    await drain(rec)
    assert [body["involvedObject"]["name"] for _, _, body, _ in kube.requests] == ["t2", "t3", "t4"]
    assert metrics.registry.get_sample_value(EVENT_QUEUE_DEPTH) == 0


async def _post_one(kube: FakeKube, metrics: OperatorMetrics, *failures: Exception, name: str = "t1") -> None:
    """Record one Event with ``failures`` answering its first requests, and post it."""
    kube.fail = list(failures)
    rec = ev.EventRecorder(kube, metrics, workers=1)
    rec.record(training(name=name, uid=f"uid-{name}"), "Normal", "AttemptStarted", "started")
    await drain(rec)


async def test_rejection_is_dropped_not_retried(parts):
    kube, metrics = parts
    await _post_one(kube, metrics, ApiError(422, "POST events: invalid"))
    assert len(kube.requests) == 1 and outcome(metrics, "dropped_rejected") == 1


async def test_server_and_transport_errors_are_retried_a_bounded_number_of_times(parts, monkeypatch):
    kube, metrics = parts
    monkeypatch.setattr(ev, "RETRY_DELAYS", (0.0, 0.0))
    await _post_one(kube, metrics, ApiError(503, "unavailable"), TransientError("reset", 0.0))
    assert len(kube.requests) == 3 and outcome(metrics, "posted") == 1
    kube.requests.clear()
    await _post_one(kube, metrics, *[ApiError(500, "boom")] * 10, name="t2")
    assert len(kube.requests) == 3 and outcome(metrics, "dropped_error") == 1  # 1 + 2 retries


async def test_name_collision_posts_under_a_new_name(parts):
    kube, metrics = parts
    await _post_one(kube, metrics, ApiError(409, "already exists"))
    first, second = (body["metadata"]["name"] for _, _, body, _ in kube.requests)
    assert first != second and outcome(metrics, "posted") == 1


async def test_expired_event_is_posted_anew(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=1)
    rec.record(training(), "Warning", "Unschedulable", "same")
    await drain(rec)
    kube.fail = [ApiError(404, "not found")]
    rec.record(training(), "Warning", "Unschedulable", "same")
    await drain(rec)
    assert [m for m, *_ in kube.requests] == ["POST", "PATCH", "POST"]
    assert kube.requests[-1][2]["count"] == 2


async def test_repeat_after_the_window_is_a_new_event(parts, monkeypatch):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, workers=1)
    rec.record(training(), "Warning", "Unschedulable", "same")
    await drain(rec)
    monkeypatch.setattr(ev, "DEDUPE_WINDOW", -1.0)
    rec.record(training(), "Warning", "Unschedulable", "same")
    await drain(rec)
    assert [(m, body["count"]) for m, _, body, _ in kube.requests] == [("POST", 1), ("POST", 1)]


def test_dedupe_memory_is_bounded(parts):
    kube, metrics = parts
    rec = ev.EventRecorder(kube, metrics, dedupe_limit=10)
    for i in range(50):
        rec.record(training(name=f"t{i}", uid=f"u{i}"), "Normal", "AttemptStarted", "started")
    assert len(rec._recent) == 10
