"""The operator as a process against the local control plane (kwok fake A100 nodes).

Test names start with ``test_op_`` so the harness names their namespaces ``test-op-*``, the
pattern the session's operator serves. Pod outcomes come from kwok.nsm.dev/* annotations, which
the operator copies from the NSMTraining onto the Job's pod template.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[3]
FAST = {"kwok.nsm.dev/run-seconds": "1"}


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_op_apply_runs_attempt_1_to_success(nsmt, cluster, core_v1, rbac_v1, operator):
    nsmt.apply("happy", annotations=FAST, labels={"cost-center": "ml-42"},
               checkpoint={"storage": {"size": "1Gi"}})  # fmt: skip
    st = nsmt.wait_phase("happy", "Succeeded")
    assert st["attempts"] == 1 and st["activeJob"] == "happy-a1" and st["epochSummary"] == "0/3"
    assert st["startTime"] and st["completionTime"] and st["costEstimate"]["gpuHours"] >= 0
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Succeeded"] == "True" and conds["Created"] == "True"

    (job,) = nsmt.jobs("happy")
    assert job.metadata.name == "happy-a1" and job.metadata.labels["cost-center"] == "ml-42"
    assert job.metadata.owner_references[0].kind == "NSMTraining"
    pods = core_v1.list_namespaced_pod(nsmt.ns, label_selector="batch.kubernetes.io/job-name=happy-a1").items
    assert pods and pods[0].spec.node_name.startswith("gpu-a100-")
    assert pods[0].metadata.annotations["kwok.nsm.dev/run-seconds"] == "1"
    assert core_v1.read_namespaced_persistent_volume_claim("happy-checkpoints", nsmt.ns)
    assert "training.yaml" in core_v1.read_namespaced_config_map("happy-spec", nsmt.ns).data
    role = rbac_v1.read_namespaced_role("happy-trainer", nsmt.ns)
    assert role.rules[0].resources == ["configmaps"] and role.rules[0].resource_names == ["happy-progress"]
    assert role.rules[0].verbs == ["get", "patch"] and len(role.rules) == 1

    out = cluster.kubectl("get", "nsmt", "happy", "-n", nsmt.ns, check=True).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "PHASE", "DOMAIN", "EPOCH", "VAL-ACC", "ATTEMPTS", "AGE"]
    assert row.split()[:4] == ["happy", "Succeeded", "causal", "0/3"] and row.split()[-2] == "1"
    metrics = operator.metrics()
    assert f'nsm_operator_training_phase{{domain="causal",name="happy",namespace="{nsmt.ns}",phase="Succeeded"}} 1.0' in metrics


def test_op_fail_first_retries_after_backoff(nsmt):
    nsmt.apply("retry", annotations={**FAST, "kwok.nsm.dev/outcome": "fail-first", "kwok.nsm.dev/exit-code": "1"},
               retry={"maxRetries": 2, "initialDelaySeconds": 2, "maxDelaySeconds": 10})  # fmt: skip
    retrying = nsmt.wait_phase("retry", "Retrying")
    assert retrying["retries"] == 1 and retrying["failureReason"] == "Error"
    st = nsmt.wait_phase("retry", "Succeeded")
    assert st["attempts"] == 2 and st["retries"] == 1
    jobs = {j.metadata.name: j for j in nsmt.jobs("retry")}
    assert set(jobs) == {"retry-a1", "retry-a2"}
    failed_at = next(c.last_transition_time for c in jobs["retry-a1"].status.conditions if c.type == "Failed")
    assert (jobs["retry-a2"].metadata.creation_timestamp - failed_at).total_seconds() >= 1.5


def test_op_exit_code_3_fails_at_once(nsmt):
    nsmt.apply("diverged", annotations={**FAST, "kwok.nsm.dev/outcome": "fail", "kwok.nsm.dev/exit-code": "3"},
               retry={"maxRetries": 3, "initialDelaySeconds": 1})  # fmt: skip
    st = nsmt.wait_phase("diverged", "Failed")
    assert st["attempts"] == 1 and st["failureReason"] == "PodFailurePolicy"
    assert "exit code 3" in st["message"]
    assert [j.metadata.name for j in nsmt.jobs("diverged")] == ["diverged-a1"]


def test_op_disruption_does_not_consume_an_attempt(nsmt, core_v1):
    nsmt.apply("disrupted", annotations={**FAST, "kwok.nsm.dev/outcome": "disrupt-first"})
    st = nsmt.wait_phase("disrupted", "Succeeded")
    assert st["attempts"] == 1 and st.get("retries", 0) == 0
    (job,) = nsmt.jobs("disrupted")
    assert job.status.succeeded == 1
    # The Job replaced the disrupted pod itself (podFailurePolicy Ignore): two pods, one attempt.
    pods = core_v1.list_namespaced_pod(nsmt.ns, label_selector="batch.kubernetes.io/job-name=disrupted-a1").items
    assert len(pods) == 2
    assert any(c.type == "DisruptionTarget" and c.status == "True" for p in pods for c in p.status.conditions or [])


def test_op_max_retries_exhausted(nsmt):
    nsmt.apply("doomed", annotations={**FAST, "kwok.nsm.dev/outcome": "fail", "kwok.nsm.dev/exit-code": "1"},
               retry={"maxRetries": 1, "initialDelaySeconds": 1, "maxDelaySeconds": 1})  # fmt: skip
    st = nsmt.wait_phase("doomed", "Failed")
    assert st["attempts"] == 2 and "maxRetries (1) exhausted" in st["message"]
    assert sorted(j.metadata.name for j in nsmt.jobs("doomed")) == ["doomed-a1", "doomed-a2"]


def test_op_sigkill_restart_mid_run(nsmt, operator):
    nsmt.apply("restart", annotations={"kwok.nsm.dev/run-seconds": "6"})
    nsmt.wait_phase("restart", "Running")
    operator.kill()
    time.sleep(1)
    operator.start()
    st = nsmt.wait_phase("restart", "Succeeded")
    assert st["attempts"] == 1
    assert [j.metadata.name for j in nsmt.jobs("restart")] == ["restart-a1"]


def test_op_suspend_and_resume(nsmt, cluster):
    nsmt.apply("pause", annotations={"kwok.nsm.dev/outcome": "hang"})
    nsmt.wait_phase("pause", "Running")
    cluster.kubectl("patch", "nsmt", "pause", "-n", nsmt.ns, "--type=merge", "-p", '{"spec":{"suspend":true}}',
                    check=True)  # fmt: skip
    nsmt.wait_phase("pause", "Suspended")
    wait_for(lambda: not nsmt.jobs("pause"), 30, "pause-a1 deleted")
    cluster.kubectl("patch", "nsmt", "pause", "-n", nsmt.ns, "--type=merge", "-p", '{"spec":{"suspend":false}}',
                    check=True)  # fmt: skip
    st = nsmt.wait_phase("pause", "Running")
    assert st["attempts"] == 2 and st.get("retries", 0) == 0


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"domain": "chess"}, "spec.domain"), ({"epochs": 0}, "spec.epochs"), ({"poolRatio": 1.5}, "spec.poolRatio"),
     # Quantities: the strict grammar of nsm.quantity, enforced by the CRD's pattern (and minimum).
     ({"resources": {"cpu": "1..2"}}, "spec.resources.cpu"), ({"resources": {"memory": "."}}, "spec.resources.memory"),
     ({"resources": {"memory": "4Gi2"}}, "spec.resources.memory"), ({"resources": {"cpu": -4}}, "spec.resources.cpu"),
     ({"checkpoint": {"storage": {"size": "-4"}}}, "spec.checkpoint.storage.size")],
    ids=["domain", "epochs", "poolRatio", "cpu-1..2", "memory-dot", "memory-4Gi2", "cpu-minus-4", "size-minus-4"],
)
def test_op_invalid_spec_is_rejected_by_the_api_server(nsmt, cluster, patch, field):
    body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "metadata": {"name": "bad", "namespace": nsmt.ns},
            "spec": {"domain": "causal", **patch}}  # fmt: skip
    proc = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    assert proc.returncode != 0
    assert field in proc.stderr, proc.stderr
    assert nsmt.get("bad") is None


def test_op_domain_is_immutable(nsmt, cluster):
    nsmt.apply("fixed", annotations={"kwok.nsm.dev/outcome": "hang"})
    proc = cluster.kubectl("patch", "nsmt", "fixed", "-n", nsmt.ns, "--type=merge", "-p", '{"spec":{"domain":"kg"}}')
    assert proc.returncode != 0 and "spec.domain is immutable" in proc.stderr


@pytest.mark.parametrize("retain", [True, False], ids=["retain", "delete"])
def test_op_delete_cascades_and_pvc_follows_retain(nsmt, cluster, core_v1, retain):
    from kubernetes.client.rest import ApiException

    nsmt.apply("gone", annotations={"kwok.nsm.dev/outcome": "hang"}, checkpoint={"storage": {"retain": retain}})
    nsmt.wait_phase("gone", "Running")
    cluster.kubectl("delete", "nsmt", "gone", "-n", nsmt.ns, "--wait=true", "--timeout=30s", check=True)
    wait_for(lambda: not nsmt.jobs("gone"), 30, "Jobs garbage-collected")

    def pvc_exists() -> bool:
        try:
            pvc = core_v1.read_namespaced_persistent_volume_claim("gone-checkpoints", nsmt.ns)
            return pvc.metadata.deletion_timestamp is None
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    if retain:
        time.sleep(2)
        assert pvc_exists()
    else:
        wait_for(lambda: not pvc_exists(), 30, "PVC garbage-collected")


def test_op_examples_pass_server_side_dry_run(nsmt, cluster):
    for path in sorted((REPO / "examples").glob("*.yaml")):
        proc = cluster.kubectl("apply", "--dry-run=server", "-n", nsmt.ns, "-f", str(path))
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"


def test_op_real_trainer_reports_progress(nsmt, cluster, tmp_path):
    # The Job stays Running (hang); a real `nsm train` on this machine plays its pod, with the
    # trainer ServiceAccount's token, so the per-training Role is what lets it write its progress
    # ConfigMap, which the operator mirrors into the status.
    nsmt.apply("live", annotations={"kwok.nsm.dev/outcome": "hang"}, epochs=2)
    nsmt.wait_phase("live", "Running")
    token = cluster.kubectl("create", "token", "live-trainer", "-n", nsmt.ns, "--duration=1h", check=True).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    ctx = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx["cluster"])
    kubeconfig = tmp_path / "trainer.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": server}], "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u", "namespace": nsmt.ns}}],
    }))  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NSM_TRAINING_NAME": "live",
           "NSM_TRAINING_NAMESPACE": nsmt.ns, "NSM_ATTEMPT": "1"}  # fmt: skip
    exe = Path(sys.executable).parent / "nsm"
    proc = subprocess.run(
        [str(exe), "train", "--domain", "causal", "--epochs", "2", "--set", "dataset.numScenarios=100",
         "--set", "dataLoader.numWorkers=0", "--device", "cpu", "--output-dir", str(tmp_path / "run"),
         "--no-report", "-q"],
        env=env, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    st = wait_for(lambda: (s := nsmt.status("live")).get("progress", {}).get("epoch") == 2 and s, 20,
                  "progress epoch 2")  # fmt: skip
    progress = st["progress"]
    assert progress["epochs"] == 2 and 0.0 <= progress["valAccuracy"] <= 1.0 and progress["classAccuracy"]
    assert _ts(progress["updatedAt"]) <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    st = wait_for(lambda: (s := nsmt.status("live")).get("epochSummary") == "2/2" and s, 20, "epochSummary 2/2")
    assert st["costEstimate"]["gpuHours"] > 0
