"""The operator tier: the real kopf operator (nsm_operator.main) in-process against kmock.

``k8s`` is a kmock KubernetesEmulator with the resources the operator uses declared and a
kubeconfig pointing at it; ``operator`` runs ``kopf.operator()`` on the test's event loop for
namespace ``ml``; ``api`` is the operator's own async client, for the test to act as kubectl
and as the Job controller (patching Job status emits watch events).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest
import yaml

import kmock as kmock_lib
from nsm.crd import CRD_NAME, crd
from nsm_operator.kube import Kube, connection_info

NAMESPACE = "ml"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"

RESOURCES = {
    "nsm.dev/v1alpha1/nsmtrainings": dict(kind="NSMTraining", namespaced=True, subresources={"status"},
                                          shortnames={"nsmt"}, verbs={"get", "list", "watch", "patch", "create"}),
    "batch/v1/jobs": dict(kind="Job", namespaced=True, subresources={"status"},
                          verbs={"get", "list", "watch", "create", "patch", "delete"}),
    "v1/pods": dict(kind="Pod", namespaced=True, subresources={"status"},
                    verbs={"get", "list", "watch", "create", "patch", "delete"}),
    "v1/persistentvolumeclaims": dict(kind="PersistentVolumeClaim", namespaced=True, verbs={"get", "create"}),
    "v1/configmaps": dict(kind="ConfigMap", namespaced=True, verbs={"get", "list", "watch", "create", "patch"}),
    "v1/serviceaccounts": dict(kind="ServiceAccount", namespaced=True, verbs={"get", "create"}),
    "v1/events": dict(kind="Event", namespaced=True, verbs={"create", "patch"}),
    "rbac.authorization.k8s.io/v1/roles": dict(kind="Role", namespaced=True, verbs={"get", "create"}),
    "rbac.authorization.k8s.io/v1/rolebindings": dict(kind="RoleBinding", namespaced=True, verbs={"get", "create"}),
    # kopf's backbone resources (discovered, but not listed: scanning is off, see below).
    "v1/namespaces": dict(kind="Namespace", namespaced=False, verbs={"list", "watch"}),
    "apiextensions.k8s.io/v1/customresourcedefinitions": dict(kind="CustomResourceDefinition", namespaced=False,
                                                             verbs={"list", "watch"}),
}  # fmt: skip


@pytest.fixture
async def k8s(kmock, tmp_path, monkeypatch):
    for key, info in RESOURCES.items():
        kmock.resources[key] = kmock_lib.ResourceInfo(**info)
    url = str(kmock.servers[0].url).rstrip("/")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u", "namespace": NAMESPACE}}],
    }))  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("NSM_OPERATOR_METRICS_PORT", "0")
    # The scope of the operator's own child watches: the namespace kopf serves (run_operator).
    monkeypatch.setenv("NSM_OPERATOR_NAMESPACES", NAMESPACE)
    monkeypatch.setenv("NSM_OPERATOR_REQUEST_TIMEOUT_SECONDS", "2")
    # The installed CRD, as the operator reads it at start-up (main.record_in_status).
    kmock.objects[CRDS, None, CRD_NAME] = crd()
    return kmock


@pytest.fixture
async def api(k8s) -> AsyncIterator[Kube]:
    kube = Kube(connection_info(), request_timeout=5)
    yield kube
    await kube.close()


class Operator:
    def __init__(self, memo: kopf.Memo):
        self.memo = memo

    @property
    def ctx(self):
        return self.memo.nsm


@contextlib.asynccontextmanager
async def run_operator() -> AsyncIterator[Operator]:
    """One in-process operator for namespace ``ml`` (startable again: restarts)."""
    import nsm_operator.main  # noqa: F401 - registers the handlers

    memo = kopf.Memo()
    settings = kopf.OperatorSettings()
    # kmock 0.8 can't parse /api/v1/namespaces (cluster-scoped namespace listing): watch the
    # namespace as given instead of scanning (the e2e tier runs with scanning on).
    settings.scanning.disabled = True
    settings.queueing.exit_timeout = 0.1  # faster teardown
    settings.watching.reconnect_backoff = 0.05
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=kopf.get_default_registry(), clusterwide=False, namespaces=[NAMESPACE], standalone=True,
        stop_flag=stop, ready_flag=ready, memo=memo, settings=settings,
    ))  # fmt: skip
    await asyncio.wait_for(ready.wait(), 15)
    try:
        yield Operator(memo)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


@pytest.fixture
async def operator(k8s) -> AsyncIterator[Operator]:
    async with run_operator() as op:
        yield op


def training(name: str = "t1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nsm.dev/v1alpha1",
        "kind": "NSMTraining",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}",
                     "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "generation": 1},
        "spec": {"domain": "causal", **spec},
    }  # fmt: skip


async def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Await until ``check()`` (sync or async) returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


async def status_of(api: Kube, name: str) -> dict[str, Any]:
    obj = await api.get("NSMTraining", NAMESPACE, name)
    return (obj or {}).get("status") or {}


async def set_job_status(api: Kube, name: str, status: dict[str, Any]) -> None:
    """Play the Job controller: patch a Job's status (emits a watch event)."""
    await api.patch("Job", NAMESPACE, name, {"status": status}, subresource="status")


def job_posts(k8s) -> list:
    """Every Job creation request the operator sent (the test's own requests included)."""
    return list(k8s["post", kmock_lib.resource("batch/v1/jobs")])


async def phase_is(api: Kube, name: str, phase: str) -> dict[str, Any] | None:
    st = await status_of(api, name)
    return st if st.get("phase") == phase else None


RUNNING = {"active": 1, "ready": 1, "startTime": "2026-01-01T00:00:00Z"}
COMPLETE = {"active": 0, "ready": 0, "succeeded": 1, "completionTime": "2026-01-01T01:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]}


def failed(reason: str = "BackoffLimitExceeded", message: str = "Job has reached the specified backoff limit"):
    return {"active": 0, "ready": 0, "failed": 1,
            "conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": message,
                            "lastTransitionTime": "2026-01-01T00:30:00Z"}]}


async def add_failed_pod(api: Kube, job: str, exit_code: int, reason: str = "Error") -> None:
    """The pod a failed Job leaves behind, with the trainer's exit code."""
    await api.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{job}-pod", "namespace": NAMESPACE, "labels": {"batch.kubernetes.io/job-name": job},
                     "creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {"phase": "Failed", "containerStatuses": [
            {"name": "trainer", "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}]},
    })
