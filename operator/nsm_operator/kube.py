"""A small async Kubernetes client (aiohttp) for the handlers: create-if-absent, get, list,
delete, merge-patch. Credentials come from kopf's public login helpers (service account, then
kubeconfig), so the operator and kopf talk to the same cluster as the same user.

API failures are translated here into the operator's taxonomy: 404 on get -> None, 409 on
create -> "already exists", a permanent 4xx on create or patch (``errors.is_permanent``) ->
:class:`Rejected` (the training fails), anything else -> :class:`TransientError` (retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp
import kopf
import orjson

from nsm.spec import API_GROUP, API_VERSION, PLURAL

from nsm_operator.admission import LATER, URGENT, Admission, priority
from nsm_operator.errors import Rejected, TransientError, is_permanent

log = logging.getLogger(__name__)

POOL = 64  # connections of the request session, and requests in flight (Kube.admission)
SHARED = 8  # of them, the requests that are not a launch's: status writes, reads, Events, later children
# Seconds an idle pooled connection is kept (aiohttp's default: 15). The API server keeps an idle
# connection 90 s (k8s.io/apiserver's secure serving, as client-go's transport does), so at 60 the
# client always closes first; at 15 the pod and Event writes trailing a burst opened new TLS
# connections, a handshake each (1 % of the operator's CPU under the 1000-training burst, py-spy).
KEEPALIVE = 60.0

# kind -> (apiVersion, plural) of everything the operator touches.
KINDS: dict[str, tuple[str, str]] = {
    "NSMTraining": (f"{API_GROUP}/{API_VERSION}", PLURAL),
    "Job": ("batch/v1", "jobs"),
    "Pod": ("v1", "pods"),
    "PersistentVolumeClaim": ("v1", "persistentvolumeclaims"),
    "ConfigMap": ("v1", "configmaps"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Service": ("v1", "services"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Secret": ("v1", "secrets"),
    "Event": ("v1", "events"),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, api_message: str = ""):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.api_message = api_message or message


def collection_path(kind: str, namespace: str | None) -> str:
    """The collection of ``kind`` in ``namespace``, or across all namespaces (None)."""
    api_version, plural = KINDS[kind]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{root}/{plural}" if namespace is None else f"{root}/namespaces/{namespace}/{plural}"


def api_error(status: int, what: str, text: str) -> ApiError:
    """The :class:`ApiError` of a failed response: the message of the API server's Status
    object when the body is one, else the body itself."""
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    return ApiError(status, f"{what}: {message}", str(message))


def resource_path(kind: str, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = collection_path(kind, namespace)
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def without_managed_fields(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``body`` without its server-side-apply bookkeeping (``metadata.managedFields``), which
    nothing in the operator reads: a third of a small object's bytes."""
    meta = body.get("metadata") or {}
    if "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def connection_info(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo:
    """The same credentials kopf would find: in-cluster service account, else KUBECONFIG."""
    settings = settings or kopf.OperatorSettings()
    for login in (kopf.login_with_service_account, kopf.login_with_kubeconfig):
        info = login(settings=settings, logger=log)
        if info is not None:
            return info
    raise RuntimeError("no Kubernetes credentials: neither a service account nor KUBECONFIG")


