"""The baseline of ``bench/operator_latency.py --baseline``: a minimal kopf operator that creates
exactly the children the project's operator creates for a new training and does nothing else.

    kopf run --standalone --namespace NS bench/minimal_operator.py

Children come from the project's own pure builders (``nsm_operator.builders``), in the project's
order: the ServiceAccount first (pod admission needs it), then the Job together with the PVC,
ConfigMaps, Role and RoleBinding, the latter behind one 8-slot semaphore as in
``targets/kubernetes.py`` (without it the Jobs queue behind every other child and p99 is several
times worse). kopf is configured like the project's (annotation storage, standalone). Not here:
status writes, Kubernetes Events, the Job/pod/progress watches, retries beyond kopf's own. The
HTTP client is a few lines of aiohttp (one pooled session, 64 connections, as the project's), so
that this baseline does not move when the project's client changes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import kopf

from nsm.spec import API_GROUP, API_VERSION, PLURAL
from nsm_operator.builders import build_children, build_job
from nsm_operator.resource import Training
from nsm_operator.settings import OperatorSettings

LOW_PRIORITY_SLOTS = 8  # as nsm_operator.kube.Kube.low_priority_slots
PLURALS = {"Job": "jobs", "PersistentVolumeClaim": "persistentvolumeclaims", "ConfigMap": "configmaps",
           "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}  # fmt: skip


class Creator:
    """POST a manifest; 409 (an earlier try created it) counts as done."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ssl=info.as_ssl_context()),
            headers=info.as_http_headers(), auth=info.as_aiohttp_basic_auth() if info.username else None,
            timeout=aiohttp.ClientTimeout(total=30),
        )  # fmt: skip
        self.low_priority = asyncio.Semaphore(LOW_PRIORITY_SLOTS)

    async def create(self, manifest: dict[str, Any]) -> None:
        api_version = manifest["apiVersion"]
        root = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        path = f"{root}/namespaces/{manifest['metadata']['namespace']}/{PLURALS[manifest['kind']]}"
        headers = {"Content-Type": "application/json"}
        async with self.session.post(self.server + path, data=json.dumps(manifest), headers=headers) as resp:
            if resp.status >= 400 and resp.status != 409:
                raise kopf.TemporaryError(f"POST {path}: HTTP {resp.status}: {await resp.text()}", delay=2)

    async def create_later(self, manifest: dict[str, Any]) -> None:
        async with self.low_priority:
            await self.create(manifest)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_kubeconfig(**kwargs) or kopf.login_with_service_account(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    settings.posting.enabled = False  # no Kubernetes Events
    settings.peering.standalone = True
    memo.settings = OperatorSettings.from_env()
    info = kopf.login_with_kubeconfig(settings=settings, logger=kwargs["logger"])
    memo.creator = Creator(info or kopf.login_with_service_account(settings=settings, logger=kwargs["logger"]))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.creator.session.close()


@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
async def create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    training = Training.from_body(body)
    creator: Creator = memo.creator
    children = build_children(training, memo.settings.checkpoint_access_mode)
    await asyncio.gather(*(creator.create(c) for c in children if c["kind"] == "ServiceAccount"))
    rest = [c for c in children if c["kind"] != "ServiceAccount"]
    job = build_job(training, 1, memo.settings)
    await asyncio.gather(creator.create(job), *(creator.create_later(c) for c in rest))
