"""A permanent 4xx from creating or patching a child fails the training once — no retry loop.

kmock injects the API server's answers (a real API server would need an invalid Job that the CRD
lets through; the e2e tier covers a real 403 with a ResourceQuota)."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
from tests.operator.conftest import NAMESPACE, eventually, job_posts, phase_is, status_of, training

JOBS = kmock_lib.resource("batch/v1/jobs")
CONFIGMAPS = kmock_lib.resource("v1/configmaps")
INVALID = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
           "message": 'Job.batch "p1-a1" is invalid: spec.template.spec.affinity: Invalid value: "x"'}


async def _settled_posts(k8s, seconds: float = 3.0) -> int:
    """Job POSTs after ``seconds`` more: a loop would keep adding one every 2 s."""
    before = len(job_posts(k8s))
    await asyncio.sleep(seconds)
    after = len(job_posts(k8s))
    assert after == before, f"the operator kept retrying: {before} -> {after} Job POSTs"
    return after


async def test_422_on_job_create_fails_the_training_once(k8s, api, operator):
    k8s["post", JOBS] << 422 << INVALID
    await api.create(training("p1"))
    st = await eventually(lambda: phase_is(api, "p1", "Failed"), timeout=15)
    assert st["failureReason"] == "InvalidSpec"
    assert st["message"].startswith("the API server rejected creating Job p1-a1 (HTTP 422): ")
    assert "spec.template.spec.affinity: Invalid value" in st["message"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Failed"]["status"] == "True" and conds["Failed"]["reason"] == "InvalidSpec"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "Failed"
    assert await _settled_posts(k8s) == 1
    events = [o for key, o in k8s.objects.items() if key[0] == kmock_lib.resource("v1/events")]
    assert any(e.get("reason") == "InvalidSpec" and "HTTP 422" in e.get("message", "") for e in events)


async def test_403_on_configmap_patch_is_permanent_too(k8s, api, operator):
    # The ConfigMap exists already (an earlier attempt), so launch patches it: 403 Forbidden.
    # It is the training's own (controller uid-p2): someone else's would fail as ForeignObject first.
    owner = {"apiVersion": "nsm.dev/v1alpha1", "kind": "NSMTraining", "name": "p2", "uid": "uid-p2", "controller": True}
    await api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p2-spec", "namespace": NAMESPACE,
                      "ownerReferences": [owner]}, "data": {}})  # fmt: skip
    k8s["patch", CONFIGMAPS] << 403 << {"kind": "Status", "code": 403, "message": "configmaps is forbidden: quota"}
    await api.create(training("p2"))
    st = await eventually(lambda: phase_is(api, "p2", "Failed"), timeout=15)
    assert st["failureReason"] == "Forbidden" and "patching ConfigMap p2-spec (HTTP 403)" in st["message"]
    assert "configmaps is forbidden: quota" in st["message"]


async def test_429_stays_transient(k8s, api, operator):
    k8s["post", JOBS][:1] << 429
    await api.create(training("p3"))
    st = await eventually(lambda: phase_is(api, "p3", "Pending"), timeout=15)
    assert st["attempts"] == 1 and len(job_posts(k8s)) >= 2


async def test_404_on_create_stays_transient(k8s, api, operator):
    # A RoleBinding whose Role is created at the same moment: the escalation check finds no Role yet.
    k8s["post", kmock_lib.resource("rbac.authorization.k8s.io/v1/rolebindings")][:1] << 404
    await api.create(training("p4"))
    st = await eventually(lambda: phase_is(api, "p4", "Pending"), timeout=15)
    assert st["attempts"] == 1 and await eventually(lambda: api.get("RoleBinding", NAMESPACE, "p4-trainer"))
    assert (await status_of(api, "p4"))["phase"] == "Pending"
