"""Request admission by priority: a bounded number of requests in flight, the waiting ones let
in most urgent first, and the non-urgent ones held to a share of the slots.

The operator's client sends every request through one :class:`Admission` as wide as its
connection pool, so aiohttp never queues a request itself (its queue is first come, first
served). Under a burst of new trainings the API server is the bottleneck, and what a user waits
for is each training's Job: the launch's ServiceAccount and Job are ``URGENT``; everything else
(status writes, reads, Events: ``NORMAL``; the children a pod needs only later: ``LATER``,
``Kube.low_priority``) waits behind them and, all together, holds at most ``shared`` slots, so
that the API server's time goes to the Jobs first however many follow-ups are ready. The
priority of a request is the one in force where it is made (a context variable), so the code
between the launch and the HTTP call need not pass it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

URGENT, NORMAL, LATER = 0, 1, 2
LEVELS = {URGENT: "urgent", NORMAL: "normal", LATER: "later"}  # as the metrics label them

_PRIORITY: ContextVar[int] = ContextVar("nsm_operator_request_priority", default=NORMAL)


@contextlib.contextmanager
def priority(level: int) -> Iterator[None]:
    """Requests made inside (tasks started inside included) wait at ``level``."""
    token = _PRIORITY.set(level)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> int:
    return _PRIORITY.get()


class Admission:
    """At most ``size`` holders at once, of them at most ``shared`` below ``URGENT``; waiters
    are admitted by priority (lower first), then in the order they came. A waiter cancelled while
    it waits takes no slot with it."""

    def __init__(self, size: int, shared: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"an admission needs at least one slot, not {size}")
        self.size = size
        self.shared = size if shared is None else max(1, min(shared, size))
        self._free = size
        self._shared_used = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def in_flight(self) -> int:
        return self.size - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for entry in self._waiting if not entry[2].done())

    def snapshot(self) -> tuple[dict[str, int], int]:
        """Requests waiting per priority (by name, every level present) and requests in flight:
        read when metrics are scraped (``OperatorMetrics.admission``), never per request."""
        waiting = dict.fromkeys(LEVELS.values(), 0)
        for level, _, waiter in self._waiting:
            if not waiter.done():
                name = LEVELS.get(level, str(level))
                waiting[name] = waiting.get(name, 0) + 1
        return waiting, self.in_flight

    @contextlib.asynccontextmanager
    async def slot(self, level: int | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block; ``level``: the priority (default: the one in force)."""
        level = current_priority() if level is None else level
        await self._acquire(level)
        try:
            yield
        finally:
            self._release(level)

    async def _acquire(self, level: int) -> None:
        entry = (level, next(self._order), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        self._admit()
        if entry[2].done():
            return
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self._release(level)  # admitted as it was cancelled: the slot goes to the next one
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._admit()  # it may have held back the ones behind it
            raise

    def _release(self, level: int) -> None:
        self._free += 1
        if level != URGENT:
            self._shared_used -= 1
        self._admit()

    def _admit(self) -> None:
        """Let in waiters from the front while there is room for the one at the front."""
        while self._waiting and self._free > 0:
            level, _, waiter = self._waiting[0]
            if waiter.done():  # cancelled, not yet out of the queue
                heapq.heappop(self._waiting)
                continue
            if level != URGENT and self._shared_used >= self.shared:
                return  # only an urgent one may pass now, and it would be at the front
            heapq.heappop(self._waiting)
            self._free -= 1
            if level != URGENT:
                self._shared_used += 1
            waiter.set_result(None)
