from __future__ import annotations

from nsm_operator.builders import build_role
from nsm_operator.rbac import OPERATOR_RULES, TRAINER_ROLE_RULES


def _allowed(rules, group, resource, verb):
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def test_no_wildcards():
    for rule in OPERATOR_RULES:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule


def test_operator_can_grant_the_trainer_role():
    # RBAC escalation check: the operator holds every permission it grants.
    for rule in TRAINER_ROLE_RULES("x"):
        for verb in rule["verbs"]:
            assert _allowed(OPERATOR_RULES, rule["apiGroups"][0], rule["resources"][0], verb)


def test_operator_can_do_its_job():
    needs = [
        ("nsm.dev", "nsmtrainings", "watch"), ("nsm.dev", "nsmtrainings/status", "patch"),
        ("batch", "jobs", "create"), ("batch", "jobs", "watch"), ("batch", "jobs", "delete"),
        ("", "pods", "list"), ("", "persistentvolumeclaims", "create"), ("", "configmaps", "patch"),
        ("", "serviceaccounts", "create"), ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"), ("", "events", "create"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        ("", "namespaces", "list"), ("", "secrets", "get"),
    ]  # fmt: skip
    for need in needs:
        assert _allowed(OPERATOR_RULES, *need), need


def test_role_builder_uses_the_rules(make_training):
    assert build_role(make_training(name="abc"))["rules"] == TRAINER_ROLE_RULES("abc")
