"""Kubernetes Events of the operator, posted through its own client (one connection pool).

Handlers call :meth:`EventRecorder.record` without awaiting: it keeps a compact object reference
(never the body), and a few workers post in the background. A repeat of the same event on the same
object within :data:`DEDUPE_WINDOW` raises the first Event's ``count`` and ``lastTimestamp``
instead of posting another (client-go's correlator does the same), and repeats that arrive while
one is still queued are folded into one PATCH. Events are best effort: the queue is bounded (the
oldest is dropped and counted), a rejection (4xx) is logged and dropped, a server or transport
error is retried a few times, and nothing here ever fails a reconcile.

The posters are their own concurrency cap (``workers``), not ``Kube.low_priority()``: behind the
children's 8 slots a 1000-training burst's Events were posted up to 166 s (median 62 s) after they
were recorded, against at most 2 s with 8 workers of their own; p50/p99 of apply→Job showed no
cost of the latter within the noise of a shared machine (bench/operator_latency.py, issue 18).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from nsm.contract import iso

from nsm_operator.errors import Rejected, TransientError
from nsm_operator.kube import Kube
from nsm_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

COMPONENT = "nsm-operator"
MAX_MESSAGE_LENGTH = 1024  # the API server rejects longer Event messages
QUEUE_LIMIT = 10_000
DEDUPE_LIMIT = 4096
DEDUPE_WINDOW = 600.0  # seconds: a repeat later than this posts a new Event
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # a server or transport error: retried this often, then dropped
_REF_FIELDS = ("apiVersion", "kind", "name", "namespace", "uid", "resourceVersion")


@dataclass(eq=False)
class _Event:
    """One Event as posted (and its later repeats): the only state kept per recorded event."""

    ref: dict[str, str]
    type: str
    reason: str
    message: str
    first: float
    last: float
    count: int = 1  # occurrences recorded
    sent: int = 0  # occurrences the API server has
    name: str | None = None  # the Event's name once created
    queued: bool = False
    inflight: bool = False  # a worker is sending it: repeats wait for its name, then PATCH


def reference(body: Mapping[str, Any]) -> dict[str, str]:
    """The involvedObject of an Event about ``body``: a few strings, so the body is not kept."""
    meta = body.get("metadata") or {}
    values = (body.get("apiVersion"), body.get("kind"), *(meta.get(k) for k in _REF_FIELDS[2:]))
    return {k: str(v) for k, v in zip(_REF_FIELDS, values) if v}


def truncate(message: str) -> str:
    """``message`` within the API's limit: its head and tail around ``...``."""
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    half = (MAX_MESSAGE_LENGTH - 3) // 2
    return f"{message[:half]}...{message[len(message) - (MAX_MESSAGE_LENGTH - 3 - half):]}"


