"""The progress document as status fields: whitelisted, bounded, never raising."""

from __future__ import annotations

import json

from nsm.contract import progress_data, result_body, status_body

from nsm_operator.mirror import MAX_DOCUMENT_BYTES, MAX_STRING, changed, read_document
from nsm_operator.ownership import controller_uid, owned_by, stale_sibling

ROW = {"epoch": 4, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.75,
       "val_per_class_accuracy": [0.7, float("nan")], "samples_per_second": 123.0}  # fmt: skip


def test_the_trainers_own_documents_mirror_unchanged():
    body = status_body(ROW, 10, 0.55, {"epoch": 4, "path": "/checkpoints/last.pt", "time": "2026-01-01T00:00:00Z"})
    result = result_body({"status": "completed", "epochs_run": 4, "test": {"accuracy": 0.8, "class_collapse": False},
                          "final": {"val_loss": 0.6, "val_per_class_accuracy": [0.7, 0.8]},
                          "timing": {"train_seconds": 1.5}, "attempt": "1", "config": {"x": 1}})  # fmt: skip
    doc = read_document(progress_data({**body["status"], **result["status"]}))
    assert doc.problems == []
    assert doc.fields["progress"] == body["status"]["progress"]
    assert doc.fields["lastCheckpoint"] == body["status"]["lastCheckpoint"]
    assert doc.fields["result"] == result["status"]["result"]


def test_only_whitelisted_fields_survive():
    data = {"progress": json.dumps({"epoch": 1, "phase": "Succeeded", "attempts": 0}),
            "status": json.dumps({"phase": "Succeeded", "retries": 0, "gpuSeconds": 0}),
            "result": json.dumps({"status": "completed", "costEstimate": {"usd": 0}})}  # fmt: skip
    doc = read_document(data)
    assert doc.fields == {"progress": {"epoch": 1}, "result": {"status": "completed"}}
    text = " ".join(doc.problems)
    assert "ignored keys status" in text and "phase" in text and "costEstimate" in text


def test_numbers_are_bounded_and_strings_truncated():
    data = {"progress": json.dumps({"epoch": -1, "epochs": True, "valLoss": 1e300, "valAccuracy": "0.9",
                                    "classAccuracy": {"0": 0.5, "x": 1.0, "1": [1]}, "updatedAt": "yesterday"}),
            "lastCheckpoint": json.dumps({"epoch": 3, "path": "p" * 10_000})}  # fmt: skip
    doc = read_document(data)
    assert doc.fields["progress"] == {"classAccuracy": {"0": 0.5}}
    assert doc.fields["lastCheckpoint"] == {"epoch": 3, "path": "p" * MAX_STRING}
    assert len(doc.problems) >= 7


def test_hostile_documents_never_raise():
    assert read_document(None).fields == {}
    assert read_document({"progress": "[" * 100_000}).problems  # too big
    assert read_document({"progress": "[" * 30_000 + "]" * 30_000}).problems  # deep nesting
    assert read_document({"progress": "{not json"}).problems
    assert read_document({"progress": json.dumps([1, 2])}).problems
    big = read_document({"result": json.dumps({"name": "x" * MAX_DOCUMENT_BYTES})})
    assert big.fields == {} and "ignored" in big.problems[0]
    many = read_document({"result": json.dumps({"final": {f"k{i}": 1.0 for i in range(1000)}})})
    assert "final" not in many.fields.get("result", {})


def test_moved_aside_is_reported_not_mirrored():
    moved = {"path": "/checkpoints/previous-x", "previousUid": "u", "files": 3, "time": "2026-01-01T00:00:00Z"}
    doc = read_document({"checkpointsMovedAside": json.dumps(moved)})
    assert doc.moved_aside == moved and doc.fields == {}


def test_changed_compares_what_a_merge_patch_would_leave():
    status = {"progress": {"epoch": 2, "epochs": 3}, "result": None}
    assert changed({"progress": {"epoch": 2}}, status) == {}
    assert changed({"progress": {"epoch": 3}}, status) == {"progress": {"epoch": 3}}
    assert changed({"result": {"status": "completed"}}, status) == {"result": {"status": "completed"}}


def test_ownership_is_the_controller_uid():
    ref = {"kind": "NSMTraining", "name": "t", "uid": "u1", "controller": True}
    obj = {"metadata": {"ownerReferences": [{"kind": "X", "uid": "other"}, ref]}}
    assert controller_uid(obj) == "u1" and owned_by(obj, "u1") and not owned_by(obj, "u2")
    assert not owned_by({"metadata": {}}, "") and not owned_by({"metadata": {}}, "u1")
    assert stale_sibling(obj, "t") and not stale_sibling(obj, "other-name")
