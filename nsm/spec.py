"""The NSMTraining resource: one pydantic model for the CLI, the operator, the CRD and Modal.

Field names are snake_case in Python and camelCase on the wire (``batchSize``); both spellings
are accepted when parsing. Every constraint here is also emitted into the CRD's
openAPIV3Schema (``nsm crd``), so the API server rejects a bad value at ``kubectl apply`` and
pydantic rejects it again in the CLI and the operator, each naming the field.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from nsm.placement import (
    DNS1123_SUBDOMAIN, IMAGE_REFERENCE, LABEL_VALUE, EnvFromSource, EnvList, SchedulingSpec,
)  # fmt: skip
from nsm.quantity import Quantity

API_GROUP = "nsm.dev"
API_VERSION = "v1alpha1"
KIND = "NSMTraining"
PLURAL = "nsmtrainings"
SHORT_NAME = "nsmt"

# Job names are `<training>-a<attempt>` and Job names must fit a 63-character label value.
MAX_NAME_LENGTH = 56
# Several nodes: pod i's hostname `<training>-a<attempt>-<i>` and the Service `<training>-rdzv`
# are DNS labels (63 characters; a Service name starts with a letter): room for 99999 attempts
# and 64 pods.
MAX_MULTI_NODE_NAME_LENGTH = 52
MULTI_NODE_NAME_MESSAGE = (
    f"metadata.name of a training with spec.resources.nodes > 1 must start with a letter and have at most "
    f"{MAX_MULTI_NODE_NAME_LENGTH} characters (its pods' hostnames <name>-a<attempt>-<index> and its Service "
    "<name>-rdzv are DNS labels)"
)
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Domain(str, Enum):
    planning = "planning"
    causal = "causal"
    kg = "kg"


class Target(str, Enum):
    kubernetes = "kubernetes"
    modal = "modal"


class LRSchedule(str, Enum):
    none = "none"
    plateau = "plateau"
    cosine = "cosine"


class AmpDtype(str, Enum):
    bfloat16 = "bfloat16"
    float16 = "float16"


class Tier(str, Enum):
    """Dataset difficulty: ``standard`` (bounded-depth rules) or ``deep`` (unbounded, size generalisation)."""

    standard = "standard"
    deep = "deep"


class GPUProduct(str, Enum):
    """GPU models by the names Modal uses; the operator maps them to node labels."""

    T4 = "T4"
    L4 = "L4"
    A10G = "A10G"
    L40S = "L40S"
    A100_40GB = "A100-40GB"
    A100_80GB = "A100-80GB"
    H100 = "H100"
    H200 = "H200"
    B200 = "B200"


MODAL_MAX_GPUS_PER_CONTAINER = 8
MODAL_MAX_GPUS: dict[GPUProduct, int] = {GPUProduct.A10G: 4}
"""Modal's documented per-container GPU limits (modal.com/docs/guide/gpu, "Specifying GPU count"):
B200, H200, H100, A100, L4, T4 and L40S up to 8 GPUs, A10 up to 4; every GPU on one machine."""


def modal_max_gpus(product: GPUProduct) -> int:
    return MODAL_MAX_GPUS.get(product, MODAL_MAX_GPUS_PER_CONTAINER)


def modal_gpu_problem(gpu: "GPUSpec") -> str | None:
    """Why Modal cannot attach ``gpu`` to one container, naming the field; None when it can."""
    limit = modal_max_gpus(gpu.product)
    if gpu.count <= limit:
        return None
    return (f"resources.gpu.count: Modal attaches at most {limit} {gpu.product.value} GPUs to one container "
            f"(got {gpu.count}); use at most {limit}, or target kubernetes")


# The seed's production recommendations, per domain.
DOMAIN_DEFAULTS: dict[Domain, dict[str, Any]] = {
    Domain.planning: {"cycle_weight": 0.01, "pool_ratio": 0.5, "dataset": {"num_problems": 2858}},
    Domain.causal: {"cycle_weight": 0.01, "pool_ratio": 0.5, "dataset": {"num_scenarios": 1000}},
    Domain.kg: {
        "cycle_weight": 0.05,
        "pool_ratio": 0.13,
        "dataset": {"num_entities": 200, "num_triples": 2500},
    },
}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )


class DatasetSpec(_Model):
    """Generation parameters; which ones apply depends on the domain."""

    num_problems: int | None = Field(
        None, ge=10, le=1_000_000, description="planning: number of planning problems."
    )
    num_scenarios: int | None = Field(
        None, ge=10, le=1_000_000, description="causal: number of causal scenarios."
    )
    num_entities: int | None = Field(
        None, ge=10, le=1_000_000, description="kg: number of entities in the knowledge graph."
    )
    num_triples: int | None = Field(
        None, ge=10, le=10_000_000, description="kg: number of triples in the knowledge graph."
    )
    tier: Tier = Field(
        Tier.standard,
        description="standard: labels follow bounded-depth rules (2-4 hops). deep: labels need "
        "paths of any length, and the test graphs are larger with longer paths than any in "
        "training (see docs/datasets.md).",
    )


MODAL_NODES_MESSAGE = (
    "resources.nodes must be 1 with target modal: the Modal target runs one container per attempt "
    "(use resources.gpu.count for several GPUs in it); Modal's multi-node clusters are not supported"
)

_DATASET_SIZE_FIELDS = ("num_problems", "num_scenarios", "num_entities", "num_triples")
_DATASET_FIELDS: dict[Domain, tuple[str, ...]] = {
    Domain.planning: ("num_problems",),
    Domain.causal: ("num_scenarios",),
    Domain.kg: ("num_entities", "num_triples"),
}


class OptimizationSpec(_Model):
    amp: bool = Field(False, description="Automatic mixed precision (autocast).")
    amp_dtype: AmpDtype = Field(
        AmpDtype.bfloat16,
        description="Autocast dtype: bfloat16 (CPU and CUDA) or float16 (CUDA, with a GradScaler).",
    )
    tf32: bool = Field(True, description="Allow TF32 matmuls and convolutions on Ampere+ GPUs.")
    lr_schedule: LRSchedule = Field(LRSchedule.plateau, description="Learning-rate schedule.")
    gradient_clip: float = Field(
        1.0, ge=0.0, le=1000.0, description="Max global gradient norm; 0 disables clipping."
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")


class EarlyStoppingSpec(_Model):
    patience: int = Field(
        20, ge=0, le=10_000, description="Epochs without val-loss improvement before stopping; 0 disables."
    )
    min_delta: float = Field(0.0, ge=0.0, description="Smallest val-loss decrease that counts as improvement.")


class StorageSpec(_Model):
    size: Quantity = Field("10Gi", description="PVC size for checkpoints.")
    storage_class_name: str | None = Field(
        None, max_length=253, pattern=DNS1123_SUBDOMAIN, description="StorageClass of the PVC; cluster default if null."
    )
    existing_claim: str | None = Field(
        None, max_length=253, pattern=DNS1123_SUBDOMAIN,
        description="Use this existing PVC instead of creating one (never deleted by the operator).",
    )
    retain: bool = Field(True, description="Keep the checkpoint PVC when the NSMTraining is deleted.")


class CheckpointSpec(_Model):
    every_epochs: int = Field(10, ge=1, le=100_000, description="Write epoch-NNNN.pt every N epochs.")
    keep: int = Field(3, ge=1, le=1000, description="How many epoch-NNNN.pt files to keep.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="The PVC the checkpoints live on.")


class DataLoaderSpec(_Model):
    num_workers: int | None = Field(
        None, ge=0, le=64, description="DataLoader worker processes; null: one per CPU available, at most 4."
    )
    pin_memory: bool = Field(True, description="Pin host memory for faster host-to-GPU copies.")
    persistent_workers: bool = Field(True, description="Keep workers alive between epochs.")
    prefetch_factor: int = Field(2, ge=1, le=64, description="Batches prefetched per worker.")


MAX_NODES = 64
"""Upper bound of ``resources.nodes``: 64 pods x 16 GPUs is 1024 ranks, well beyond what this
model's graphs can use, and it bounds the Indexed Job and the rendezvous."""


