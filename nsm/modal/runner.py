"""Inside the Modal Function: run ``nsm train`` and keep the Volume committed.

The trainer runs as a subprocess (``python -m nsm train -f SPEC --output-dir /checkpoints/<name>
--resume auto``) so that its exit code keeps the meaning it has in a Kubernetes pod. While it runs,
a watch loop commits the Volume whenever ``last.pt``, ``best.pt``, ``history.json`` or
``results.json`` change (the trainer writes them atomically, so a commit never captures a torn
file), and once more at the end — also when the container is being preempted or cancelled.
A restarted call (Modal retry, preemption, or the operator's next attempt) resumes from the
Volume's ``last.pt``.

Outcome of the Function (see ``docs/modal.md``):

* exit 0 → returns ``{"ok": true, "result": <results.json>}``;
* exit 2 (invalid spec) / 3 (diverged) → returns ``{"ok": false, "reason": ..., "retryable":
  false}`` instead of raising, because Modal retries every exception and retrying these cannot
  help;
* anything else → raises :class:`RetryableTrainerError`, which Modal retries (when the call has
  retries) and the bridge reports as a retryable failure.

Nothing here imports ``modal``: the Volume's commit is passed in, so this runs and is tested
on any machine.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nsm.contract import (
    FENCE_FILE,
    NPROC_PER_NODE_FLAG,
    RESULTS_FILE,
    WATCHED_FILES,
    ExitCode,
    call_record,
    is_retryable,
    reason_of,
)
from nsm.spec import parse_spec

log = logging.getLogger(__name__)

COMMIT_POLL_SECONDS = 10.0
STOP_GRACE_SECONDS = 20.0
TAIL_LINES = 20


class RetryableTrainerError(RuntimeError):
    """The trainer failed in a way another attempt may fix (exit code other than 0, 2, 3)."""


def failure(reason: str, message: str, *, retryable: bool, exit_code: int | None = None) -> dict[str, Any]:
    """The Function's return value for a failure that must not be retried by Modal."""
    return {"ok": False, "reason": reason, "message": message, "retryable": retryable, "exitCode": exit_code}


def trainer_command(spec_file: Path, output_dir: Path, nproc_per_node: int = 1) -> list[str]:
    """``nsm train`` in this container; with several GPUs one process per GPU (one container:
    the launcher's rendezvous stays on the loopback)."""
    command = [sys.executable, "-m", "nsm", "train", "-f", str(spec_file),
               "--output-dir", str(output_dir), "--resume", "auto"]
    if nproc_per_node > 1:
        command += [NPROC_PER_NODE_FLAG, str(nproc_per_node)]
    return command


def processes(training: Mapping[str, Any]) -> int:
    """Training processes of the container: one per GPU (``"A100-40GB:N"``), one without GPUs."""
    return max(1, parse_spec(dict(training.get("spec") or {})).resources.gpu.count)


def fence_message(output_dir: Path, attempt: int, token: str) -> str | None:
    """Why this call must not train (a newer launch wrote another token), or None.

    The bridge writes ``<name>/fence.json`` = ``{"attempt", "token"}`` before every spawn, so a
    call that was spawned but lost (the operator restarted before it saved the call id) quits
    when it finally starts instead of training next to its replacement.
    """
    path = output_dir / FENCE_FILE
    if not token or not path.exists():
        return None
    try:
        fence = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if fence.get("token") == token:
        return None
    if fence.get("attempt") is None:
        return f"superseded: the training was stopped or deleted before this call (attempt {attempt}) started"
    return (f"superseded: this call (attempt {attempt}) was replaced by attempt "
            f"{fence.get('attempt')} before it started")


def record_start(output_dir: Path, attempt: int, token: str, call_id: str | None) -> Path:
    """Write ``calls/a<attempt>.json`` so an operator that lost the call id can find it again."""
    path = output_dir / call_record(attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"attempt": attempt, "token": token, "callId": call_id, "startedAt": time.time()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)
    return path


def _signature(output_dir: Path) -> tuple[tuple[str, int, int], ...]:
    sig = []
    for name in WATCHED_FILES:
        try:
            st = (output_dir / name).stat()
        except FileNotFoundError:
            continue
        sig.append((name, st.st_mtime_ns, st.st_size))
    return tuple(sig)


def _safe_commit(commit: Callable[[], None]) -> bool:
    try:
        commit()
        return True
    except Exception as exc:  # noqa: BLE001 - a failed commit must not kill the training
        log.warning("volume commit failed (will retry at the next checkpoint): %s", exc)
        return False


def _pump(stream: Any, tail: collections.deque[str]) -> None:
    # Relay the trainer's stderr to ours (Modal's logs) and keep the end for the failure message.
    for line in iter(stream.readline, ""):
        sys.stderr.write(line)
        tail.append(line.rstrip())
    stream.close()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_trainer(
    training: Mapping[str, Any],
    output_dir: Path,
    *,
    commit: Callable[[], None],
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    poll_seconds: float = COMMIT_POLL_SECONDS,
) -> dict[str, Any]:
    """Train ``training`` (a whole NSMTraining mapping) into ``output_dir``; see the module doc.

    ``command`` replaces the trainer command (tests); ``{spec}`` and ``{out}`` in it are filled in.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nsm-modal-") as tmp:
        spec_file = Path(tmp) / "training.yaml"
        spec_file.write_text(yaml.safe_dump(dict(training), sort_keys=False))
        argv = ([a.replace("{spec}", str(spec_file)).replace("{out}", str(output_dir)) for a in command]
                if command else trainer_command(spec_file, output_dir, processes(training)))
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **(env or {})})
        pump = threading.Thread(target=_pump, args=(proc.stderr, tail), daemon=True)
        pump.start()
        seen = _signature(output_dir)
        try:
            while True:
                try:
                    code = proc.wait(timeout=poll_seconds)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = _signature(output_dir)
                if now != seen and _safe_commit(commit):
                    seen = now
        finally:
            # Preemption, cancellation or an error here: stop the trainer, keep its last.pt.
            _stop(proc)
            pump.join(timeout=5)
            _safe_commit(commit)
    message = "\n".join(tail)
    if not is_retryable(code):
        return failure(reason_of(code) or "Failed", message or f"nsm train exited with {code}",
                       retryable=False, exit_code=code)
    if code != ExitCode.OK:
        raise RetryableTrainerError(f"nsm train exited with {code}: {message}".rstrip(": "))
    try:
        result = json.loads((output_dir / RESULTS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RetryableTrainerError(f"nsm train exited with 0 but {RESULTS_FILE} is unreadable: {exc}") from None
    return {"ok": True, "result": result, "exitCode": 0}
