"""The real trainer runs from the Job's own pod spec on the process-backed node ``exec-0``.

The session's operator (tests/e2e/operator/conftest.py) builds the Job; the test namespace is
pinned to exec-0 by two real admission plugins (PodNodeSelector, PodTolerationRestriction) and
namespace annotations, so the pod spec is exactly what any cluster would get. The process node
(tests/cluster/process_node.py) runs `nsm train` from that spec: the ConfigMap at /etc/nsm, the
PVC at /checkpoints (the provisioner's hostPath PV, read here directly), the pod's projected
ServiceAccount token, its exit code and its termination on deletion.

Every training has the same spec, so each history must equal ``reference``: one uninterrupted
``nsm train`` of that spec on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nsm.train.trainer import TIMING_KEYS
from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e
TOLERATION = [{"key": "nsm.dev/node-kind", "operator": "Equal", "value": "process", "effect": "NoSchedule"}]
PIN = {"scheduler.alpha.kubernetes.io/node-selector": "nsm.dev/node-kind=process",
       "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(TOLERATION)}  # fmt: skip
# ~50 optimiser steps an epoch: a signal shortly after epoch 1 lands inside epoch 2.
SPEC = {"epochs": 4, "batchSize": 6, "learningRate": 0.002, "seed": 5, "dataset": {"numScenarios": 420},
        "dataLoader": {"numWorkers": 0}, "checkpoint": {"storage": {"size": "1Gi"}},
        "retry": {"maxRetries": 2, "initialDelaySeconds": 1, "maxDelaySeconds": 1}}  # fmt: skip
TRAIN_TIMEOUT = 300


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in history]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """History of one uninterrupted local run of SPEC (started at once, read when first needed)."""
    out = tmp_path_factory.mktemp("reference")
    manifest = out / "training.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                                        "metadata": {"name": "reference"}, "spec": {"domain": "causal", **SPEC}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSM_TRAINING", "KUBE"))}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "nsm"), "train", "-f", str(manifest), "--output-dir",
                             str(out / "run"), "--device", "cpu", "--quiet", "--no-report"],
                            env={**env, "OMP_NUM_THREADS": "1", "HOME": str(out)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    cache: dict[str, list] = {}

    def history() -> list[dict]:
        if "h" not in cache:
            output, _ = proc.communicate(timeout=TRAIN_TIMEOUT)
            assert proc.returncode == 0, output[-3000:]
            cache["h"] = _strip(json.loads((out / "run" / "history.json").read_text()))
        return cache["h"]

    yield history
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class ExecNode:
    """The namespace's view of the process node: pods, their log files, the PVC's directory."""

    def __init__(self, cluster, core_v1, namespace: str):
        self.cluster, self.core, self.ns = cluster, core_v1, namespace
        core_v1.patch_namespace(namespace, {"metadata": {"annotations": PIN}})

    def pods(self, job: str) -> list:
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"batch.kubernetes.io/job-name={job}").items
        return sorted(pods, key=lambda p: p.metadata.creation_timestamp)

    def logs(self, job: str) -> list[str]:
        """Container logs of every pod the Job had on exec-0 (deleted ones too), oldest first."""
        dirs = sorted((self.cluster.process_node_dir / "pods").glob(f"{self.ns}_{job}-*_*"),
                      key=lambda d: (d / "trainer.log").stat().st_mtime if (d / "trainer.log").exists() else 0)
        return [(d / "trainer.log").read_text() for d in dirs if (d / "trainer.log").exists()]

    def claim_dir(self, training: str) -> Path:
        pvc = self.core.read_namespaced_persistent_volume_claim(f"{training}-checkpoints", self.ns)
        assert pvc.spec.volume_name, f"{training}-checkpoints is not bound yet"
        return Path(self.core.read_persistent_volume(pvc.spec.volume_name).spec.host_path.path)

    def history(self, training: str) -> list[dict]:
        from kubernetes.client.rest import ApiException

        try:
            return json.loads((self.claim_dir(training) / "history.json").read_text())
        except (ApiException, AssertionError, FileNotFoundError, json.JSONDecodeError):
            return []  # no PVC, no bound PV or no epoch yet

    def wait_epoch_done(self, training: str, epoch: int) -> None:
        wait_for(lambda: len(self.history(training)) >= epoch, TRAIN_TIMEOUT, f"{training}: epoch {epoch} in history.json",
                 lambda: "\n".join(self.logs(f"{training}-a1")))  # fmt: skip

    def running_pid(self, job: str) -> tuple[str, int]:
        def running():
            for pod in self.pods(job):
                for cs in pod.status.container_statuses or []:
                    if cs.state.running and (cs.container_id or "").startswith("process://"):
                        return pod.metadata.name, int(cs.container_id.split("://")[1])
            return None

        return wait_for(running, 60, f"{job}: a running trainer process")


@pytest.fixture
def exec_node(cluster, core_v1, namespace, nsmt):
    node = ExecNode(cluster, core_v1, namespace)
    yield node
    # The provisioner's hostPath PVs are real directories now: remove the checkpoints written there.
    for pv in core_v1.list_persistent_volume().items:
        claim = pv.spec.claim_ref
        if claim and claim.namespace == namespace and pv.spec.host_path and pv.spec.host_path.path.startswith("/tmp/pv-"):
            shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)


def test_op_exec_trains_from_the_job_pod_spec(nsmt, exec_node, core_v1, k8s_api, reference):
    from kubernetes import client

    nsmt.apply("real", **SPEC)
    st = nsmt.wait_phase("real", "Succeeded", timeout=TRAIN_TIMEOUT)
    assert st["attempts"] == 1 and st["epochSummary"] == "4/4" and st["progress"]["epoch"] == 4
    (pod,) = exec_node.pods("real-a1")
    assert pod.spec.node_name == "exec-0" and pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed" and pod.status.start_time

    out = exec_node.claim_dir("real")
    assert {"last.pt", "best.pt", "history.json", "results.json"} <= {p.name for p in out.iterdir()}
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["epochs_run"] == 4 and results["attempt"] == "1"
    result = st["result"]
    assert {"status", "best", "test", "epochs_run"} <= set(result) and set(result) <= set(results)
    assert all(result[k] == results[k] for k in result), "status.result must mirror results.json"
    assert _strip(json.loads((out / "history.json").read_text())) == reference()

    # Progress came through the pod's own projected token: bound to this pod, of its ServiceAccount.
    (token_file,) = (exec_node.cluster.process_node_dir / "pods").glob(f"{nsmt.ns}_{pod.metadata.name}_*/volumes/kube-api-access-*/token")
    review = client.AuthenticationV1Api(k8s_api).create_token_review({"spec": {"token": token_file.read_text()}})
    assert review.status.user.username == f"system:serviceaccount:{nsmt.ns}:real-trainer"
    assert review.status.user.extra["authentication.kubernetes.io/pod-name"] == [pod.metadata.name]


def test_op_exec_sigkill_mid_epoch_2_resumes_in_attempt_2(nsmt, exec_node, reference):
    nsmt.apply("killed", **SPEC)
    exec_node.wait_epoch_done("killed", 1)
    _, pid = exec_node.running_pid("killed-a1")
    os.kill(pid, signal.SIGKILL)  # no chance to checkpoint: attempt 2 resumes from epoch 1's last.pt
    st = nsmt.wait_phase("killed", "Succeeded", timeout=TRAIN_TIMEOUT)
    assert st["attempts"] == 2 and st["retries"] == 1
    (failed,) = exec_node.pods("killed-a1")
    assert failed.status.phase == "Failed" and failed.status.container_statuses[0].state.terminated.exit_code == 137
    (log2,) = exec_node.logs("killed-a2")
    assert re.search(r"resumed from /\S+ after epoch [1-3]\b", log2), log2[-2000:]
    assert _strip(exec_node.history("killed")) == reference()


def test_op_exec_eviction_checkpoints_mid_epoch_without_an_attempt(nsmt, exec_node, core_v1, reference):
    nsmt.apply("evicted", **SPEC)
    exec_node.wait_epoch_done("evicted", 1)
    name, _ = exec_node.running_pid("evicted-a1")
    core_v1.create_namespaced_pod_eviction(name, nsmt.ns, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                           "metadata": {"name": name, "namespace": nsmt.ns}})
    st = nsmt.wait_phase("evicted", "Succeeded", timeout=TRAIN_TIMEOUT)
    assert st["attempts"] == 1 and st.get("retries", 0) == 0
    assert [j.metadata.name for j in nsmt.jobs("evicted")] == ["evicted-a1"]
    first, second = exec_node.logs("evicted-a1")  # the evicted pod and the Job's replacement
    # "in epoch" (not "before epoch"): the signal landed inside an epoch, normally epoch 2.
    stopped = re.search(r"stopped by signal 15 in epoch (\d+)", first)
    assert stopped, first[-2000:]
    epoch = stopped.group(1)
    steps = int(re.search(rf"checkpoint \S+: epoch {epoch} after (\d+) steps", first).group(1))
    assert steps >= 1 and f"in epoch {epoch} after {steps} steps" in second, second[-2000:]
    assert _strip(exec_node.history("evicted")) == reference()


def test_op_exec_diverged_exit_3_fails_at_once(nsmt, exec_node):
    # Deliberately unstable (deep, lr 1, no clipping, heavy cycle loss): NaN in epoch 1 on CPU.
    unstable = {**SPEC, "learningRate": 1.0, "cycleWeight": 100, "batchSize": 4, "dataset": {"numScenarios": 120},
                "optimization": {"gradientClip": 0}, "model": {"l1Layers": 8, "coarseLayers": 8}}  # fmt: skip
    nsmt.apply("nan", **unstable)
    st = nsmt.wait_phase("nan", "Failed", timeout=TRAIN_TIMEOUT)
    assert st["attempts"] == 1 and st.get("retries", 0) == 0
    assert st["failureReason"] == "PodFailurePolicy" and "exit code 3" in st["message"]
    assert [j.metadata.name for j in nsmt.jobs("nan")] == ["nan-a1"]
    (pod,) = exec_node.pods("nan-a1")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3
    assert json.loads((exec_node.claim_dir("nan") / "results.json").read_text())["status"] == "diverged"
