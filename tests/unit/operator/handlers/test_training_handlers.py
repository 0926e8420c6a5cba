"""Pure parts of the NSMTraining handlers: epochSummary, valAccuracySummary and costEstimate from\nprogress."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from nsm_operator.handlers.reconcile import epoch_summary
from nsm_operator.handlers.training import progress_patch

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_epoch_summary():
    assert epoch_summary({}, 100) == "0/100"
    assert epoch_summary({"progress": {"epoch": 37, "epochs": 100}}, 50) == "37/100"


def test_progress_patch_updates_summary_and_running_cost():
    body = {
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"domain": "causal", "epochs": 10, "resources": {"gpu": {"count": 2}}},
        "status": {"phase": "Running", "epochSummary": "2/10", "gpuSeconds": 0.0,
                   "attemptStartTime": "2026-01-01T00:00:00Z", "progress": {"epoch": 3, "epochs": 10}},
    }  # fmt: skip
    assert progress_patch(body, 3.0, T0 + timedelta(hours=1)) == {
        "epochSummary": "3/10",
        "costEstimate": {"gpuHours": 2.0, "usd": 6.0},
    }
    body["status"]["epochSummary"] = "3/10"
    assert progress_patch(body, 3.0, T0 + timedelta(hours=2)) == {}


def test_progress_patch_leaves_final_cost_alone():
    body = {"metadata": {"name": "t"}, "spec": {"domain": "kg"},
            "status": {"phase": "Succeeded", "progress": {"epoch": 5, "epochs": 5}}}  # fmt: skip
    assert progress_patch(body, 1.0, T0) == {"epochSummary": "5/5"}


def test_progress_patch_rounds_val_accuracy_for_kubectl():
    """kubectl cannot format a number column: Val-Acc prints the 3-decimal string written here."""
    body = {"metadata": {"name": "t"}, "spec": {"domain": "kg", "epochs": 5},
            "status": {"phase": "Succeeded", "epochSummary": "5/5",
                       "progress": {"epoch": 5, "epochs": 5, "valAccuracy": 0.87349}}}  # fmt: skip
    assert progress_patch(body, 1.0, T0) == {"valAccuracySummary": "0.873"}
    body["status"]["valAccuracySummary"] = "0.873"
    assert progress_patch(body, 1.0, T0) == {}
    body["status"]["progress"]["valAccuracy"] = 1
    assert progress_patch(body, 1.0, T0) == {"valAccuracySummary": "1.000"}
    body["status"]["progress"]["valAccuracy"] = None  # no validation yet: no column value
    assert progress_patch(body, 1.0, T0) == {}
