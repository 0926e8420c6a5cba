"""Self-tests of the e2e harness: the real control plane (tests/cluster) schedules onto the fake
A100 nodes, and the kwok stages script pod outcomes as docs/testing.md promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]
A100 = "NVIDIA-A100-SXM4-40GB"
GPU_NODES = {"gpu-a100-0", "gpu-a100-1"}
WAIT = 60  # seconds; every wait below is bounded


def wait_for(fn, timeout: float = WAIT, interval: float = 0.25, what: str = "condition"):
    """Poll fn() until it returns something truthy; fail with the last value after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def job_manifest(
    name: str,
    *,
    gpus: int | None = None,
    annotations: dict | None = None,
    labels: dict | None = None,
    backoff_limit: int = 0,
    pod_failure_policy: dict | None = None,
    owner: dict | None = None,
) -> dict:
    container = {"name": "trainer", "image": "nsm-trainer:e2e", "command": ["nsm", "train"]}
    pod_spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if gpus is not None:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
        pod_spec["nodeSelector"] = {"nvidia.com/gpu.product": A100}
    spec: dict = {
        "backoffLimit": backoff_limit,
        "template": {
            "metadata": {"labels": {"nsm.dev/attempt": "1", **(labels or {})}, "annotations": annotations or {}},
            "spec": pod_spec,
        },
    }
    if pod_failure_policy:
        spec["podFailurePolicy"] = pod_failure_policy
    meta: dict = {"name": name}
    if owner:
        meta["ownerReferences"] = [owner]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def job_condition(batch_v1, ns: str, name: str, ctype: str):
    job = batch_v1.read_namespaced_job_status(name, ns)
    for cond in job.status.conditions or []:
        if cond.type == ctype and cond.status == "True":
            return cond
    return None


def job_pods(core_v1, ns: str, name: str):
    pods = core_v1.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={name}").items
    return sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))


POLICY = {
    "rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 3]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
    ]
}


