"""The Job of one training attempt."""

from __future__ import annotations

from typing import Any

from nsm.contract import NON_RETRYABLE_EXIT_CODES, TRAINING_UID_ENV

from nsm_operator.builders.meta import child_metadata
from nsm_operator.builders.names import (
    CHECKPOINT_DIR,
    CONTAINER_NAME,
    LABEL_ATTEMPT,
    LABEL_KUEUE_QUEUE,
    SPEC_DIR,
    SPEC_KEY,
    configmap_name,
    job_name,
    trainer_name,
)
from nsm_operator.builders.placement import container_env, pod_placement
from nsm_operator.builders.storage import checkpoint_claim_name
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings

RUN_AS_USER = 1000


def trainer_command(metrics_port: int) -> list[str]:
    return [
        "nsm", "train", "-f", f"{SPEC_DIR}/{SPEC_KEY}", "--output-dir", CHECKPOINT_DIR,
        "--resume", "auto", "--metrics-port", str(metrics_port),
    ]  # fmt: skip


def _resources(training: Training) -> dict[str, Any]:
    res = training.spec.resources
    requests: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, Any] = {"memory": res.memory}
    if res.gpu.count:
        limits["nvidia.com/gpu"] = res.gpu.count
    return {"requests": requests, "limits": limits}


def _tracking_env(training: Training) -> list[dict[str, Any]]:
    """W&B's API key from the Secret the spec names (by reference; the spec never holds it)."""
    wandb = training.spec.tracking.wandb
    if wandb is None or wandb.secret_ref is None:
        return []
    ref = {"name": wandb.secret_ref.name, "key": wandb.secret_ref.key}
    return [{"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": ref}}]


def _container(training: Training, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    port = settings.trainer_metrics_port
    user_env, env_from = container_env(training, settings)
    container = {
        "name": CONTAINER_NAME,
        "image": training.spec.image or settings.default_image,
        "imagePullPolicy": "IfNotPresent",
        "command": trainer_command(port),
        "env": [
            {"name": "NSM_TRAINING_NAME", "value": training.name},
            {"name": "NSM_TRAINING_NAMESPACE", "value": training.namespace},
            {"name": "NSM_ATTEMPT", "value": str(attempt)},
            # A literal: the Downward API's metadata.uid would be the pod's uid, not the training's.
            {"name": TRAINING_UID_ENV, "value": training.uid},
            # The root filesystem is read-only: caches (torch, matplotlib) go to /tmp.
            {"name": "HOME", "value": "/tmp"},
            *_tracking_env(training),
            *user_env,
        ],
        "ports": [{"name": "metrics", "containerPort": port, "protocol": "TCP"}],
        "resources": _resources(training),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    if env_from:
        container["envFrom"] = env_from
    return container


def _pod_spec(training: Training, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # SIGTERM → the trainer finishes its step and writes last.pt (mid-epoch) → exit 143.
        "terminationGracePeriodSeconds": training.spec.termination_grace_period_seconds,
        "serviceAccountName": trainer_name(training.name),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(training, attempt, settings)],
        "volumes": [
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": checkpoint_claim_name(training)}},
            {"name": "spec", "configMap": {"name": configmap_name(training.name), "items": [{"key": SPEC_KEY, "path": SPEC_KEY}]}},
            {"name": "tmp", "emptyDir": {}},
            # DataLoader workers share tensors through /dev/shm; the default 64Mi is too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        ],
    }  # fmt: skip
    spec.update(pod_placement(training, settings))
    return spec


def build_job(training: Training, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    """Job ``<name>-a<attempt>``: one pod, never restarted; disruptions don't fail it, exit
    codes 2 and 3 fail it at once (reason PodFailurePolicy), ``timeoutSeconds`` bounds it.

    With ``queueName`` the Job is created suspended and labelled for Kueue, which unsuspends it
    when the queue admits it (Kueue's convention for batch/v1 Jobs).
    """
    if attempt < 1:
        raise ValueError(f"build_job: attempt must be >= 1, got {attempt}")
    spec = training.spec
    extra = {LABEL_ATTEMPT: str(attempt)}
    if spec.queue_name:
        extra[LABEL_KUEUE_QUEUE] = spec.queue_name
    meta = child_metadata(training, job_name(training.name, attempt), **extra)
    template_meta = {k: v for k, v in meta.items() if k in ("labels", "annotations")}
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": spec.timeout_seconds,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER_NAME,
                        "operator": "In",
                        "values": list(NON_RETRYABLE_EXIT_CODES),
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]
        },
        "template": {"metadata": template_meta, "spec": _pod_spec(training, attempt, settings)},
    }
    if spec.queue_name:
        job_spec["suspend"] = True
    if settings.job_ttl_seconds_after_finished:
        job_spec["ttlSecondsAfterFinished"] = settings.job_ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
