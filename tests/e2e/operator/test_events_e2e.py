"""The operator's Event recorder (nsm_operator/events.py) against the real kube-apiserver of the
local control plane, without an operator process (so not named ``test_op_*``): the API server's validation of the Event it
creates, of the PATCH that raises a repeat's count, of a truncated message, and a rejection
(422) that is dropped without a retry."""

from __future__ import annotations

import asyncio

import pytest

from nsm_operator import events as ev
from nsm_operator.kube import Kube, connection_info
from nsm_operator.metrics import EVENTS_TOTAL, OperatorMetrics

pytestmark = pytest.mark.e2e


def _events(core_v1, namespace: str, name: str) -> list:
    return core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items


async def _record_all(calls: list[tuple], metrics: OperatorMetrics) -> None:
    kube = Kube(connection_info(), request_timeout=10)
    rec = ev.EventRecorder(kube, metrics, workers=4, instance="e2e")
    rec.start()
    try:
        for body, type_, reason, message in calls:
            rec.record(body, type_, reason, message)
            assert await rec.flush(10)  # one at a time: a repeat finds its Event created
    finally:
        await rec.stop(flush_seconds=5)
        await kube.close()


def test_events_created_deduplicated_truncated_and_rejections_dropped(kubeconfig, core_v1, namespace,
                                                                      monkeypatch):  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    cm = core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "target"}, "data": {}})
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "target", "namespace": namespace, "uid": cm.metadata.uid,
        "resourceVersion": cm.metadata.resource_version}}  # fmt: skip
    long = "x" * 3000
    metrics = OperatorMetrics()
    asyncio.run(_record_all([
        (body, "Warning", "Unschedulable", "attempt 1: 0/3 nodes"),
        (body, "Warning", "Unschedulable", "attempt 1: 0/3 nodes"),
        (body, "Warning", "Unschedulable", "attempt 1: 0/3 nodes"),
        (body, "Normal", "AttemptStarted", long),
        (body, "Normal", "R" * 200, "a reason longer than the API's 128 characters"),
    ], metrics))  # fmt: skip
    events = {e.reason: e for e in _events(core_v1, namespace, "target")}
    assert set(events) == {"Unschedulable", "AttemptStarted"}
    repeat = events["Unschedulable"]
    assert repeat.count == 3 and repeat.type == "Warning" and repeat.message == "attempt 1: 0/3 nodes"
    assert repeat.involved_object.uid == cm.metadata.uid and repeat.involved_object.kind == "ConfigMap"
    assert repeat.source.component == "nsm-operator" and repeat.reporting_component == "nsm-operator"
    assert repeat.last_timestamp >= repeat.first_timestamp
    assert len(events["AttemptStarted"].message) == ev.MAX_MESSAGE_LENGTH and events["AttemptStarted"].count == 1
    sample = lambda outcome: metrics.registry.get_sample_value(EVENTS_TOTAL, {"outcome": outcome})  # noqa: E731
    assert (sample("posted"), sample("patched"), sample("deduplicated")) == (2, 2, 2)
    assert sample("dropped_rejected") == 1 and sample("dropped_error") is None
