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
from typing import Any

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


@dataclass(frozen=True)
class OperatorSettings:
    """Operator configuration. Attribute docstrings name the environment variable."""

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

    metrics_port: int = 8080
    """NSM_OPERATOR_METRICS_PORT: port of the operator's Prometheus endpoint (path /metrics); 0 = off."""

    trainer_metrics_port: int = 9400
    """NSM_OPERATOR_TRAINER_METRICS_PORT: port the trainer serves its metrics on (`metrics`)."""

    modal_secret: str = "modal-credentials"
    """NSM_OPERATOR_MODAL_SECRET: Secret holding MODAL_TOKEN_ID / MODAL_TOKEN_SECRET."""

    modal_poll_seconds: float = 15.0
    """NSM_OPERATOR_MODAL_POLL_SECONDS: how often a Modal call is polled."""

    watch_timeout_seconds: int = 300
    """NSM_OPERATOR_WATCH_TIMEOUT_SECONDS: server-side timeout of a watch request (kopf)."""

    request_timeout_seconds: float = 30.0
    """NSM_OPERATOR_REQUEST_TIMEOUT_SECONDS: client-side timeout of one API request (kopf)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Parse ``NSM_OPERATOR_*`` variables (``os.environ`` by default); unset → default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(var, f.name, raw.strip())
        return cls(**values)

    def node_selector(self, product: str) -> dict[str, str]:
        """Node labels that select ``product``; empty when the product is not mapped."""
        return dict(self.gpu_node_labels.get(product, {}))


def _parse(var: str, name: str, raw: str) -> Any:
    try:
        if name == "namespaces":
            return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
        if name == "gpu_node_labels":
            return _gpu_labels(raw)
        if name in ("metrics_port", "trainer_metrics_port", "watch_timeout_seconds"):
            value: Any = int(raw)
            if value < 0 or (name.endswith("port") and value > 65535):
                raise ValueError(f"out of range: {value}")
            return value
        if name in ("price_per_gpu_hour", "modal_poll_seconds", "request_timeout_seconds"):
            value = float(raw)
            if value < 0 or value != value:
                raise ValueError(f"must be a non-negative number: {raw}")
            return value
        return raw
    except (ValueError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{var}={raw!r}: {exc}") from None


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
