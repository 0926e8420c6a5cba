"""RBAC the operator needs (the Helm chart's ClusterRole is tested against OPERATOR_RULES) and
the per-training Role it grants to trainer pods.

No wildcards, no verb without a call. The operator holds get/patch on ConfigMaps itself, which
RBAC's escalation check requires before it may grant the trainer's Role.
"""

from __future__ import annotations

from typing import Any

from nsm.contract import progress_configmap_name
from nsm.spec import API_GROUP, PLURAL

DEFAULT_MODAL_SECRET = "modal-credentials"  # OperatorSettings.modal_secret's default


def operator_rules(modal_secret: str = DEFAULT_MODAL_SECRET) -> list[dict[str, list[str]]]:
    """The operator's ClusterRole rules; ``get secrets`` only on the Modal credentials Secret
    (``NSM_OPERATOR_MODAL_SECRET``: ``name`` or ``namespace/name``; RBAC names it by name).

    Exactly the (verb, resource) pairs the code uses: tests/unit/operator/test_rbac_calls.py
    derives those from the ``kube.*`` call sites and kopf's registry and fails both ways.
    """
    secret = modal_secret.rpartition("/")[2] or DEFAULT_MODAL_SECRET
    return [
        # The resource itself: kopf watches it and patches annotations/finalizers; status via /status.
        {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
        # Owner references with blockOwnerDeletion need update on the owner's finalizers
        # (OwnerReferencesPermissionEnforcement admission plugin).
        {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
        # Attempts: create, follow (watches.py), read by name, delete on suspend.
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
        # Failed pods carry the trainer's exit code and reason; the watch says why a pod waits.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        # Children of a training; a 409 reads the existing one (targets/children.py); the PVC is
        # patched when a retained one is adopted (its training-uid label).
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "create", "patch"]},
        # ConfigMaps: the spec (rewritten per attempt) and the progress channel (watched).
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create"]},
        # The headless Service of a multi-node training (resources.nodes > 1): its pods' DNS names.
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["get", "create"]},
        # The operator's Event recorder (events.py): create, and patch a repeat's count.
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        # kopf scans CRDs and (cluster-wide) namespaces; peering is off (--standalone).
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        # Modal credentials (target: modal): that one Secret, never any other.
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get"]},
    ]


OPERATOR_RULES: list[dict[str, list[str]]] = operator_rules()
"""The rules with the default Modal Secret name (the chart renders its ``operator.modalSecret``)."""


def TRAINER_ROLE_RULES(name: str) -> list[dict[str, Any]]:  # noqa: N802 - a constant-like builder
    """Rules of the trainer's Role: read and patch its own progress ConfigMap, nothing else.

    The pod runs the user's image, so it gets no permission on NSMTrainings: the operator mirrors
    the ConfigMap into the status after validating it (docs/architecture.md, "Progress channel").
    """
    return [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [progress_configmap_name(name)],
            "verbs": ["get", "patch"],
        }
    ]
