"""Pure manifest builders: a validated :class:`~nsm_operator.resource.Training` in, a dict out.

No client, no kopf, no I/O (enforced by .importlinter); handlers create what these return.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from nsm_operator.builders.config import build_configmap, training_yaml
from nsm_operator.builders.job import build_job
from nsm_operator.builders.progress import build_progress_configmap
from nsm_operator.builders.rbac import build_role, build_role_binding, build_service_account
from nsm_operator.builders.service import build_rendezvous_service
from nsm_operator.builders.storage import build_pvc, checkpoint_claim_name
from nsm_operator.resource import Training


MULTI_NODE_ACCESS_MODE = "ReadWriteMany"
"""The checkpoint claim of a multi-node training: its pods run on several nodes and every rank
reads ``last.pt`` when it resumes (rank 0 alone writes)."""


ChildBuilder = Callable[[], "dict[str, Any] | None"]


def child_builders(training: Training, access_mode: str = "ReadWriteOnce") -> list[tuple[str, ChildBuilder]]:
    """``(kind, build)`` of every per-training child except Jobs, in creation order, for callers
    that build a child only when its request can go (``targets/kubernetes``: under a burst a
    thousand launches wait for the low-priority slots, each holding its parsed training instead
    of four rendered manifests). ``build()`` returns None for a child this training has none of
    (the PVC with ``existingClaim``, the headless Service with one node)."""
    if training.spec.resources.nodes > 1:
        access_mode = MULTI_NODE_ACCESS_MODE
    return [
        ("PersistentVolumeClaim", partial(build_pvc, training, access_mode)),
        ("ConfigMap", partial(build_configmap, training)),
        ("ConfigMap", partial(build_progress_configmap, training)),
        ("ServiceAccount", partial(build_service_account, training)),
        ("Role", partial(build_role, training)),
        ("RoleBinding", partial(build_role_binding, training)),
        ("Service", partial(build_rendezvous_service, training)),
    ]


def build_children(training: Training, access_mode: str = "ReadWriteOnce") -> list[dict[str, Any]]:
    """Every per-training child except Jobs, in creation order (the PVC only if one is built,
    with ``access_mode``, ReadWriteMany with several nodes; the headless Service only with
    several nodes)."""
    built = (build() for _, build in child_builders(training, access_mode))
    return [child for child in built if child is not None]


__all__ = [
    "ChildBuilder",
    "build_children",
    "build_configmap",
    "build_job",
    "build_progress_configmap",
    "build_rendezvous_service",
    "build_pvc",
    "build_role",
    "build_role_binding",
    "build_service_account",
    "checkpoint_claim_name",
    "child_builders",
    "training_yaml",
]
