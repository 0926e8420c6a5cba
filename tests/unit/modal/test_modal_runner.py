"""The in-container runner (nsm.modal.runner) with a stand-in trainer process; no Modal needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nsm.modal.runner import RetryableTrainerError, fence_message, processes, record_start, run_trainer, trainer_command

TRAINING = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
            "metadata": {"name": "t1"}, "spec": {"domain": "causal"}}

# A stand-in for `nsm train`: writes last.pt twice (two "epochs"), then results.json, then exits.
STANDIN = r"""
import json, os, sys, time, pathlib
out = pathlib.Path(sys.argv[1]); code = int(sys.argv[2])
assert pathlib.Path(sys.argv[3]).read_text().startswith("apiVersion")
for epoch in (1, 2):
    (out / "last.pt").write_bytes(b"x" * epoch)
    time.sleep(0.3)
if code == 0:
    (out / "results.json").write_text(json.dumps({"status": "completed", "epochs_run": 2}))
print("trainer says goodbye", file=sys.stderr)
sys.exit(code)
"""


def _command(code: int) -> list[str]:
    return [sys.executable, "-c", STANDIN, "{out}", str(code), "{spec}"]


class Commits:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def test_success_returns_results_and_commits_after_checkpoints(tmp_path: Path) -> None:
    commits = Commits()
    out = run_trainer(TRAINING, tmp_path / "t1", commit=commits, command=_command(0), poll_seconds=0.1)
    assert out == {"ok": True, "result": {"status": "completed", "epochs_run": 2}, "exitCode": 0}
    # at least one commit while training (last.pt changed) plus the final one
    assert commits.n >= 2


@pytest.mark.parametrize(("code", "reason"), [(2, "InvalidSpec"), (3, "Diverged")])
def test_non_retryable_exits_return_a_failure_instead_of_raising(tmp_path: Path, code: int, reason: str) -> None:
    out = run_trainer(TRAINING, tmp_path, commit=Commits(), command=_command(code), poll_seconds=0.1)
    assert out["ok"] is False and out["reason"] == reason and out["retryable"] is False
    assert out["exitCode"] == code and "trainer says goodbye" in out["message"]


def test_other_exits_raise_for_modal_to_retry(tmp_path: Path) -> None:
    commits = Commits()
    with pytest.raises(RetryableTrainerError, match="nsm train exited with 1: trainer says goodbye"):
        run_trainer(TRAINING, tmp_path, commit=commits, command=_command(1), poll_seconds=0.1)
    assert commits.n >= 1  # the final commit still happens


def test_a_failing_commit_does_not_stop_training(tmp_path: Path) -> None:
    def broken() -> None:
        raise OSError("volume unavailable")

    out = run_trainer(TRAINING, tmp_path, commit=broken, command=_command(0), poll_seconds=0.1)
    assert out["ok"] is True


def test_fence(tmp_path: Path) -> None:
    assert fence_message(tmp_path, 1, "a") is None  # no fence yet
    (tmp_path / "fence.json").write_text(json.dumps({"attempt": 1, "token": "a"}))
    assert fence_message(tmp_path, 1, "a") is None
    assert "replaced by attempt 1" in fence_message(tmp_path, 1, "b")
    assert fence_message(tmp_path, 1, "") is None  # `nsm modal run` calls carry no token
    (tmp_path / "fence.json").write_text(json.dumps({"attempt": None, "token": "retired-x"}))
    assert "stopped or deleted before this call (attempt 1) started" in fence_message(tmp_path, 1, "a")
    path = record_start(tmp_path, 4, "a", "fc-1")
    assert json.loads(path.read_text())["callId"] == "fc-1"


@pytest.mark.slow
def test_the_real_trainer_commits_and_resumes(tmp_path: Path) -> None:
    """``python -m nsm train`` itself (tiny CPU run, ~15 s): checkpoints trigger commits, the
    result is results.json, and a restarted call resumes from last.pt like a preempted one."""
    training = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "metadata": {"name": "tiny"},
                "spec": {"domain": "causal", "epochs": 2, "batchSize": 32, "dataset": {"numScenarios": 60},
                         "dataLoader": {"numWorkers": 0, "pinMemory": False, "persistentWorkers": False},
                         "resources": {"gpu": {"count": 0}}}}
    commits = Commits()
    out = run_trainer(training, tmp_path / "tiny", commit=commits, poll_seconds=0.2)
    assert out["ok"] is True and out["result"]["status"] == "completed" and out["result"]["epochs_run"] == 2
    assert commits.n >= 2
    assert {"last.pt", "best.pt", "history.json", "results.json"} <= {p.name for p in (tmp_path / "tiny").iterdir()}
    training["spec"]["epochs"] = 3
    again = run_trainer(training, tmp_path / "tiny", commit=commits, poll_seconds=0.2)
    assert again["result"]["resumed_from_epoch"] == 2 and again["result"]["epochs_run"] == 3


@pytest.mark.parametrize(("gpu", "flags"), [({"count": 1}, []), ({"count": 0}, []),
                                            ({"count": 4}, ["--nproc-per-node", "4"])])
def test_trainer_command_runs_one_process_per_gpu(tmp_path: Path, gpu: dict, flags: list[str]) -> None:
    training = {**TRAINING, "spec": {"domain": "causal", "target": "modal", "resources": {"gpu": gpu}}}
    argv = trainer_command(tmp_path / "s.yaml", tmp_path / "out", processes(training))
    assert argv == [sys.executable, "-m", "nsm", "train", "-f", str(tmp_path / "s.yaml"),
                    "--output-dir", str(tmp_path / "out"), "--resume", "auto", *flags]
