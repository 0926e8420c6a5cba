"""Deterministic child names and labels: an operator restart never creates a duplicate."""

from __future__ import annotations

from collections.abc import Mapping

TRAINER_APP = "nsm-trainer"
MANAGED_BY = "nsm-operator"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_TRAINING = "nsm.dev/training"
LABEL_ATTEMPT = "nsm.dev/attempt"
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
CONTAINER_NAME = "trainer"
SPEC_KEY = "training.yaml"
SPEC_DIR = "/etc/nsm"
CHECKPOINT_DIR = "/checkpoints"

# Never copied from the NSMTraining onto children: kubectl's and kopf's bookkeeping.
_NOT_PROPAGATED = ("kubectl.kubernetes.io/", "kopf.zalando.org/")
# The operator's own label namespaces: propagated labels never override these.
_RESERVED = ("nsm.dev/", "app.kubernetes.io/")


def job_name(training: str, attempt: int) -> str:
    return f"{training}-a{attempt}"


def pvc_name(training: str) -> str:
    return f"{training}-checkpoints"


def trainer_name(training: str) -> str:
    """ServiceAccount, Role and RoleBinding name."""
    return f"{training}-trainer"


def rendezvous_service_name(training: str) -> str:
    """The headless Service of a multi-node training (``resources.nodes > 1``): pod ``i`` of
    attempt ``n`` is ``<training>-a<n>-<i>.<this>`` in the namespace's DNS. One per training,
    shared by its attempts (the hostnames carry the attempt)."""
    return f"{training}-rdzv"


def configmap_name(training: str) -> str:
    return f"{training}-spec"


def _propagated(items: Mapping[str, str], reserved: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in items.items() if not k.startswith(_NOT_PROPAGATED + reserved)}


def child_labels(training: str, user_labels: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The training's own labels (cost allocation etc.) plus the operator's, which always win."""
    labels = _propagated(user_labels, _RESERVED)
    labels.update({LABEL_NAME: TRAINER_APP, LABEL_MANAGED_BY: MANAGED_BY, LABEL_TRAINING: training})
    labels.update(extra)
    return labels


def child_annotations(user_annotations: Mapping[str, str]) -> dict[str, str]:
    """The training's annotations minus kubectl's and kopf's bookkeeping."""
    return _propagated(user_annotations, ())
