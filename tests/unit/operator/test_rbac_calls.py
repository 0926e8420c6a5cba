"""The operator's ClusterRole is exactly what its code calls: no call without a rule, no rule
without a call.

The operator's own requests all go through ``nsm_operator.kube.Kube``; every call site is found
statically (``<…>kube.<method>(…)`` in the package) and mapped to (group, resource, verb) through
``kube.KINDS``. A call whose kind is not a literal (``create(child)``, the 409 read in
``targets/children.py``) stands for every child the builders make. The children's watches
(``watches.child_watch("Job", …)`` declarations) list and watch their kind. kopf's own requests follow
from its registry (every watched resource: list + watch; the handled NSMTraining: patch of its
annotations/finalizers) plus the few fixed needs listed in ``KOPF_AND_API_SERVER`` with why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kopf

import nsm_operator
from nsm_operator.builders import build_children, build_job
from nsm_operator.kube import KINDS
from nsm_operator.rbac import OPERATOR_RULES, operator_rules

PACKAGE = Path(nsm_operator.__file__).parent
VERBS = {"get": "get", "list": "list", "create": "create", "create_object": "create", "delete": "delete", "patch": "patch"}

KOPF_AND_API_SERVER = {
    # The Event recorder creates Events from a built manifest (``create_object(manifest)``, whose
    # kind the scan cannot see; its patch of a repeat's count is found by the scan).
    ("", "events", "create"),
    # kopf observes CRDs and namespaces (namespace globs, cluster-wide runs).
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"), ("", "namespaces", "watch"),
    # The API server's OwnerReferencesPermissionEnforcement: children with blockOwnerDeletion.
    ("nsm.dev", "nsmtrainings/finalizers", "update"),
}  # fmt: skip


def _group_resource(kind: str) -> tuple[str, str]:
    api_version, plural = KINDS[kind]
    return (api_version.rpartition("/")[0], plural)


def _is_kube(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "kube") or (isinstance(node, ast.Attribute) and node.attr == "kube")


def _watched_kind(node: ast.Call) -> str | None:
    """``Kind`` of a ``child_watch("Kind", …)`` declaration (nsm_operator/watches.py)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    first = node.args[0] if node.args else None
    return first.value if name == "child_watch" and isinstance(first, ast.Constant) else None


def code_calls(child_kinds: set[str]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every ``kube.<method>(…)`` call in the operator package."""
    found: set[tuple[str, str, str]] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and (watched := _watched_kind(node)):
                group, resource = _group_resource(watched)
                found |= {(group, resource, "list"), (group, resource, "watch")}
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_kube(node.func.value)):
                continue
            method = node.func.attr
            if method == "patch_status":
                found.add(("nsm.dev", "nsmtrainings/status", "patch"))
                continue
            if method not in VERBS:
                continue
            first = node.args[0] if node.args else None
            kinds = {first.value} if isinstance(first, ast.Constant) else child_kinds
            sub = next((k.value.value for k in node.keywords if k.arg == "subresource"
                        and isinstance(k.value, ast.Constant)), None)  # fmt: skip
            for kind in kinds:
                group, resource = _group_resource(kind)
                found.add((group, f"{resource}/{sub}" if sub else resource, VERBS[method]))
    return found


def kopf_calls() -> set[tuple[str, str, str]]:
    import nsm_operator.main  # noqa: F401 - registers the handlers

    registry = kopf.get_default_registry()
    found = set(KOPF_AND_API_SERVER)
    for handler in registry._watching.get_all_handlers() + registry._changing.get_all_handlers():
        sel = handler.selector
        group = sel.group or ""
        plural = sel.plural or sel.any_name  # "configmaps": the core group (group None)
        found |= {(group, plural, "list"), (group, plural, "watch")}
    found.add(("nsm.dev", "nsmtrainings", "patch"))  # progress/diff-base annotations, finalizers
    return found


def granted() -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in OPERATOR_RULES for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}  # fmt: skip


def test_the_cluster_role_is_exactly_the_calls_the_code_makes(make_training, settings):
    # Every kind of child: an owned PVC, and the multi-node training's Service.
    t = make_training(checkpoint={"storage": {"retain": False}}, resources={"nodes": 2})
    children = {c["kind"] for c in build_children(t)} | {build_job(t, 1, settings)["kind"]}
    needed = code_calls(children) | kopf_calls()
    missing, unused = needed - granted(), granted() - needed
    assert not missing, f"calls without a rule in rbac.OPERATOR_RULES: {sorted(missing)}"
    assert not unused, f"rules without a call (drop them): {sorted(unused)}"


def test_the_scan_sees_calls():
    # Guards the scan itself: a handful of known call sites must be found.
    calls = code_calls({"Job"})
    for need in [("", "secrets", "get"), ("", "pods", "list"), ("batch", "jobs", "delete"),
                 ("nsm.dev", "nsmtrainings/status", "patch"), ("", "persistentvolumeclaims", "patch"),
                 ("batch", "jobs", "watch"), ("", "pods", "watch"), ("", "configmaps", "watch")]:  # fmt: skip
        assert need in calls, need


def test_secrets_only_by_the_configured_name():
    (rule,) = [r for r in OPERATOR_RULES if "secrets" in r["resources"]]
    assert rule["resourceNames"] == ["modal-credentials"] and rule["verbs"] == ["get"]
    (custom,) = [r for r in operator_rules("infra/modal-prod") if "secrets" in r["resources"]]
    assert custom["resourceNames"] == ["modal-prod"]