def _micro(t: float) -> str:
    """``eventTime`` is a MicroTime (RFC 3339 with microseconds); the other stamps are ``iso``'s."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventRecorder:
    """Bounded queue of Events and the workers that post them (``start``/``stop`` on the loop)."""

    def __init__(self, kube: Kube, metrics: OperatorMetrics, workers: int = 8, *, instance: str = "",
                 queue_limit: int = QUEUE_LIMIT, dedupe_limit: int = DEDUPE_LIMIT) -> None:  # fmt: skip
        self.kube, self.metrics, self.workers = kube, metrics, max(1, workers)
        self.instance = instance or COMPONENT
        self.queue_limit, self.dedupe_limit = queue_limit, dedupe_limit
        self._queue: deque[_Event] = deque()
        self._recent: OrderedDict[tuple[str, ...], _Event] = OrderedDict()  # dedupe key -> event, LRU
        self._wake: asyncio.Event | None = None  # created in start() (needs a loop)
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0

    def record(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event about ``body`` (never blocks, never raises on a full queue)."""
        ref = reference(body)
        message = truncate(message)
        now = time.time()
        key = (ref.get("uid") or f"{ref.get('namespace')}/{ref.get('name')}", type_, reason, message)
        event = self._recent.get(key)
        if event is not None and now - event.last <= DEDUPE_WINDOW:
            event.count += 1
            event.last = now
            self._recent.move_to_end(key)
            self.metrics.events_total.labels("deduplicated").inc()
        else:
            event = _Event(ref, type_, reason, message, now, now)
            self._recent[key] = event
            while len(self._recent) > self.dedupe_limit:
                self._recent.popitem(last=False)
        self._enqueue(event)

    def _enqueue(self, event: _Event) -> None:
        if event.queued or event.inflight:
            return  # already waiting or being sent: the newest count goes out after it
        if len(self._queue) >= self.queue_limit:
            dropped = self._queue.popleft()
            dropped.queued = False
            self._drop(dropped, "dropped_overflow")
        event.queued = True
        self._queue.append(event)
        self.metrics.event_queue_depth.set(len(self._queue))
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        if self._queue:
            self._wake.set()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self.workers)]

    async def flush(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until nothing is queued or being sent."""
        deadline = time.monotonic() + timeout
        while (self._queue or self._busy) and self._tasks:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return not (self._queue or self._busy)

    async def stop(self, flush_seconds: float = 2.0) -> None:
        """Post what is queued for at most ``flush_seconds``, then stop the workers."""
        await self.flush(flush_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _worker(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._queue.popleft()
            event.queued = False
            self.metrics.event_queue_depth.set(len(self._queue))
            self._busy += 1
            event.inflight = True
            try:
                await self._send(event)
            except Exception:  # best effort: a bug here must not stop the poster
                log.exception("posting event %s for %s failed", event.reason, event.ref.get("name"))
                self._drop(event, "dropped_error")
            finally:
                self._busy -= 1
                event.inflight = False
            if event.count > event.sent:
                self._enqueue(event)  # repeats recorded while it was being sent

    def _drop(self, event: _Event, outcome: str) -> None:
        event.sent = event.count  # these occurrences are given up, not retried later
        self.metrics.events_total.labels(outcome).inc()

    async def _send(self, event: _Event) -> None:
        """POST (first occurrence) or PATCH count (repeats), retrying server/transport errors."""
        for delay in (*RETRY_DELAYS, None):
            count, last, patch = event.count, event.last, event.name is not None
            try:
                done = await (self._patch(event, count, last) if patch else self._post(event, count, last))
            except Rejected as exc:  # a 4xx that no retry changes: logged, never retried
                log.warning("event %s on %s/%s rejected: %s", event.reason, event.ref.get("namespace"),
                            event.ref.get("name"), exc)  # fmt: skip
                self._drop(event, "dropped_rejected")
                return
            except TransientError as exc:
                error = exc
            else:
                if done:
                    event.sent = max(event.sent, count)
                    self.metrics.events_total.labels("patched" if patch else "posted").inc()
                    return
                # PATCH 404: the Event expired (the API server's TTL), so it is posted anew;
                # POST 409: its name was taken (two in one nanosecond), so a new name.
                event.name = None
                continue
            if delay is None:
                log.warning("event %s on %s/%s dropped after retries: %s", event.reason,
                            event.ref.get("namespace"), event.ref.get("name"), error)  # fmt: skip
                self._drop(event, "dropped_error")
                return
            await asyncio.sleep(delay)
        self._drop(event, "dropped_error")  # 404/409 on every try

    def _manifest(self, event: _Event, count: int, last: float) -> dict[str, Any]:
        namespace = event.ref.get("namespace") or "default"
        # client-go's naming, <object>.<unix nanoseconds in hex>: unique without a generateName
        # round trip, and the name a repeat's PATCH needs is known before the POST returns.
        name = f"{event.ref.get('name', 'event')[:230]}.{time.time_ns():x}"
        return {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"namespace": namespace, "name": name},
            "involvedObject": {**event.ref, "namespace": namespace},
            "type": event.type, "reason": event.reason, "message": event.message, "action": event.reason,
            "source": {"component": COMPONENT},  # kubectl describe's "From" column
            "reportingComponent": COMPONENT, "reportingInstance": self.instance,
            "firstTimestamp": iso(event.first), "lastTimestamp": iso(last),
            "eventTime": _micro(event.first), "count": count,
        }  # fmt: skip

    async def _post(self, event: _Event, count: int, last: float) -> bool:
        """Create the Event; False if its name is taken (409)."""
        manifest = self._manifest(event, count, last)
        if await self.kube.create_object(manifest, decode=False) is None:  # the response is not read
            return False
        event.name = manifest["metadata"]["name"]
        return True

    async def _patch(self, event: _Event, count: int, last: float) -> bool:
        """Raise the Event's count; False if it is gone (404)."""
        patch = {"count": count, "lastTimestamp": iso(last)}
        namespace = event.ref.get("namespace") or "default"
        return await self.kube.patch("Event", namespace, event.name or "", patch) is not None

    @property
    def depth(self) -> int:
        return len(self._queue)
