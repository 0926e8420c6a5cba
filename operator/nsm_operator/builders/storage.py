"""The checkpoint PersistentVolumeClaim."""

from __future__ import annotations

from typing import Any

from nsm.contract import LABEL_TRAINING_UID

from nsm_operator.builders.meta import child_metadata
from nsm_operator.builders.names import pvc_name
from nsm_operator.resource import Training


def checkpoint_claim_name(training: Training) -> str:
    """The claim the trainer mounts: the existing one, or the operator's ``<name>-checkpoints``."""
    return training.spec.checkpoint.storage.existing_claim or pvc_name(training.name)


def build_pvc(training: Training, access_mode: str = "ReadWriteOnce") -> dict[str, Any] | None:
    """The checkpoint PVC, or None when ``existingClaim`` is set (never created nor deleted).

    ``access_mode``: the operator passes ``settings.checkpoint_access_mode``, ``ReadWriteOncePod``
    by default, so a second pod on the same node cannot mount the checkpoint either.

    ``retain: true`` leaves the PVC without an owner reference, so deleting the training keeps
    the checkpoints; ``retain: false`` makes the training its owner (garbage-collected with it).
    """
    storage = training.spec.checkpoint.storage
    if storage.existing_claim:
        return None
    spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        # The UID label says whose files the claim holds; a retained claim adopted by a new
        # training of the same name is relabelled (targets/children.py).
        "metadata": child_metadata(training, pvc_name(training.name), owned=not storage.retain,
                                   **{LABEL_TRAINING_UID: training.uid}),
        "spec": spec,
    }
