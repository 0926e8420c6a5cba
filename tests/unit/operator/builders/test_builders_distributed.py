"""Distributed attempts (issue #14): several GPUs in one pod, several pods as one Indexed Job with
a headless Service for the rendezvous. The one-pod, one-GPU Job is unchanged
(test_builders_job.test_job_exact)."""

from __future__ import annotations

import pytest

from nsm_operator.builders import build_children, build_job, build_rendezvous_service
from nsm_operator.builders.job import shm_size_limit

OWNER = {
    "apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "name": "causal-prod", "uid": "uid-1",
    "controller": True, "blockOwnerDeletion": True,
}  # fmt: skip
LABELS = {
    "app.kubernetes.io/name": "nsm-trainer",
    "app.kubernetes.io/managed-by": "nsm-operator",
    "nsm.dev/training": "causal-prod",
    "nsm.dev/attempt": "2",
}
MULTI_NODE = {"resources": {"nodes": 2, "gpu": {"count": 4}, "memory": "64Gi"}, "timeoutSeconds": 600,
              "dataLoader": {"numWorkers": 2}}  # fmt: skip


def test_multi_node_job_exact(make_training, settings):
    job = build_job(make_training(**MULTI_NODE), 2, settings)
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "causal-prod-a2", "namespace": "ml", "labels": LABELS, "ownerReferences": [OWNER]},
        "spec": {
            "backoffLimit": 0,
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 86400,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob",
                     "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [2, 3]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },  # fmt: skip
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 60,
                    "serviceAccountName": "causal-prod-trainer",
                    "subdomain": "causal-prod-rdzv",
                    "securityContext": {
                        "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },  # fmt: skip
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "ghcr.io/nsm-dev/nsm-trainer:0.1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["nsm", "train", "-f", "/etc/nsm/training.yaml", "--output-dir",
                                        "/checkpoints", "--resume", "auto", "--metrics-port", "9400",
                                        "--nproc-per-node", "4", "--nnodes", "2"],
                            "env": [
                                {"name": "NSM_TRAINING_NAME", "value": "causal-prod"},
                                {"name": "NSM_TRAINING_NAMESPACE", "value": "ml"},
                                {"name": "NSM_ATTEMPT", "value": "2"},
                                {"name": "NSM_TRAINING_UID", "value": "uid-1"},
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "MASTER_ADDR", "value": "causal-prod-a2-0.causal-prod-rdzv"},
                                {"name": "MASTER_PORT", "value": "29500"},
                            ],
                            "ports": [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"},
                                      {"name": "rendezvous", "containerPort": 29500, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "4", "memory": "64Gi"},
                                "limits": {"memory": "64Gi", "nvidia.com/gpu": 4},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "runAsUser": 1000, "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "checkpoints", "mountPath": "/checkpoints"},
                                {"name": "spec", "mountPath": "/etc/nsm", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "dshm", "mountPath": "/dev/shm"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "causal-prod-checkpoints"}},
                        {"name": "spec", "configMap": {"name": "causal-prod-spec",
                                                       "items": [{"key": "training.yaml", "path": "training.yaml"}]}},
                        {"name": "tmp", "emptyDir": {}},
                        # 4 processes x (2 workers x prefetch 2 x 64 MiB + 256 MiB)
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2048Mi"}},
                    ],
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                   "values": ["NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"]}]},
                            {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
                                                   "values": ["nvidia-tesla-a100"]}]},
                        ]}}},
                },
            },
        },
    }  # fmt: skip


def test_rendezvous_service_exact(make_training):
    service = build_rendezvous_service(make_training(**MULTI_NODE))
    assert service == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "causal-prod-rdzv", "namespace": "ml", "ownerReferences": [OWNER],
                     "labels": {"app.kubernetes.io/name": "nsm-trainer", "app.kubernetes.io/managed-by": "nsm-operator",
                                "nsm.dev/training": "causal-prod"}},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"app.kubernetes.io/name": "nsm-trainer", "nsm.dev/training": "causal-prod"},
            "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500, "protocol": "TCP"}],
        },
    }  # fmt: skip


