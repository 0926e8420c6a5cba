"""Exact resume: SIGKILL a real ``nsm train`` process mid-run, resume it, compare with a clean run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nsm.train.trainer import TIMING_KEYS

ARGS = ["--domain", "causal", "--set", "dataset.numScenarios=200", "--epochs", "6", "--batch-size", "16",
        "--learning-rate", "0.002", "--num-workers", "0", "--seed", "7", "--device", "cpu",
        "--set", "checkpoint.everyEpochs=2", "--set", "checkpoint.keep=2", "--quiet", "--no-report"]


def nsm_train(out: Path, cache: Path, *extra: str, args: list[str] = ARGS) -> subprocess.Popen:
    # One intra-op thread: the two runs proceed side by side on two cores with identical maths.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("NSM_TRAINING_NAME", None)
    return subprocess.Popen([sys.executable, "-m", "nsm", "train", *args, "--output-dir", str(out),
                             "--data-cache", str(cache), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def prime_cache(cache: Path, scenarios: int, seed: int) -> None:
    """Generate the dataset once so that the runs of a test start from the cached file."""
    prime = subprocess.run([sys.executable, "-c", "from nsm.data import load_dataset; "
                            f"load_dataset('causal', {{'num_scenarios': {scenarios}}}, seed={seed}, "
                            f"cache_dir={str(cache)!r})"])
    assert prime.returncode == 0


def wait_epochs(out: Path, proc: subprocess.Popen, epochs: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while epochs_done(out) < epochs:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, f"epoch {epochs} did not finish in time"
        time.sleep(0.02)


def reproducible(results: dict) -> dict:
    drop = {"timing", "finished_at", "resumed_from_epoch", "device"}
    clean = {k: v for k, v in results.items() if k not in drop}
    for key in ("final", "best"):
        clean[key] = {k: v for k, v in clean[key].items() if k not in TIMING_KEYS}
    return clean


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    cache = tmp_path / "cache"
    prime_cache(cache, scenarios=200, seed=7)
    clean = nsm_train(tmp_path / "clean", cache)
    killed_dir = tmp_path / "killed"
    victim = nsm_train(killed_dir, cache)
    wait_epochs(killed_dir, victim, 2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = epochs_done(killed_dir)
    assert 2 <= killed_at < 6 and not (killed_dir / "results.json").exists()

    resumed = nsm_train(killed_dir, cache, "--resume", "auto")
    out_resumed, _ = resumed.communicate(timeout=600)
    out_clean, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out_clean
    assert resumed.returncode == 0, out_resumed

    a = json.loads((tmp_path / "clean" / "results.json").read_text())
    b = json.loads((killed_dir / "results.json").read_text())
    assert b["resumed_from_epoch"] >= 2 and a["resumed_from_epoch"] == 0
    assert reproducible(b) == reproducible(a)
    history = [json.loads((d / "history.json").read_text()) for d in (tmp_path / "clean", killed_dir)]
    strip = [[{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in h] for h in history]
    assert strip[0] == strip[1] and len(strip[0]) == 6
    assert sorted(p.name for p in killed_dir.glob("epoch-*.pt")) == ["epoch-0004.pt", "epoch-0006.pt"]
