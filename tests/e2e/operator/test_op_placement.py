"""Placement on the local control plane: a training lands on a node labelled like a GKE A100 pool
(no GPU Feature Discovery label), and a permanent 4xx from the API server fails the training once."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e
FAST = {"kwok.nsm.dev/run-seconds": "1"}
POOL_TAINT = {"key": "nsm.dev/e2e-pool", "value": "gke-a100", "effect": "NoSchedule"}


def gke_a100_node(name: str) -> dict:
    """A node as GKE labels and taints an A100 40GB pool: gke-accelerator, no nvidia.com/gpu.product.
    The extra e2e taint keeps the other tests' pods off it."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
                                "cloud.google.com/gke-nodepool": "a100-pool"}},
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, POOL_TAINT]},
        "status": {"capacity": {"cpu": "12", "memory": "85Gi", "pods": "110", "nvidia.com/gpu": "1"},
                   "allocatable": {"cpu": "12", "memory": "85Gi", "pods": "110", "nvidia.com/gpu": "1"}},
    }  # fmt: skip


@pytest.fixture
def gke_node(cluster, core_v1):
    name = f"gke-a100-pool-{int(time.time() * 1000) % 100000}"
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(gke_a100_node(name)), check=True)
    wait_for(lambda: any(c.type == "Ready" and c.status == "True"
                         for c in core_v1.read_node(name).status.conditions or []), 30, f"node {name} Ready")  # fmt: skip
    yield name
    cluster.kubectl("delete", "node", name, "--wait=false")


def test_op_training_schedules_on_a_gke_a100_pool(nsmt, cluster, core_v1, gke_node):
    nsmt.apply("gke", annotations=FAST, resources={"gpu": {"count": 1, "product": "A100-40GB"}, "cpu": "2", "memory": "4Gi"},
               scheduling={"nodeSelector": {"cloud.google.com/gke-nodepool": "a100-pool"},
                           "tolerations": [{**POOL_TAINT, "operator": "Equal"}],
                           "priorityClassName": "system-cluster-critical"},
               env=[{"name": "WANDB_MODE", "value": "offline"}],
               envFrom=[{"secretRef": {"name": "optional-trainer-env", "optional": True}}])  # fmt: skip
    out = cluster.kubectl("wait", "nsmt/gke", "-n", nsmt.ns, "--for=condition=Ready", "--timeout=60s")
    assert out.returncode == 0, out.stderr + str(nsmt.status("gke"))
    pods = core_v1.list_namespaced_pod(nsmt.ns, label_selector="batch.kubernetes.io/job-name=gke-a1").items
    assert [p.spec.node_name for p in pods] == [gke_node]
    pod = pods[0].spec
    terms = pod.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
    assert {(t.match_expressions[0].key, tuple(t.match_expressions[0].values)) for t in terms} == {
        ("nvidia.com/gpu.product", ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB")),
        ("cloud.google.com/gke-accelerator", ("nvidia-tesla-a100",)),
    }
    assert {(t.key, t.operator) for t in pod.tolerations} >= {("nvidia.com/gpu", "Exists"), ("nsm.dev/e2e-pool", "Equal")}
    assert pod.priority_class_name == "system-cluster-critical"
    env = {e.name: e.value for e in pod.containers[0].env}
    assert env["WANDB_MODE"] == "offline" and env["NSM_TRAINING_NAME"] == "gke"
    assert pod.containers[0].env_from[0].secret_ref.name == "optional-trainer-env"
    job = nsmt.jobs("gke")[0]
    assert job.spec.ttl_seconds_after_finished == 86400
    ready = next(c for c in nsmt.status("gke")["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1


def test_op_quota_rejection_fails_the_training_once(nsmt, cluster, core_v1, operator):
    # A real permanent 4xx: the namespace's quota allows no Job, so the API server answers 403.
    core_v1.create_namespaced_resource_quota(nsmt.ns, {"metadata": {"name": "no-jobs"},
                                                        "spec": {"hard": {"count/jobs.batch": "0"}}})  # fmt: skip
    wait_for(lambda: (core_v1.read_namespaced_resource_quota("no-jobs", nsmt.ns).status.hard or {}), 30, "quota synced")
    nsmt.apply("quota", annotations=FAST)
    st = nsmt.wait_phase("quota", "Failed", timeout=30)
    assert st["failureReason"] == "Forbidden"
    assert "the API server rejected creating Job quota-a1 (HTTP 403)" in st["message"]
    assert "exceeded quota: no-jobs" in st["message"]
    # Events are posted by the operator's workers (events.py), after the status patch: wait (bounded).
    wait_for(lambda: any(e.reason == "Forbidden" and "exceeded quota" in e.message for e in
                         core_v1.list_namespaced_event(nsmt.ns, field_selector="involvedObject.name=quota").items),
             30, "the Forbidden event")  # fmt: skip
    rv = nsmt.get("quota")["metadata"]["resourceVersion"]
    time.sleep(5)  # a retry loop would patch the status (or log a 403) every 2 s
    assert nsmt.get("quota")["metadata"]["resourceVersion"] == rv
    assert operator.log().count("rejected creating Job quota-a1") <= 2
