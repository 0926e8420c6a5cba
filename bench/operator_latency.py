"""Operator latency under a burst: apply N NSMTrainings at once, time apply -> Job created.

    .venv/bin/python bench/operator_latency.py [--count 200] [--pods] [--baseline] [--runs 3] [--json]

Starts a local control plane with the e2e harness (tests/cluster, binaries cached by `make
cluster-bins`), with kube-apiserver's audit log on; NSM_KUBECONFIG attaches to a running cluster
instead (then requests are not counted unless it has tests/cluster's audit log). Each operator
runs as a subprocess serving one fresh namespace per run: the project's (`nsm-operator -n NS`)
and, with ``--baseline``, bench/minimal_operator.py (kopf, the same children from the project's
builders, nothing else), alternating, one at a time: an operator is stopped and its namespace
deleted before the next starts. Figures per operator, medians over ``--runs``:

* p50 / p99: client-side send time of each create -> this script's Job watch sees `<name>-a1`
  (what a user's client sees: it includes the watch's delivery and this process's own lag on a
  machine that the burst saturates);
* api_p50 / api_p99: the API server received the training's create -> it answered the creation of
  `<name>-a1`, both from its audit log (its clock, microseconds): the operator's latency alone,
  as the API server saw it. Under the 2-core burst the two differ by seconds in some runs, in
  this script's watch alone (docs/performance.md, "Session 7");
* drain_seconds: burst start -> the operator's CPU goes quiet (< 1 % over 5 s);
* operator_cpu_seconds, apiserver_cpu_seconds, etcd_cpu_seconds: CPU from the burst to the drain;
* peak_rss_mb (VmHWM) and idle_rss_mb (healthy, before the burst);
* requests_per_training: the operator's requests in the audit log (every user agent that is not
  a control-plane component or this script) while it ran, start-up and shutdown included, / N;
  event_requests_per_training: the part of it that posts or patches Events;
* events_trailing_seconds: the last Event about a training posted after the burst's last Job;
  scheduler_trailing_seconds (``--pods``): the scheduler's last first verdict on a pod after the
  burst's last Job, the part of that tail the operator cannot shorten (its Warning can't come sooner).

The trainings set `queueName`, so their Jobs are created suspended (no Kueue here): the figure is
the operator's own latency. With ``--pods`` (how the goals are measured) they don't: every Job
gets a pod, Unschedulable on its unbound claim (no provisioner), so the operator's pod watch
reports a waiting reason per training during the burst and its progress watch sees its own
progress ConfigMaps. Prints figures; asserts nothing. How to read them: docs/performance.md.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from operator_probes import (  # noqa: E402 - after the path set-up
    AUDIT_POLICY, AuditLog, cpu_seconds, event_times, gc_summary, operator_requests, vm_hwm_mb, vm_rss_mb,
    wait_quiet,
)  # fmt: skip

OPERATORS = ("project", "minimal")
FIELDS = ("p50", "p99", "api_p50", "api_p99", "drain_seconds", "operator_cpu_seconds", "peak_rss_mb",
          "requests_per_training", "event_requests_per_training", "events_trailing_seconds",
          "scheduler_trailing_seconds", "idle_rss_mb", "apiserver_cpu_seconds", "etcd_cpu_seconds")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


def start_cluster(policy_dir: Path) -> tuple[Any, bool]:
    from tests.cluster import kwok_cluster

    bins = kwok_cluster.build_binaries()
    reuse = os.environ.get("NSM_KUBECONFIG")
    if reuse:
        return kwok_cluster.attach(reuse, bins), False
    cluster = kwok_cluster.new_session_cluster(bins)
    cluster.audit_policy = policy_dir / "audit-policy.yaml"
    cluster.audit_policy.write_text(AUDIT_POLICY)
    cluster.start()
    return cluster, True


def operator_command(which: str, ns: str, health: int, gc_stats: bool = False) -> list[str]:
    bindir = Path(sys.executable).parent
    liveness = f"--liveness=http://127.0.0.1:{health}/healthz"
    if which == "project":
        argv = ["-n", ns, liveness, "--quiet"]
        entry = "from nsm_operator.cli import main; sys.exit(main(argv))"
        plain = [str(bindir / "nsm-operator"), *argv]
    else:
        argv = ["run", "--standalone", "--namespace", ns, liveness, "--quiet",
                str(REPO / "bench" / "minimal_operator.py")]  # fmt: skip
        entry = "from kopf.cli import main; main.main(args=argv, prog_name='kopf')"
        plain = [str(bindir / "kopf"), *argv]
    if not gc_stats:
        return plain
    # Every collection's generation and duration to the log (gc.DEBUG_STATS), read by gc_summary().
    return [sys.executable, "-c", f"import gc, sys; gc.set_debug(gc.DEBUG_STATS); argv = {argv!r}; {entry}"]


def start_operator(which: str, cluster: Any, ns: str, log_path: Path, gc_stats: bool = False,
                   extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    """Operator ``which`` for namespace ``ns``, healthy. The caller's NSM_OPERATOR_* variables
    are not passed on (a stray one would skew the figures); ``extra_env`` (``--operator-env``) is."""
    health = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSM_OPERATOR_")}
    env.update(KUBECONFIG=str(cluster.kubeconfig), NSM_OPERATOR_METRICS_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    if which == "project":
        env.update(extra_env or {})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        op = subprocess.Popen(operator_command(which, ns, health, gc_stats), stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1).close()
            print(f"{which} operator healthy: pid {op.pid}, namespace {ns}, log {log_path}", file=sys.stderr)
            return op
        except OSError:
            if time.monotonic() > deadline or op.poll() is not None:
                stop_operator(op)
                raise RuntimeError(f"{which} operator did not become healthy; see {log_path}") from None
            time.sleep(0.3)


def stop_operator(op: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s; returns once the process is gone."""
    if op.poll() is None:
        os.killpg(op.pid, signal.SIGTERM)
        try:
            op.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(op.pid, signal.SIGKILL)
            op.wait()


