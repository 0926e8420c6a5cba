"""The operator's one typed settings object, read once from the environment at startup.

Every knob is an ``NSM_OPERATOR_*`` environment variable (the Helm chart sets them from
values.yaml). :func:`OperatorSettings.from_env` is the only place that reads the environment;
handlers get the object from kopf's ``memo`` (set in ``main.startup``) and pass it to builders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, get_origin, get_type_hints

from nsm.placement import EnvFromSource, EnvList, KubeModel, SchedulingSpec, Toleration
from pydantic import BaseModel, Field

ENV_PREFIX = "NSM_OPERATOR_"

# Node label values per GPUProduct value, by label: a node matches when ANY listed label has one of
# its values (one node-affinity term per label). GPU Feature Discovery (`nvidia.com/gpu.product`,
# the nvidia-smi name with spaces as dashes: SXM and PCIe boards differ) and GKE node pools
# (`cloud.google.com/gke-accelerator`). Other clusters add theirs through the setting.
_GFD, _GKE = "nvidia.com/gpu.product", "cloud.google.com/gke-accelerator"
DEFAULT_GPU_NODE_LABELS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "T4": {_GFD: ("Tesla-T4",), _GKE: ("nvidia-tesla-t4",)},
        "L4": {_GFD: ("NVIDIA-L4",), _GKE: ("nvidia-l4",)},
        "A10G": {_GFD: ("NVIDIA-A10G",)},
        "L40S": {_GFD: ("NVIDIA-L40S",)},
        "A100-40GB": {_GFD: ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"), _GKE: ("nvidia-tesla-a100",)},
        "A100-80GB": {_GFD: ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"), _GKE: ("nvidia-a100-80gb",)},
        "H100": {_GFD: ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
                 _GKE: ("nvidia-h100-80gb", "nvidia-h100-mega-80gb")},
        "H200": {_GFD: ("NVIDIA-H200",), _GKE: ("nvidia-h200-141gb",)},
        "B200": {_GFD: ("NVIDIA-B200",), _GKE: ("nvidia-b200",)},
    }
)  # fmt: skip


class PodDefaults(KubeModel):
    """Operator-wide placement and environment of trainer pods; each training's own
    ``spec.scheduling``/``env``/``envFrom`` is merged over it (builders/placement.py)."""

    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    env: EnvList = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]
    )
    """Added to pods that request GPUs (GPU node pools are commonly tainted nvidia.com/gpu)."""


ACCESS_MODES = ("ReadWriteOncePod", "ReadWriteOnce")


class SettingsError(ValueError):
    """A malformed ``NSM_OPERATOR_*`` variable; the message names it."""


_PORT = {"max": 65535}


@dataclass(frozen=True)
class OperatorSettings:
    """Operator configuration. Attribute docstrings name the environment variable; each is parsed
    by its field's annotation (numbers must be non-negative; ``metadata["max"]`` caps them)."""

    default_image: str = "ghcr.io/nsm-dev/nsm-trainer:0.1.0"
    """NSM_OPERATOR_DEFAULT_IMAGE: trainer image when ``spec.image`` is null."""

    namespaces: tuple[str, ...] = ()
    """NSM_OPERATOR_NAMESPACES: comma-separated namespaces to serve; empty = all namespaces."""

    price_per_gpu_hour: float = 2.0
    """NSM_OPERATOR_PRICE_PER_GPU_HOUR: USD per GPU-hour for ``status.costEstimate``."""

    gpu_node_labels: Mapping[str, Mapping[str, tuple[str, ...]]] = field(
        default_factory=lambda: DEFAULT_GPU_NODE_LABELS
    )
    """NSM_OPERATOR_GPU_NODE_LABELS: JSON {product: {label: [values]}} (a value may be a single
    string); a product given here replaces that product's built-in labels."""

    metrics_port: int = field(default=8080, metadata=_PORT)
    """NSM_OPERATOR_METRICS_PORT: port of the operator's Prometheus endpoint (path /metrics); 0 = off."""

    metrics_address: str = "0.0.0.0"
    """NSM_OPERATOR_METRICS_ADDRESS: address the metrics endpoint listens on (the chart sets the
    pod IP through the Downward API, so nothing else in the pod's network namespace is served)."""

    trainer_metrics_port: int = field(default=9400, metadata=_PORT)
    """NSM_OPERATOR_TRAINER_METRICS_PORT: port the trainer serves its metrics on (`metrics`)."""

    modal_secret: str = "modal-credentials"
    """NSM_OPERATOR_MODAL_SECRET: Secret holding MODAL_TOKEN_ID / MODAL_TOKEN_SECRET (``name`` in
    the training's namespace, or ``namespace/name``)."""

    modal_poll_seconds: float = 15.0
    """NSM_OPERATOR_MODAL_POLL_SECONDS: how often a Modal call is polled."""

    modal_bridge: str = ""
    """NSM_OPERATOR_MODAL_BRIDGE: ``module:factory`` returning the Modal bridge; empty = Modal's
    SDK (the e2e tier sets ``tests.fakes.modal_bridge:from_env``)."""

    modal_launch_grace_seconds: float = 120.0
    """NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS: how long a launch marker may wait for its Modal
    call to start before the launch counts as lost (tests shorten it)."""

    modal_cancel_attempts: int = 3
    """NSM_OPERATOR_MODAL_CANCEL_ATTEMPTS: tries to cancel a Modal call when its training is
    deleted; after them (or at once without credentials) the deletion proceeds with a Warning
    event naming the call."""

    watch_timeout_seconds: int = 300
    """NSM_OPERATOR_WATCH_TIMEOUT_SECONDS: server-side timeout of a watch request (kopf)."""

    request_timeout_seconds: float = 30.0
    """NSM_OPERATOR_REQUEST_TIMEOUT_SECONDS: client-side timeout of one API request (kopf)."""

    pod_defaults: PodDefaults = field(default_factory=PodDefaults)
    """NSM_OPERATOR_POD_DEFAULTS: JSON {scheduling, env, envFrom, gpuTolerations}: defaults of
    every trainer pod, under each training's own (`gpuTolerations` go to GPU pods only)."""

    job_ttl_seconds_after_finished: int = 86_400
    """NSM_OPERATOR_JOB_TTL_SECONDS_AFTER_FINISHED: ``ttlSecondsAfterFinished`` of attempt Jobs
    (the Job and its pods are deleted that long after they finish); 0 = keep them."""

    job_history_limit: int = 3
    """NSM_OPERATOR_JOB_HISTORY_LIMIT: finished attempt Jobs kept per training besides the current
    one; older ones are deleted when a new attempt starts."""

    resync_seconds: float = 300.0
    """NSM_OPERATOR_RESYNC_SECONDS: every this often each non-terminal training is observed anew, so
    a lost event, a dead retry timer or a dead Modal poll heals within one interval; 0 = off."""

    event_retries: int = field(default=8, metadata={"max": 100})
    """NSM_OPERATOR_EVENT_RETRIES: tries of an event handler (Job, pod, progress) on transient API
    errors before it leaves the training to the resync."""

    event_workers: int = field(default=8, metadata={"max": 64})
    """NSM_OPERATOR_EVENT_WORKERS: concurrent posters of the operator's Kubernetes Events (they share
    the operator's connection pool; a burst's Events queue, bounded, behind them); 0 counts as 1."""

    checkpoint_access_mode: str = "ReadWriteOncePod"
    """NSM_OPERATOR_CHECKPOINT_ACCESS_MODE: access mode of the checkpoint PVCs the operator creates:
    ``ReadWriteOncePod`` (one pod at a time; CSI volumes, Kubernetes >= 1.29) or ``ReadWriteOnce``
    for storage that lacks it."""

    gc_threshold: int = field(default=10_000, metadata={"max": 10_000_000})
    """NSM_OPERATOR_GC_THRESHOLD: generation-0 threshold of Python's cyclic garbage collector; at
    start-up the operator's modules are frozen out of collection (``gc.freeze``), so a collection
    only scans objects made since. CPython's default, 700, spends a third of the operator's CPU in
    the collector under a burst (docs/performance.md); 0 = leave the interpreter's collector as is."""

    tls_read_bytes: int = field(default=16_384, metadata={"max": 1_048_576})
    """NSM_OPERATOR_TLS_READ_BYTES: how much asyncio reads from a TLS connection at a time (one TLS
    record is at most 16 KiB). The interpreter's 256 KiB allocates a 256 KiB buffer for every read
    and per connection, which fragments the heap under a burst: 16 KiB took the operator's peak
    RSS at 1000 trainings from about 185 to 167 MB (docs/performance.md); 0 = the interpreter's."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Parse ``NSM_OPERATOR_*`` variables (``os.environ`` by default); unset → default."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[f.name] = _parse(hints[f.name], raw.strip(), f.metadata.get("max"))
            except (ValueError, json.JSONDecodeError) as exc:
                raise SettingsError(f"{var}={raw!r}: {exc}") from None
        if values.get("checkpoint_access_mode", "ReadWriteOncePod") not in ACCESS_MODES:
            raise SettingsError(f"{ENV_PREFIX}CHECKPOINT_ACCESS_MODE={values['checkpoint_access_mode']!r}: "
                                f"must be one of {', '.join(ACCESS_MODES)}")  # fmt: skip
        return cls(**values)

    def gpu_labels(self, product: str) -> dict[str, tuple[str, ...]]:
        """{label: values} whose any match selects ``product``; empty when it is not mapped."""
        return {k: tuple(v) for k, v in self.gpu_node_labels.get(product, {}).items() if v}


def _parse(annotation: Any, raw: str, maximum: float | None) -> Any:
    """``raw`` as a value of type ``annotation`` (the types OperatorSettings uses)."""
    if annotation is str:
        return raw
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_validate_json(raw)
    if annotation in (int, float):
        value = annotation(raw)
        if value < 0 or value != value or (maximum is not None and value > maximum):
            bound = f"from 0 to {maximum}" if maximum is not None else "non-negative"
            raise ValueError(f"out of range: must be {bound}")
        return value
    origin = get_origin(annotation)
    if origin is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if origin in (Mapping, dict):
        return _gpu_labels(raw)
    raise TypeError(f"no parser for settings of type {annotation!r}")  # pragma: no cover - a new field's type


def _gpu_labels(raw: str) -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    data = json.loads(raw)

    def values(v: Any) -> tuple[str, ...] | None:
        if isinstance(v, str):
            return (v,)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return tuple(v)
        return None

    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and all(isinstance(k2, str) and values(v2) is not None for k2, v2 in v.items())
        for v in data.values()
    ):
        raise ValueError("expected a JSON object {product: {label: value or [values]}}")
    merged = dict(DEFAULT_GPU_NODE_LABELS)
    merged.update({k: MappingProxyType({k2: values(v2) for k2, v2 in v.items()}) for k, v in data.items()})
    return MappingProxyType(merged)  # type: ignore[arg-type]
