"""Pure manifest builders: a validated :class:`~nsm_operator.resource.Training` in, a dict out.

No client, no kopf, no I/O (enforced by .importlinter); handlers create what these return.
"""

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


def build_children(training: Training, access_mode: str = "ReadWriteOnce") -> list[dict[str, Any]]:
    """Every per-training child except Jobs, in creation order (the PVC only if one is built,
    with ``access_mode``, ReadWriteMany with several nodes; the headless Service only with
    several nodes)."""
    if training.spec.resources.nodes > 1:
        access_mode = MULTI_NODE_ACCESS_MODE
    children = [build_pvc(training, access_mode), build_configmap(training), build_progress_configmap(training),
                build_service_account(training), build_role(training), build_role_binding(training),
                build_rendezvous_service(training)]  # fmt: skip
    return [c for c in children if c is not None]


__all__ = [
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
    "training_yaml",
]