def burst(api: dict[str, Any], ns: str, count: int, concurrency: int, timeout: float,
          pods: bool) -> tuple[dict[str, float], dict[str, float], float]:  # fmt: skip
    """Create ``count`` trainings from ``concurrency`` threads; returns (sent, first Job seen,
    burst start), monotonic clock."""
    from kubernetes import watch

    names = [f"bench-{i:04d}" for i in range(count)]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch_jobs() -> None:
        # A loaded API server may end a watch early: watch again (an ADDED replayed by the new
        # list keeps its first time) until every Job was seen or the time is up.
        deadline = time.monotonic() + timeout
        while len(seen) < count and time.monotonic() < deadline:
            w = watch.Watch()
            try:
                # Plain JSON, not the client's model objects: deserialising every Job event into
                # those cost this thread seconds of lag under the burst (both operators alike).
                for event in w.stream(api["batch"].list_namespaced_job, ns, deserialize=False,
                                      timeout_seconds=int(deadline - time.monotonic()) + 1):  # fmt: skip
                    name = ((event.get("object") or {}).get("metadata") or {}).get("name") or ""
                    if event["type"] == "ADDED" and name.endswith("-a1"):
                        seen.setdefault(name[:-3], time.monotonic())
                        if len(seen) >= count:
                            break
            except Exception as exc:  # noqa: BLE001 - report and watch again
                print(f"job watch ended: {exc!r}", file=sys.stderr)
        done.set()

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    time.sleep(1.0)  # let the watch establish

    def create(name: str) -> None:
        body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"domain": "causal", "epochs": 10, "queueName": "bench",
                         "resources": {"gpu": {"count": 0}, "cpu": "100m", "memory": "128Mi"}}}  # fmt: skip
        if pods:
            del body["spec"]["queueName"]
        sent[name] = time.monotonic()
        api["custom"].create_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings", body)

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(create, names))
    done.wait(timeout)
    return sent, seen, start


def last_job_created(api: dict[str, Any], ns: str) -> float | None:
    """When the burst's last Job was created (epoch seconds); None when there is none."""
    jobs = api["batch"].list_namespaced_job(ns).items
    return max((j.metadata.creation_timestamp.timestamp() for j in jobs), default=None)


