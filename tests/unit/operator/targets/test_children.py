"""A 409 on create: use the existing child only when this training controls it (or it is the
retained checkpoint PVC of an earlier training of the same name)."""

from __future__ import annotations

import asyncio

import pytest

from nsm_operator.builders import build_configmap, build_job, build_pvc, build_role
from nsm_operator.errors import ForeignObject, TransientError
from nsm_operator.targets.children import ensure_child


class FakeKube:
    """Every create conflicts with ``existing``; patches are recorded."""

    def __init__(self, existing):
        self.existing, self.patches = existing, []

    async def create_object(self, manifest, decode=True):
        return dict(manifest) if self.existing is None else None

    async def get(self, kind, namespace, name):
        return self.existing

    async def patch(self, kind, namespace, name, patch, subresource=None):
        self.patches.append((kind, name, patch))
        return {}


def run(kube, training, child):
    return asyncio.run(ensure_child(kube, training, child))


def ref(uid, name="causal-prod", kind="NSMTraining"):
    return {"kind": kind, "name": name, "uid": uid, "controller": True}


def test_ours_is_used_and_the_spec_configmap_rewritten(make_training):
    t = make_training()
    cm = build_configmap(t)
    kube = FakeKube({"metadata": {"ownerReferences": [ref("uid-1")]}})
    run(kube, t, cm)
    assert kube.patches == [("ConfigMap", "causal-prod-spec", {"data": cm["data"]})]


@pytest.mark.parametrize("build", [build_job, build_role, build_configmap, build_pvc])
def test_someone_elses_object_fails_with_its_name(make_training, settings, build):
    t = make_training()
    child = build(t, 1, settings) if build is build_job else build(t)
    kube = FakeKube({"metadata": {"ownerReferences": [ref("x", name="other", kind="Deployment")]}})
    with pytest.raises(ForeignObject, match=f"{child['kind']} ml/{child['metadata']['name']} already exists"):
        run(kube, t, child)
    assert not kube.patches


def test_an_orphan_with_our_labels_is_foreign_unless_a_retained_pvc(make_training, settings):
    t = make_training()
    labels = build_pvc(t)["metadata"]["labels"]
    orphan = {"kind": "Job", "metadata": {"labels": labels}}
    with pytest.raises(ForeignObject, match="no controller"):
        run(FakeKube(orphan), t, build_job(t, 1, settings))
    retained = {"kind": "PersistentVolumeClaim", "metadata": {"labels": {**labels, "nsm.dev/training-uid": "old"}}}
    kube = FakeKube(retained)
    run(kube, t, build_pvc(t))
    assert kube.patches == [("PersistentVolumeClaim", "causal-prod-checkpoints",
                             {"metadata": {"labels": {"nsm.dev/training-uid": "uid-1"}}})]  # fmt: skip


def test_children_of_an_earlier_training_of_the_same_name_are_waited_for(make_training):
    t = make_training()
    with pytest.raises(TransientError, match="garbage collector"):
        run(FakeKube({"metadata": {"ownerReferences": [ref("uid-0")]}}), t, build_role(t))