def test_fake_nodes(core_v1):
    nodes = {n.metadata.name: n for n in core_v1.list_node().items}
    assert GPU_NODES | {"cpu-0"} <= set(nodes)
    for name in GPU_NODES:
        node = nodes[name]
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.status.capacity["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["nvidia.com/gpu.product"] == A100
        assert node.metadata.labels["nvidia.com/gpu.count"] == "8"
        assert not node.spec.taints, "fake nodes must carry no taint (no test-only toleration needed)"
    assert "nvidia.com/gpu" not in (nodes["cpu-0"].status.allocatable or {})
    for node in nodes.values():
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True"


def test_gpu_job_schedules_on_a100_and_completes(namespace, batch_v1, core_v1):
    batch_v1.create_namespaced_job(namespace, job_manifest("gpu1", gpus=1))
    wait_for(lambda: job_condition(batch_v1, namespace, "gpu1", "Complete"), what="Job Complete")
    (pod,) = job_pods(core_v1, namespace, "gpu1")
    assert pod.spec.node_name in GPU_NODES
    assert pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")


def test_nine_gpus_stay_pending_unschedulable(namespace, batch_v1, core_v1):
    batch_v1.create_namespaced_job(namespace, job_manifest("gpu9", gpus=9))

    def unschedulable():
        for pod in job_pods(core_v1, namespace, "gpu9"):
            for cond in pod.status.conditions or []:
                if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                    return pod
        return None

    pod = wait_for(unschedulable, what="PodScheduled=False/Unschedulable")
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    assert "nvidia.com/gpu" in next(c.message for c in pod.status.conditions if c.type == "PodScheduled")


def test_exit_code_3_fails_job_by_pod_failure_policy(namespace, batch_v1, core_v1):
    ann = {"kwok.nsm.dev/outcome": "fail", "kwok.nsm.dev/exit-code": "3"}
    batch_v1.create_namespaced_job(
        namespace, job_manifest("diverged", gpus=1, annotations=ann, backoff_limit=6, pod_failure_policy=POLICY)
    )
    cond = wait_for(lambda: job_condition(batch_v1, namespace, "diverged", "Failed"), what="Job Failed")
    assert cond.reason == "PodFailurePolicy"
    pods = job_pods(core_v1, namespace, "diverged")
    assert len(pods) == 1, "FailJob must not retry despite backoffLimit 6"
    term = pods[0].status.container_statuses[0].state.terminated
    assert (pods[0].status.phase, term.exit_code, term.reason) == ("Failed", 3, "Error")


def test_disruption_is_ignored_by_backoff_limit(namespace, batch_v1, core_v1):
    ann = {"kwok.nsm.dev/outcome": "disrupt-first"}
    batch_v1.create_namespaced_job(
        namespace, job_manifest("preempted", gpus=1, annotations=ann, backoff_limit=0, pod_failure_policy=POLICY)
    )
    wait_for(lambda: job_condition(batch_v1, namespace, "preempted", "Complete"), what="Job Complete")
    first, second = job_pods(core_v1, namespace, "preempted")
    assert first.status.phase == "Failed"
    disruption = [c for c in first.status.conditions if c.type == "DisruptionTarget"]
    assert disruption and disruption[0].status == "True"
    assert second.status.phase == "Succeeded"
    job = batch_v1.read_namespaced_job_status("preempted", namespace)
    assert not job.status.failed, "an ignored disruption must not count as a failure"


def test_outcome_rules_for_bare_pods(namespace, core_v1):
    """fail-first fails when nsm.dev/attempt is "1" and succeeds otherwise; run-seconds takes Go
    durations; hang stays Running; restartPolicy Always pods are left Running."""

    def pod(name, attempt, outcome, code="1", run="1", restart="Never"):
        return {
            "metadata": {
                "name": name,
                "labels": {"nsm.dev/attempt": attempt},
                "annotations": {"kwok.nsm.dev/outcome": outcome, "kwok.nsm.dev/exit-code": code,
                                "kwok.nsm.dev/run-seconds": run},
            },
            "spec": {"restartPolicy": restart, "nodeSelector": {"type": "kwok"},
                     "containers": [{"name": "c", "image": "nsm-trainer:e2e"}]},
        }

    core_v1.create_namespaced_pod(namespace, pod("a1", "1", "fail-first", "42"))
    core_v1.create_namespaced_pod(namespace, pod("a2", "2", "fail-first"))
    core_v1.create_namespaced_pod(namespace, pod("fast", "1", "succeed", run="300ms"))
    core_v1.create_namespaced_pod(namespace, pod("hang", "1", "hang"))
    core_v1.create_namespaced_pod(namespace, pod("server", "1", "succeed", restart="Always"))

    def phases():
        got = {n: core_v1.read_namespaced_pod_status(n, namespace).status.phase for n in ("a1", "a2", "fast")}
        return got if "Running" not in got.values() and "Pending" not in got.values() else None

    assert wait_for(phases, what="pods terminal") == {"a1": "Failed", "a2": "Succeeded", "fast": "Succeeded"}
    term = core_v1.read_namespaced_pod_status("a1", namespace).status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (42, "Error")
    for name in ("hang", "server"):
        assert core_v1.read_namespaced_pod_status(name, namespace).status.phase == "Running", name


def test_deleting_owner_garbage_collects_jobs(namespace, batch_v1, core_v1):
    owner = core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    batch_v1.create_namespaced_job(
        namespace, job_manifest("owned", gpus=1, annotations={"kwok.nsm.dev/outcome": "hang"}, owner=ref)
    )
    wait_for(lambda: [p for p in job_pods(core_v1, namespace, "owned") if p.status.phase == "Running"],
             what="owned Job's pod Running")
    core_v1.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    def gone():
        jobs = batch_v1.list_namespaced_job(namespace).items
        return not jobs and not job_pods(core_v1, namespace, "owned")

    wait_for(gone, what="Job and its pods garbage-collected")


def test_cluster_helpers(cluster):
    p = cluster.kubectl("version", "-o", "json")
    assert p.returncode == 0, p.stderr
    assert '"gitVersion": "v1.36.3"' in p.stdout  # server version stamped by build.sh
    assert Path(cluster.kubeconfig).is_file()
    for tool in ("kubectl", "helm", "kwokctl", "kube-apiserver", "etcd"):
        assert os.access(cluster.bin[tool], os.X_OK), tool
    helm = subprocess.run([cluster.bin["helm"], "version", "--short"], capture_output=True, text=True, timeout=30)
    assert helm.returncode == 0 and helm.stdout.startswith("v3."), helm.stdout + helm.stderr


def test_no_downloads_loopback_only(cluster):
    """kwokctl fetched nothing (its cache dir is empty) and every component listens on loopback."""
    cache = Path(cluster.workdir) / "cache"
    assert not cache.exists() or not any(cache.iterdir()), f"kwokctl downloaded into {cache}"
    pids = set(cluster.component_pids().values())
    if not pids or shutil.which("ss") is None:
        pytest.skip("no pid files (attached cluster) or no `ss`: listening sockets not checked")
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30).stdout
    listening = [line.split() for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert listening, out
    for fields in listening:
        addr = fields[3]
        assert addr.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), f"not loopback: {fields}"


def test_build_is_noop_when_warm(cluster_bins, tmp_path):
    """A warm cache: build.sh finishes fast and never invokes go (a `go` that records calls is first on PATH)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "go-calls"
    fake_go = fake_bin / "go"
    fake_go.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    fake_go.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake_bin}:{os.environ['PATH']}", GO=str(fake_go))
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "tests/cluster/build.sh"), "--print-env"],
                          capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert not calls.exists(), f"build.sh invoked go on a warm cache: {calls.read_text()}"
    assert elapsed < 10, f"warm build.sh took {elapsed:.1f}s"
    assert "nothing to build" in proc.stderr
    paths = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    assert paths["NSM_BIN_KUBE_APISERVER"] == cluster_bins["kube-apiserver"]