def events_trailing(api: dict[str, Any], ns: str, timeout: float) -> float | None:
    """Seconds from the burst's last Job creation to the last Event about a training, once the
    Events stop coming (no new one for 10 s); None when no Event was posted."""
    deadline = time.monotonic() + timeout
    stable_since, last_count = time.monotonic(), -1
    while time.monotonic() < deadline:
        events = api["core"].list_namespaced_event(ns, field_selector="involvedObject.kind=NSMTraining").items
        if len(events) != last_count:
            stable_since, last_count = time.monotonic(), len(events)
        elif time.monotonic() - stable_since >= 10:
            break
        time.sleep(2)
    last_job = last_job_created(api, ns)
    times = event_times(events)
    if not times or last_job is None:
        return None
    return max(0.0, max(times) - last_job)


def scheduler_trailing(api: dict[str, Any], ns: str) -> float | None:
    """Seconds from the burst's last Job creation to the scheduler's last first verdict on a pod
    (``PodScheduled`` False: when its Unschedulable Warning becomes due): the part of
    ``events_trailing_seconds`` that is the cluster's, not the operator's. None without pods."""
    pods = api["core"].list_namespaced_pod(ns).items
    last_job = last_job_created(api, ns)
    verdicts = [c.last_transition_time.timestamp() for p in pods for c in (p.status.conditions or [])
                if c.type == "PodScheduled" and c.status == "False" and c.last_transition_time]  # fmt: skip
    if not verdicts or last_job is None:
        return None
    return max(0.0, max(verdicts) - last_job)


def delete_namespace(cluster: Any, api: dict[str, Any], ns: str, timeout: float) -> None:
    """Delete ``ns`` and wait until the trainings, Jobs, pods and every labelled child are gone.

    The namespace controller would delete them too, but it backs off between passes (a minute for
    200 trainings) and leaves the work overlapping the next run: one deletecollection per kind is
    quicker, and the namespace object that remains costs nothing."""
    import urllib3
    from kubernetes.client.rest import ApiException

    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=True)
    core, batch, rbac, custom = api["core"], api["batch"], api["rbac"], api["custom"]
    children = "nsm.dev/training"  # the label every child of a training carries
    deletions = (lambda: custom.delete_collection_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings"),
                 lambda: batch.delete_collection_namespaced_job(ns, propagation_policy="Background"),
                 lambda: core.delete_collection_namespaced_pod(ns, grace_period_seconds=0),
                 lambda: core.delete_collection_namespaced_config_map(ns, label_selector=children),
                 lambda: core.delete_collection_namespaced_persistent_volume_claim(ns, label_selector=children),
                 lambda: core.delete_collection_namespaced_service_account(ns, label_selector=children),
                 lambda: rbac.delete_collection_namespaced_role(ns, label_selector=children),
                 lambda: rbac.delete_collection_namespaced_role_binding(ns, label_selector=children))  # fmt: skip
    lists = (lambda: custom.list_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings", limit=1)["items"],
             lambda: batch.list_namespaced_job(ns, limit=1).items,
             lambda: core.list_namespaced_pod(ns, limit=1).items,
             lambda: core.list_namespaced_config_map(ns, limit=1, label_selector=children).items,
             lambda: core.list_namespaced_persistent_volume_claim(ns, limit=1, label_selector=children).items,
             lambda: core.list_namespaced_service_account(ns, limit=1, label_selector=children).items,
             lambda: rbac.list_namespaced_role(ns, limit=1, label_selector=children).items,
             lambda: rbac.list_namespaced_role_binding(ns, limit=1, label_selector=children).items)  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        for delete in deletions:
            try:
                delete()
            except (ApiException, urllib3.exceptions.HTTPError) as exc:
                # A loaded API server may time out (504) deleting 1000 objects in one request:
                # what it deleted stays deleted, the rest is asked for again below.
                if isinstance(exc, ApiException) and 400 <= exc.status < 500 and exc.status != 404:
                    raise
        again = time.monotonic() + 30
        while time.monotonic() < again and any(left() for left in lists):
            time.sleep(1)
        if not any(left() for left in lists):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {ns}: trainings or their children still there after {timeout}s")