def test_service_selects_every_attempts_pods(make_training, settings):
    training = make_training(**MULTI_NODE, labels={"team": "a"})
    selector = build_rendezvous_service(training)["spec"]["selector"]
    for attempt in (1, 2, 7):
        pod_labels = build_job(training, attempt, settings)["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()


@pytest.mark.parametrize("attempt", [1, 3, 12])
def test_rendezvous_env_names_pod_0_of_this_attempt(make_training, settings, attempt):
    """Every pod gets the same MASTER_ADDR (pod 0 of its own attempt); its node rank is the
    JOB_COMPLETION_INDEX the Job controller sets per pod, never set by the operator."""
    job = build_job(make_training(name="kg-x", **MULTI_NODE), attempt, settings)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"kg-x-a{attempt}-0.kg-x-rdzv"
    assert env["MASTER_PORT"] == "29500"
    assert "JOB_COMPLETION_INDEX" not in env and "RANK" not in env and "NODE_RANK" not in env
    assert job["spec"]["template"]["spec"]["subdomain"] == "kg-x-rdzv"


def test_multi_gpu_single_pod_is_a_plain_job_with_launcher_flags(make_training, settings):
    job = build_job(make_training(resources={"gpu": {"count": 8}}), 1, settings)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][-4:] == ["--nproc-per-node", "8", "--nnodes", "1"]
    assert not {"completionMode", "completions", "parallelism"} & job["spec"].keys()
    assert "subdomain" not in pod and [p["name"] for p in container["ports"]] == ["metrics"]
    assert not {"MASTER_ADDR", "MASTER_PORT"} & {e["name"] for e in container["env"]}
    # 8 x (4 default workers x prefetch 2 x 64 + 256) = 6144 Mi, under half of 16Gi.
    assert pod["volumes"][-1] == {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "6144Mi"}}
    assert build_rendezvous_service(make_training(resources={"gpu": {"count": 8}})) is None


def test_cpu_nodes_run_one_process_per_pod(make_training, settings):
    job = build_job(make_training(resources={"gpu": {"count": 0}, "nodes": 3, "memory": "8Gi"}), 1, settings)
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][-4:] == ["--nproc-per-node", "1", "--nnodes", "3"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"] and "affinity" not in pod


@pytest.mark.parametrize(("resources", "loader", "expected"), [
    ({"gpu": {"count": 2}, "memory": "64Gi"}, {"numWorkers": 0}, "512Mi"),  # NCCL only
    ({"gpu": {"count": 2}, "memory": "64Gi"}, {"numWorkers": 4, "prefetchFactor": 4}, "2560Mi"),
    ({"gpu": {"count": 4}, "memory": "2Gi"}, {}, "1024Mi"),  # half the pod's memory at most
    ({"gpu": {"count": 0}, "nodes": 2, "memory": "32Gi"}, {"numWorkers": 1}, "384Mi"),
])  # fmt: skip
def test_shm_size_limit(make_training, resources, loader, expected):
    assert shm_size_limit(make_training(resources=resources, dataLoader=loader)) == expected


def test_multi_node_children_add_the_service_and_a_shared_claim(make_training):
    single = {c["kind"]: c for c in build_children(make_training(), "ReadWriteOncePod")}
    assert "Service" not in single
    assert single["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOncePod"]
    multi = build_children(make_training(**MULTI_NODE), "ReadWriteOncePod")
    kinds = [c["kind"] for c in multi]
    assert kinds == ["PersistentVolumeClaim", "ConfigMap", "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
                     "Service"]  # fmt: skip
    # Pods on several nodes mount it and every rank reads last.pt on resume.
    assert multi[0]["spec"]["accessModes"] == ["ReadWriteMany"]
