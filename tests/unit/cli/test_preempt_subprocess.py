"""Checkpoint on SIGTERM: a real ``nsm train`` process stopped mid-epoch writes ``last.pt`` at the
exact position and exits 143 (retryable); resuming finishes with an uninterrupted run's numbers."""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from nsm.contract import ExitCode
from nsm.train.trainer import TIMING_KEYS
from tests.unit.cli import test_resume_subprocess as resume_test
from tests.unit.cli.test_resume_subprocess import epochs_done, prime_cache, reproducible, wait_epochs

# ~75 steps an epoch, so a signal 0.3 s into epoch 2 lands well inside it.
SCENARIOS, BATCH = 600, 6
ARGS = ["--domain", "causal", "--set", f"dataset.numScenarios={SCENARIOS}", "--epochs", "3", "--batch-size",
        str(BATCH), "--learning-rate", "0.002", "--num-workers", "0", "--seed", "11", "--device", "cpu",
        "--no-report"]


def nsm_train(out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    return resume_test.nsm_train(out, cache, *extra, args=ARGS)


@pytest.mark.slow
def test_sigterm_checkpoints_mid_epoch_and_resume_equals_uninterrupted(tmp_path):
    cache = tmp_path / "cache"
    prime_cache(cache, scenarios=SCENARIOS, seed=11)
    clean = nsm_train(tmp_path / "clean", cache)
    stopped = tmp_path / "stopped"
    victim = nsm_train(stopped, cache)
    wait_epochs(stopped, victim, 1)
    time.sleep(0.3)
    signalled = time.monotonic()
    victim.send_signal(signal.SIGTERM)
    out_victim, _ = victim.communicate(timeout=60)
    assert victim.returncode == ExitCode.PREEMPTED == 143, out_victim
    assert time.monotonic() - signalled < 10, "the trainer must stop within a grace period"
    assert "stopped by signal 15 in epoch 2" in out_victim

    state = torch.load(stopped / "last.pt", weights_only=True)
    partial = state["partial_epoch"]
    assert state["epoch"] == 1 and len(state["run"]["history"]) == 1
    assert partial["epoch"] == 2 and partial["steps"] >= 1 and partial["samples"] == partial["steps"] * BATCH
    assert not (stopped / "results.json").exists() and epochs_done(stopped) == 1

    resumed = nsm_train(stopped, cache, "--resume", "auto")
    out_resumed, _ = resumed.communicate(timeout=600)
    out_clean, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out_clean
    assert resumed.returncode == 0, out_resumed
    assert f"in epoch 2 after {partial['steps']} steps" in out_resumed

    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((stopped / "results.json").read_text())
    assert b["resumed_from_epoch"] == 1
    assert partial["steps"] < -(-a["dataset"]["sizes"]["train"] // BATCH), "stopped mid-epoch, not at its end"
    assert reproducible(b) == reproducible(a)
    history = [json.loads((d / "history.json").read_text()) for d in (tmp_path / "clean", stopped)]
    strip = [[{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in h] for h in history]
    assert strip[0] == strip[1] and len(strip[0]) == 3
