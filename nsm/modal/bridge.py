"""The Modal bridge: the only door between the operator (or the CLI) and Modal's SDK.

Interface (:class:`ModalBridge`), small on purpose::

    deploy(spec)                                  -> app name
    spawn(spec, name, attempt, token)             -> call id
    poll(call_id)                                 -> Pending | Succeeded | Failed | Expired
    cancel(call_id)
    read_json(spec, name, filename)               -> parsed file from the Volume, or None
    find_call(spec, name, attempt)                -> the call's start record, or None
    retire(spec, name)                            -> rewrite the fence: no pending call may start

Every method is synchronous and runs Modal's async SDK interface under its own deadline
(``asyncio.timeout``, which cancels the call): with Modal's servers unreachable an SDK call
otherwise hangs for about a minute. Errors
that are not an outcome of the call (timeout, bad credentials, app not deployed …) raise
:class:`BridgeError`, whose ``reason`` / ``message`` go into the NSMTraining's status; messages
are redacted so that a token never reaches a log, an event or the status.

:class:`SDKBridge` is the real implementation; tests and the operator's e2e tier substitute a
fake (``tests/fakes/modal_bridge.py``) through ``NSM_OPERATOR_MODAL_BRIDGE=module:factory``.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nsm.contract import FENCE_FILE, HISTORY_FILE, RESULTS_FILE, call_record
from nsm.modal.mapping import modal_options
from nsm.modal.sdk import ModalSDK
from nsm.modal.types import (
    BridgeError, Credentials, Expired, Failed, ModalBridge, Outcome, Pending, Succeeded,
)  # fmt: skip
from nsm.spec import NSMTrainingSpec

__all__ = ["BridgeError", "Credentials", "Expired", "Failed", "ModalBridge", "Outcome", "Pending", "SDKBridge",
           "Succeeded", "classify", "new_token"]  # fmt: skip

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 30.0
DEPLOY_TIMEOUT_SECONDS = 1800.0  # image builds are slow the first time
_TOKEN_PATTERN = re.compile(r"\b(?:ak|as|wk|ws)-[A-Za-z0-9]{6,}\b")
REDACTED = "***"


def new_token() -> str:
    """A launch token for :meth:`ModalBridge.spawn` (the fence; see ``nsm.modal.runner``)."""
    return uuid.uuid4().hex


# --- helpers --------------------------------------------------------------------------------------


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every secret and anything shaped like a Modal token replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _TOKEN_PATTERN.sub(REDACTED, text)


def run_with_deadline(make: Callable[[], Awaitable[T]], timeout: float | None, what: str) -> T:
    """Run the coroutine ``make()`` on a fresh event loop, cancelled after ``timeout`` s (None: never).

    On timeout the coroutine gets :class:`asyncio.CancelledError` at its ``await`` (Modal's ``.aio``
    calls stop there) and :class:`BridgeError` ``ModalTimeout`` is raised; nothing keeps running
    after the call returns. A fresh loop per call lets the operator call the bridge from its worker
    threads (``asyncio.to_thread``) and the CLI from plain code.
    """

    async def bounded() -> T:
        try:
            async with asyncio.timeout(timeout) as scope:
                return await make()
        except TimeoutError:
            if scope.expired():  # our deadline, not a TimeoutError raised by the call itself
                raise BridgeError(
                    "ModalTimeout",
                    f"Modal did not answer {what} within {timeout:g} s (are Modal's servers reachable?)",
                ) from None
            raise

    return asyncio.run(bounded())


def _modal_exceptions() -> Any:
    try:
        import modal.exception as mexc
    except ImportError:
        return None
    return mexc


def classify(exc: BaseException, what: str, secrets: tuple[str, ...] = ()) -> BridgeError:
    """An SDK exception as a :class:`BridgeError` with a clear, redacted message."""
    if isinstance(exc, BridgeError):
        return BridgeError(exc.reason, redact(exc.message, secrets), retryable=exc.retryable)
    detail = redact(str(exc) or type(exc).__name__, secrets)
    mexc = _modal_exceptions()
    if mexc is not None:
        if isinstance(exc, mexc.AuthError):
            return BridgeError("ModalAuthError", f"Modal rejected the credentials during {what} "
                               f"(check MODAL_TOKEN_ID / MODAL_TOKEN_SECRET): {detail}", retryable=False)
        if isinstance(exc, mexc.PermissionDeniedError):
            return BridgeError("ModalPermissionDenied", f"{what}: the Modal token may not do this: {detail}",
                               retryable=False)
        if isinstance(exc, mexc.NotFoundError):
            return BridgeError("ModalNotFound", f"{what}: {detail}", retryable=False)
        if isinstance(exc, mexc.InvalidError):
            return BridgeError("ModalInvalid", f"{what}: {detail}", retryable=False)
        if isinstance(exc, (mexc.ConnectionError, mexc.TimeoutError)):
            return BridgeError("ModalUnreachable", f"{what}: {detail}")
    if isinstance(exc, (ConnectionError, OSError, TimeoutError)):
        return BridgeError("ModalUnreachable", f"{what}: {detail}")
    return BridgeError("ModalError", f"{what}: {type(exc).__name__}: {detail}")


def outcome_of(value: Any) -> Outcome:
    """The Function's return value (see ``nsm.modal.runner``) as an outcome."""
    if isinstance(value, dict) and value.get("ok") is True:
        return Succeeded(result=value.get("result") or {})
    if isinstance(value, dict) and value.get("ok") is False:
        return Failed(reason=str(value.get("reason") or "TrainerFailed"),
                      message=str(value.get("message") or ""), retryable=bool(value.get("retryable")))
    return Failed("UnexpectedResult", f"the Modal Function returned {type(value).__name__}", retryable=False)


