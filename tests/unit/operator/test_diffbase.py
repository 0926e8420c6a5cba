"""LeanDiffBaseStorage builds the essence kopf's stock annotation storage builds, so spec changes
are detected the same way (and an essence stored by either is read by the other);
StatusDiffBaseStorage keeps it in the status, where the handler's write records it."""

from __future__ import annotations

import copy
import json

import kopf
import pytest

from nsm_operator.diffbase import (
    FIELD, HANDLED_FIELDS, LeanDiffBaseStorage, StatusDiffBaseStorage, encoded_essence, lean_body,
)

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


# StatusDiffBaseStorage: the essence in status.lastHandledConfiguration, recorded by the handler.


def _with_record(body, encoded):
    body = copy.deepcopy(body)
    body.setdefault("status", {})[FIELD] = encoded
    return body


def test_the_record_is_the_essence_kopf_stores():
    # kopf passes its handlers' fields as parsed paths; the handler records with HANDLED_FIELDS.
    kopfs = StatusDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields={("spec",)})
    assert json.loads(encoded_essence(BODY)) == kopfs
    assert encoded_essence(BODY) == json.dumps(kopfs, separators=(",", ":"))


def test_the_record_is_not_part_of_the_essence():
    assert encoded_essence(_with_record(BODY, '{"spec":{}}')) == encoded_essence(BODY)


def test_fetch_prefers_the_status_record_then_kopfs_annotation():
    storage = StatusDiffBaseStorage()
    recorded = {"spec": {"domain": "planning"}}
    assert storage.fetch(body=kopf.Body(_with_record(BODY, json.dumps(recorded)))) == recorded
    # handled by an older operator: kopf's annotation (BODY carries one)
    assert storage.fetch(body=kopf.Body(BODY)) == {"spec": {"domain": "kg"}}
    assert storage.fetch(body=kopf.Body(_with_record(BODY, "not json"))) == {"spec": {"domain": "kg"}}
    bare = copy.deepcopy(BODY)
    del bare["metadata"]["annotations"]
    assert storage.fetch(body=kopf.Body(bare)) is None  # never handled: kopf sees a creation


def test_store_adds_nothing_when_the_handler_recorded_it():
    essence = StatusDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields={("spec",)})
    taken = []

    def recorded(namespace, name):
        taken.append((namespace, name))
        return encoded_essence(BODY)

    patch = kopf.Patch()
    StatusDiffBaseStorage(recorded).store(body=kopf.Body(BODY), patch=patch, essence=essence)
    assert dict(patch) == {} and taken == [("ml", "t")]


@pytest.mark.parametrize("recorded", [None, lambda ns, name: None, lambda ns, name: '{"spec":{"domain":"kg"}}'])
def test_store_puts_the_record_into_kopfs_status_patch_otherwise(recorded):
    """No record, or an older one (a spec change raced the handler): kopf's PATCH records it."""
    essence = StatusDiffBaseStorage().build(body=kopf.Body(BODY), extra_fields={("spec",)})
    patch = kopf.Patch()
    StatusDiffBaseStorage(recorded).store(body=kopf.Body(BODY), patch=patch, essence=essence)
    assert dict(patch) == {"status": {FIELD: encoded_essence(BODY)}}
    stored = _with_record(BODY, patch["status"][FIELD])
    assert StatusDiffBaseStorage().fetch(body=kopf.Body(stored)) == essence


# The memo: status echoes of an unchanged spec skip kopf's build.


def test_memoized_essence_equals_a_fresh_build_and_is_a_fresh_object():
    storage = LeanDiffBaseStorage()
    first = storage.build(body=kopf.Body(BODY), extra_fields={("spec",)})
    echo = copy.deepcopy(BODY)
    echo["status"]["phase"] = "Running"
    echo["metadata"]["resourceVersion"] = "43"
    again = storage.build(body=kopf.Body(echo), extra_fields={("spec",)})
    assert again == first == kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(echo), extra_fields={("spec",)})
    again["spec"]["epochs"] = 99  # whoever mutates an essence touches only its own
    assert storage.build(body=kopf.Body(echo), extra_fields={("spec",)})["spec"]["epochs"] == 5