class GPUSpec(_Model):
    count: int = Field(1, ge=0, le=16, description="GPUs per attempt (nvidia.com/gpu); 0 runs on CPU.")
    product: GPUProduct = Field(GPUProduct.A100_40GB, description="GPU model.")


class ResourcesSpec(_Model):
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPUs of one attempt.")
    cpu: Quantity = Field("4", description="CPU request of the trainer.")
    memory: Quantity = Field("16Gi", description="Memory request and limit of the trainer.")
    nodes: int = Field(
        1, ge=1, le=MAX_NODES,
        description="Pods of one attempt, each with gpu.count GPUs, cpu and memory (> 1: an Indexed Job and a "
        "headless Service for the rendezvous; the checkpoint claim must then be ReadWriteMany; target "
        "kubernetes only).",
    )  # fmt: skip

    @property
    def total_gpus(self) -> int:
        """GPUs of one attempt over all its pods (what an attempt bills)."""
        return self.gpu.count * self.nodes


class RetrySpec(_Model):
    max_retries: int = Field(2, ge=0, le=20, description="Retries after the first attempt.")
    backoff_coefficient: float = Field(2.0, ge=1.0, le=10.0, description="Delay multiplier per retry.")
    initial_delay_seconds: float = Field(60.0, ge=0.0, le=86_400.0, description="Delay before the first retry.")
    max_delay_seconds: float = Field(3600.0, ge=0.0, le=86_400.0, description="Upper bound of any retry delay.")

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt ``failed_attempt`` (1-based) failed."""
        if failed_attempt < 1:
            raise ValueError(f"RetrySpec.delay: attempt must be >= 1, got {failed_attempt}")
        return min(
            self.max_delay_seconds,
            self.initial_delay_seconds * self.backoff_coefficient ** (failed_attempt - 1),
        )


class ModalSpec(_Model):
    app: str = Field("nsm-trainer", min_length=1, max_length=64, description="Modal app name.")
    volume: str = Field("nsm-checkpoints", min_length=1, max_length=64, description="Modal Volume for checkpoints.")
    environment: str | None = Field(
        None, min_length=1, max_length=64, description="Modal environment; the workspace's default if null."
    )


class SecretKeyRef(_Model):
    """A key of a Secret in the training's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Secret name.")
    key: str = Field("WANDB_API_KEY", min_length=1, max_length=253, description="Key holding the value.")


