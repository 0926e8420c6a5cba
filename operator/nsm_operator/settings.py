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

ENV_PREFIX = "NSM_OPERATOR_"

# Node labels that NVIDIA GPU feature discovery puts on nodes, per GPUProduct value.
DEFAULT_GPU_NODE_LABELS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "T4": {"nvidia.com/gpu.product": "Tesla-T4"},
        "L4": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "A10G": {"nvidia.com/gpu.product": "NVIDIA-A10G"},
        "L40S": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
        "A100-40GB": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
        "A100-80GB": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        "H100": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "H200": {"nvidia.com/gpu.product": "NVIDIA-H200"},
        "B200": {"nvidia.com/gpu.product": "NVIDIA-B200"},
    }
)


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

    gpu_node_labels: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: DEFAULT_GPU_NODE_LABELS
    )
    """NSM_OPERATOR_GPU_NODE_LABELS: JSON {product: {label: value}}, merged over the defaults."""

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
        return cls(**values)

    def node_selector(self, product: str) -> dict[str, str]:
        """Node labels that select ``product``; empty when the product is not mapped."""
        return dict(self.gpu_node_labels.get(product, {}))


def _parse(annotation: Any, raw: str, maximum: float | None) -> Any:
    """``raw`` as a value of type ``annotation`` (the types OperatorSettings uses)."""
    if annotation is str:
        return raw
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


def _gpu_labels(raw: str) -> Mapping[str, Mapping[str, str]]:
    data = json.loads(raw)
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and all(isinstance(k2, str) and isinstance(v2, str) for k2, v2 in v.items())
        for v in data.values()
    ):
        raise ValueError("expected a JSON object {product: {label: value}}")
    merged = dict(DEFAULT_GPU_NODE_LABELS)
    merged.update({k: dict(v) for k, v in data.items()})
    return MappingProxyType(merged)
