import json
import re
import subprocess
import sys

from nsm.contract import result_body, status_body
from nsm.train.progress import ProgressReporter

ROW = {
    "epoch": 4, "train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.75,
    "val_per_class_accuracy": [0.7, 0.8], "samples_per_second": 123.0,
}


class FakeCoreV1Api:
    """Records ConfigMap merge patches; ``body`` is re-read as the status documents it carries."""

    def __init__(self, fail: int = 0):
        self.calls = []
        self.fail = fail

    def patch_namespaced_config_map(self, name, namespace, body, **kwargs):
        if self.fail:
            self.fail -= 1
            raise RuntimeError("API server unavailable")
        assert set(body) == {"data"} and all(isinstance(v, str) for v in body["data"].values())
        status = {k: json.loads(v) for k, v in body["data"].items()}
        self.calls.append((namespace, name, {"status": status}, kwargs))
        return body


def test_patches_its_own_progress_configmap_with_camel_case_progress():
    api = FakeCoreV1Api()
    reporter = ProgressReporter(api, "causal-prod", "ml")
    checkpoint = {"epoch": 4, "path": "/checkpoints/last.pt", "time": "2026-01-01T00:00:00Z"}
    reporter.report(status_body(ROW, epochs=10, best_val_loss=0.55, checkpoint=checkpoint))
    reporter.close()
    (call,) = api.calls
    namespace, name, body, kwargs = call
    assert (namespace, name) == ("ml", "causal-prod-progress")
    assert kwargs["_content_type"] == "application/merge-patch+json"
    assert 0 < kwargs["_request_timeout"] <= 5
    progress = body["status"]["progress"]
    updated = progress.pop("updatedAt")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", updated)
    assert progress == {
        "epoch": 4, "epochs": 10, "trainLoss": 0.5, "valLoss": 0.6, "bestValLoss": 0.55,
        "valAccuracy": 0.75, "classAccuracy": {"0": 0.7, "1": 0.8}, "samplesPerSecond": 123.0,
    }
    assert body["status"]["lastCheckpoint"] == checkpoint


def test_failures_are_logged_and_never_raised(caplog):
    api = FakeCoreV1Api(fail=1)
    reporter = ProgressReporter(api, "x", "ns")
    reporter.report(status_body(ROW, 10, 0.5, None))
    assert reporter.flush(5)
    reporter.report(status_body(ROW, 10, 0.5, None))
    reporter.close()
    assert reporter.failures == 0 and len(api.calls) == 1
    assert "could not patch progress ConfigMap" in caplog.text


def test_inactive_without_the_environment():
    assert ProgressReporter.from_env({}) is None
    assert ProgressReporter.from_env({"NSM_TRAINING_NAME": "x"}) is None


def test_trainer_reports_every_epoch(run_tiny, monkeypatch):
    api = FakeCoreV1Api()
    created = []

    def fake_from_env(cls=None, environ=None):
        created.append(ProgressReporter(api, "unit", "ns"))
        return created[-1]

    monkeypatch.setattr(ProgressReporter, "from_env", staticmethod(fake_from_env))
    run_tiny(epochs=2)
    progress = [c[2]["status"]["progress"]["epoch"] for c in api.calls if "progress" in c[2]["status"]]
    assert progress[-1] == 2
    final = api.calls[-1][2]["status"]
    assert final["result"]["status"] == "completed" and final["result"]["epochs_run"] == 2
    assert "config" not in final["result"] and "dataset" not in final["result"]


def test_unsent_patches_merge_and_nan_becomes_null():
    api = FakeCoreV1Api()
    reporter = ProgressReporter(api, "x", "ns")
    reporter.close()  # the sender has stopped: what is reported now stays queued for inspection
    row = {**ROW, "val_per_class_accuracy": [0.7, float("nan")]}
    reporter.report(status_body(row, 10, 0.5, None))
    reporter.report(result_body({"status": "completed", "best": {"val_loss": float("inf")}, "config": {}}))
    pending = reporter._pending["status"]
    assert pending["progress"]["classAccuracy"] == {"0": 0.7, "1": None}
    assert pending["result"] == {"status": "completed", "best": {"val_loss": None}}


def test_reporter_module_does_not_import_torch():
    # The operator imports status_body; it must stay light.
    code = "import sys, nsm.train.progress; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_trainers_real_documents_pass_the_operators_validation(run_tiny):
    # The contract both ways: whatever the trainer reports, the operator mirrors whole (a new
    # results.json field of an unexpected type would show up here, not as a Warning in a cluster).
    from nsm_operator.mirror import read_document

    from nsm.contract import progress_data

    results, out = run_tiny(epochs=2)
    history = json.loads((out / "history.json").read_text())
    body = status_body(history[-1], 2, 0.5, {"epoch": 2, "path": str(out / "last.pt"), "time": "2026-01-01T00:00:00Z"})
    doc = read_document(progress_data({**body["status"], **result_body(results)["status"]}))
    assert doc.problems == []
    assert doc.fields["result"] == json.loads(json.dumps(result_body(results)["status"]["result"]))
    assert doc.fields["progress"] == body["status"]["progress"]
