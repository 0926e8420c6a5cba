"""The operator's Modal target (nsm_operator.targets.modal) with an in-memory API and the fake bridge.

Modal's servers are unreachable from the test machines: the bridge is tests/fakes/modal_bridge.py
(selected the way the operator selects it, NSM_OPERATOR_MODAL_BRIDGE=module:factory), whose calls
follow a script. A small driver (:func:`reconcile`) does what the operator's reconcile does —
observe, ``lifecycle.step``, launch/stop, patch the status — so the lifecycle is the real one.
The same paths against a real control plane are in tests/e2e/modal/.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nsm_operator.lifecycle import ActionKind, step
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings
from nsm_operator.targets.base import TargetContext
from nsm_operator.targets.modal import ModalTarget
from tests.fakes.modal_bridge import FakeBridge

TOKEN_ID, TOKEN_SECRET = "ak-UnitTestId123456", "as-UnitTestSecret987654"


def merge(dst: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386), as the API server applies it."""
    for key, value in patch.items():
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)


class MemoryKube:
    """The part of nsm_operator.kube.Kube the target uses."""

    def __init__(self, body: dict[str, Any], secret: dict[str, Any] | None):
        self.body = body
        self.secret = secret
        self.patches: list[dict[str, Any]] = []

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        assert kind == "Secret" and (namespace, name) == ("ml", "modal-credentials")
        return copy.deepcopy(self.secret)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        self.patches.append(copy.deepcopy(status))
        merge(self.body.setdefault("status", {}), json.loads(json.dumps(status)))
        return self.body


def _secret() -> dict[str, Any]:
    enc = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return {"metadata": {"resourceVersion": "1"}, "data": {"MODAL_TOKEN_ID": enc(TOKEN_ID), "MODAL_TOKEN_SECRET": enc(TOKEN_SECRET)}}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    monkeypatch.setenv("NSM_OPERATOR_MODAL_BRIDGE", "tests.fakes.modal_bridge:from_env")
    monkeypatch.setenv("NSM_FAKE_MODAL_DIR", str(tmp_path / "fake"))
    body = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
            "metadata": {"name": "t1", "namespace": "ml", "uid": "u1"},
            "spec": {"domain": "causal", "target": "modal", "epochs": 3,
                     "retry": {"maxRetries": 1, "initialDelaySeconds": 0, "maxDelaySeconds": 0}}}
    return {"kube": MemoryKube(body, _secret()), "fake": FakeBridge(tmp_path / "fake"), "target": ModalTarget(launch_grace_seconds=0.5)}


async def reconcile(env: dict[str, Any], target: ModalTarget | None = None) -> ActionKind:
    kube, target = env["kube"], target or env["target"]
    body = kube.body
    status = copy.deepcopy(body.get("status") or {})
    ctx = TargetContext(training=Training.from_body(body), status=status, settings=OperatorSettings.from_env(), kube=kube)
    attempt = int(status.get("attempts") or 0)
    obs = await target.observe(ctx) if attempt and status.get("phase") not in ("Retrying", "Suspended") else None
    result = step(ctx.training.spec, status, obs, datetime.now(timezone.utc))
    patch = dict(result.status)
    if result.action.kind == ActionKind.start:
        ctx.status = copy.deepcopy(body.get("status") or {})
        patch.update(await target.launch(ctx, result.action.attempt))
    elif result.action.kind == ActionKind.stop:
        await target.stop(ctx)
    patch = {k: v for k, v in patch.items() if status.get(k) != v}
    if patch:
        await kube.patch_status("ml", "t1", patch)
    return result.action.kind


async def until(env: dict[str, Any], phase: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await reconcile(env)
        if env["kube"].body.get("status", {}).get("phase") == phase:
            return env["kube"].body["status"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"phase {phase} not reached: {env['kube'].body.get('status')}")


def _no_secrets(env: dict[str, Any]) -> None:
    text = json.dumps(env["kube"].body) + json.dumps(env["kube"].patches)
    assert TOKEN_ID not in text and TOKEN_SECRET not in text


async def test_spawn_progress_success(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"startAfter": 0.2, "epochs": 3, "epochSeconds": 0.2})
    await reconcile(env)
    status = env["kube"].body["status"]
    assert status["attempts"] == 1 and status["modal"]["callId"].startswith("fc-fake-t1-a1-")
    assert "launching" not in status["modal"]
    status = await until(env, "Running")
    assert status["modal"]["startedAt"]
    status = await until(env, "Succeeded")
    assert status["result"]["status"] == "completed" and "config" not in status["result"]
    assert status["progress"]["epoch"] == 3 and status["progress"]["epochs"] == 3
    assert status["lastCheckpoint"]["path"] == "modal://nsm-checkpoints/t1/last.pt"
    assert [a for a, _ in env["fake"].spawns("t1")] == [1]
    assert json.loads((env["fake"].root / "credentials.json").read_text())["sha256"]
    _no_secrets(env)


