"""The one place where the operator's errors become kopf's (STYLE 5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import kopf

from nsm_operator.errors import InvalidSpec, Rejected, TargetUnavailable, TransientError
from nsm_operator.handlers.context import OperatorContext

log = logging.getLogger(__name__)


async def guarded(ctx: OperatorContext, handler: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` for a change-handler: invalid spec or a rejected child -> PermanentError
    (the training is already marked Failed), transient -> TemporaryError."""
    try:
        await work()
    except (InvalidSpec, TargetUnavailable, Rejected) as exc:
        raise kopf.PermanentError(str(exc)) from None
    except TransientError as exc:
        ctx.metrics.reconcile_errors_total.labels(handler).inc()
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None


async def in_background(
    ctx: OperatorContext, handler: str, work: Callable[[], Awaitable[None]], attempts: int = 8
) -> None:
    """Run ``work`` for an event handler (kopf never retries those): transient errors are
    retried here with their delay; a restart re-reconciles everything through on.resume."""
    for i in range(attempts):
        try:
            await work()
            return
        except (InvalidSpec, TargetUnavailable, Rejected) as exc:
            log.warning("%s: %s", handler, exc)
            return
        except TransientError as exc:
            ctx.metrics.reconcile_errors_total.labels(handler).inc()
            log.warning("%s: %s (try %d/%d, again in %.1fs)", handler, exc, i + 1, attempts, exc.delay)
            await asyncio.sleep(exc.delay * (i + 1))
    log.error("%s: giving up after %d tries; the resync timer will pick it up", handler, attempts)