def outcome_of_error(exc: BaseException, secrets: tuple[str, ...] = ()) -> Outcome | None:
    """What ``FunctionCall.get(timeout=0)`` raising ``exc`` says about the call; None: not an outcome."""
    mexc = _modal_exceptions()
    detail = redact(str(exc) or type(exc).__name__, secrets)
    if mexc is not None:
        if isinstance(exc, mexc.OutputExpiredError):  # before TimeoutError: it is a subclass
            return Expired()
        if isinstance(exc, mexc.FunctionTimeoutError):
            return Failed("AttemptTimeout", f"the attempt ran past spec.timeoutSeconds: {detail}", retryable=True)
        if isinstance(exc, mexc.TimeoutError):
            return Pending()
        if isinstance(exc, mexc.InputCancellation):
            return Failed("Cancelled", "the call was cancelled", retryable=False)
        if isinstance(exc, (mexc.AuthError, mexc.PermissionDeniedError, mexc.ConnectionError, mexc.InvalidError)):
            return None
        if isinstance(exc, mexc.NotFoundError):
            return Failed("CallNotFound", f"Modal does not know the call: {detail}", retryable=True)
        if isinstance(exc, (mexc.RemoteError, mexc.ExecutionError, mexc.InternalFailure)):
            return Failed("RemoteError", detail, retryable=True)
    if isinstance(exc, (ConnectionError, OSError)):
        return None  # the network between us and Modal, not the call (the Function never raises these)
    # Any other exception is the Function's own (e.g. RetryableTrainerError), re-raised locally.
    return Failed("RemoteError", f"{type(exc).__name__}: {detail}", retryable=True)


def base_spec(spec: NSMTrainingSpec) -> NSMTrainingSpec:
    """``spec`` without a GPU: what an automatic deploy uses, because ``Function.with_options``
    can add a GPU to a deployed Function per call but never remove one."""
    gpu = spec.resources.gpu.model_copy(update={"count": 0})
    return spec.model_copy(update={"resources": spec.resources.model_copy(update={"gpu": gpu})})


# --- the real bridge ------------------------------------------------------------------------------


