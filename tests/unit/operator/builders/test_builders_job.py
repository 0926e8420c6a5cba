from __future__ import annotations

import pytest

from nsm_operator.builders import build_job
from nsm_operator.settings import OperatorSettings

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


def test_job_exact(make_training, settings):
    job = build_job(make_training(timeoutSeconds=600), 2, settings)
    assert job == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "causal-prod-a2", "namespace": "ml", "labels": LABELS, "ownerReferences": [OWNER]},
        "spec": {
            "backoffLimit": 0,
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
                                        "/checkpoints", "--resume", "auto", "--metrics-port", "9400"],
                            "env": [
                                {"name": "NSM_TRAINING_NAME", "value": "causal-prod"},
                                {"name": "NSM_TRAINING_NAMESPACE", "value": "ml"},
                                {"name": "NSM_ATTEMPT", "value": "2"},
                                {"name": "NSM_TRAINING_UID", "value": "uid-1"},
                                {"name": "HOME", "value": "/tmp"},
                            ],
                            "ports": [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "4", "memory": "16Gi"},
                                "limits": {"memory": "16Gi", "nvidia.com/gpu": 1},
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
                        {"name": "dshm", "emptyDir": {"medium": "Memory"}},
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


def test_cpu_only_job_has_no_gpu_limit_nor_selector(make_training, settings):
    job = build_job(make_training(resources={"gpu": {"count": 0}, "cpu": 2, "memory": "2Gi"}), 1, settings)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod


def test_product_mapping_and_image_from_settings(make_training):
    settings = OperatorSettings(default_image="reg/x:1", trainer_metrics_port=9500,
                                gpu_node_labels={"H100": {"gpu": ("h100",), "pool": ("a", "b")}})  # fmt: skip
    job = build_job(make_training(resources={"gpu": {"count": 8, "product": "H100"}}), 1, settings)
    pod = job["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]},
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a", "b"]}]},
    ]
    c = pod["containers"][0]
    assert c["image"] == "reg/x:1" and c["resources"]["limits"]["nvidia.com/gpu"] == 8
    # 8 GPUs add the launcher's flags after the metrics port (test_builders_distributed.py).
    assert c["command"][c["command"].index("--metrics-port") + 1] == "9500" and c["ports"][0]["containerPort"] == 9500
    job = build_job(make_training(image="mine:2"), 1, settings)
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "mine:2"


def test_kueue_queue_label_and_suspended(make_training, settings):
    job = build_job(make_training(queueName="gpu-queue"), 1, settings)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert "suspend" not in build_job(make_training(), 1, settings)["spec"]


def test_labels_and_annotations_propagate_without_overriding(make_training, settings):
    training = make_training(
        labels={"cost-center": "ml-42", "nsm.dev/training": "evil", "app.kubernetes.io/name": "x"},
        annotations={"kwok.nsm.dev/outcome": "fail-first", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                     "kopf.zalando.org/last-handled-configuration": "{}", "owner": "ana"},
    )  # fmt: skip
    job = build_job(training, 1, settings)
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"]["cost-center"] == "ml-42"
        assert meta["labels"]["nsm.dev/training"] == "causal-prod"
        assert meta["labels"]["app.kubernetes.io/name"] == "nsm-trainer"
        assert meta["annotations"] == {"kwok.nsm.dev/outcome": "fail-first", "owner": "ana"}


def test_existing_claim_is_mounted(make_training, settings):
    job = build_job(make_training(checkpoint={"storage": {"existingClaim": "shared"}}), 1, settings)
    vols = job["spec"]["template"]["spec"]["volumes"]
    assert vols[0] == {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "shared"}}


def test_attempt_must_be_positive(make_training, settings):
    with pytest.raises(ValueError, match="attempt"):
        build_job(make_training(), 0, settings)


def _env(job: dict) -> list[dict]:
    return job["spec"]["template"]["spec"]["containers"][0]["env"]


def test_wandb_key_comes_from_the_secret_by_reference(make_training, settings):
    """spec.tracking.wandb.secretRef -> WANDB_API_KEY from the Secret; the key never enters the spec.
    Without a secretRef (or without wandb) no such variable: the trainer logs offline."""
    tracking = {"wandb": {"project": "nsm", "secretRef": {"name": "wandb-key", "key": "api-key"}}}
    env = _env(build_job(make_training(tracking=tracking), 1, settings))
    assert {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb-key", "key": "api-key"}}} in env
    for spec in ({}, {"tracking": {"wandb": {"project": "nsm"}}}, {"tracking": {"tensorboard": True}}):
        assert not [e for e in _env(build_job(make_training(**spec), 1, settings)) if e["name"] == "WANDB_API_KEY"]


def test_job_termination_grace_period_comes_from_the_spec(make_training, settings):
    pod = build_job(make_training(terminationGracePeriodSeconds=240), 1, settings)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 240
