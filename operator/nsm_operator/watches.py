"""Lightweight watches outside kopf: the operator's own children (attempt Jobs, trainer pods,
progress ConfigMaps) and the trainings' every event (metrics and the body cache; kopf keeps the
trainings' change handlers).

kopf runs every event through a per-object worker, queue, logger, diff base and body views (≈ 0.6
ms before a handler runs: py-spy under bench/operator_latency.py); these handlers are
plain level-triggered functions that need none of it. So here: LIST, then WATCH from the list's
resourceVersion (bookmarks on), re-watch from the last resourceVersion when the server ends the
stream, relist on 410 Gone, back off on connection errors and 5xx, and retry slowly (never in a
loop) on 401/403 and other 4xx. A relist delivers the objects that vanished meanwhile as DELETED.

Events are dispatched per object (uid), latest wins: at most one handler call runs per object,
and at most one newer event waits behind it, replacing any older one (a DELETED is never
replaced). The handlers re-read what they need, so skipping intermediate states is correct, and
a burst holds at most one pending body per object.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nsm_operator.errors import TransientError
from nsm_operator.kube import ApiError, Kube, without_managed_fields
from nsm_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)

Handler = Callable[[Mapping[str, Any], Mapping[str, Any]], Awaitable[None]]  # (event, body)
Spawn = Callable[[Coroutine[Any, Any, Any]], None]
View = Callable[[Mapping[str, Any]], Mapping[str, Any]]  # the part of an object a handler reads

PAGE = "500"
FORBIDDEN_DELAY = 30.0  # 401/403 and other 4xx: an RBAC or selector fix takes minutes, not ms


class Gone(Exception):
    """The resourceVersion is too old (410): relist."""


@dataclass(frozen=True)
class ChildWatch:
    """What to watch: ``kind`` objects matching ``selector`` (``key=value`` or ``key`` terms)."""

    kind: str
    selector: str
    handler: Handler
    keep: View | None = None


def child_watch(kind: str, selector: str, handler: Handler, keep: View | None = None) -> ChildWatch:
    """A watch declaration (tests/unit/operator/test_rbac_calls.py finds these call sites: each
    needs list and watch on ``kind``). ``keep``: the part of each object the handler reads, cut
    before the event is queued, so a burst holds no more than that per object (default: the
    object without ``managedFields``)."""
    return ChildWatch(kind, selector, handler, keep)


def scopes(namespaces: Iterable[str]) -> list[str | None]:
    """One watch per plain namespace; one cluster-wide watch (None) for all namespaces or globs."""
    names = list(namespaces)
    if not names or any(_is_pattern(n) for n in names):
        return [None]
    return names


def _is_pattern(name: str) -> bool:
    return name.startswith("!") or any(c in name for c in "*?[")


def namespace_matches(namespace: str | None, patterns: Iterable[str]) -> bool:
    """kopf's namespace patterns: globs, ``!glob`` excludes; no positive pattern = all."""
    pats = list(patterns)
    positive = [p for p in pats if not p.startswith("!")]
    if namespace is None:
        return False
    if positive and not any(fnmatch.fnmatchcase(namespace, p) for p in positive):
        return False
    return not any(fnmatch.fnmatchcase(namespace, p[1:]) for p in pats if p.startswith("!"))