class Kube:
    """Async JSON client over one aiohttp session (connection pooling, one timeout)."""

    def __init__(self, info: kopf.ConnectionInfo, request_timeout: float = 30.0, transient_delay: float = 2.0):
        self.server = info.server.rstrip("/")
        self._info = info
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None
        # Watch streams hold their connection for minutes: their own unbounded pool (one
        # connection per watch), so they never take the request pool's slots.
        self._stream_session: aiohttp.ClientSession | None = None
        self.transient_delay = transient_delay
        # Every request but the watch streams takes one of POOL slots, most urgent first (the
        # launch's Job before status writes before the children a pod needs only later), so that
        # aiohttp, first come first served, never queues one itself; all but the launch's share
        # SHARED of them, so that under a burst the follow-ups leave the API server to the Jobs.
        self.admission = Admission(POOL, shared=SHARED)
        # Blocks of requests that may trail (the children a pod needs only later) also queue
        # here, at most this many at once, so that a waiting one has built nothing yet. Created
        # lazily (needs a loop).
        self._low_priority: asyncio.Semaphore | None = None
        self.low_priority_slots = 8
        # Called with every NSMTraining a status patch returns (the operator's body cache).
        self.status_observers: list[Callable[[dict[str, Any]], None]] = []

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session(limit=POOL, keepalive=KEEPALIVE)
        return self._session

    def _get_stream_session(self) -> aiohttp.ClientSession:
        if self._stream_session is None or self._stream_session.closed:
            self._stream_session = self._new_session(limit=0)
        return self._stream_session

    def _new_session(self, limit: int, keepalive: float | None = None) -> aiohttp.ClientSession:
        info = self._info
        pool = {} if keepalive is None else {"keepalive_timeout": keepalive}
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context(), **pool),
            headers=info.as_http_headers(),
            auth=info.as_aiohttp_basic_auth() if info.username else None,
            timeout=self._timeout,
        )

    @contextlib.asynccontextmanager
    async def low_priority(self) -> AsyncIterator[None]:
        """``async with kube.low_priority(): …`` for requests that may wait behind others: at
        most ``low_priority_slots`` such blocks at once, their requests admitted last."""
        if self._low_priority is None:
            self._low_priority = asyncio.Semaphore(self.low_priority_slots)
        async with self._low_priority:
            with priority(LATER):
                yield

    @staticmethod
    def urgent() -> contextlib.AbstractContextManager[None]:
        """``with kube.urgent(): …`` for the requests a user waits for (a launch's Job): admitted
        before every other waiting request."""
        return priority(URGENT)

    async def close(self) -> None:
        for session in (self._session, self._stream_session):
            if session is not None:
                await session.close()

    async def request(
        self, method: str, path: str, *, body: Any = None, params: Mapping[str, str] | None = None,
        content_type: str = "application/json", decode: bool = True,
    ) -> Any:  # fmt: skip
        """The decoded response; with ``decode=False`` a success returns True without decoding
        (a created child the caller never reads: under a burst, decoding every one costs)."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            async with self.admission.slot(), self._get_session().request(
                method, self.server + path, data=data, params=params, headers=headers
            ) as resp:
                if not decode and resp.status < 400:
                    await resp.read()  # drained, so the connection goes back to the pool
                    return True
                raw = await resp.read()
                if resp.status >= 400:
                    raise api_error(resp.status, f"{method} {path}", raw.decode("utf-8", "replace"))
                return orjson.loads(raw) if raw else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransientError(f"{method} {path}: {type(exc).__name__}: {exc}", self.transient_delay) from exc

    async def list_page(self, kind: str, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        """One raw LIST response (items, metadata.resourceVersion/continue); :class:`ApiError`
        carries the status (a watch tells 410 from 403 from 5xx), connection errors are transient."""
        return await self.request("GET", collection_path(kind, namespace), params=params) or {}

    async def watch_events(self, kind: str, namespace: str | None, params: Mapping[str, str],
                           timeout: float) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
        """The decoded events of one ``?watch=true`` stream until the server ends it (or
        ``timeout`` seconds: the server's own timeoutSeconds plus a margin). Errors as list_page."""
        path = collection_path(kind, namespace)
        limit = aiohttp.ClientTimeout(total=timeout, connect=self._timeout.total)
        try:
            async with self._get_stream_session().get(
                self.server + path, params={**params, "watch": "true"}, timeout=limit
            ) as resp:
                if resp.status >= 400:
                    raise api_error(resp.status, f"WATCH {path}", await resp.text())
                buffer = b""
                # Split lines by hand: aiohttp's readline() refuses lines over 64 KiB (big pods).
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield orjson.loads(line)
                if buffer.strip():
                    yield orjson.loads(buffer)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransientError(f"WATCH {path}: {type(exc).__name__}: {exc}", self.transient_delay) from exc

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await self.request(method, path, **kwargs)
        except ApiError as exc:
            raise TransientError(str(exc), self.transient_delay) from exc

    async def create(self, manifest: Mapping[str, Any]) -> bool:
        """Create ``manifest``; False if it already exists (409: an earlier try or a restart)."""
        return await self.create_object(manifest, decode=False) is not None

    async def create_object(self, manifest: Mapping[str, Any], decode: bool = True) -> dict[str, Any] | None:
        """:meth:`create`, returning the object as created (``decode=False``: ``manifest`` itself,
        the response unread); None if it already exists."""
        meta = manifest["metadata"]
        path = resource_path(manifest["kind"], meta["namespace"])
        try:
            created = await self.request("POST", path, body=manifest, decode=decode)
            return created if decode and created else dict(manifest)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise self._failure(exc, "creating", manifest["kind"], meta.get("name", "")) from exc

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", resource_path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise TransientError(str(exc), self.transient_delay) from exc

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        result = await self._call("GET", resource_path(kind, namespace), params={"labelSelector": label_selector})
        return list((result or {}).get("items") or [])

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation; False if it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self.request("DELETE", resource_path(kind, namespace, name), body=body)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise TransientError(str(exc), self.transient_delay) from exc

    async def patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any],
                    subresource: str | None = None) -> dict[str, Any] | None:  # fmt: skip
        """JSON merge patch (None values delete keys); None if the object is gone."""
        try:
            return await self.request(
                "PATCH", resource_path(kind, namespace, name, subresource), body=patch,
                content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise self._failure(exc, "patching", kind if subresource is None else f"{kind}/{subresource}", name) from exc

    def _failure(self, exc: ApiError, verb: str, kind: str, name: str) -> Rejected | TransientError:
        if is_permanent(exc.status):
            return Rejected(verb, kind, name, exc.status, exc.api_message)
        return TransientError(str(exc), self.transient_delay)

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch an NSMTraining's status; returns the updated object (None if gone)."""
        updated = await self.patch("NSMTraining", namespace, name, {"status": dict(status)}, subresource="status")
        if updated is not None:
            for observer in self.status_observers:
                observer(updated)
        return updated
