"""LeanDiffBaseStorage builds the essence kopf's stock annotation storage builds, so spec changes
are detected the same way (and an essence stored by either is read by the other)."""

from __future__ import annotations

import copy

import kopf
import pytest

from nsm_operator.diffbase import LeanDiffBaseStorage, lean_body

BODY = {
    "apiVersion": "nsm.dev/v1alpha1",
    "kind": "NSMTraining",
    "metadata": {
        "name": "t", "namespace": "ml", "uid": "u-1", "resourceVersion": "42", "generation": 3,
        "labels": {"team": "a"},
        "annotations": {
            "kopf.zalando.org/last-handled-configuration": '{"spec":{"domain":"kg"}}',
            "kopf.zalando.org/create": '{"started":"x"}',
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "note": "kept",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:domain": {}}}}],
        "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"],
    },
    "spec": {"domain": "kg", "epochs": 5, "resources": {"gpu": {"count": 1, "type": "A100"}}},
    "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}], "attempts": 1},
}  # fmt: skip


def _variants():
    yield BODY
    no_meta = {k: v for k, v in BODY.items() if k != "metadata"}
    yield no_meta
    bare = copy.deepcopy(BODY)
    bare["metadata"] = {"name": "t"}
    del bare["status"]
    yield bare
    extra = copy.deepcopy(BODY)
    extra["data"] = {"x": [1, 2, {"y": None}]}  # any other top-level field is essence too
    yield extra


@pytest.mark.parametrize("body", list(_variants()))
@pytest.mark.parametrize("fields", [set(), {("spec",)}, {("spec", "suspend")}])
def test_same_essence_as_kopf(body, fields):
    stock = kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(copy.deepcopy(body)), extra_fields=fields)
    lean = LeanDiffBaseStorage().build(body=kopf.Body(copy.deepcopy(body)), extra_fields=fields)
    assert lean == stock


def test_fields_outside_the_essence_fall_back_to_kopf():
    fields = {("status", "phase"), ("metadata", "generation")}
    stock = kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields=fields)
    lean = LeanDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields=fields)
    assert lean == stock
    assert lean["status"] == {"phase": "Pending"} and lean["metadata"]["generation"] == 3


def test_the_essence_shares_nothing_with_the_body():
    body = copy.deepcopy(BODY)
    essence = LeanDiffBaseStorage().build(body=kopf.Body(body), extra_fields={("spec",)})
    body["spec"]["resources"]["gpu"]["count"] = 8
    body["metadata"]["labels"]["team"] = "b"
    assert essence["spec"]["resources"]["gpu"]["count"] == 1
    assert essence["metadata"]["labels"] == {"team": "a"}


def test_lean_body_drops_status_and_system_metadata():
    lean = lean_body(BODY)
    assert "status" not in lean
    assert set(lean["metadata"]) == {"labels", "annotations"}
    assert lean["spec"] is BODY["spec"]  # shallow: kopf's build makes the copy


def test_stored_by_one_read_by_the_other():
    essence = LeanDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields={("spec",)})
    patch = kopf.Patch()
    LeanDiffBaseStorage().store(body=kopf.Body(BODY), patch=patch, essence=essence)
    stored = copy.deepcopy(BODY)
    stored["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    assert kopf.AnnotationsDiffBaseStorage().fetch(body=kopf.Body(stored)) == essence
