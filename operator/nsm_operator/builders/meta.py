"""ObjectMeta shared by every child of a training."""

from __future__ import annotations

from typing import Any

from nsm_operator.builders.names import child_annotations, child_labels
from nsm_operator.resource import Training


def child_metadata(training: Training, name: str, *, owned: bool = True, **labels: str) -> dict[str, Any]:
    """Name, namespace, propagated labels/annotations and (if ``owned``) the controller reference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": training.namespace,
        "labels": child_labels(training.name, training.labels, **labels),
    }
    annotations = child_annotations(training.annotations)
    if annotations:
        meta["annotations"] = annotations
    if owned:
        meta["ownerReferences"] = [training.owner_reference()]
    return meta