async def test_remote_failure_is_retried_per_spec_retry(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"attempts": {"1": {"outcome": "fail", "reason": "RemoteError", "message": "CUDA error",
                                                 "startAfter": 0.1, "epochSeconds": 0.1}},
                              "default": {"startAfter": 0.1, "epochSeconds": 0.1}})
    status = await until(env, "Succeeded")
    assert status["attempts"] == 2 and status["retries"] == 1
    assert [a for a, _ in env["fake"].spawns("t1")] == [1, 2]


async def test_non_retryable_failure_fails(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"outcome": "fail", "reason": "Diverged", "message": "loss is nan", "retryable": False,
                              "startAfter": 0.1, "epochSeconds": 0.1})
    status = await until(env, "Failed")
    assert status["failureReason"] == "Diverged" and "loss is nan" in status["message"]
    assert len(env["fake"].spawns("t1")) == 1


async def test_expired_output_fails_with_that_reason(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"outcome": "expire", "startAfter": 0.1, "epochSeconds": 0.1})
    status = await until(env, "Failed")
    assert status["failureReason"] == "OutputExpired" and "expired" in status["message"]


async def test_launch_is_idempotent(env: dict[str, Any]) -> None:
    await reconcile(env)
    body = env["kube"].body
    ctx = TargetContext(training=Training.from_body(body), status=copy.deepcopy(body["status"]),
                        settings=OperatorSettings.from_env(), kube=env["kube"])
    assert await env["target"].launch(ctx, 1) == {}
    assert len(env["fake"].spawns("t1")) == 1


async def test_restart_between_spawn_and_saving_the_id_adopts_the_call(env: dict[str, Any]) -> None:
    """The marker was saved, spawn created the call, the id was never saved (operator died)."""
    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 0.1})
    fake: FakeBridge = env["fake"]
    spec = Training.from_body(env["kube"].body).spec
    call_id = fake.spawn(spec, "t1", 1, "tok-lost")
    env["kube"].body["status"] = {"phase": "Pending", "attempts": 1, "retries": 0,
                                  "modal": {"attempt": 1, "launching": {"token": "tok-lost", "since": "2020-01-01T00:00:00Z"}}}
    await asyncio.sleep(0.2)
    status = await until(env, "Succeeded", timeout=5)
    assert status["modal"]["callId"] == call_id
    assert len(fake.spawns("t1")) == 1  # adopted, never spawned again


async def test_a_lost_launch_moves_on_and_fences_the_late_call(env: dict[str, Any]) -> None:
    fake: FakeBridge = env["fake"]
    fake.script("t1", {"attempts": {"1": {"startAfter": 3.0}}, "default": {"startAfter": 0.1, "epochSeconds": 0.1}})
    spec = Training.from_body(env["kube"].body).spec
    late = fake.spawn(spec, "t1", 1, "tok-lost")  # created, id lost, starts only in 3 s
    since = (datetime.now(timezone.utc) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    env["kube"].body["status"] = {"phase": "Pending", "attempts": 1, "retries": 0,
                                  "modal": {"attempt": 1, "launching": {"token": "tok-lost", "since": since}}}
    status = await until(env, "Succeeded", timeout=5)
    assert status["attempts"] == 2 and status["retries"] == 0  # LaunchInterrupted does not count
    assert [a for a, _ in fake.spawns("t1")] == [1, 2]
    assert fake.poll(late).reason == "Superseded"  # the late call never trains


async def test_suspend_cancels_the_call(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 5})
    await until(env, "Running")
    env["kube"].body["spec"]["suspend"] = True
    await reconcile(env)
    call = env["fake"].calls("t1")[0]
    assert call["cancelledAt"] is not None
    assert env["kube"].body["status"]["phase"] == "Suspended"


async def test_delete_cancels_the_call(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 5})
    await until(env, "Running")
    body = env["kube"].body
    ctx = TargetContext(training=Training.from_body(body), status=body["status"], settings=OperatorSettings.from_env(), kube=env["kube"])
    await env["target"].delete(ctx)
    assert env["fake"].calls("t1")[0]["cancelledAt"] is not None


async def test_missing_secret_fails_the_attempt_with_a_clear_message(env: dict[str, Any]) -> None:
    env["kube"].secret = None
    status = await until(env, "Failed")
    assert status["failureReason"] == "ModalCredentialsMissing"
    assert "Secret ml/modal-credentials (NSM_OPERATOR_MODAL_SECRET) not found" in status["message"]
    assert env["fake"].spawns("t1") == []


def _timeout_error() -> Exception:
    from nsm.modal.bridge import BridgeError

    return BridgeError("ModalTimeout", "Modal did not answer poll of call x within 30 s (are Modal's servers reachable?)")


def _auth_error() -> Exception:
    modal = pytest.importorskip("modal")
    from nsm.modal.bridge import classify

    # what SDKBridge.poll raises for modal.exception.AuthError (the token is redacted there)
    return classify(modal.exception.AuthError(f"token {TOKEN_ID}:{TOKEN_SECRET} rejected"), "poll of call x",
                    (TOKEN_ID, TOKEN_SECRET))


