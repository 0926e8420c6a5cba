"""The children's watch loop (nsm_operator/watches.py): its pure parts. The loop against a
server (cut streams, 410, 5xx, 403) is tested in tests/operator/test_child_watches.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nsm_operator import watches
from nsm_operator.metrics import OperatorMetrics
from nsm_operator.watches import Dispatcher, Watcher, backoff_delay, namespace_matches, scopes, selector_matches


def obj(uid: str, ns: str = "ml", labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"uid": uid, "name": f"n-{uid}", "namespace": ns,
                                        "labels": {"app": "t"} if labels is None else labels}, **extra}  # fmt: skip


class Recorder:
    """A handler that records (type, uid, version) and blocks until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, Any]] = []
        self.gate = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    async def __call__(self, event, body) -> None:
        self.calls.append((event["type"], body["metadata"]["uid"], body.get("v")))
        assert event["object"] is body
        await self.gate.wait()

    def spawn(self, coro) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def drain(self) -> None:
        self.gate.set()
        while any(not t.done() for t in self.tasks):
            await asyncio.gather(*self.tasks)


async def test_one_call_in_flight_per_object_and_the_latest_wins():
    rec = Recorder()
    d = Dispatcher(rec, rec.spawn)
    d.submit("a", "ADDED", obj("a", v=1))
    await asyncio.sleep(0)
    for v in (2, 3, 4):  # a burst while the first call runs: only the newest is kept
        d.submit("a", "MODIFIED", obj("a", v=v))
    d.submit("b", "ADDED", obj("b", v=1))  # another object is not held up
    await asyncio.sleep(0)
    assert rec.calls == [("ADDED", "a", 1), ("ADDED", "b", 1)] and d.pending() == 1
    await rec.drain()
    assert rec.calls == [("ADDED", "a", 1), ("ADDED", "b", 1), ("MODIFIED", "a", 4)]
    assert d.pending() == 0 and not d._running


async def test_a_pending_deletion_is_never_replaced():
    rec = Recorder()
    d = Dispatcher(rec, rec.spawn)
    d.submit("a", "ADDED", obj("a", v=1))
    await asyncio.sleep(0)
    d.submit("a", "DELETED", obj("a", v=2))
    d.submit("a", "MODIFIED", obj("a", v=3))  # a late echo of the deleted object
    await rec.drain()
    assert rec.calls == [("ADDED", "a", 1), ("DELETED", "a", 2)]


async def test_a_failing_handler_is_counted_and_the_next_event_still_runs():
    errors: list[BaseException] = []
    seen: list[int] = []
    tasks: list[asyncio.Task[Any]] = []

    async def handler(event, body):
        seen.append(body["v"])
        await asyncio.sleep(0)
        if body["v"] == 1:
            raise RuntimeError("boom")

    d = Dispatcher(handler, lambda c: tasks.append(asyncio.get_running_loop().create_task(c)), errors.append)
    d.submit("a", "ADDED", obj("a", v=1))
    d.submit("a", "MODIFIED", obj("a", v=2))
    await asyncio.gather(*tasks)
    assert seen == [1, 2] and [str(e) for e in errors] == ["boom"]


def watcher(rec: Recorder, scope: str | None = "ml", patterns: tuple[str, ...] = ("ml",)) -> Watcher:
    spec = watches.child_watch("Job", "app=t", rec)
    return Watcher(kube=None, spec=spec, scope=scope, patterns=patterns,  # type: ignore[arg-type]
                   dispatcher=Dispatcher(rec, rec.spawn), metrics=OperatorMetrics())  # fmt: skip


async def test_a_relist_delivers_vanished_objects_as_deleted_and_listed_ones_as_none():
    rec = Recorder()
    w = watcher(rec)
    w.deliver("ADDED", obj("a", v=1))
    w.deliver("ADDED", obj("b", v=1, status={"active": 1}))
    await rec.drain()
    rec.calls.clear()
    w.relisted([obj("a", v=2), obj("c", v=1)])  # b was deleted while the watch was down
    await rec.drain()
    assert sorted(rec.calls, key=str) == sorted([("DELETED", "b", None), (None, "a", 2), (None, "c", 1)], key=str)
    assert set(w.known) == {"a", "c"}
    # The DELETED carries the identity and labels the handlers read.
    assert w.known["a"]["metadata"]["labels"] == {"app": "t"} and "status" not in w.known["a"]
    samples = w.metrics.registry.get_sample_value
    assert samples("nsm_operator_watch_events_total", {"kind": "Job", "type": "DELETED"}) == 1
    assert samples("nsm_operator_watch_events_total", {"kind": "Job", "type": "LISTED"}) == 2