@pytest.mark.parametrize("change", ["spec", "label", "annotation", "fields", "in place"])
def test_a_changed_essence_is_built_again(change):
    storage = LeanDiffBaseStorage()
    body = copy.deepcopy(BODY)
    fields = {("spec",)}
    storage.build(body=kopf.Body(body), extra_fields=fields)
    if change == "spec":
        body = copy.deepcopy(body)
        body["spec"]["suspend"] = True
    elif change == "label":
        body = copy.deepcopy(body)
        body["metadata"]["labels"]["team"] = "b"
    elif change == "annotation":
        body = copy.deepcopy(body)
        body["metadata"]["annotations"]["note"] = "changed"
    elif change == "fields":
        fields = {("spec",), ("spec", "suspend")}
    else:
        body["spec"]["epochs"] = 7  # the very dict the memo saw, changed afterwards
    stock = kopf.AnnotationsDiffBaseStorage().build(body=kopf.Body(copy.deepcopy(body)), extra_fields=fields)
    assert storage.build(body=kopf.Body(body), extra_fields=fields) == stock


def test_the_handlers_essence_is_the_one_kopf_built_for_the_event(monkeypatch):
    """The create handler asks kopf's storage for the essence of the body kopf just delivered:
    the same JSON as a fresh build, taken from the memo (no second build)."""
    storage = StatusDiffBaseStorage()
    kopfs = storage.build(body=kopf.Body(BODY), extra_fields={("spec",)})  # kopf's _detect_causes
    builds = []
    original = kopf.AnnotationsDiffBaseStorage.build
    monkeypatch.setattr(kopf.AnnotationsDiffBaseStorage, "build",
                        lambda self, **kw: builds.append(1) or original(self, **kw))  # fmt: skip
    assert storage.encoded(kopf.Body(BODY)) == encoded_essence(BODY) == json.dumps(kopfs, separators=(",", ":"))
    assert len(builds) == 1  # encoded_essence's own build; the storage's answer came from its memo
    changed = copy.deepcopy(BODY)
    changed["spec"]["epochs"] = 6
    assert json.loads(storage.encoded(changed))["spec"]["epochs"] == 6 and len(builds) == 2


def test_the_memo_is_bounded():
    storage = LeanDiffBaseStorage(memo_size=3)
    for i in range(10):
        body = copy.deepcopy(BODY)
        body["metadata"].update(name=f"t{i}", uid=f"u-{i}")
        storage.build(body=kopf.Body(body), extra_fields=set())
    assert len(storage._memo) == 3


def test_the_handled_fields_are_the_operator_handlers_fields():
    """The record is built with HANDLED_FIELDS; kopf builds its essence with its handlers' fields.
    Were they to differ, every handling would cost kopf's PATCH again (still correct)."""
    import nsm_operator.main  # noqa: F401 - registers the handlers

    from nsm.spec import API_GROUP, API_VERSION, PLURAL

    registry = kopf.get_default_registry()
    resource = kopf.Resource(API_GROUP, API_VERSION, PLURAL)
    kopfs = registry._changing.get_extra_fields(resource) | registry._watching.get_extra_fields(resource)
    assert kopfs == set(HANDLED_FIELDS)


def test_the_committed_crd_keeps_the_record_an_older_one_does_not():
    from nsm.crd import crd
    from nsm.spec import API_VERSION
    from nsm_operator.diffbase import crd_keeps_the_record

    current = crd()
    assert crd_keeps_the_record(current, API_VERSION)
    assert not crd_keeps_the_record(current, "v9")  # a version it does not serve
    assert not crd_keeps_the_record(None, API_VERSION)  # no CRD found
    older = copy.deepcopy(current)
    status = older["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    del status["properties"][FIELD]
    assert not crd_keeps_the_record(older, API_VERSION)
    status["x-kubernetes-preserve-unknown-fields"] = True  # a schema that prunes nothing
    assert crd_keeps_the_record(older, API_VERSION)


def test_without_the_record_store_writes_kopfs_annotation():
    storage = StatusDiffBaseStorage(lambda ns, name: encoded_essence(BODY))
    storage.in_status = False
    essence = storage.build(body=kopf.Body(BODY), extra_fields={("spec",)})
    patch = kopf.Patch()
    storage.store(body=kopf.Body(BODY), patch=patch, essence=essence)
    assert "status" not in patch
    assert json.loads(patch["metadata"]["annotations"]["kopf.zalando.org/last-handled-configuration"]) == essence
