from __future__ import annotations

from nsm_operator.builders import build_role, build_role_binding, build_service_account


def test_trainer_rbac(make_training):
    t = make_training()
    sa, role, rb = build_service_account(t), build_role(t), build_role_binding(t)
    assert sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "causal-prod-trainer"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["causal-prod-progress"],
         "verbs": ["get", "patch"]}
    ]  # fmt: skip
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "causal-prod-trainer"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "causal-prod-trainer", "namespace": "ml"}]
    for obj in (sa, role, rb):
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
