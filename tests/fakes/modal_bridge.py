"""A fake Modal bridge for tests: Modal's servers are unreachable from the test machines.

It implements :class:`nsm.modal.bridge.ModalBridge` on a directory instead of Modal, so the
test process and an operator process (started with ``NSM_OPERATOR_MODAL_BRIDGE=
tests.fakes.modal_bridge:from_env`` and ``NSM_FAKE_MODAL_DIR=<dir>``) share its state, and the
state survives an operator restart::

    <dir>/calls/<call id>.json          one file per spawned call (spec, attempt, token, times)
    <dir>/spawns.log                    one line per spawn: "<name> <attempt> <call id>"
    <dir>/script/<training name>.json   the behaviour of that training's calls (written by a test)
    <dir>/volumes/<volume>/<name>/...   files written through the bridge (the launch fence)
    <dir>/credentials.json              sha256 of the last token the bridge was built with

A script (all keys optional; per attempt under "attempts": {"1": {...}}, else "default")::

    {"outcome": "succeed" | "fail" | "expire" | "hang",
     "startAfter": 0.5,          # seconds from spawn until the call's container starts
     "epochs": 3, "epochSeconds": 0.5,   # progress: one history.json row per epochSeconds
     "reason": "RemoteError", "message": "...", "retryable": true,   # for "fail"
     "crashAfterSpawn": true}    # the OPERATOR process exits right after spawning (once)

Time is wall-clock since the call's spawn, so outcomes appear by themselves while the operator
polls. A call whose token no longer matches the fence when it "starts" ends as ``Superseded``,
like ``nsm.modal.runner`` does in a real container.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from nsm.modal.types import BridgeError, Credentials, Expired, Failed, Outcome, Pending, Succeeded
from nsm.spec import NSMTrainingSpec

DIR_ENV = "NSM_FAKE_MODAL_DIR"
DEFAULT_SCRIPT: dict[str, Any] = {"outcome": "succeed", "startAfter": 0.5, "epochs": 3, "epochSeconds": 0.5}
_LOCK = threading.Lock()


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class FakeBridge:
    """:class:`~nsm.modal.bridge.ModalBridge` on a directory (see the module doc)."""

    def __init__(self, root: str | Path, credentials: Credentials | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if credentials is not None:
            digest = hashlib.sha256(f"{credentials.token_id}:{credentials.token_secret}".encode()).hexdigest()
            _write(self.root / "credentials.json", {"sha256": digest})

    # --- test-side helpers ------------------------------------------------------------------

    def script(self, name: str, script: dict[str, Any]) -> None:
        _write(self.root / "script" / f"{name}.json", script)

    def calls(self, name: str | None = None) -> list[dict[str, Any]]:
        out = [_read(p) for p in sorted((self.root / "calls").glob("*.json"))]
        return sorted((c for c in out if c and (name is None or c["name"] == name)), key=lambda c: c["spawnedAt"])

    def spawns(self, name: str) -> list[tuple[int, str]]:
        try:
            lines = (self.root / "spawns.log").read_text().splitlines()
        except OSError:
            return []
        return [(int(a), c) for n, a, c in (line.split() for line in lines) if n == name]

    # --- the bridge -------------------------------------------------------------------------

    def _script_for(self, name: str, attempt: int) -> dict[str, Any]:
        script = _read(self.root / "script" / f"{name}.json") or {}
        per = (script.get("attempts") or {}).get(str(attempt)) or script.get("default") or {
            k: v for k, v in script.items() if k != "attempts"}
        return {**DEFAULT_SCRIPT, **per}

    def _volume(self, spec: NSMTrainingSpec) -> Path:
        return self.root / "volumes" / spec.modal.volume

    def deploy(self, spec: NSMTrainingSpec) -> str:
        _write(self.root / "deployed" / f"{spec.modal.app}.json", {"app": spec.modal.app, "time": time.time()})
        return spec.modal.app

    def spawn(self, spec: NSMTrainingSpec, name: str, attempt: int, token: str) -> str:
        with _LOCK:
            fence_path = self._volume(spec) / name / "fence.json"
            _write(fence_path, {"attempt": attempt, "token": token, "time": time.time()})
            call_id = f"fc-fake-{name}-a{attempt}-{token[:8]}"
            script = self._script_for(name, attempt)
            call = {"id": call_id, "name": name, "attempt": attempt, "token": token, "spawnedAt": time.time(),
                    "volume": spec.modal.volume, "epochs": min(spec.epochs, int(script["epochs"])),
                    "script": script, "cancelledAt": None}
            _write(self.root / "calls" / f"{call_id}.json", call)
            with open(self.root / "spawns.log", "a") as log:
                log.write(f"{name} {attempt} {call_id}\n")
        crash_marker = self.root / "crashed" / f"{name}-a{attempt}"
        if script.get("crashAfterSpawn") and not crash_marker.exists():
            crash_marker.parent.mkdir(parents=True, exist_ok=True)
            crash_marker.touch()
            os._exit(17)  # the operator dies between spawn and saving the call id
        return call_id

    def _call(self, call_id: str) -> dict[str, Any]:
        call = _read(self.root / "calls" / f"{call_id}.json")
        if call is None:
            raise BridgeError("ModalNotFound", f"call {call_id} not found", retryable=False)
        return call

    def _state(self, call: dict[str, Any], now: float) -> tuple[str, int]:
        """(state, epochs done): state is queued | superseded | cancelled | running | done."""
        script = call["script"]
        started = call["spawnedAt"] + float(script["startAfter"])
        fence = _read(self.root / "volumes" / call["volume"] / call["name"] / "fence.json") or {}
        if fence.get("token") != call["token"] and fence.get("time", 0) <= started:
            return "superseded", 0
        cancelled = call.get("cancelledAt")
        if cancelled is not None and cancelled < started:
            return "cancelled", 0
        if now < started:
            return "queued", 0
        until = min(now, cancelled) if cancelled is not None else now
        seconds = float(script["epochSeconds"])
        done = call["epochs"] if seconds <= 0 else min(call["epochs"], int(math.floor((until - started) / seconds)))
        if cancelled is not None:
            return "cancelled", done
        return ("done" if done >= call["epochs"] else "running"), done

    def poll(self, call_id: str) -> Outcome:
        call = self._call(call_id)
        state, done = self._state(call, time.time())
        script = call["script"]
        if state == "superseded":
            return Failed("Superseded", "superseded: a newer launch wrote the fence", retryable=False)
        if state == "cancelled":
            return Failed("Cancelled", "the call was cancelled", retryable=False)
        if state != "done" or script["outcome"] == "hang":
            return Pending()
        if script["outcome"] == "succeed":
            return Succeeded(self._results(call))
        if script["outcome"] == "expire":
            return Expired()
        return Failed(script.get("reason", "RemoteError"), script.get("message", "scripted failure"),
                      retryable=bool(script.get("retryable", True)))

    def retire(self, spec: NSMTrainingSpec, name: str) -> None:
        _write(self._volume(spec) / name / "fence.json", {"attempt": None, "token": "retired", "time": time.time()})

    def cancel(self, call_id: str) -> None:
        with _LOCK:
            call = self._call(call_id)
            if call.get("cancelledAt") is None:
                call["cancelledAt"] = time.time()
                _write(self.root / "calls" / f"{call_id}.json", call)

    def _latest(self, name: str) -> dict[str, Any] | None:
        calls = self.calls(name)
        return calls[-1] if calls else None

    @staticmethod
    def _row(epoch: int) -> dict[str, Any]:
        loss = 1.0 / (epoch + 1)
        return {"epoch": epoch, "train_loss": loss + 0.05, "val_loss": loss, "val_accuracy": 0.5 + 0.1 * epoch,
                "val_per_class_accuracy": [0.5, 0.6], "samples_per_second": 100.0, "epoch_seconds": 0.5}

    def _results(self, call: dict[str, Any]) -> dict[str, Any]:
        return {"status": "completed", "stop_reason": "max_epochs", "name": call["name"],
                "epochs_run": call["epochs"], "attempt": call["attempt"], "device": "fake",
                "test": {"accuracy": 0.9}, "config": {"omitted": "from status.result"}}

    def read_json(self, spec: NSMTrainingSpec, name: str, filename: str) -> Any:
        if filename.startswith("calls/a") and filename.endswith(".json"):
            return self.find_call(spec, name, int(filename[len("calls/a"):-len(".json")]))
        call = self._latest(name)
        if filename in ("history.json", "results.json") and call is not None:
            # Rows of every call of the training (resumed attempts continue the same history).
            state, done = self._state(call, time.time())
            if filename == "history.json":
                return [self._row(e) for e in range(1, done + 1)] or None
            return self._results(call) if state == "done" and call["script"]["outcome"] == "succeed" else None
        return _read(self._volume(spec) / name / filename)

    def find_call(self, spec: NSMTrainingSpec, name: str, attempt: int) -> dict[str, Any] | None:
        for call in reversed(self.calls(name)):
            if call["attempt"] != attempt:
                continue
            state, _ = self._state(call, time.time())
            started = call["spawnedAt"] + float(call["script"]["startAfter"])
            cancelled_before_start = call["cancelledAt"] is not None and call["cancelledAt"] < started
            if state in ("queued", "superseded") or cancelled_before_start:
                continue
            return {"attempt": attempt, "token": call["token"], "callId": call["id"],
                    "startedAt": call["spawnedAt"] + float(call["script"]["startAfter"])}
        return None


def from_env(credentials: Credentials | None = None, settings: Any = None) -> FakeBridge:
    """``NSM_OPERATOR_MODAL_BRIDGE=tests.fakes.modal_bridge:from_env``; state in ``$NSM_FAKE_MODAL_DIR``."""
    root = os.environ.get(DIR_ENV)
    if not root:
        raise BridgeError("ModalBridgeConfig", f"{DIR_ENV} is not set (the fake bridge keeps its state there)",
                          retryable=False)
    return FakeBridge(root, credentials)