def one_run(which: str, args: argparse.Namespace, cluster: Any, api: dict[str, Any], audit: AuditLog,
            log_dir: Path) -> dict[str, Any]:  # fmt: skip
    """One operator, one fresh namespace, one burst; the operator is stopped when this returns."""
    ns, began = f"bench-{uuid.uuid4().hex[:6]}", time.monotonic()
    cluster.kubectl("create", "namespace", ns, check=True)
    offset, t0 = audit.offset(), time.time()
    log_path = log_dir / f"{which}-{ns}.log"
    op = start_operator(which, cluster, ns, log_path, args.gc_stats, dict(args.operator_env))
    try:
        pids = cluster.component_pids() if cluster.owned else {}
        comps = {c: pids.get(c) for c in ("kube-apiserver", "etcd")}
        idle_rss, idle_cpu = vm_rss_mb(op.pid), cpu_seconds(op.pid)
        comp_cpu = {c: cpu_seconds(p) for c, p in comps.items() if p}
        sent, seen, start = burst(api, ns, args.count, args.concurrency, args.timeout, args.pods)
        drain = wait_quiet(op.pid, start, args.timeout)
        row = {"operator": which, "namespace": ns, "jobs": len(seen), "drain_seconds": drain,
               "operator_cpu_seconds": cpu_seconds(op.pid) - idle_cpu, "peak_rss_mb": vm_hwm_mb(op.pid),
               "idle_rss_mb": idle_rss}  # fmt: skip
        for c, before in comp_cpu.items():
            row[f"{c.replace('kube-', '')}_cpu_seconds"] = cpu_seconds(comps[c]) - before  # type: ignore[arg-type]
        latencies = [seen[n] - sent[n] for n in sent if n in seen]
        if latencies:
            row.update(p50=percentile(latencies, 50), p99=percentile(latencies, 99))
        row["events_trailing_seconds"] = events_trailing(api, ns, args.timeout)
        row["scheduler_trailing_seconds"] = scheduler_trailing(api, ns) if args.pods else None
    finally:
        stop_operator(op)
    if args.gc_stats:
        row.update(gc_summary(log_path.read_text(errors="replace")))
    time.sleep(1.0)  # the audit log is written as responses complete
    requests, agents = operator_requests(audit.requests(offset, t0, time.time()))
    server = list((audit.create_latencies(offset, ns) or {}).values())
    if server:
        row.update(api_p50=percentile(server, 50), api_p99=percentile(server, 99))
    row["requests_per_training"] = None if requests is None else requests / args.count
    # Events apart: the goal's "≤ 8 requests" is about the work (creates, status, kopf's patch),
    # Events are best-effort reports whose count depends on what there is to report.
    events = sum(n for kind, n in agents.items() if kind.rsplit(" ", 1)[-1] == "events")
    row["event_requests_per_training"] = None if requests is None else events / args.count
    row["requests_by_kind"] = dict(sorted(agents.items(), key=lambda kv: -kv[1]))
    row["wall_seconds"] = time.monotonic() - began
    return row


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summary(rows: list[dict[str, Any]], args: argparse.Namespace, counted_by: str) -> dict[str, Any]:
    out: dict[str, Any] = {"count": args.count, "runs": args.runs, "pods": args.pods, "requests_counted_by": counted_by,
                           "operator_env": dict(getattr(args, "operator_env", []) or []), "operators": {}}  # fmt: skip
    for which in {r["operator"] for r in rows}:
        mine = [r for r in rows if r["operator"] == which]
        gc_keys = sorted({k for r in mine for k in r if k.startswith("gc_")})
        out["operators"][which] = {**{k: median(mine, k) for k in (*FIELDS, *gc_keys)}, "runs": mine}
    ops = out["operators"]
    if "minimal" in ops:
        for key, field in (("p99_ratio", "p99"), ("api_p99_ratio", "api_p99"), ("cpu_ratio", "operator_cpu_seconds"),
                           ("rss_ratio", "peak_rss_mb")):  # fmt: skip
            out[key] = ratio(ops["project"][field], ops["minimal"][field])
    return out


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_table(out: dict[str, Any], file: Any = None) -> None:
    """The medians table; on stderr with ``--json`` so that stdout is one JSON document."""
    print = functools.partial(builtins.print, file=file or sys.stdout)  # noqa: A001
    ops = out["operators"]
    names = [o for o in OPERATORS if o in ops]
    print(f"\n{out['count']} trainings, pods={out['pods']}, medians of {out['runs']} runs "
          f"(requests counted by {out['requests_counted_by']})")  # fmt: skip
    print(f"{'':28}" + "".join(f"{n:>12}" for n in names))
    for key in FIELDS:
        print(f"{key:28}" + "".join(f"{fmt(ops[n][key], 3 if key.endswith(('p50', 'p99')) else 2):>12}" for n in names))
    for key in ("p99_ratio", "api_p99_ratio", "cpu_ratio", "rss_ratio"):
        if key in out:
            print(f"{key:28}{fmt(out[key]):>12}")