class SDKBridge:
    """:class:`ModalBridge` on top of Modal's SDK (``sdk``: :class:`nsm.modal.sdk.ModalSDK`).

    ``modal_retries=False`` (the operator) spawns calls with Modal's retries off because the
    operator retries per ``spec.retry`` itself; the CLI keeps them (see ``docs/modal.md``).
    ``auto_deploy`` deploys the App from the spec when ``spawn`` finds it missing.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        deploy_timeout: float = DEPLOY_TIMEOUT_SECONDS,
        modal_retries: bool = False,
        auto_deploy: bool = True,
        sdk: Any = None,
    ):
        self.sdk = ModalSDK(credentials) if sdk is None else sdk
        self.timeout = timeout
        self.deploy_timeout = deploy_timeout
        self.modal_retries = modal_retries
        self.auto_deploy = auto_deploy
        self._secrets = (credentials.token_id, credentials.token_secret) if credentials else ()

    def __repr__(self) -> str:
        return f"SDKBridge(timeout={self.timeout:g}, modal_retries={self.modal_retries})"

    def _run(self, make: Callable[[], Awaitable[T]], what: str, timeout: float | None = None, *,
             bounded: bool = True) -> T:
        """``make()`` under ``timeout`` (default: the bridge's; ``bounded=False``: none), errors classified."""
        limit = (self.timeout if timeout is None else timeout) if bounded else None
        try:
            return run_with_deadline(make, limit, what)
        except BaseException as exc:  # noqa: BLE001 - every SDK error leaves as a redacted BridgeError
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise classify(exc, what, self._secrets) from None

    def deploy(self, spec: NSMTrainingSpec) -> str:
        return self._run(lambda: self.sdk.deploy(spec), f"deploy of app {spec.modal.app!r}", self.deploy_timeout)

    def _fence(self, spec: NSMTrainingSpec, name: str, attempt: int | None, token: str) -> None:
        fence = json.dumps({"attempt": attempt, "token": token}).encode()
        self._run(lambda: self.sdk.write_file(spec, f"{name}/{FENCE_FILE}", fence), "writing the launch fence")

    def retire(self, spec: NSMTrainingSpec, name: str) -> None:
        """A call spawned for ``name`` that has not started yet will quit (``Superseded``)."""
        self._fence(spec, name, None, f"retired-{new_token()}")

    def spawn(self, spec: NSMTrainingSpec, name: str, attempt: int, token: str) -> str:
        self._fence(spec, name, attempt, token)
        training = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining",
                    "metadata": {"name": name}, "spec": spec.to_wire()}
        args = (training, name, attempt, token)
        what = f"spawn of {spec.modal.app}.train"
        options = modal_options(spec)  # once per spawn, also when the App must be deployed first

        def spawn() -> Awaitable[str]:
            return self.sdk.spawn(spec, options, args, retries=self.modal_retries)  # type: ignore[no-any-return]

        try:
            return self._run(spawn, what)
        except BridgeError as exc:
            if exc.reason != "ModalNotFound" or not self.auto_deploy:
                if exc.reason == "ModalNotFound":
                    # Retryable: the next attempt succeeds once someone has deployed the App.
                    raise BridgeError("ModalAppNotDeployed", f"{exc.message}; deploy it with "
                                      "`nsm modal deploy`", retryable=True) from None
                raise
        self.deploy(base_spec(spec))
        return self._run(spawn, what)

    def poll(self, call_id: str) -> Outcome:
        what = f"poll of call {call_id}"
        try:
            value = run_with_deadline(lambda: self.sdk.get(call_id), self.timeout, what)
        except BridgeError as exc:
            raise classify(exc, what, self._secrets) from None
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            outcome = outcome_of_error(exc, self._secrets)
            if outcome is None:
                raise classify(exc, what, self._secrets) from None
            return outcome
        return outcome_of(value)

    def cancel(self, call_id: str) -> None:
        self._run(lambda: self.sdk.cancel(call_id), f"cancel of call {call_id}")

    def log_tail(self, call_id: str, entries: int = 100) -> list[str]:
        """The call's last ``entries`` log messages, redacted."""

        async def tail() -> list[str]:
            return [redact(m, self._secrets) async for m in self.sdk.log_tail(call_id, entries)]

        return self._run(tail, f"reading the logs of call {call_id}")

    def stream_logs(self, call_id: str, emit: Callable[[str], None], idle_timeout: float | None = None) -> None:
        """Pass each new log message of the call (redacted) to ``emit`` until the call ends.

        No overall deadline (a training runs for hours); ``idle_timeout`` bounds the wait for the
        next message. Ctrl-C cancels the stream (``asyncio.run`` cancels its task) and propagates.
        """
        what = f"streaming the logs of call {call_id}"

        async def stream() -> None:
            messages = aiter(self.sdk.log_stream(call_id))
            while True:
                try:
                    if idle_timeout is None:
                        message = await anext(messages)
                    else:
                        async with asyncio.timeout(idle_timeout):
                            message = await anext(messages)
                except StopAsyncIteration:
                    return
                emit(redact(message, self._secrets))

        self._run(stream, what, bounded=False)

    def read_file(self, spec: NSMTrainingSpec, path: str) -> bytes | None:
        return self._run(lambda: self.sdk.read_file(spec, path), f"reading {path} from volume {spec.modal.volume!r}")

    def read_json(self, spec: NSMTrainingSpec, name: str, filename: str) -> Any:
        data = self.read_file(spec, f"{name}/{filename}")
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None  # a file caught mid-write by an older trainer; the next poll reads it

    def find_call(self, spec: NSMTrainingSpec, name: str, attempt: int) -> dict[str, Any] | None:
        return self.read_json(spec, name, call_record(attempt))

    def read_results(self, spec: NSMTrainingSpec, name: str) -> Any:
        return self.read_json(spec, name, RESULTS_FILE)

    def read_history(self, spec: NSMTrainingSpec, name: str) -> Any:
        return self.read_json(spec, name, HISTORY_FILE)
