"""The Job of one training attempt."""

from __future__ import annotations

from typing import Any

from nsm.contract import (
    MASTER_ADDR_ENV,
    MASTER_PORT_ENV,
    NNODES_FLAG,
    NON_RETRYABLE_EXIT_CODES,
    NPROC_PER_NODE_FLAG,
    RENDEZVOUS_PORT,
    TRAINING_UID_ENV,
)
from nsm.quantity import parse_quantity

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
    rendezvous_service_name,
    trainer_name,
)
from nsm_operator.builders.placement import container_env, pod_placement
from nsm_operator.builders.service import RENDEZVOUS_PORT_NAME
from nsm_operator.builders.storage import checkpoint_claim_name
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings

RUN_AS_USER = 1000
MIB = 2**20
SHM_PER_BATCH_MIB = 64
"""/dev/shm budget of one DataLoader batch in flight: a worker hands each collated batch to its
process through shared memory, and this model's batches (graphs of tens to hundreds of nodes) are
a few MiB at the largest batch sizes; 64 MiB leaves room for larger datasets."""
SHM_PER_PROCESS_MIB = 256
"""/dev/shm budget of one training process for NCCL, whose intra-node transport between the
processes of one pod keeps its buffers there (4 MiB per channel and peer by default)."""
DEFAULT_WORKERS = 4  # spec.dataLoader.numWorkers null: the trainer uses at most 4 per process


def trainer_command(metrics_port: int, nproc_per_node: int = 1, nnodes: int = 1) -> list[str]:
    """The container's command; several processes (GPUs) or pods add the launcher's flags."""
    command = [
        "nsm", "train", "-f", f"{SPEC_DIR}/{SPEC_KEY}", "--output-dir", CHECKPOINT_DIR,
        "--resume", "auto", "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    if nproc_per_node > 1 or nnodes > 1:
        command += [NPROC_PER_NODE_FLAG, str(nproc_per_node), NNODES_FLAG, str(nnodes)]
    return command


def processes_per_pod(training: Training) -> int:
    """One training process per GPU of the pod; one on CPU."""
    return max(1, training.spec.resources.gpu.count)


def distributed(training: Training) -> bool:
    res = training.spec.resources
    return res.gpu.count > 1 or res.nodes > 1


def shm_size_limit(training: Training) -> str:
    """``sizeLimit`` of the memory-backed /dev/shm of a distributed pod.

    ``processes × (workers × prefetchFactor × 64 MiB + 256 MiB)``: every process has its own
    DataLoader workers, each with up to ``prefetchFactor`` batches in shared memory, plus NCCL's
    buffers. At most half the pod's memory limit, which the tmpfs is charged to: the processes
    keep the other half, and a pod that fills its /dev/shm is evicted instead of OOM-killed.
    """
    spec = training.spec
    loader = spec.data_loader
    workers = DEFAULT_WORKERS if loader.num_workers is None else loader.num_workers
    wanted = processes_per_pod(training) * (workers * loader.prefetch_factor * SHM_PER_BATCH_MIB + SHM_PER_PROCESS_MIB)
    half_memory = int(parse_quantity(spec.resources.memory, "spec.resources.memory") // (2 * MIB))
    return f"{max(1, min(wanted, half_memory))}Mi"


def _rendezvous_env(training: Training, attempt: int) -> list[dict[str, Any]]:
    """Pod 0's stable hostname and port; each pod's node rank is JOB_COMPLETION_INDEX, which the
    Job controller sets in every pod of an Indexed Job."""
    if training.spec.resources.nodes <= 1:
        return []
    master = f"{job_name(training.name, attempt)}-0.{rendezvous_service_name(training.name)}"
    return [{"name": MASTER_ADDR_ENV, "value": master}, {"name": MASTER_PORT_ENV, "value": str(RENDEZVOUS_PORT)}]


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
        "command": trainer_command(port, processes_per_pod(training), training.spec.resources.nodes),
        "env": [
            {"name": "NSM_TRAINING_NAME", "value": training.name},
            {"name": "NSM_TRAINING_NAMESPACE", "value": training.namespace},
            {"name": "NSM_ATTEMPT", "value": str(attempt)},
            # A literal: the Downward API's metadata.uid would be the pod's uid, not the training's.
            {"name": TRAINING_UID_ENV, "value": training.uid},
            # The root filesystem is read-only: caches (torch, matplotlib) go to /tmp.
            {"name": "HOME", "value": "/tmp"},
            *_rendezvous_env(training, attempt),
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
    if training.spec.resources.nodes > 1:
        container["ports"].append({"name": RENDEZVOUS_PORT_NAME, "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"})
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
    if distributed(training):
        spec["volumes"][-1]["emptyDir"]["sizeLimit"] = shm_size_limit(training)
    if training.spec.resources.nodes > 1:
        spec["subdomain"] = rendezvous_service_name(training.name)  # <job>-<i>.<service> in DNS
    spec.update(pod_placement(training, settings))
    return spec


def build_job(training: Training, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    """Job ``<name>-a<attempt>``: one pod, never restarted; disruptions don't fail it, exit
    codes 2 and 3 fail it at once (reason PodFailurePolicy), ``timeoutSeconds`` bounds it.

    With ``queueName`` the Job is created suspended and labelled for Kueue, which unsuspends it
    when the queue admits it (Kueue's convention for batch/v1 Jobs).

    With ``resources.nodes`` M > 1 the Job is Indexed with M completions, all M pods at once; with
    ``backoffLimit: 0`` one failed pod fails the Job (gang semantics: the other ranks cannot go
    on without it), the same podFailurePolicy applies to each pod, and Kueue admits the Job as
    one workload of M pods.
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
    if spec.resources.nodes > 1:
        job_spec.update(completionMode="Indexed", completions=spec.resources.nodes, parallelism=spec.resources.nodes)
    if spec.queue_name:
        job_spec["suspend"] = True
    if settings.job_ttl_seconds_after_finished:
        job_spec["ttlSecondsAfterFinished"] = settings.job_ttl_seconds_after_finished
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
