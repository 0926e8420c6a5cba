"""Create-if-absent for a training's children, trusting only what this training controls.

A 409 on create reads the existing object. Decisions, per kind (docs/architecture.md):

* controlled by this training (controller owner reference with its UID): ours; the spec
  ConfigMap is rewritten (spec changes apply from the next attempt);
* controlled by an earlier NSMTraining of the same name (deleted and re-applied before the garbage
  collector removed its children): :class:`TransientError`, wait for the collector;
* the retained checkpoint PVC of an earlier training of the same name (``retain: true`` PVCs
  have no owner; it carries the operator's labels): adopted and labelled with the new UID; the
  trainer moves the old files aside (``nsm.train.ownership``);
* anything else (a Job, ConfigMap, ServiceAccount, Role, RoleBinding, Service or PVC someone else
  made, or an orphaned one): :class:`ForeignObject`: the attempt fails with a message naming it.
  Using it would let its author decide what the trainer runs, mounts or may do, or (the
  rendezvous Service, by its selector) which pods the ranks connect to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nsm.contract import LABEL_TRAINING_UID

from nsm_operator.builders.names import LABEL_MANAGED_BY, LABEL_TRAINING, MANAGED_BY
from nsm_operator.errors import ForeignObject, TransientError
from nsm_operator.kube import Kube
from nsm_operator.ownership import describe_owner, owned_by, stale_sibling
from nsm_operator.resource import Training


def retained_pvc(obj: Mapping[str, Any], training: Training) -> bool:
    """A checkpoint PVC the operator made for an earlier training of this name and kept."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    controlled = any(ref.get("controller") for ref in meta.get("ownerReferences") or [])
    return (obj.get("kind") == "PersistentVolumeClaim" and not controlled
            and labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_TRAINING) == training.name)  # fmt: skip


async def child_exists(kube: Kube, training: Training, child: Mapping[str, Any]) -> bool:
    """Whether ``child`` exists and is this training's (one GET; anything else says no, and
    :func:`ensure_child` then decides what it is)."""
    found = await kube.get(child["kind"], training.namespace, child["metadata"]["name"])
    return found is not None and owned_by(found, training.uid)


async def ensure_child(kube: Kube, training: Training, child: Mapping[str, Any],
                       decode: bool = True, rewrite: bool = True) -> Mapping[str, Any] | None:  # fmt: skip
    """Create ``child`` unless it exists; when it exists, use it only if it is ours (see module).
    Returns the object as created (``decode=False``: ``child`` itself, the response unread), or
    as found when it was this training's already. ``rewrite=False`` leaves an existing spec
    ConfigMap of this training as it is."""
    created = await kube.create_object(child, decode=decode)
    if created:
        return created
    kind, name = child["kind"], child["metadata"]["name"]
    existing = await kube.get(kind, training.namespace, name)
    if existing is None:
        raise TransientError(f"{kind} {name} existed at create and was gone at read; trying again", 1.0)
    if owned_by(existing, training.uid):
        if rewrite and kind == "ConfigMap" and "data" in child:
            # Spec changes apply from the next attempt: rewrite the spec it reads.
            await kube.patch("ConfigMap", training.namespace, name, {"data": child["data"]})
        return existing
    if retained_pvc(existing, training):
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(LABEL_TRAINING_UID) != training.uid:
            await kube.patch("PersistentVolumeClaim", training.namespace, name,
                             {"metadata": {"labels": {LABEL_TRAINING_UID: training.uid}}})  # fmt: skip
        return None
    if stale_sibling(existing, training.name):
        raise TransientError(f"{kind} {name} still belongs to an earlier NSMTraining {training.name} "
                             f"({describe_owner(existing)}); waiting for the garbage collector", 5.0)  # fmt: skip
    raise ForeignObject(
        f"{kind} {training.namespace}/{name} already exists and is not this training's "
        f"(controller: {describe_owner(existing)}); delete or rename it, then re-apply the training"
    )
