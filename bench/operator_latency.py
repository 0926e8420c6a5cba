"""Operator latency under a burst: apply N NSMTrainings at once, time apply -> Job created.

    .venv/bin/python bench/operator_latency.py [--count 200] [--concurrency 16]

Uses the cluster at NSM_KUBECONFIG, else starts a local control plane with the e2e harness
(tests/cluster, binaries cached by `make cluster-bins`). The operator runs as a subprocess
(`nsm-operator -n <bench namespace>`). Latency is measured from the client-side send time of each
create to the moment this script's Job watch sees `<name>-a1` ADDED. The trainings set
`queueName`, so their Jobs are created suspended (the Kueue convention; no Kueue here): the figure
is the operator's own latency, not the scheduler's or kwok's. Peak RSS is the operator process's
VmHWM from /proc. Prints figures; asserts nothing (goal: p99 <= 3 s, RSS <= 200 MB).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[k]


def start_cluster():
    from tests.cluster import kwok_cluster

    bins = kwok_cluster.build_binaries()
    reuse = os.environ.get("NSM_KUBECONFIG")
    if reuse:
        return kwok_cluster.attach(reuse, bins), False
    cluster = kwok_cluster.new_session_cluster(bins)
    cluster.start()
    return cluster, True


def start_operator(cluster: Any, ns: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The operator for namespace ``ns``, healthy; returns it and its metrics port."""
    health, metrics = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSM_OPERATOR_")}
    env.update(KUBECONFIG=str(cluster.kubeconfig), NSM_OPERATOR_METRICS_PORT=str(metrics), PYTHONUNBUFFERED="1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        op = subprocess.Popen([str(Path(sys.executable).parent / "nsm-operator"), "-n", ns,
                               f"--liveness=http://127.0.0.1:{health}/healthz", "--quiet"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1).close()
            return op, metrics
        except OSError:
            if time.monotonic() > deadline or op.poll() is not None:
                raise RuntimeError(f"operator did not become healthy; see {log_path}") from None
            time.sleep(0.3)


def burst(custom: Any, batch: Any, ns: str, count: int, concurrency: int,
          timeout: float) -> tuple[dict[str, float], dict[str, float], float, float]:
    """Create ``count`` trainings from ``concurrency`` threads; returns (sent, first Job seen,
    burst start, seconds spent sending), all on the monotonic clock."""
    from kubernetes import watch

    names = [f"bench-{i:04d}" for i in range(count)]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def watch_jobs() -> None:
        w = watch.Watch()
        for event in w.stream(batch.list_namespaced_job, ns, timeout_seconds=int(timeout)):
            name = event["object"].metadata.name
            if event["type"] == "ADDED" and name.endswith("-a1"):
                seen.setdefault(name[:-3], time.monotonic())
                if len(seen) >= count:
                    break
        done.set()

    watcher = threading.Thread(target=watch_jobs, daemon=True)
    watcher.start()
    time.sleep(1.0)  # let the watch establish

    def create(name: str) -> None:
        body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"domain": "causal", "epochs": 10, "queueName": "bench",
                         "resources": {"gpu": {"count": 0}, "cpu": "100m", "memory": "128Mi"}}}  # fmt: skip
        sent[name] = time.monotonic()
        custom.create_namespaced_custom_object("nsm.dev", "v1alpha1", ns, "nsmtrainings", body)

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(create, names))
    send_seconds = time.monotonic() - start
    done.wait(timeout)
    return sent, seen, start, send_seconds


def report(args: argparse.Namespace, op: subprocess.Popen[bytes], metrics: int, idle: tuple[float, float],
           sent: dict[str, float], seen: dict[str, float], start: float, send_seconds: float) -> None:
    latencies = [seen[n] - sent[n] for n in sent if n in seen]
    all_done = (max(seen.values()) - start) if seen else float("nan")
    idle_rss, idle_cpu = idle
    peak_rss = vm_hwm_mb(op.pid)
    print(f"trainings applied: {args.count} in {send_seconds:.2f}s ({args.concurrency} client threads)")
    print(f"Jobs created:      {len(latencies)}/{args.count}; last one {all_done:.2f}s after the burst began")
    if latencies:
        print(f"apply -> Job created: p50 {percentile(latencies, 50):.3f}s  p90 {percentile(latencies, 90):.3f}s  "
              f"p99 {percentile(latencies, 99):.3f}s  max {max(latencies):.3f}s  mean {statistics.mean(latencies):.3f}s")
    print(f"operator RSS: idle peak {idle_rss:.1f} MB, peak (VmHWM) {peak_rss:.1f} MB; "
          f"CPU during the burst {cpu_seconds(op.pid) - idle_cpu:.1f}s")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith(("nsm_operator_job_creation_seconds_count", "nsm_operator_job_creation_seconds_sum",
                                "nsm_operator_reconcile_errors_total")):  # fmt: skip
                print(f"  {line}")
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16, help="client threads sending the creates")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    from kubernetes import client, config

    t0 = time.monotonic()
    cluster, owned = start_cluster()
    print(f"cluster {cluster.name} ready in {time.monotonic() - t0:.1f}s (kubeconfig {cluster.kubeconfig})")
    op = None
    try:
        crd = REPO / "charts/nsm-operator/crd/nsm.dev_nsmtrainings.yaml"
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd), check=True)
        cluster.kubectl("wait", "--for=condition=Established", "crd/nsmtrainings.nsm.dev", check=True)
        ns = f"bench-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("create", "namespace", ns, check=True)
        api_client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        api_client.configuration.connection_pool_maxsize = args.concurrency * 2
        custom, batch = client.CustomObjectsApi(api_client), client.BatchV1Api(api_client)
        op, metrics = start_operator(cluster, ns, REPO / "test-logs" / "bench-operator.log")
        idle = (vm_hwm_mb(op.pid), cpu_seconds(op.pid))
        sent, seen, start, send_seconds = burst(custom, batch, ns, args.count, args.concurrency, args.timeout)
        report(args, op, metrics, idle, sent, seen, start, send_seconds)
        cluster.kubectl("delete", "namespace", ns, "--wait=false")
        return 0
    finally:
        if op is not None and op.poll() is None:
            os.killpg(op.pid, signal.SIGTERM)
            try:
                op.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(op.pid, signal.SIGKILL)
        if owned:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
