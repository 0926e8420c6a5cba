"""The Modal target: an attempt is one Modal Function call, followed by polling.

Status it keeps (``status.modal``)::

    attempt      the attempt the call belongs to
    callId       Modal's FunctionCall id (``fc-…``), once spawn returned
    launching    {token, since} while a spawn is in flight: written BEFORE spawning
    startedAt    when the call's container started (its start record on the Volume)
    error        {reason, message, retryable}: the spawn failed for certain (no call exists)
    lastError    {reason, message, time}: the last failed poll (Modal unreachable, bad token …)

Never two calls for one attempt, also across operator restarts: the ``launching`` marker (with a
fresh token) is persisted before :meth:`ModalBridge.spawn`, and spawn writes the token to the
training's fence file on the Volume before creating the call. On restart, a marker without a
``callId`` means the operator died (or Modal timed out) between the two writes; then:

1. the call's start record (``<name>/calls/a<attempt>.json``, written by a starting call) carries
   the same token → adopt its call id;
2. no start record after ``NSM_OPERATOR_MODAL_LAUNCH_GRACE_SECONDS`` (default 120 s) (with Modal answering) → the launch is
   treated as lost: the attempt fails with reason ``LaunchInterrupted`` without consuming a retry,
   and the next attempt's spawn rewrites the fence, so a call that was created but had not
   started quits as ``Superseded`` when it does start, instead of training next to its successor.
   While Modal does not answer, nothing is decided.

Outcomes: no result → Pending/Running (Running once the start record exists; progress and
lastCheckpoint are copied from the Volume's ``history.json``); a result → Succeeded with
``status.result``; a failure → Failed or retried per ``spec.retry`` (the bridge spawns with Modal's
retries off, so ``spec.retry`` counts exactly as on Kubernetes); an expired output → Failed,
reason ``OutputExpired``. :meth:`stop` (suspend) and :meth:`delete` cancel the call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nsm.contract import HISTORY_FILE, exit_code_of, iso, result_summary
from nsm.contract import now_utc as _now
from nsm.contract import parse_time as _parse_ts
from nsm.modal.bridge import new_token
from nsm.modal.types import BridgeError, Expired, Failed, ModalBridge, Pending, Succeeded
from nsm.spec import NSMTrainingSpec

from nsm_operator.errors import TransientError
from nsm_operator.lifecycle import Observation, State
from nsm_operator.targets.modal_credentials import BridgeCache, secret_ref
from nsm_operator.targets.modal_status import progress_fields
from nsm_operator.targets.base import TargetContext

log = logging.getLogger(__name__)

LAUNCH_GRACE_SECONDS = 120.0  # the default of OperatorSettings.modal_launch_grace_seconds
CANCEL_RETRY_SECONDS = 2.0  # pause before cancel try n+1 on delete: n times this
# Reasons of a spawn failure after which no call can exist.
_CERTAIN = frozenset({"ModalAuthError", "ModalPermissionDenied", "ModalNotFound", "ModalInvalid",
                      "ModalAppNotDeployed", "ModalNotInstalled", "ModalCredentialsMissing",
                      "ModalBridgeConfig"})  # fmt: skip


class ModalTarget:
    """:class:`~nsm_operator.targets.base.Target` for ``spec.target: modal``."""

    name = "modal"
    polling = True

    def __init__(self, launch_grace_seconds: float = LAUNCH_GRACE_SECONDS):
        self.launch_grace_seconds = launch_grace_seconds
        self._bridges = BridgeCache()

    # --- plumbing ---------------------------------------------------------------------------

    async def bridge(self, ctx: TargetContext) -> ModalBridge:
        namespace, name = secret_ref(ctx.settings, ctx.training.namespace)
        secret = await ctx.kube.get("Secret", namespace, name)
        return self._bridges.get(ctx.settings, secret, namespace, name)

    @staticmethod
    async def _call(fn: Any, *args: Any) -> Any:
        # The bridge is blocking and puts its own deadline on every SDK call.
        return await asyncio.to_thread(fn, *args)

    @staticmethod
    async def _patch(ctx: TargetContext, status: Mapping[str, Any]) -> bool:
        done = await ctx.kube.patch_status(ctx.training.namespace, ctx.training.name, dict(status))
        return done is not None

    async def _report_error(self, ctx: TargetContext, exc: BridgeError) -> None:
        modal = dict(ctx.status.get("modal") or {})
        previous = (modal.get("lastError") or {}).get("previousMessage", ctx.status.get("message"))
        error = {"reason": exc.reason, "message": exc.message, "time": iso(_now()), "previousMessage": previous}
        if (modal.get("lastError") or {}).get("message") == exc.message:
            return
        log.warning("%s/%s: %s", ctx.training.namespace, ctx.training.name, exc)
        await self._patch(ctx, {"message": f"Modal: {exc}", "modal": {"lastError": error}})

    async def _clear_error(self, ctx: TargetContext) -> None:
        last = (ctx.status.get("modal") or {}).get("lastError")
        if last:
            await self._patch(ctx, {"message": last.get("previousMessage"), "modal": {"lastError": None}})

    # --- Target -----------------------------------------------------------------------------

    async def launch(self, ctx: TargetContext, attempt: int) -> dict[str, Any]:
        current = ctx.status.get("modal") or {}
        if current.get("attempt") == attempt and (current.get("callId") or current.get("launching")
                                                  or current.get("error")):
            return {}  # launched (or being recovered, or failed for certain): never spawn twice
        training, spec = ctx.training, ctx.training.spec
        try:
            bridge = await self.bridge(ctx)
        except BridgeError as exc:
            return {"modal": self._failed_launch(attempt, exc)}
        token = new_token()
        marker = {"attempt": attempt, "callId": None, "startedAt": None, "error": None, "lastError": None,
                  "launching": {"token": token, "since": iso(_now())}}  # fmt: skip
        if not await self._patch(ctx, {"modal": marker}):
            return {}  # the training is gone
        try:
            call_id = await self._call(bridge.spawn, spec, training.name, attempt, token)
        except BridgeError as exc:
            if exc.reason in _CERTAIN:
                state = self._failed_launch(attempt, exc)
                await self._patch(ctx, {"modal": state})
                return {"modal": state}
            # Maybe created, maybe not: keep the marker; observe() recovers (see module doc).
            log.warning("%s/%s: spawn of attempt %d uncertain: %s", training.namespace, training.name, attempt, exc)
            last = {"reason": exc.reason, "message": exc.message, "time": iso(_now())}
            return {"modal": {**marker, "lastError": last}}
        state = {**marker, "callId": call_id, "launching": None}
        await self._patch(ctx, {"modal": state})
        log.info("%s/%s: attempt %d is Modal call %s", training.namespace, training.name, attempt, call_id)
        return {"modal": state}

    @staticmethod
    def _failed_launch(attempt: int, exc: BridgeError) -> dict[str, Any]:
        error = {"reason": exc.reason, "message": exc.message, "retryable": exc.retryable}
        return {"attempt": attempt, "callId": None, "launching": None, "error": error}

    async def finish_launch(self, ctx: TargetContext, resumed: bool = False) -> None:
        """Nothing: a Modal call needs nothing made after it started."""

    async def observe(self, ctx: TargetContext) -> Observation:
        attempt = int(ctx.status.get("attempts") or 0)
        modal = ctx.status.get("modal") or {}
        if attempt < 1 or modal.get("attempt") != attempt:
            return Observation(State.absent)
        if modal.get("error"):
            err = modal["error"]
            return Observation(State.failed, reason=err.get("reason"), message=err.get("message"),
                               retryable=bool(err.get("retryable")))  # fmt: skip
        try:
            bridge = await self.bridge(ctx)
            if not modal.get("callId"):
                return await self._recover(ctx, bridge, attempt, modal)
            outcome = await self._call(bridge.poll, modal["callId"])
            started = _parse_ts(modal.get("startedAt"))
            if started is None:
                started = await self._started(ctx, bridge, attempt)
            if isinstance(outcome, (Pending, Succeeded)) and started is not None:
                await self._progress(ctx, bridge)
        except BridgeError as exc:
            await self._report_error(ctx, exc)
            return Observation(State.running if modal.get("startedAt") else State.pending)
        await self._clear_error(ctx)
        if isinstance(outcome, Pending):
            return Observation(State.running, started_at=started) if started else Observation(State.pending)
        if isinstance(outcome, Succeeded):
            await self._patch(ctx, {"result": result_summary(outcome.result)})
            return Observation(State.succeeded, exit_code=0, started_at=started, finished_at=_now())
        if isinstance(outcome, Expired):
            return Observation(State.failed, reason="OutputExpired", message=outcome.message, retryable=False,
                               started_at=started, finished_at=_now())  # fmt: skip
        assert isinstance(outcome, Failed)
        counts = outcome.reason != "Superseded"
        exit_code = exit_code_of(outcome.reason)
        return Observation(State.failed, reason=outcome.reason, message=outcome.message or None,
                           retryable=outcome.retryable or not counts, counts=counts, exit_code=exit_code,
                           started_at=started, finished_at=_now())  # fmt: skip

    async def _started(self, ctx: TargetContext, bridge: ModalBridge, attempt: int) -> datetime | None:
        record = await self._call(bridge.find_call, ctx.training.spec, ctx.training.name, attempt)
        if not record:
            return None
        started = _parse_ts(record.get("startedAt")) or _now()
        await self._patch(ctx, {"modal": {"startedAt": iso(started)}})
        return started

    async def _recover(
        self, ctx: TargetContext, bridge: ModalBridge, attempt: int, modal: Mapping[str, Any]
    ) -> Observation:
        """A launch marker without a call id (see the module doc)."""
        launching = modal.get("launching") or {}
        record = await self._call(bridge.find_call, ctx.training.spec, ctx.training.name, attempt)
        if record and record.get("callId") and record.get("token") == launching.get("token"):
            started = _parse_ts(record.get("startedAt")) or _now()
            await self._patch(ctx, {"modal": {"callId": record["callId"], "launching": None,
                                              "startedAt": iso(started)}})  # fmt: skip
            log.info("%s/%s: adopted Modal call %s of attempt %d", ctx.training.namespace, ctx.training.name,
                     record["callId"], attempt)  # fmt: skip
            return Observation(State.running, started_at=started)
        since = _parse_ts(launching.get("since")) or _now()
        if (_now() - since).total_seconds() < self.launch_grace_seconds:
            return Observation(State.pending)
        return Observation(
            State.failed, reason="LaunchInterrupted", counts=False, retryable=True,
            message=f"the spawn of attempt {attempt} was interrupted and its call never started; "
                    "starting a new attempt (a late call of this one will quit as superseded)",
        )  # fmt: skip

    async def _progress(self, ctx: TargetContext, bridge: ModalBridge) -> None:
        spec: NSMTrainingSpec = ctx.training.spec
        history = await self._call(bridge.read_json, spec, ctx.training.name, HISTORY_FILE)
        fields = progress_fields(history, spec, ctx.training.name, ctx.status.get("progress"))
        if fields:
            await self._patch(ctx, fields)

    async def observe_event(self, ctx: TargetContext, event: Mapping[str, Any]) -> Observation | None:
        return None  # no watch reports on Modal calls: they are polled

    async def stop(self, ctx: TargetContext) -> None:
        """Suspend: cancel the call; the Volume keeps last.pt for the next attempt."""
        await self.cancel(ctx, ctx.status)

    async def delete(self, ctx: TargetContext) -> str | None:
        """The NSMTraining is being deleted: cancel its call (the Volume keeps the files).

        Bounded: ``modal_cancel_attempts`` tries, none once the credentials Secret is gone (a
        namespace being deleted removes it first). Then the deletion goes on and the returned
        message (a Warning event) names the call to cancel by hand."""
        modal = ctx.status.get("modal") or {}
        what = f"Modal call {modal['callId']}" if modal.get("callId") else "the Modal call being launched"
        last: Exception | None = None
        tries = max(1, ctx.settings.modal_cancel_attempts)
        for i in range(tries):
            try:
                await self._cancel(ctx, ctx.status)
                return None
            except (BridgeError, TransientError) as exc:
                last = exc
                log.warning("%s/%s: cancel of %s failed (try %d/%d): %s", ctx.training.namespace,
                            ctx.training.name, what, i + 1, tries, exc)  # fmt: skip
                if getattr(exc, "reason", None) == "ModalCredentialsMissing" or i + 1 == tries:
                    break
                await asyncio.sleep(CANCEL_RETRY_SECONDS * (i + 1))
        hint = (f"nsm modal cancel {modal['callId']}" if modal.get("callId")
                else f"find it among the calls of Modal App {ctx.training.spec.modal.app}")
        return f"could not cancel {what} ({last}); deleting anyway: cancel it by hand ({hint})"

    def finished_fields(self, ctx: TargetContext) -> dict[str, Any]:
        """The attempt's call has ended: forget its id (no cancel on delete, no finalizer needed)."""
        modal = ctx.status.get("modal") or {}
        if not modal.get("callId") and not modal.get("launching"):
            return {}
        return {"modal": {"callId": None, "launching": None, "lastCallId": modal.get("callId")}}

    async def cancel(self, ctx: TargetContext, status: Mapping[str, Any]) -> bool:
        """Cancel the current call (suspend); a failure is transient (kopf retries the handler)."""
        modal = status.get("modal") or {}
        try:
            return await self._cancel(ctx, status)
        except BridgeError as exc:
            raise TransientError(f"cancel of Modal call {modal.get('callId') or '(launching)'}: {exc}",
                                 delay=10.0) from None

    async def _cancel(self, ctx: TargetContext, status: Mapping[str, Any]) -> bool:
        """Cancel the current call; with only a launch marker, find the call or fence it out."""
        modal = status.get("modal") or {}
        call_id, launching = modal.get("callId"), modal.get("launching")
        if not call_id and not launching:
            return False
        spec, name = ctx.training.spec, ctx.training.name
        bridge = await self.bridge(ctx)
        if not call_id:
            record = await self._call(bridge.find_call, spec, name, int(modal.get("attempt") or 0))
            if record and record.get("token") == launching.get("token"):
                call_id = record.get("callId")
            if not call_id:
                await self._call(bridge.retire, spec, name)  # a call that starts later quits
                return False
        await self._call(bridge.cancel, call_id)
        log.info("%s/%s: cancelled Modal call %s", ctx.training.namespace, ctx.training.name, call_id)
        return True