def _env_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16, help="client threads sending the creates")
    parser.add_argument("--timeout", type=float, default=600, help="bound on each wait (Jobs, drain, Events)")
    parser.add_argument("--pods", action="store_true",
                        help="no queueName: Jobs get pods (Unschedulable: no provisioner), the pod watch works")
    parser.add_argument("--baseline", action="store_true", help="also run bench/minimal_operator.py, alternating")
    parser.add_argument("--runs", type=int, default=1, help="runs per operator (medians are reported)")
    parser.add_argument("--gc-stats", action="store_true",
                        help="log every garbage collection (gc.DEBUG_STATS) and report GC time per generation "
                             "(costs the operators some CPU: a diagnosis, not a measurement)")
    parser.add_argument("--operator-env", action="append", default=[], type=_env_setting, metavar="KEY=VALUE",
                        help="an environment variable for the project's operator only (repeatable), e.g. "
                             "NSM_OPERATOR_GC_THRESHOLD=700 to measure a setting against the baseline")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (after the table)")
    args = parser.parse_args()

    from kubernetes import client, config

    from tests.cluster.waiting import wait_crd_established

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nsm-bench-") as tmp:
        cluster, owned = start_cluster(Path(tmp))
        print(f"cluster {cluster.name} ready in {time.monotonic() - t0:.1f}s (kubeconfig {cluster.kubeconfig})",
              file=sys.stderr)  # fmt: skip
        try:
            crd = REPO / "charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml"
            cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
            wait_crd_established(cluster, "nsmtrainings.nsm.dev")
            api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            api_client.configuration.connection_pool_maxsize = args.concurrency * 2
            api_client.user_agent = "nsm-bench"  # not counted as the operator's (operator_probes)
            api = {"custom": client.CustomObjectsApi(api_client), "batch": client.BatchV1Api(api_client),
                   "core": client.CoreV1Api(api_client), "rbac": client.RbacAuthorizationV1Api(api_client)}  # fmt: skip
            audit = AuditLog(cluster.audit_log)
            counted_by = "the API server's audit log" if audit.path else "nothing (no audit log: attached cluster)"
            rows = []
            for run in range(args.runs):
                order = OPERATORS if run % 2 == 0 else OPERATORS[::-1]
                for which in order if args.baseline else ("project",):
                    row = one_run(which, args, cluster, api, audit, REPO / "test-logs" / "bench-operator")
                    print(json.dumps({k: v for k, v in row.items() if k != "requests_by_kind"}), file=sys.stderr)
                    rows.append(row)
                    t_delete = time.monotonic()
                    delete_namespace(cluster, api, row["namespace"], args.timeout)
                    row["cleanup_seconds"] = time.monotonic() - t_delete
            out = summary(rows, args, counted_by)
            print_table(out, sys.stderr if args.json else sys.stdout)
            if args.json:
                print(json.dumps(out, indent=2))
            return 0
        finally:
            if owned:
                cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