def selector_matches(selector: str, labels: Mapping[str, str] | None) -> bool:
    """The label selector, checked client-side too (a real API server has filtered already)."""
    labels = labels or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, eq, value = term.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def backoff_delay(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds before retry number ``failures`` (1, 2, …): doubling from ``base``, capped."""
    return min(cap, base * 2 ** max(0, failures - 1))


@dataclass
class Dispatcher:
    """Latest-wins, one-in-flight-per-object delivery of events to ``handler``."""

    handler: Handler
    spawn: Spawn
    on_error: Callable[[BaseException], None] = lambda exc: None
    _pending: dict[str, tuple[str | None, Mapping[str, Any]]] = field(default_factory=dict)
    _running: set[str] = field(default_factory=set)

    def submit(self, key: str, kind: str | None, body: Mapping[str, Any]) -> None:
        if key not in self._running:
            self._running.add(key)
            self.spawn(self._drive(key, kind, body))
            return
        held = self._pending.get(key)
        if held is not None and held[0] == "DELETED":
            return  # nothing supersedes a deletion
        self._pending[key] = (kind, body)

    def pending(self) -> int:
        return len(self._pending)

    async def _drive(self, key: str, kind: str | None, body: Mapping[str, Any]) -> None:
        try:
            while True:
                try:
                    await self.handler({"type": kind, "object": body}, body)
                except Exception as exc:  # noqa: BLE001 - one object's failure never stops the others
                    log.exception("handler of %s failed", key)
                    self.on_error(exc)
                nxt = self._pending.pop(key, None)
                if nxt is None:
                    return
                kind, body = nxt
        finally:
            self._running.discard(key)


def _slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a DELETED from a relist carries: identity and labels (the handlers need no more)."""
    meta = body.get("metadata") or {}
    keep = ("name", "namespace", "uid", "labels", "resourceVersion")
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": {k: meta[k] for k in keep if k in meta}}  # fmt: skip


@dataclass
class Watcher:
    """One kind in one scope (a namespace, or None: all, filtered by ``patterns``)."""

    kube: Kube
    spec: ChildWatch
    scope: str | None
    patterns: tuple[str, ...]
    dispatcher: Dispatcher
    metrics: OperatorMetrics
    timeout_seconds: int = 300
    known: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> slim body
    _counters: dict[str | None, Any] = field(default_factory=dict)  # event type -> its counter

    def _wanted(self, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        if self.scope is None and not namespace_matches(meta.get("namespace"), self.patterns):
            return False
        return selector_matches(self.spec.selector, meta.get("labels"))

    def _selector(self) -> dict[str, str]:
        return {"labelSelector": self.spec.selector} if self.spec.selector else {}  # "": every object

    def deliver(self, kind: str | None, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"
        if not self._wanted(body):
            return
        if kind == "DELETED":
            self.known.pop(uid, None)
        else:
            self.known[uid] = _slim(body)
        counter = self._counters.get(kind)
        if counter is None:  # prometheus_client's labels() per event: 0.8 % of a burst's CPU
            counter = self._counters[kind] = self.metrics.watch_events_total.labels(self.spec.kind, kind or "LISTED")
        counter.inc()
        self.dispatcher.submit(uid, kind, (self.spec.keep or without_managed_fields)(body))

    def relisted(self, items: list[dict[str, Any]]) -> None:
        """Deliver a fresh list: vanished objects as DELETED, then every listed one (type None)."""
        listed = {(i.get("metadata") or {}).get("uid") for i in items}
        for uid in [u for u in self.known if u not in listed]:
            self.deliver("DELETED", self.known[uid])
        for item in items:
            self.deliver(None, item)

    async def relist(self) -> str | None:
        """LIST page by page; returns the resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        params = {**self._selector(), "limit": PAGE}
        while True:
            try:
                page = await self.kube.list_page(self.spec.kind, self.scope, params)
            except ApiError as exc:
                if exc.status == 410:
                    raise Gone(str(exc)) from exc  # the continue token expired: list anew
                raise
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {**params, "continue": meta["continue"]}
        for item in items:  # a list's items carry no kind
            item.setdefault("kind", self.spec.kind)
        self.relisted(items)
        return meta.get("resourceVersion") or None

    async def watch(self, rv: str | None) -> str | None:
        """One watch stream from ``rv``; returns the last resourceVersion seen when it ends."""
        params = {**self._selector(), "allowWatchBookmarks": "true", "timeoutSeconds": str(self.timeout_seconds)}
        if rv:
            params["resourceVersion"] = rv
        try:
            async for event in self.kube.watch_events(self.spec.kind, self.scope, params, self.timeout_seconds + 30):
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiError(int(body.get("code") or 500), f"watch ERROR event: {body.get('message')}")
                rv = (body.get("metadata") or {}).get("resourceVersion") or rv
                if kind != "BOOKMARK":
                    self.deliver(kind, body)
        except ApiError as exc:
            if exc.status == 410:  # as an HTTP status or an ERROR event
                raise Gone(str(exc)) from exc
            raise
        return rv

    async def run(self) -> None:
        """List, then watch forever; every failure is retried (see the module docstring)."""
        loop = asyncio.get_running_loop()
        rv: str | None = None
        listed, failures = False, 0
        while True:
            try:
                if not listed:
                    rv = await self.relist()
                    listed = True
                began = loop.time()
                rv = await self.watch(rv)
                self._restart("closed")
                # A stream the server ends at once, again and again, must not become a hot loop.
                failures = failures + 1 if loop.time() - began < 1.0 else 0
                delay = backoff_delay(failures) if failures else 0.0
            except Gone:
                listed = False
                self._restart("gone")
                failures += 1
                delay = backoff_delay(failures) if failures > 1 else 0.0  # relist at once, once
            except ApiError as exc:
                failures += 1
                delay = self._api_error(exc, failures)
            except (TransientError, ValueError) as exc:  # ValueError: a line that is not JSON
                failures += 1
                delay = backoff_delay(failures)
                self._restart("error")
                log.warning("watch %s %s: %s (again in %.1fs)", self.spec.kind, self._where(), exc, delay)
            await asyncio.sleep(delay)

    def _api_error(self, exc: ApiError, failures: int) -> float:
        if exc.status >= 500 or exc.status == 429:
            self._restart("error")
            delay = backoff_delay(failures)
            log.warning("watch %s %s: %s (again in %.1fs)", self.spec.kind, self._where(), exc, delay)
            return delay
        # 401/403 (RBAC), 400 (selector), 404 (no such resource): permanent until someone fixes
        # the cluster; the operator stays up and tries again slowly.
        self._restart("forbidden" if exc.status in (401, 403) else "rejected")
        log.error("watch %s %s refused: %s; the operator does not see these objects until this is "
                  "fixed (again in %.0fs)", self.spec.kind, self._where(), exc, FORBIDDEN_DELAY)  # fmt: skip
        return FORBIDDEN_DELAY

    def _restart(self, reason: str) -> None:
        self.metrics.watch_restarts_total.labels(self.spec.kind, reason).inc()

    def _where(self) -> str:
        return f"in {self.scope}" if self.scope else "cluster-wide"


def start(kube: Kube, specs: Iterable[ChildWatch], namespaces: Iterable[str], metrics: OperatorMetrics,
          spawn: Spawn, timeout_seconds: int) -> list[Watcher]:  # fmt: skip
    """Spawn one watcher per (spec, scope); their tasks end with the spawner's (ctx.shutdown)."""
    patterns = tuple(namespaces)
    watchers = []
    for spec in specs:
        errors = metrics.watch_handler_errors_total.labels(spec.kind)
        dispatcher = Dispatcher(spec.handler, spawn, on_error=lambda _exc, c=errors: c.inc())
        for scope in scopes(patterns):
            watcher = Watcher(kube, spec, scope, patterns, dispatcher, metrics, timeout_seconds)
            spawn(watcher.run())
            watchers.append(watcher)
    return watchers