@pytest.mark.parametrize(("make_error", "expected"), [
    (_timeout_error, "Modal: ModalTimeout: Modal did not answer poll"),
    (_auth_error, "Modal: ModalAuthError: Modal rejected the credentials during poll of call x"),
])
async def test_poll_errors_become_a_status_message_and_clear(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                             make_error, expected: str) -> None:
    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 0.3})
    await until(env, "Running")
    error = make_error()

    def failing(self, call_id):
        raise error

    monkeypatch.setattr(FakeBridge, "poll", failing)
    await reconcile(env)
    status = env["kube"].body["status"]
    assert status["phase"] == "Running"
    assert status["message"].startswith(expected)
    assert status["modal"]["lastError"]["reason"] == error.reason
    _no_secrets(env)
    monkeypatch.undo()
    monkeypatch.setenv("NSM_OPERATOR_MODAL_BRIDGE", "tests.fakes.modal_bridge:from_env")
    monkeypatch.setenv("NSM_FAKE_MODAL_DIR", str(env["fake"].root))
    await reconcile(env)
    status = env["kube"].body["status"]
    assert "lastError" not in status["modal"] and status["message"] == "attempt 1 running"
    _no_secrets(env)


async def test_delete_while_launching_fences_out_a_call_that_has_not_started(env: dict[str, Any]) -> None:
    fake: FakeBridge = env["fake"]
    fake.script("t1", {"startAfter": 5.0})
    spec = Training.from_body(env["kube"].body).spec
    late = fake.spawn(spec, "t1", 1, "tok-lost")
    status = {"phase": "Pending", "attempts": 1, "modal": {"attempt": 1, "launching": {"token": "tok-lost", "since": "x"}}}
    ctx = TargetContext(training=Training.from_body(env["kube"].body), status=status, settings=OperatorSettings.from_env(),
                        kube=env["kube"])
    assert await env["target"].delete(ctx) is None
    assert fake.poll(late).reason == "Superseded"


async def test_delete_while_launching_cancels_a_started_call(env: dict[str, Any]) -> None:
    fake: FakeBridge = env["fake"]
    fake.script("t1", {"startAfter": 0.0, "epochSeconds": 5})
    spec = Training.from_body(env["kube"].body).spec
    started = fake.spawn(spec, "t1", 1, "tok-lost")
    status = {"phase": "Pending", "attempts": 1, "modal": {"attempt": 1, "launching": {"token": "tok-lost", "since": "x"}}}
    ctx = TargetContext(training=Training.from_body(env["kube"].body), status=status, settings=OperatorSettings.from_env(),
                        kube=env["kube"])
    await env["target"].delete(ctx)
    assert fake.calls("t1")[0]["cancelledAt"] is not None and fake.calls("t1")[0]["id"] == started


async def test_delete_without_credentials_gives_up_at_once_naming_the_call(env: dict[str, Any]) -> None:
    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 5})
    await until(env, "Running")
    body = env["kube"].body
    env["kube"].secret = None  # namespace deletion removed it
    ctx = TargetContext(training=Training.from_body(body), status=body["status"], settings=OperatorSettings(), kube=env["kube"])
    message = await env["target"].delete(ctx)
    call_id = body["status"]["modal"]["callId"]
    assert message and f"nsm modal cancel {call_id}" in message and "ModalCredentialsMissing" in message
    assert env["fake"].calls("t1")[0]["cancelledAt"] is None


async def test_delete_tries_a_bounded_number_of_times(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import nsm_operator.targets.modal as modal_target
    from nsm.modal.types import BridgeError
    from tests.fakes.modal_bridge import FakeBridge as Fake

    env["fake"].script("t1", {"startAfter": 0.1, "epochSeconds": 5})
    await until(env, "Running")
    tries = []

    def failing_cancel(self, call_id):
        tries.append(call_id)
        raise BridgeError("ModalUnavailable", "Modal did not answer", retryable=True)

    monkeypatch.setattr(Fake, "cancel", failing_cancel)
    monkeypatch.setattr(modal_target, "CANCEL_RETRY_SECONDS", 0.0)
    body = env["kube"].body
    ctx = TargetContext(training=Training.from_body(body), status=body["status"],
                        settings=OperatorSettings(modal_cancel_attempts=4), kube=env["kube"])  # fmt: skip
    message = await env["target"].delete(ctx)
    assert len(tries) == 4 and "Modal did not answer" in message and "cancel it by hand" in message


def test_a_finished_call_is_forgotten(env: dict[str, Any]) -> None:
    body = env["kube"].body
    status = {"modal": {"attempt": 1, "callId": "fc-1"}}
    ctx = TargetContext(training=Training.from_body(body), status=status, settings=OperatorSettings(), kube=env["kube"])
    assert env["target"].finished_fields(ctx) == {"modal": {"callId": None, "launching": None, "lastCallId": "fc-1"}}
    ctx.status = {"modal": {"attempt": 1, "callId": None, "lastCallId": "fc-1"}}
    assert env["target"].finished_fields(ctx) == {}
