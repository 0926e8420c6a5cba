"""Per-process operator state, kept in kopf's ``memo`` (``memo.nsm``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from dataclasses import dataclass, field
from socket import gethostname

from nsm_operator.diffbase import encoded_essence
from nsm_operator.events import EventRecorder
from nsm_operator.kube import Kube, without_managed_fields
from nsm_operator.metrics import OperatorMetrics
from nsm_operator.settings import OperatorSettings


@dataclass
class OperatorContext:
    settings: OperatorSettings
    kube: Kube
    metrics: OperatorMetrics
    # One reconcile at a time per training: Job events, timers and spec handlers all funnel
    # through reconcile(), which re-reads the training under this lock.
    locks: defaultdict[tuple[str, str], asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    timers: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    # The newest body seen per training (watch events and our own patch responses), so a
    # reconcile rarely needs a GET. Newest = highest resourceVersion (etcd revisions).
    bodies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The last phase seen per training, kept even without a resourceVersion: the resync's list.
    phases: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # (namespace, name, attempt, reason) of the waiting reasons already posted as an event.
    warned: set[tuple[str, str, int, str]] = field(default_factory=set)
    # The newest pod event per training that came before its attempt's status (handlers/pods.py).
    early_pods: dict[tuple[str, str], Any] = field(default_factory=dict)
    # The essence a change handler's status write recorded as status.lastHandledConfiguration,
    # per training, until kopf's diff base storage takes it (nsm_operator/diffbase.py).
    recorded: dict[tuple[str, str], str] = field(default_factory=dict)
    # (namespace, name, attempt) of the launches whose later children are being made (finishing.py),
    # and per training the attempt whose later children this process has made.
    finishing: set[tuple[str, str, int]] = field(default_factory=set)
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    # Per training, the Job (observed part, targets.kubernetes.observed_part) its last reconcile
    # took in, the launch's own included: a Job event equal to it changes nothing (handlers/reconcile).
    folded: dict[tuple[str, str], Any] = field(default_factory=dict)
    # False while the installed CRD would prune that field (main.record_in_status).
    record_handled: bool = True
    # The essence kopf stores after a handling of a body, as JSON: kopf's diff base storage's,
    # whose memo holds what kopf built for the same event (main.startup), else built anew.
    essence: Callable[[Mapping[str, Any]], str] = encoded_essence
    # Kubernetes Events: record() queues, workers started by main.startup post (events.py).
    events: EventRecorder = field(init=False)

    def __post_init__(self) -> None:
        self.kube.status_observers.append(self.remember)
        self.events = EventRecorder(self.kube, self.metrics, self.settings.event_workers, instance=gethostname())

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks[(namespace, name)]

    def remember(self, body: Any) -> None:
        """Keep ``body`` if it is newer than what is cached for its training."""
        meta = (body or {}).get("metadata") or {}
        key = (meta.get("namespace"), meta.get("name"))
        if all(key):
            self.phases[key] = ((body or {}).get("status") or {}).get("phase")  # type: ignore[index]
        rv = _rv(body)
        if not all(key) or rv is None:
            return  # without a resourceVersion there is no telling which body is newer
        old = self.bodies.get(key)  # type: ignore[arg-type]
        if old is None or rv >= (_rv(old) or 0):
            self.bodies[key] = without_managed_fields(body)  # type: ignore[index]

    def cached(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bodies.get((namespace, name))

    def take_recorded(self, namespace: str, name: str) -> str | None:
        """The essence just recorded in the status of ``namespace/name`` (once), or None."""
        return self.recorded.pop((namespace, name), None)

    def forget(self, namespace: str, name: str) -> None:
        self.locks.pop((namespace, name), None)
        self.bodies.pop((namespace, name), None)
        self.phases.pop((namespace, name), None)
        self.warned = {key for key in self.warned if key[:2] != (namespace, name)}
        self.early_pods.pop((namespace, name), None)
        self.recorded.pop((namespace, name), None)
        self.finished.pop((namespace, name), None)
        self.folded.pop((namespace, name), None)
        timer = self.timers.pop((namespace, name), None)
        if timer is not None:
            timer.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it finishes."""
        task = asyncio.get_running_loop().create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def schedule(self, namespace: str, name: str, delay: float, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``make()`` after ``delay`` seconds; replaces the training's pending timer.

        In memory only: after a restart, on.resume reconciles and schedules again from
        ``status.nextAttemptAt`` (no kopf timer, so no finalizer on the training).
        """
        key = (namespace, name)
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()

        def fire() -> None:
            self.timers.pop(key, None)
            self.spawn(make())

        self.timers[key] = asyncio.get_running_loop().call_later(max(0.0, delay), fire)

    async def shutdown(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.events.stop(flush_seconds=2.0)
        await self.kube.close()


def _rv(body: Any) -> int | None:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion"))
    except (TypeError, ValueError):
        return None
