"""bench/operator_probes.py: how the operator benchmark counts requests and GC time (pure parsing)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from operator_probes import AuditLog, gc_summary, operator_requests  # noqa: E402


def _entry(audit_id: str, agent: str, verb: str, resource: str, at: str, stage: str = "ResponseComplete",
           subresource: str | None = None) -> str:  # fmt: skip
    ref = {"resource": resource, **({"subresource": subresource} if subresource else {})}
    return json.dumps({"auditID": audit_id, "stage": stage, "userAgent": agent, "verb": verb, "objectRef": ref,
                       "requestReceivedTimestamp": at})  # fmt: skip


def test_requests_are_counted_once_per_audit_id_inside_the_window_and_only_the_operators(tmp_path):
    log = tmp_path / "audit.log"
    before = _entry("0", "kopf/1.45.2", "patch", "nsmtrainings", "2026-01-01T00:00:00.000000Z") + "\n"
    log.write_text(before)
    audit = AuditLog(log)
    start = audit.offset()
    lines = [
        # a watch logs ResponseStarted and, when it ends, ResponseComplete: one request
        _entry("w", "kopf/1.45.2", "watch", "jobs", "2026-01-01T00:00:10.000000Z", stage="ResponseStarted"),
        _entry("w", "kopf/1.45.2", "watch", "jobs", "2026-01-01T00:00:10.000000Z"),
        _entry("a", "Python/3.11 aiohttp/3.14.5", "create", "jobs", "2026-01-01T00:00:11.5Z"),
        _entry("b", "Python/3.11 aiohttp/3.14.5", "patch", "nsmtrainings", "2026-01-01T00:00:12Z", subresource="status"),
        _entry("c", "kube-controller-manager/v1.36.3 (linux/amd64)", "create", "pods", "2026-01-01T00:00:12Z"),
        _entry("d", "nsm-bench", "create", "nsmtrainings", "2026-01-01T00:00:12Z"),
        _entry("e", "OpenAPI-Generator/37.0.2/python", "list", "pods", "2026-01-01T00:00:12Z"),
        _entry("late", "kopf/1.45.2", "create", "events", "2026-01-01T00:01:00Z"),  # after the operator stopped
        '{"auditID": "half a line',  # being written
    ]
    with open(log, "a") as f:
        f.write("\n".join(lines))
    t0, t1 = 1767225600 + 5, 1767225600 + 30  # 2026-01-01T00:00:05Z .. 00:00:30Z
    count, kinds = operator_requests(audit.requests(start, t0, t1))
    assert count == 3
    assert kinds == {"kopf/1.45.2|watch jobs": 1, "Python/3.11 aiohttp/3.14.5|create jobs": 1,
                     "Python/3.11 aiohttp/3.14.5|patch nsmtrainings/status": 1}  # fmt: skip


def _create(name: str, resource: str, received: str, done: str, namespace: str = "ns", code: int = 201,
            stage: str = "ResponseComplete") -> str:  # fmt: skip
    return json.dumps({"auditID": f"{resource}-{name}-{code}", "stage": stage, "verb": "create",
                       "objectRef": {"resource": resource, "namespace": namespace, "name": name},
                       "responseStatus": {"code": code}, "requestReceivedTimestamp": received,
                       "stageTimestamp": done})  # fmt: skip


def test_create_latencies_go_from_the_trainings_arrival_to_its_jobs_creation(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text(_create("old", "nsmtrainings", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.01Z") + "\n")
    audit = AuditLog(log)
    start = audit.offset()
    lines = [
        _create("t1", "nsmtrainings", "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:01.020000Z"),
        _create("t1-a1", "jobs", "2026-01-01T00:00:01.500000Z", "2026-01-01T00:00:01.750000Z"),
        _create("t1-a1", "jobs", "2026-01-01T00:00:03Z", "2026-01-01T00:00:03.1Z", code=409),  # a retry's 409
        _create("t2", "nsmtrainings", "2026-01-01T00:00:02Z", "2026-01-01T00:00:02.01Z"),
        _create("t2-a1", "jobs", "2026-01-01T00:00:02.1Z", "2026-01-01T00:00:02.2Z", stage="ResponseStarted"),
        _create("t2-a2", "jobs", "2026-01-01T00:00:09Z", "2026-01-01T00:00:09.1Z"),  # a later attempt's
        _create("t3", "nsmtrainings", "2026-01-01T00:00:02Z", "2026-01-01T00:00:02.01Z"),
        _create("t3-a1", "jobs", "2026-01-01T00:00:02Z", "2026-01-01T00:00:02.4Z", namespace="other"),
        _create("old-a1", "jobs", "2026-01-01T00:00:04Z", "2026-01-01T00:00:04.5Z"),  # its training came before
        '{"auditID": "half a line',
    ]
    with open(log, "a") as f:
        f.write("\n".join(lines))
    latencies = audit.create_latencies(start, "ns")
    assert list(latencies) == ["t1"] and latencies["t1"] == pytest.approx(0.75)


def test_without_an_audit_log_nothing_is_counted(tmp_path):
    audit = AuditLog(tmp_path / "absent.log")
    assert operator_requests(audit.requests(audit.offset(), 0, 1e10)) == (None, {})
    assert audit.create_latencies(audit.offset(), "ns") is None


def test_gc_summary_sums_each_generations_collections():
    log = "\n".join([
        "some operator log line",
        "gc: collecting generation 0...", "gc: objects in each generation: 702 0 5418",
        "gc: done, 0 unreachable, 0 uncollectable, 0.0010s elapsed",
        "gc: collecting generation 2...", "gc: done, 3308 unreachable, 0 uncollectable, 0.3500s elapsed",
        "gc: collecting generation 0...", "gc: done, 1 unreachable, 0 uncollectable, 0.0020s elapsed",
    ])  # fmt: skip
    summary = gc_summary(log)
    assert summary["gc_gen0_count"] == 2 and abs(summary["gc_gen0_seconds"] - 0.003) < 1e-9
    assert summary == {**summary, "gc_gen2_count": 1, "gc_gen2_seconds": 0.35}
    assert "gc_gen1_count" not in summary


def test_operator_env_is_key_value():
    from operator_latency import _env_setting

    assert _env_setting("NSM_OPERATOR_GC_THRESHOLD=700") == ("NSM_OPERATOR_GC_THRESHOLD", "700")
    assert _env_setting("A=b=c") == ("A", "b=c")
    for bad in ("NOEQUALS", "=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _env_setting(bad)