async def test_objects_outside_the_selector_or_the_namespaces_are_dropped():
    # kmock (and any server that ignores labelSelector) sends everything: filtered here too.
    rec = Recorder()
    w = watcher(rec, scope=None, patterns=("test-op-*", "!test-op-skip"))
    w.deliver("ADDED", obj("a", ns="test-op-1"))
    w.deliver("ADDED", obj("b", ns="other"))
    w.deliver("ADDED", obj("c", ns="test-op-skip"))
    w.deliver("ADDED", obj("d", ns="test-op-2", labels={"app": "other"}))
    await rec.drain()
    assert [c[1] for c in rec.calls] == ["a"] and set(w.known) == {"a"}


def test_scopes_plain_names_watch_each_globs_and_all_watch_the_cluster():
    assert scopes(["a", "b"]) == ["a", "b"]
    assert scopes([]) == [None]
    assert scopes(["a", "test-op-*"]) == [None]
    assert scopes(["!kube-system"]) == [None]


def test_namespace_patterns():
    assert namespace_matches("x", [])
    assert namespace_matches("test-op-3", ["test-op-*"]) and not namespace_matches("ml", ["test-op-*"])
    assert not namespace_matches("kube-system", ["!kube-*"]) and namespace_matches("ml", ["!kube-*"])
    assert not namespace_matches(None, [])


def test_label_selector_terms():
    assert selector_matches("a=1,b", {"a": "1", "b": ""})
    assert not selector_matches("a=1,b", {"a": "1"})
    assert not selector_matches("a=1", {"a": "2"}) and not selector_matches("a", None)
    assert selector_matches("", None)


def test_backoff_doubles_and_is_capped():
    delays = [backoff_delay(n) for n in range(1, 12)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 30.0 and delays == sorted(delays)


class ScriptedKube:
    """Plays one watch stream's decoded events (the HTTP side is tested against kmock)."""

    def __init__(self, events: list[dict[str, Any]]):
        self.events = events
        self.params: list[dict[str, str]] = []

    async def watch_events(self, kind, namespace, params, timeout):
        self.params.append(dict(params))
        for event in self.events:
            yield event


async def test_a_watch_follows_bookmarks_and_an_error_event_410_means_relist():
    rec = Recorder()
    w = watcher(rec)
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Job", "metadata": {"resourceVersion": "17"}}}
    w.kube = ScriptedKube([{"type": "ADDED", "object": obj("a", v=1)}, bookmark])  # type: ignore[assignment]
    assert await w.watch("5") == "17"  # the re-watch starts from the bookmark
    assert w.kube.params[0]["resourceVersion"] == "5" and w.kube.params[0]["allowWatchBookmarks"] == "true"
    w.kube = ScriptedKube([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}])  # type: ignore[assignment]
    with pytest.raises(watches.Gone):
        await w.watch("17")
    await rec.drain()
    assert rec.calls == [("ADDED", "a", 1)]  # a bookmark is no object


async def test_events_are_cut_to_what_the_handler_reads_before_they_are_queued():
    """Under a burst a handler waits (the training's lock) while newer events queue: each holds
    only ``keep``'s view, and without one, the object minus its managedFields."""
    rec = Recorder()
    seen: list[dict[str, Any]] = []

    async def handler(event, body):
        seen.append(dict(body))
        await rec(event, body)

    spec = watches.child_watch("Job", "app=t", handler, keep=lambda b: {"metadata": b["metadata"], "v": b.get("v")})
    w = Watcher(kube=None, spec=spec, scope="ml", patterns=("ml",),  # type: ignore[arg-type]
                dispatcher=Dispatcher(handler, rec.spawn), metrics=OperatorMetrics())  # fmt: skip
    w.deliver("ADDED", obj("a", v=1, spec={"template": "big"}))
    w.deliver("MODIFIED", obj("a", v=2, spec={"template": "big"}))
    await rec.drain()
    assert [s.get("v") for s in seen] == [1, 2] and all("spec" not in s for s in seen)

    plain = watches.child_watch("ConfigMap", "app=t", handler)
    w2 = Watcher(kube=None, spec=plain, scope="ml", patterns=("ml",),  # type: ignore[arg-type]
                 dispatcher=Dispatcher(handler, rec.spawn), metrics=OperatorMetrics())  # fmt: skip
    seen.clear()
    body = obj("b", data={"k": "v"})
    body["metadata"]["managedFields"] = [{"manager": "trainer"}]
    w2.deliver("ADDED", body)
    await rec.drain()
    assert seen[0]["data"] == {"k": "v"} and "managedFields" not in seen[0]["metadata"]
