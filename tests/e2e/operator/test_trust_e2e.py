"""Trust boundaries against the real API server (issue #11): the trainer's own ServiceAccount
token may write only its progress ConfigMap; what it writes there cannot change what the
operator decides; Jobs and children someone else made are never used; a retained PVC met by a
new training of the same name is adopted and a real `nsm train` moves the old files aside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.waiting import wait_for
from tests.e2e.chart.operator_process import serviceaccount_kubeconfig

pytestmark = pytest.mark.e2e
LONG = {"kwok.nsm.dev/run-seconds": "300"}
FAST = {"kwok.nsm.dev/run-seconds": "1"}


def _as_trainer(cluster, kubeconfig, *args: str, input: str | None = None):
    return cluster.kubectl("--kubeconfig", str(kubeconfig), *args, input=input)


def _events(core_v1, namespace: str, name: str, reason: str) -> list:
    return [e for e in core_v1.list_namespaced_event(namespace).items
            if e.involved_object.name == name and e.reason == reason]  # fmt: skip


def test_op_trainer_token_cannot_touch_the_training_and_forged_progress_changes_nothing(
    nsmt, cluster, core_v1, tmp_path, operator
):
    nsmt.apply("trust", annotations=LONG)
    running = nsmt.wait_phase("trust", "Running")
    cm = core_v1.read_namespaced_config_map("trust-progress", nsmt.ns)
    assert not cm.data and cm.metadata.owner_references[0].uid == nsmt.get("trust")["metadata"]["uid"]

    kc = serviceaccount_kubeconfig(cluster, nsmt.ns, "trust-trainer", tmp_path / "trainer.kubeconfig")
    who = _as_trainer(cluster, kc, "auth", "whoami", "-o", "json")
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == f"system:serviceaccount:{nsmt.ns}:trust-trainer"
    denied = [("patch", "nsmtrainings.nsm.dev/trust", "--subresource=status"), ("update", "nsmtrainings.nsm.dev"),
              ("patch", "nsmtrainings.nsm.dev/trust"), ("get", "nsmtrainings.nsm.dev/trust"),
              ("patch", "configmaps/trust-spec"), ("create", "configmaps"), ("get", "secrets")]  # fmt: skip
    for verb, resource, *extra in denied:
        out = _as_trainer(cluster, kc, "auth", "can-i", verb, resource, *extra, "-n", nsmt.ns)
        assert out.stdout.strip() == "no" and out.returncode == 1, (verb, resource, out.stdout, out.stderr)
    allowed = _as_trainer(cluster, kc, "auth", "can-i", "patch", "configmaps/trust-progress", "-n", nsmt.ns)
    assert allowed.stdout.strip() == "yes", allowed.stderr
    # Not only the review: the real request is refused too.
    refused = _as_trainer(cluster, kc, "patch", "nsmtrainings.nsm.dev", "trust", "--subresource=status",
                          "--type=merge", "-p", '{"status": {"phase": "Succeeded"}}')  # fmt: skip
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()

    # A forged progress document: valid progress plus everything the operator decides.
    forged = {
        "progress": json.dumps({"epoch": 2, "epochs": 3, "valAccuracy": 0.5, "phase": "Succeeded", "retries": 0}),
        "lastCheckpoint": json.dumps({"epoch": 2, "path": "/checkpoints/last.pt", "time": "2026-01-01T00:00:00Z"}),
        "status": json.dumps({"phase": "Succeeded", "attempts": 0, "retries": 0, "gpuSeconds": 0}),
        "costEstimate": json.dumps({"gpuHours": 0, "usd": 0}),
        "result": json.dumps({"status": "completed", "phase": "Succeeded", "epochs_run": 1e300}),
    }
    out = _as_trainer(cluster, kc, "patch", "configmap", "trust-progress", "--type=merge",
                      "-p", json.dumps({"data": forged}))  # fmt: skip
    assert out.returncode == 0, out.stderr
    st = wait_for(lambda: (s := nsmt.status("trust")).get("progress", {}).get("epoch") == 2 and s, 30,
                  "forged progress mirrored")  # fmt: skip
    assert st["phase"] == "Running" and st["attempts"] == 1 and st["retries"] == 0
    assert st["epochSummary"] == "2/3" and st["lastCheckpoint"]["epoch"] == 2
    assert "phase" not in st["progress"] and "retries" not in st["progress"]
    assert st["result"] == {"status": "completed"} and st["gpuSeconds"] == running["gpuSeconds"]
    assert wait_for(lambda: _events(core_v1, nsmt.ns, "trust", "ProgressRejected"), 30, "ProgressRejected event")

    # A huge document is ignored whole; the operator stays up and keeps serving.
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"data": {"progress": json.dumps({"epoch": 3, "pad": "x" * 200_000})}}))
    out = _as_trainer(cluster, kc, "patch", "configmap", "trust-progress", "--type=merge", "--patch-file", str(huge))
    assert out.returncode == 0, out.stderr
    assert wait_for(lambda: any("ignored" in e.message for e in _events(core_v1, nsmt.ns, "trust", "ProgressRejected")),
                    30, "huge document rejected")  # fmt: skip
    assert operator.proc.poll() is None and nsmt.status("trust")["progress"]["epoch"] == 2


def test_op_a_foreign_job_with_the_right_labels_changes_nothing(nsmt, batch_v1, core_v1):
    nsmt.apply("owned", annotations=LONG)
    nsmt.wait_phase("owned", "Running")
    labels = {"app.kubernetes.io/name": "nsm-trainer", "nsm.dev/training": "owned", "nsm.dev/attempt": "1"}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "impostor", "labels": labels},
           "spec": {"backoffLimit": 0, "template": {
               "metadata": {"labels": labels, "annotations": FAST},
               "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "x"}],
                        "nodeSelector": {"type": "kwok"}}}}}  # fmt: skip - a kwok node, never exec-0
    batch_v1.create_namespaced_job(nsmt.ns, job)
    wait_for(lambda: any(c.type == "Complete" and c.status == "True"
                         for c in (batch_v1.read_namespaced_job("impostor", nsmt.ns).status.conditions or [])),
             60, "impostor Job complete")  # fmt: skip
    assert wait_for(lambda: _events(core_v1, nsmt.ns, "owned", "ForeignJob"), 30, "ForeignJob event")
    time.sleep(2)  # a wrong reconcile would have marked it Succeeded by now
    st = nsmt.status("owned")
    assert st["phase"] == "Running" and st["attempts"] == 1 and st["activeJob"] == "owned-a1"


def test_op_a_taken_job_name_fails_the_attempt_with_a_clear_message(nsmt, batch_v1):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "taken-a1"},
           "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                                                           "containers": [{"name": "c", "image": "x"}]}}}}  # fmt: skip
    batch_v1.create_namespaced_job(nsmt.ns, job)
    nsmt.apply("taken", annotations=FAST, retry={"maxRetries": 3, "initialDelaySeconds": 1})
    st = nsmt.wait_phase("taken", "Failed")
    assert st["failureReason"] == "ForeignObject" and st["attempts"] == 1
    assert f"Job {nsmt.ns}/taken-a1 already exists and is not this training's" in st["message"]
    assert [j.metadata.name for j in nsmt.jobs("taken")] == []  # the foreign Job has no labels; none of ours


def _train(kubeconfig, namespace: str, name: str, uid: str, run_dir) -> None:
    """A real `nsm train` playing the pod (the kwok pod only holds the Job Running), with the
    trainer ServiceAccount's token and the env the operator's Job sets."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NSM_TRAINING_NAME": name, "NSM_TRAINING_NAMESPACE": namespace,
           "NSM_ATTEMPT": "1", "NSM_TRAINING_UID": uid}  # fmt: skip
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "nsm"), "train", "--domain", "causal", "--epochs", "1",
         "--set", "dataset.numScenarios=60", "--set", "dataLoader.numWorkers=0", "--device", "cpu",
         "--output-dir", str(run_dir), "--no-report", "-q"],
        env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_op_a_retained_pvc_is_adopted_and_the_old_checkpoints_moved_aside(nsmt, cluster, core_v1, tmp_path):
    run_dir = tmp_path / "pvc"  # plays the retained checkpoint volume
    nsmt.apply("reuse", annotations={"kwok.nsm.dev/outcome": "hang"}, epochs=1)
    nsmt.wait_phase("reuse", "Running")
    old_uid = nsmt.get("reuse")["metadata"]["uid"]
    pvc = core_v1.read_namespaced_persistent_volume_claim("reuse-checkpoints", nsmt.ns)
    assert pvc.metadata.labels["nsm.dev/training-uid"] == old_uid and not pvc.metadata.owner_references
    kc = serviceaccount_kubeconfig(cluster, nsmt.ns, "reuse-trainer", tmp_path / "old.kubeconfig")
    _train(kc, nsmt.ns, "reuse", old_uid, run_dir)
    wait_for(lambda: nsmt.status("reuse").get("result", {}).get("status") == "completed", 30, "result mirrored")

    cluster.kubectl("delete", "nsmt", "reuse", "-n", nsmt.ns, "--wait=true", check=True)
    wait_for(lambda: not core_v1.list_namespaced_service_account(nsmt.ns, field_selector="metadata.name=reuse-trainer").items,
             60, "the old training's children to be garbage-collected")  # fmt: skip
    nsmt.apply("reuse", annotations={"kwok.nsm.dev/outcome": "hang"}, epochs=1)
    nsmt.wait_phase("reuse", "Running")
    new_uid = nsmt.get("reuse")["metadata"]["uid"]
    assert new_uid != old_uid
    pvc = core_v1.read_namespaced_persistent_volume_claim("reuse-checkpoints", nsmt.ns)
    assert pvc.metadata.labels["nsm.dev/training-uid"] == new_uid  # adopted, not ForeignObject

    kc = serviceaccount_kubeconfig(cluster, nsmt.ns, "reuse-trainer", tmp_path / "new.kubeconfig")
    _train(kc, nsmt.ns, "reuse", new_uid, run_dir)
    (previous,) = [p for p in run_dir.iterdir() if p.name.startswith("previous-")]
    assert previous.name.endswith(old_uid[:8]) and (previous / "last.pt").exists() and (run_dir / "last.pt").exists()
    wait_for(lambda: nsmt.status("reuse").get("result", {}).get("resumed_from_epoch") == 0, 30,
             "the new training started afresh")  # fmt: skip
    events = wait_for(lambda: [e for e in _events(core_v1, nsmt.ns, "reuse", "CheckpointsMovedAside")
                               if e.involved_object.uid == new_uid], 30, "CheckpointsMovedAside event")  # fmt: skip
    assert old_uid in events[0].message and previous.name in events[0].message
