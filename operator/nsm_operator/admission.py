"""Request admission by priority: a bounded number of requests in flight, the waiting ones let
in most urgent first.

The operator's client sends every request through one :class:`Admission` as wide as its
connection pool, so aiohttp never queues a request itself (its queue is first come, first
served). Under a burst of new trainings the API server is the bottleneck, and what a user waits
for is each training's Job: the launch's ServiceAccount and Job are ``URGENT`` and pass the
status writes, reads and Events (``NORMAL``) that queued before them, which in turn pass the
children a pod needs only later (``LATER``, ``Kube.low_priority``). The priority of a request is
the one in force where it is made (a context variable), so the code between the launch and the
HTTP call need not pass it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

URGENT, NORMAL, LATER = 0, 1, 2

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
    """At most ``size`` holders at once; waiters are admitted by priority (lower first), then in
    the order they came. A waiter cancelled while it waits takes no slot with it."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an admission needs at least one slot, not {size}")
        self.size = size
        self._free = size
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def in_flight(self) -> int:
        return self.size - self._free

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, level: int | None = None) -> AsyncIterator[None]:
        """Hold one slot for the block; ``level``: the priority (default: the one in force)."""
        await self._acquire(current_priority() if level is None else level)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, level: int) -> None:
        if self._free > 0:  # only live waiters are queued, and they are admitted on release
            self._free -= 1
            return
        entry = (level, next(self._order), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self._release()  # admitted as it was cancelled: the slot goes to the next one
            elif entry in self._waiting:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def _release(self) -> None:
        while self._waiting:
            waiter = heapq.heappop(self._waiting)[2]
            if not waiter.done():  # (a cancelled one not yet out of the queue is skipped)
                waiter.set_result(None)  # the slot passes on directly
                return
        self._free += 1
