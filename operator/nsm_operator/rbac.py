"""RBAC the operator needs (the Helm chart's ClusterRole is tested against OPERATOR_RULES) and
the per-training Role it grants to trainer pods.

No wildcards. The operator itself holds get/patch on ``nsmtrainings/status`` because RBAC's
escalation check only lets it grant permissions it holds.
"""

from __future__ import annotations

from typing import Any

from nsm.contract import progress_configmap_name
from nsm.spec import API_GROUP, PLURAL

OPERATOR_RULES: list[dict[str, list[str]]] = [
    # The resource itself: kopf watches it and patches annotations/finalizers; status via /status.
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    # Owner references with blockOwnerDeletion need update on the owner's finalizers
    # (OwnerReferencesPermissionEnforcement admission plugin).
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    # Attempts: create, follow (kopf watch), delete on suspend.
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    # Failed pods carry the trainer's exit code and reason.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    # Children of a training.
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "create", "patch"]},
    # ConfigMaps: the spec and the progress channel (watched: the trainer writes progress there).
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create", "patch"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "create", "patch"],
    },
    # kopf posts k8s events through both API groups depending on the cluster version.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # kopf scans CRDs and (cluster-wide) namespaces; peering is off (--standalone).
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    # Modal credentials (target: modal).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]


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
