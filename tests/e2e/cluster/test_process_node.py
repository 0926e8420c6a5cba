"""Self-tests of the process-backed node exec-0 (tests/cluster/process_node.py): pods bound to it
run for real, with what the kubelet would give them, and the real Job controller sees the result."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e
TOLERATE = [{"key": "nsm.dev/node-kind", "operator": "Equal", "value": "process", "effect": "NoSchedule"}]
ON_EXEC = {"nodeSelector": {"nsm.dev/node-kind": "process"}, "tolerations": TOLERATE}

# Paths reach the program through args and env (rewritten to the volumes' host directories), as
# in the trainer's command line; a path written inside a program would not be (no mount namespace).
SCRIPT = """
import json, os, pathlib, sys
pathlib.Path(os.environ["WORK"], "out.txt").write_text("written")
print(json.dumps({"env": {k: os.environ.get(k) for k in ("POD", "NS", "SECRET", "GREETING", "MSG")},
                  "files": [pathlib.Path(p).read_text() for p in sys.argv[1:]], "cwd": os.getcwd(),
                  "out": pathlib.Path("out.txt").read_text(), "token": os.path.exists(os.environ["KUBECONFIG"])}))
sys.exit(7)
"""


def _log(cluster, namespace: str, pod_name: str, container: str = "main") -> str:
    logs = list((cluster.process_node_dir / "pods").glob(f"{namespace}_{pod_name}_*/{container}.log"))
    return logs[0].read_text() if logs else ""


def _pod(name: str, container: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "none", **container}],
                     **ON_EXEC, **spec}}  # fmt: skip


def test_exec_node_is_ready_and_outside_kwok(core_v1):
    node = core_v1.read_node("exec-0")
    assert node.metadata.labels["nsm.dev/node-kind"] == "process"
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})


def test_job_pod_runs_for_real_with_env_volumes_and_exit_code(cluster, namespace, core_v1, batch_v1):
    core_v1.create_namespaced_secret(namespace, {"metadata": {"name": "sec"},
                                                 "data": {"token": base64.b64encode(b"s3cret").decode()}})
    core_v1.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}})
    container = {
        "command": ["python", "-c", SCRIPT], "args": ["/etc/cfg/greeting", "/etc/sec/token", "/etc/info/labels"],
        "workingDir": "/work",
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "MSG", "value": "$(GREETING) from $(POD)"},
            {"name": "WORK", "value": "/work"},
        ],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"},
                         {"name": "info", "mountPath": "/etc/info"}, {"name": "work", "mountPath": "/work"}],
    }  # fmt: skip
    volumes = [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "sec", "secret": {"secretName": "sec"}},
               {"name": "work", "emptyDir": {}},
               {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels['app']"}}]}}]  # fmt: skip
    template = {"spec": _pod("x", container, volumes=volumes)["spec"]}
    # kwok would make this pod succeed: on exec-0 kwok must not touch it, so the real exit code 7 counts.
    template["metadata"] = {"labels": {"app": "probe"}, "annotations": {"kwok.nsm.dev/outcome": "succeed"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe"},
           "spec": {"backoffLimit": 0, "template": template, "podFailurePolicy": {"rules": [
               {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [7]}}]}}}  # fmt: skip
    batch_v1.create_namespaced_job(namespace, job)

    def failed():
        j = batch_v1.read_namespaced_job("probe", namespace)
        return next((c for c in j.status.conditions or [] if c.type == "Failed" and c.status == "True"), None)

    cond = wait_for(failed, 90, "Job probe Failed")
    assert cond.reason == "PodFailurePolicy"
    (pod,) = core_v1.list_namespaced_pod(namespace, label_selector="batch.kubernetes.io/job-name=probe").items
    assert pod.spec.node_name == "exec-0" and pod.status.phase == "Failed" and pod.status.start_time
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 7 and term.reason == "Error" and term.container_id.startswith("process://")
    report = json.loads(_log(cluster, namespace, pod.metadata.name).strip().splitlines()[-1])
    assert report["env"] == {"POD": pod.metadata.name, "NS": namespace, "SECRET": "s3cret", "GREETING": "hello",
                             "MSG": f"hello from {pod.metadata.name}"}  # fmt: skip
    assert report["files"] == ["hello", "s3cret", "probe"]
    assert report["out"] == "written" and report["token"] is True


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(cluster, namespace, core_v1):
    from kubernetes.client.rest import ApiException

    stubborn = ("import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *a: print('got TERM', flush=True))\n"
                "print('up', flush=True)\ntime.sleep(600)\n")  # fmt: skip
    core_v1.create_namespaced_pod(namespace, _pod("stubborn", {"command": ["python", "-c", stubborn]},
                                                  terminationGracePeriodSeconds=2))
    wait_for(lambda: "up" in _log(cluster, namespace, "stubborn"), 60, "stubborn running")
    pod = core_v1.read_namespaced_pod("stubborn", namespace)
    pid = int(pod.status.container_statuses[0].container_id.split("://")[1])
    t0 = time.monotonic()
    core_v1.delete_namespaced_pod("stubborn", namespace)

    def gone():
        try:
            core_v1.read_namespaced_pod("stubborn", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_for(gone, 30, "pod stubborn removed")
    assert time.monotonic() - t0 >= 1.5, "SIGKILL must wait for the grace period"
    assert "got TERM" in _log(cluster, namespace, "stubborn")
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/status").read().split("State:")[1][:4]


def test_active_deadline_fails_the_pod(cluster, namespace, core_v1):
    core_v1.create_namespaced_pod(namespace, _pod("slow", {"command": ["sleep", "600"]}, activeDeadlineSeconds=2,
                                                  terminationGracePeriodSeconds=1))
    pod = wait_for(lambda: (p := core_v1.read_namespaced_pod("slow", namespace)).status.phase == "Failed" and p, 60,
                   "pod slow Failed")  # fmt: skip
    assert pod.status.reason == "DeadlineExceeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 143


def test_pods_without_the_toleration_stay_off_exec_0(namespace, core_v1):
    pod = _pod("intruder", {"command": ["true"]})
    pod["spec"].pop("tolerations")
    core_v1.create_namespaced_pod(namespace, pod)

    def unschedulable():
        p = core_v1.read_namespaced_pod("intruder", namespace)
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or [])

    wait_for(unschedulable, 30, "intruder Unschedulable")
    assert core_v1.read_namespaced_pod("intruder", namespace).spec.node_name is None
