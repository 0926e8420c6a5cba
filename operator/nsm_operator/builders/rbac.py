"""ServiceAccount, Role and RoleBinding that let the trainer patch its own status."""

from __future__ import annotations

from typing import Any

from nsm_operator.builders.meta import child_metadata
from nsm_operator.builders.names import trainer_name
from nsm_operator.rbac import TRAINER_ROLE_RULES
from nsm_operator.resource import Training


def build_service_account(training: Training) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(training, trainer_name(training.name)),
    }


def build_role(training: Training) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(training, trainer_name(training.name)),
        "rules": TRAINER_ROLE_RULES(training.name),
    }


def build_role_binding(training: Training) -> dict[str, Any]:
    name = trainer_name(training.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(training, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": training.namespace}],
    }
