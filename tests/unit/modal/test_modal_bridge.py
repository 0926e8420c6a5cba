"""The bridge's error handling (nsm.modal.bridge.SDKBridge) against a fake SDK layer.

Modal's servers are unreachable from the test machines, so the SDK layer (``nsm.modal.sdk``) is
replaced by :class:`~tests.fakes.modal_sdk.FakeSDK`, an async stand-in for ``nsm.modal.sdk.ModalSDK`` (whose methods are
coroutines over Modal's ``.aio`` API) that raises the exceptions modal 1.6.4 raises (``AuthError``,
``OutputExpiredError`` …) or awaits past the bridge's deadline. One test does use the real SDK:
against unreachable servers it must end in the bridge's own timeout, not hang.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

modal = pytest.importorskip("modal", reason="pip install nsm-operator[modal]")
mexc = modal.exception

from nsm.modal.bridge import (  # noqa: E402
    BridgeError,
    Credentials,
    Expired,
    Failed,
    ModalBridge,
    Pending,
    SDKBridge,
    Succeeded,
    redact,
)
from nsm.modal.runner import RetryableTrainerError  # noqa: E402
from nsm.spec import parse_spec  # noqa: E402
from tests.fakes.modal_sdk import FakeSDK  # noqa: E402

TOKEN_ID, TOKEN_SECRET = "ak-Id0123456789abc", "as-Secret0123456789xyz"
CREDS = Credentials(TOKEN_ID, TOKEN_SECRET)
SPEC = parse_spec({"domain": "causal", "modal": {"app": "nsm-test", "volume": "vol"}})


def bridge(sdk: FakeSDK, timeout: float = 2.0) -> SDKBridge:
    return SDKBridge(CREDS, sdk=sdk, timeout=timeout)


def test_sdk_bridge_implements_the_protocol() -> None:
    assert isinstance(bridge(FakeSDK()), ModalBridge)


def test_a_hanging_call_becomes_a_timeout_message() -> None:
    started = time.monotonic()
    with pytest.raises(BridgeError) as info:
        bridge(FakeSDK(get_result={"ok": True}, delay=5), timeout=0.2).poll("fc-1")
    assert time.monotonic() - started < 2
    assert info.value.reason == "ModalTimeout" and info.value.retryable
    assert info.value.message == "Modal did not answer poll of call fc-1 within 0.2 s (are Modal's servers reachable?)"


def test_a_timeout_cancels_the_awaited_call() -> None:
    """FakeSDK: the deadline cancels the SDK coroutine (it sees CancelledError at its await) instead
    of leaving it running in a thread as the old thread-based deadline did."""
    sdk = FakeSDK(get_result={"ok": True}, delay=30)
    with pytest.raises(BridgeError) as info:
        bridge(sdk, timeout=0.1).poll("fc-1")
    assert info.value.reason == "ModalTimeout"
    assert sdk.cancelled == ["get"]
    with pytest.raises(BridgeError):
        bridge(sdk, timeout=0.1).cancel("fc-1")
    assert sdk.cancelled == ["get", "cancel"]


def test_a_timeout_raised_by_the_call_itself_is_not_our_deadline() -> None:
    """FakeSDK raising the builtin TimeoutError (an OS-level timeout) well within the deadline."""
    with pytest.raises(BridgeError) as info:
        bridge(FakeSDK(get_result=TimeoutError("read timed out")), timeout=5).poll("fc-1")
    assert info.value.reason == "ModalUnreachable" and "read timed out" in info.value.message


def test_logs_are_redacted() -> None:
    """FakeSDK yielding log lines, one of them with the token in it."""
    sdk = FakeSDK(logs=("epoch 1", f"token {TOKEN_SECRET}", "epoch 2"))
    b = bridge(sdk)
    assert b.log_tail("fc-1", 2) == ["token ***", "epoch 2"]
    seen: list[str] = []
    b.stream_logs("fc-1", seen.append)
    assert seen == ["epoch 1", "token ***", "epoch 2"]


def test_an_auth_error_becomes_a_clear_redacted_message() -> None:
    sdk = FakeSDK(get_result=mexc.AuthError(f"token {TOKEN_ID}:{TOKEN_SECRET} is invalid"))
    with pytest.raises(BridgeError) as info:
        bridge(sdk).poll("fc-1")
    err = info.value
    assert err.reason == "ModalAuthError" and not err.retryable
    assert "Modal rejected the credentials during poll of call fc-1" in err.message
    assert "MODAL_TOKEN_ID / MODAL_TOKEN_SECRET" in err.message
    for text in (str(err), err.message, repr(err)):
        assert TOKEN_ID not in text and TOKEN_SECRET not in text
    assert err.__cause__ is None and err.__suppress_context__  # the original (with the token) is dropped


def test_an_auth_error_on_spawn() -> None:
    with pytest.raises(BridgeError, match="ModalAuthError") as info:
        bridge(FakeSDK(spawn_error=mexc.AuthError("no such token"))).spawn(SPEC, "t1", 1, "tok")
    assert "spawn of nsm-test.train" in info.value.message


def test_an_expired_output_is_an_outcome() -> None:
    assert bridge(FakeSDK(get_result=mexc.OutputExpiredError())).poll("fc-1") == Expired()
    assert "expired" in Expired().message


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        (mexc.TimeoutError(), Pending()),
        ({"ok": True, "result": {"status": "completed"}}, Succeeded({"status": "completed"})),
        ({"ok": False, "reason": "Diverged", "message": "nan", "retryable": False}, Failed("Diverged", "nan", False)),
        (mexc.FunctionTimeoutError("ran 7200 s"), Failed("AttemptTimeout", "the attempt ran past spec.timeoutSeconds: ran 7200 s", True)),
        (RetryableTrainerError("nsm train exited with 1"), Failed("RemoteError", "RetryableTrainerError: nsm train exited with 1", True)),
        (mexc.RemoteError("boom"), Failed("RemoteError", "boom", True)),
        (mexc.InputCancellation(), Failed("Cancelled", "the call was cancelled", False)),
        (mexc.NotFoundError("fc-1"), Failed("CallNotFound", "Modal does not know the call: fc-1", True)),
        ("surprise", Failed("UnexpectedResult", "the Modal Function returned str", False)),
    ],
)
def test_poll_outcomes(value: Any, outcome: Any) -> None:
    assert bridge(FakeSDK(get_result=value)).poll("fc-1") == outcome


@pytest.mark.parametrize(
    ("error", "reason"),
    [(mexc.ConnectionError("refused"), "ModalUnreachable"), (ConnectionRefusedError("refused"), "ModalUnreachable"),
     (mexc.PermissionDeniedError("nope"), "ModalPermissionDenied")],
)
def test_poll_errors_that_say_nothing_about_the_call(error: BaseException, reason: str) -> None:
    with pytest.raises(BridgeError) as info:
        bridge(FakeSDK(get_result=error)).poll("fc-1")
    assert info.value.reason == reason


def test_remote_error_messages_are_redacted_too() -> None:
    outcome = bridge(FakeSDK(get_result=mexc.RemoteError(f"env had {TOKEN_SECRET}"))).poll("fc-1")
    assert isinstance(outcome, Failed) and TOKEN_SECRET not in outcome.message and "***" in outcome.message


def test_spawn_writes_the_fence_first_and_keeps_modal_retries_off() -> None:
    sdk = FakeSDK()
    assert bridge(sdk).spawn(SPEC, "t1", 3, "tok") == "fc-1"
    assert sdk.log == [("write", "t1/fence.json"), ("spawn", ("t1", 3, "tok"), False)]
    assert json.loads(sdk.files["t1/fence.json"]) == {"attempt": 3, "token": "tok"}


def test_retire_rewrites_the_fence() -> None:
    sdk = FakeSDK()
    bridge(sdk).retire(SPEC, "t1")
    fence = json.loads(sdk.files["t1/fence.json"])
    assert fence["attempt"] is None and fence["token"].startswith("retired-")


def test_spawn_deploys_a_missing_app_once() -> None:
    sdk = FakeSDK(spawn_error=mexc.NotFoundError("App 'nsm-test' not found"))
    assert bridge(sdk).spawn(SPEC, "t1", 1, "tok") == "fc-1"
    assert [entry[0] for entry in sdk.log] == ["write", "spawn", "deploy", "spawn"]
    assert sdk.deployed_gpus == 0 and SPEC.resources.gpu.count == 1  # a CPU-only base; GPUs come per call
    sdk = FakeSDK(spawn_error=mexc.NotFoundError("App 'nsm-test' not found"))
    with pytest.raises(BridgeError) as info:
        SDKBridge(CREDS, sdk=sdk, auto_deploy=False).spawn(SPEC, "t1", 1, "tok")
    assert info.value.reason == "ModalAppNotDeployed" and "nsm modal deploy" in info.value.message


def test_spawn_maps_the_spec_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import nsm.modal.bridge as bridge_module

    calls = []
    real = bridge_module.modal_options
    monkeypatch.setattr(bridge_module, "modal_options", lambda spec: calls.append(spec) or real(spec))
    sdk = FakeSDK(spawn_error=mexc.NotFoundError("App 'nsm-test' not found"))
    bridge(sdk).spawn(SPEC, "t1", 1, "tok")  # spawn, deploy, spawn again: still one mapping
    assert len(calls) == 1 and len(sdk.options) == 2 and sdk.options[0] is sdk.options[1]
    assert sdk.options[0].gpu == "A100-40GB" and sdk.options[0].app_name == "nsm-test"


def test_read_json_and_find_call() -> None:
    sdk = FakeSDK()
    sdk.files["t1/calls/a2.json"] = json.dumps({"callId": "fc-9", "token": "tok"}).encode()
    sdk.files["t1/history.json"] = b"{not json"
    b = bridge(sdk)
    assert b.find_call(SPEC, "t1", 2) == {"callId": "fc-9", "token": "tok"}
    assert b.find_call(SPEC, "t1", 3) is None
    assert b.read_history(SPEC, "t1") is None


def test_credentials_never_print() -> None:
    assert TOKEN_ID not in repr(CREDS) and TOKEN_SECRET not in str(CREDS)
    assert TOKEN_SECRET not in repr(SDKBridge(CREDS, sdk=FakeSDK()))
    assert redact("x ak-abcdefgh1234 y as-zyxwvu98765 z") == "x *** y *** z"


@pytest.fixture
def blackhole_server(monkeypatch: pytest.MonkeyPatch):
    """A loopback port that accepts TCP connections and never answers: what an unreachable or
    stalled Modal API looks like to the SDK. The real SDK is pointed at it (``MODAL_SERVER_URL``),
    so this test never sends traffic beyond this machine."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
        yield sock


def test_the_real_sdk_against_unreachable_servers_times_out(blackhole_server) -> None:
    """Modal's servers are unreachable here: the real SDK, talking to a loopback port that never
    answers, must end in the bridge's deadline, not hang for a minute."""
    started = time.monotonic()
    with pytest.raises(BridgeError) as info:
        SDKBridge(CREDS, timeout=1.0).cancel("fc-doesnotexist")
    assert time.monotonic() - started < 5
    assert info.value.reason in {"ModalTimeout", "ModalUnreachable"}
    assert TOKEN_SECRET not in str(info.value)