class WandbSpec(_Model):
    """A Weights & Biases run per training; all attempts continue the same run."""

    project: str = Field(min_length=1, max_length=128, description="W&B project.")
    entity: str | None = Field(None, min_length=1, max_length=128, description="W&B entity; the key's default if null.")
    secret_ref: SecretKeyRef | None = Field(
        None, description="Secret with the API key (env WANDB_API_KEY); without one the run is written offline."
    )


class TrackingSpec(_Model):
    """Experiment tracking next to history.json."""

    tensorboard: bool = Field(
        False, description="Write TensorBoard event files (one scalar per history.json field) to <run dir>/tensorboard."
    )
    wandb: WandbSpec | None = Field(None, description="Log every history.json field to Weights & Biases.")


class ModelSpec(_Model):
    hidden_dim: int = Field(64, ge=8, le=1024, description="Hidden width of every level.")
    num_bases: int | None = Field(
        None, ge=1, le=64, description="R-GCN basis count; null picks min(8, number of relations)."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout probability.")
    # Planning needs 4 hops from an init fact to the goal at the finest level; one L1 layer stays
    # at chance there. More layers reach further but train less reliably in few epochs.
    l1_layers: int = Field(3, ge=1, le=8, description="R-GCN layers of the L1 encoder.")
    coarse_layers: int = Field(1, ge=1, le=8, description="R-GCN layers of the L2 and L3 encoders.")


class NSMTrainingSpec(_Model):
    """What to train, how, where, and how to recover."""

    domain: Domain = Field(description="Reasoning domain.")
    target: Target = Field(Target.kubernetes, description="Where the training runs.")
    epochs: int = Field(100, ge=1, le=100_000, description="Maximum number of epochs.")
    batch_size: int = Field(64, ge=1, le=65_536, description="Graphs per mini-batch.")
    # Not the seed's 1e-4: at batch 64 that leaves planning on the majority-class plateau for
    # some seeds (docs/datasets.md, "Training defaults"); examples/nsmtraining-seed-defaults.yaml
    # keeps the seed's values reproducible.
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="Initial learning rate.")
    cycle_weight: float | None = Field(
        None, ge=0.0, le=100.0, description="Weight of the cycle-consistency loss (domain default if null)."
    )
    pool_ratio: float | None = Field(
        None, gt=0.0, lt=1.0, description="Fraction of nodes the WHY step keeps (domain default if null)."
    )
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed of data generation, splits and training.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec, description="Architecture of the hierarchical GNN.")
    optimization: OptimizationSpec = Field(
        default_factory=OptimizationSpec, description="Mixed precision, learning-rate schedule, clipping, weight decay."
    )
    early_stopping: EarlyStoppingSpec = Field(
        default_factory=EarlyStoppingSpec, description="Stop when the validation loss stops improving."
    )
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Checkpoint cadence and storage.")
    data_loader: DataLoaderSpec = Field(default_factory=DataLoaderSpec, description="PyTorch DataLoader settings.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPU, CPU and memory of one attempt.")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="Retries of failed attempts, with backoff.")
    timeout_seconds: int = Field(7200, ge=1, le=30 * 86_400, description="Wall-clock limit of one attempt.")
    startup_timeout_seconds: int = Field(
        900, ge=1, le=7 * 86_400,
        description="How long an attempt's pod may wait to start (scheduling, image pull, volumes); a stuck "
        "attempt then ends with the reason it waited for (status.reason).",
    )  # fmt: skip
    termination_grace_period_seconds: int = Field(
        60, ge=1, le=3600,
        description="Seconds between SIGTERM and SIGKILL of the trainer pod: enough to finish the step "
                    "and write last.pt at the exact mid-epoch position.",
    )  # fmt: skip
    image: str | None = Field(
        None, max_length=512, pattern=IMAGE_REFERENCE, description="Trainer image; the operator's default if null."
    )
    suspend: bool = Field(False, description="Stop the active attempt and keep its checkpoint.")
    queue_name: str | None = Field(
        None, min_length=1, max_length=63, pattern=LABEL_VALUE,
        description="Kueue LocalQueue (label kueue.x-k8s.io/queue-name).",
    )
    modal: ModalSpec = Field(default_factory=ModalSpec, description="Modal app and volume (target: modal).")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="TensorBoard and W&B tracking.")
    # Placement and environment of the trainer pod (Kubernetes API shapes, nsm/placement.py).
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec,
        description="nodeSelector, tolerations, affinity, priorityClassName, imagePullSecrets of the trainer pod, "
        "merged over the operator's defaults.",
    )
    env: EnvList = Field(
        default_factory=list, max_length=256,
        description="Extra environment variables of the trainer (secrets by valueFrom reference only).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=64, description="Secrets and ConfigMaps whose keys become variables."
    )

    @model_validator(mode="after")
    def _domain_defaults(self) -> "NSMTrainingSpec":
        defaults = DOMAIN_DEFAULTS[self.domain]
        if self.cycle_weight is None:
            self.cycle_weight = defaults["cycle_weight"]
        if self.pool_ratio is None:
            self.pool_ratio = defaults["pool_ratio"]
        allowed = _DATASET_FIELDS[self.domain]
        for name in _DATASET_SIZE_FIELDS:
            if name not in allowed and getattr(self.dataset, name) is not None:
                raise ValueError(
                    f"dataset.{to_camel(name)} does not apply to domain {self.domain.value!r} "
                    f"(use {', '.join(to_camel(a) for a in allowed)})"
                )
            if name in allowed and getattr(self.dataset, name) is None:
                setattr(self.dataset, name, defaults["dataset"][name])
        if self.retry.max_delay_seconds < self.retry.initial_delay_seconds:
            raise ValueError("retry.maxDelaySeconds must be >= retry.initialDelaySeconds")
        if self.target is Target.modal:
            if self.resources.nodes > 1:
                raise ValueError(MODAL_NODES_MESSAGE)
            problem = modal_gpu_problem(self.resources.gpu)
            if problem:
                raise ValueError(problem)
        return self

    def dataset_params(self) -> dict[str, Any]:
        """Generation parameters of this domain, snake_case (``num_problems`` …), plus ``tier`` if deep."""
        params: dict[str, Any] = {name: getattr(self.dataset, name) for name in _DATASET_FIELDS[self.domain]}
        if self.dataset.tier is not Tier.standard:
            params["tier"] = self.dataset.tier.value
        return params

    def to_wire(self) -> dict[str, Any]:
        """camelCase JSON-compatible dict, as stored in the resource."""
        return self.model_dump(mode="json", by_alias=True)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = "nsm-local"
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_name(cls, v: str) -> str:
        if len(v) > MAX_NAME_LENGTH or not _DNS1123.match(v):
            raise ValueError(
                f"must be a DNS-1123 label of at most {MAX_NAME_LENGTH} characters "
                "(lower-case letters, digits and '-')"
            )
        return v


