from __future__ import annotations

from nsm_operator.builders import build_pvc


def test_retained_pvc_has_no_owner(make_training):
    assert build_pvc(make_training(checkpoint={"storage": {"size": "50Gi", "storageClassName": "fast"}})) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "causal-prod-checkpoints",
            "namespace": "ml",
            "labels": {"app.kubernetes.io/name": "nsm-trainer", "app.kubernetes.io/managed-by": "nsm-operator",
                       "nsm.dev/training": "causal-prod", "nsm.dev/training-uid": "uid-1"},
        },  # fmt: skip
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "50Gi"}},
                 "storageClassName": "fast"},
    }  # fmt: skip


def test_unretained_pvc_is_owned(make_training):
    pvc = build_pvc(make_training(checkpoint={"storage": {"retain": False, "size": 5}}))
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pvc["metadata"]["ownerReferences"][0]["controller"] is True
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5"}}}


def test_existing_claim_builds_nothing(make_training):
    assert build_pvc(make_training(checkpoint={"storage": {"existingClaim": "mine"}})) is None


def test_access_mode_is_the_operators_setting(make_training):
    pvc = build_pvc(make_training(), "ReadWriteOncePod")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOncePod"]
