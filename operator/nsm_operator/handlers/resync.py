"""The periodic resync: nothing stays non-terminal forever.

Events drive the operator, and event handlers give up after ``settings.event_retries`` tries; a
Job that ended while the API server refused our status writes, a retry timer or a Modal poll lost
with its task would leave a training Pending/Running/Retrying until the next restart. Every
``settings.resync_seconds`` each non-terminal training the watch has delivered is reconciled from
a fresh read (training and attempt), one at a time, spread over the interval so that a thousand
trainings cost a steady trickle of GETs rather than a burst.
"""

from __future__ import annotations

import asyncio
import logging

from nsm_operator.handlers.boundary import in_background
from nsm_operator.handlers.context import OperatorContext
from nsm_operator.handlers.reconcile import reconcile
from nsm_operator.lifecycle import TERMINAL

log = logging.getLogger(__name__)


def due(ctx: OperatorContext) -> list[tuple[str, str]]:
    """The trainings a resync looks at: seen by the watch (or our patches), not terminal."""
    return [key for key, phase in list(ctx.phases.items()) if phase not in TERMINAL]


async def resync_once(ctx: OperatorContext, spread_seconds: float = 0.0) -> int:
    """Reconcile every due training anew; returns how many."""
    keys = due(ctx)
    pause = spread_seconds / len(keys) if keys and spread_seconds else 0.0
    for namespace, name in keys:
        # One try each: a failure waits for the next round rather than blocking this one.
        await in_background(ctx, "resync", lambda: reconcile(ctx, namespace, name, reread=True), attempts=1)
        if pause:
            await asyncio.sleep(pause)
    return len(keys)


async def resync_forever(ctx: OperatorContext) -> None:
    """Every ``settings.resync_seconds`` (0: never), a resync spread over half the interval."""
    interval = ctx.settings.resync_seconds
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            count = await resync_once(ctx, spread_seconds=interval / 2)
            log.debug("resync: %d trainings observed", count)
        except Exception:  # noqa: BLE001 - the loop must outlive any one bad round
            log.exception("resync failed; next round in %ss", interval)
