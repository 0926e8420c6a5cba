"""Placement and environment of the trainer pod: the training's ``spec.scheduling``/``env``/
``envFrom`` merged over the operator's ``pod_defaults``, plus the GPU product's node affinity.

Merge rules (the training wins):

- ``nodeSelector``: per key.
- ``tolerations``: the defaults', then (GPU pods) ``gpuTolerations``, then the training's;
  exact duplicates dropped.
- ``affinity``: per kind (``nodeAffinity``, ``podAffinity``, ``podAntiAffinity``). When the result
  has no ``nodeAffinity`` and the pod requests GPUs, the product's term is added: one
  ``nodeSelectorTerm`` per known label (terms are ORed), ``In`` its known values — so GPU Feature
  Discovery nodes (SXM or PCIe) and GKE pools both match. A ``nodeAffinity`` of the user's (or of
  the defaults) replaces it: they know their cluster.
- ``priorityClassName``: the training's, else the default's.
- ``imagePullSecrets`` and ``envFrom``: the defaults', then the training's, duplicates dropped.
- ``env``: per name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nsm.placement import Affinity, KubeModel, SchedulingSpec

from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings


def _unique(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(dict(item))
    return out


def _wire(models: Iterable[KubeModel] | None) -> list[dict[str, Any]]:
    return [m.to_wire() for m in models or ()]


def gpu_node_affinity(labels: Mapping[str, Iterable[str]]) -> dict[str, Any] | None:
    """The required node affinity selecting any node with one of ``labels``' values; None if empty."""
    terms = [
        {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}
        for key, values in labels.items()
        if values
    ]
    if not terms:
        return None
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}


def _affinity(default: Affinity | None, own: Affinity | None, gpu_term: dict[str, Any] | None) -> dict[str, Any]:
    merged = {**(default.to_wire() if default else {}), **(own.to_wire() if own else {})}
    if "nodeAffinity" not in merged and gpu_term is not None:
        merged["nodeAffinity"] = gpu_term
    return merged


def pod_placement(training: Training, settings: OperatorSettings) -> dict[str, Any]:
    """The pod spec's placement fields (only those that are set)."""
    defaults, own = settings.pod_defaults, training.spec.scheduling
    base: SchedulingSpec = defaults.scheduling
    gpu = training.spec.resources.gpu
    gpu_term = gpu_node_affinity(settings.gpu_labels(gpu.product.value)) if gpu.count else None
    gpu_tolerations = defaults.gpu_tolerations if gpu.count else []
    placement: dict[str, Any] = {
        "nodeSelector": {**(base.node_selector or {}), **(own.node_selector or {})},
        "tolerations": _unique(_wire(base.tolerations) + _wire(gpu_tolerations) + _wire(own.tolerations)),
        "affinity": _affinity(base.affinity, own.affinity, gpu_term),
        "priorityClassName": own.priority_class_name or base.priority_class_name,
        "imagePullSecrets": _unique(_wire(base.image_pull_secrets) + _wire(own.image_pull_secrets)),
    }
    return {k: v for k, v in placement.items() if v}


def container_env(training: Training, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(``env``, ``envFrom``) the user adds to the trainer container, defaults first."""
    defaults = settings.pod_defaults
    by_name = {v.name: v.to_wire() for v in defaults.env}
    by_name.update({v.name: v.to_wire() for v in training.spec.env})
    env_from = _unique(_wire(defaults.env_from) + _wire(training.spec.env_from))
    return list(by_name.values()), env_from
