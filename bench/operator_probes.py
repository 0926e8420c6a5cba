"""What ``bench/operator_latency.py`` reads besides its own Job watch: a process's CPU and peak
RSS from /proc, when its CPU goes quiet, the API server's audit log (requests per client, and
training -> Job latencies on the API server's clock), and the namespace's Events."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nsm.contract import parse_time

# Clients of the test control plane that are not the operator under test: kube-controller-manager,
# kube-scheduler, kwok, kubectl (the bench's and the harness's), the kubernetes Python client (the
# bench's own client, set to "nsm-bench", and the harness's pod marker), kube-apiserver's loopback.
NOT_THE_OPERATOR = ("kube-controller-manager/", "kube-scheduler/", "kwok-controller/", "kubectl/",
                    "kubectl-dispatcher/", "OpenAPI-Generator/", "nsm-bench", "kube-apiserver/")  # fmt: skip

# Metadata level (no bodies); the API server's own loopback requests and the controllers' leases
# are not logged at all, which keeps the log (and its cost to the API server) small.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:apiserver"]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
"""


def _status_mb(pid: int, field: str) -> float:
    """A memory figure of ``pid`` from /proc/<pid>/status (``VmHWM``, ``VmRSS``), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of ``pid`` (VmHWM), MB."""
    return _status_mb(pid, "VmHWM")


def vm_rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` now (VmRSS), MB."""
    return _status_mb(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (its threads included), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_quiet(pid: int, since: float, timeout: float, window: float = 5.0, threshold: float = 0.05) -> float:
    """Seconds from ``since`` (monotonic) until ``pid`` went quiet: the start of the first
    ``window`` in which it used less than ``threshold`` CPU seconds (1 % of a core by default).
    Returns ``timeout``-bounded figure (the elapsed time when it never went quiet)."""
    samples: list[tuple[float, float]] = []
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        samples.append((now, cpu_seconds(pid)))
        old = [s for s in samples if s[0] <= now - window]
        if old and samples[-1][1] - old[-1][1] < threshold:
            return old[-1][0] - since
        if now > deadline:
            return now - since
        time.sleep(0.5)


class AuditLog:
    """Requests per user agent in kube-apiserver's audit log, between two offsets of the file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path if path is not None and path.exists() else None

    def offset(self) -> int:
        return self.path.stat().st_size if self.path else 0

    def entries(self, start: int) -> Iterator[dict[str, Any]]:
        """The audit entries written after ``start`` (a line still being written is skipped)."""
        if self.path is None:
            return
        with open(self.path, "rb") as f:
            f.seek(start)
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue

    def requests(self, start: int, t0: float, t1: float) -> Counter[str] | None:
        """Distinct requests (audit IDs) received in [t0, t1] (epoch seconds) written after
        ``start``, per "user agent|verb resource[/subresource]"; None without an audit log."""
        if self.path is None:
            return None
        seen: dict[str, str] = {}
        for entry in self.entries(start):
            received = parse_time(entry.get("requestReceivedTimestamp"))
            if received is not None and t0 <= received.timestamp() <= t1:
                ref = entry.get("objectRef") or {}
                what = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
                seen.setdefault(entry["auditID"], f"{entry.get('userAgent', '')}|{entry.get('verb')} {what}")
        return Counter(seen.values())

    def create_latencies(self, start: int, namespace: str, job_suffix: str = "-a1") -> dict[str, float] | None:
        """Per training of ``namespace``: seconds from the API server receiving its creation to
        the API server answering the creation of its Job ``<name><job_suffix>``, both read from
        the audit log (the API server's clock, microseconds) written after ``start``; None
        without an audit log. Unlike a client's watch, nothing on the client side (its threads,
        its deserialising, the machine's load on it) is in the figure."""
        if self.path is None:
            return None
        trainings: dict[str, float] = {}
        jobs: dict[str, float] = {}
        for entry in self.entries(start):
            ref = entry.get("objectRef") or {}
            if entry.get("verb") != "create" or ref.get("namespace") != namespace or ref.get("subresource"):
                continue
            code = (entry.get("responseStatus") or {}).get("code")
            if entry.get("stage") != "ResponseComplete" or not isinstance(code, int) or code >= 300:
                continue  # a refused create (409 of a retry …) made nothing
            name = ref.get("name") or ""
            if ref.get("resource") == "nsmtrainings":
                received = parse_time(entry.get("requestReceivedTimestamp"))
                if received is not None:
                    trainings[name] = received.timestamp()
            elif ref.get("resource") == "jobs" and name.endswith(job_suffix):
                done = parse_time(entry.get("stageTimestamp"))
                if done is not None:
                    jobs[name.removesuffix(job_suffix)] = done.timestamp()
        return {n: jobs[n] - t for n, t in trainings.items() if n in jobs}


def operator_requests(per_agent: Counter[str] | None) -> tuple[int | None, dict[str, int]]:
    """The operator's request count (every agent not in NOT_THE_OPERATOR) and its breakdown by
    agent, verb and resource."""
    if per_agent is None:
        return None, {}
    mine = {agent: n for agent, n in per_agent.items() if not agent.startswith(NOT_THE_OPERATOR)}
    return sum(mine.values()), mine


def event_times(events: Iterable[Any]) -> list[float]:
    """When each Event (kubernetes client objects) was last posted, epoch seconds."""
    times = []
    for ev in events:
        stamps = [ev.event_time, ev.last_timestamp, ev.first_timestamp, ev.metadata.creation_timestamp]
        posted = [s.timestamp() for s in stamps if s is not None]
        if posted:
            times.append(max(posted))
    return times


def gc_summary(log: str) -> dict[str, float | int]:
    """Seconds and count of garbage collections per generation, from gc.DEBUG_STATS lines
    ("gc: collecting generation N..." ... "gc: done, ..., 0.0123s elapsed")."""
    out: dict[str, float | int] = {}
    generation = None
    for line in log.splitlines():
        if line.startswith("gc: collecting generation "):
            generation = line.split()[3].rstrip(".")
        elif line.startswith("gc: done") and line.endswith("s elapsed") and generation is not None:
            elapsed = float(line.rsplit(",", 1)[1].split()[0].rstrip("s"))
            out[f"gc_gen{generation}_seconds"] = out.get(f"gc_gen{generation}_seconds", 0.0) + elapsed
            out[f"gc_gen{generation}_count"] = int(out.get(f"gc_gen{generation}_count", 0)) + 1
    return out