class NSMTraining(BaseModel):
    """A whole NSMTraining object (``kubectl get nsmt X -o yaml`` parses too; status is ignored)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: Literal["nsm.dev/v1alpha1"] = Field(f"{API_GROUP}/{API_VERSION}", alias="apiVersion")
    kind: Literal["NSMTraining"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: NSMTrainingSpec

    @model_validator(mode="after")
    def _multi_node_name(self) -> "NSMTraining":
        name = self.metadata.name
        if self.spec.resources.nodes > 1 and (len(name) > MAX_MULTI_NODE_NAME_LENGTH or not name[:1].isalpha()):
            raise ValueError(MULTI_NODE_NAME_MESSAGE)
        return self


class SpecError(ValueError):
    """An invalid NSMTraining; ``str()`` names every offending field (``spec.poolRatio: …``)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems))


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _spec_error(exc: ValidationError, prefix: str) -> SpecError:
    problems = []
    for err in exc.errors():
        loc = _field_path(tuple(err["loc"]))
        # A model-level check has no location of its own; its message names the field.
        loc = ".".join(p for p in (prefix, loc) if p)
        problems.append((loc, err["msg"].removeprefix("Value error, ")))
    return SpecError(problems)


def parse_spec(spec: dict[str, Any]) -> NSMTrainingSpec:
    """Validate a ``spec`` mapping (camelCase or snake_case); raises :class:`SpecError`."""
    try:
        return NSMTrainingSpec.model_validate(spec)
    except ValidationError as exc:
        raise _spec_error(exc, "spec") from None


def parse_training(obj: dict[str, Any]) -> NSMTraining:
    """Validate a whole NSMTraining object; raises :class:`SpecError`."""
    if not isinstance(obj, dict):
        raise SpecError([("", f"expected an NSMTraining mapping, got {type(obj).__name__}")])
    try:
        return NSMTraining.model_validate(obj)
    except ValidationError as exc:
        raise _spec_error(exc, "") from None


def load_training(path: str | Path) -> NSMTraining:
    """Read the first NSMTraining document of a YAML file."""
    text = Path(path).read_text()
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError([("", f"{path}: not valid YAML: {exc}")]) from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind", KIND) == KIND:
            return parse_training(doc)
    raise SpecError([("", f"{path}: no {KIND} document found")])
