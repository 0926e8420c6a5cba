"""kopf's diff base is kept in ``status.lastHandledConfiguration`` and recorded by the handler's own
status write (nsm_operator/diffbase.py): a handled creation or spec change costs no PATCH of
kopf's, spec changes are still found, and a handling that failed records nothing, so kopf retries
it. Against kmock, which counts the requests."""

from __future__ import annotations

import asyncio
import json

import kmock as kmock_lib
from nsm_operator.diffbase import FIELD
from nsm.crd import CRD_NAME, crd
from tests.operator.conftest import (
    CRDS, NAMESPACE, RUNNING, eventually, phase_is, run_operator, set_job_status, training,
)  # fmt: skip

TRAININGS = kmock_lib.resource("nsm.dev/v1alpha1/nsmtrainings")


def body_patches(k8s) -> list:
    """PATCHes of the training itself (kopf's own bookkeeping would go there), not of its status."""
    return [r for r in k8s["patch", TRAININGS] if r.subresource is None]


def status_patches(k8s) -> list:
    return list(k8s["patch", TRAININGS, kmock_lib.subresource("status")])


async def recorded(api, name: str) -> dict:
    obj = await api.get("NSMTraining", NAMESPACE, name)
    return json.loads(((obj or {}).get("status") or {}).get(FIELD) or "null") or {}


async def test_a_creation_costs_one_status_patch_and_no_patch_of_kopfs(k8s, api, operator):
    assert operator.ctx.record_handled  # the installed CRD keeps the record
    await api.create(training("one", epochs=3))
    await eventually(lambda: phase_is(api, "one", "Pending"))
    await asyncio.sleep(0.5)  # kopf patches, if at all, once the handler has returned
    assert body_patches(k8s) == []
    assert len(status_patches(k8s)) == 1  # phase, attempt and the record together
    obj = await api.get("NSMTraining", NAMESPACE, "one")
    assert (await recorded(api, "one"))["spec"] == obj["spec"]
    assert not [k for k in (obj["metadata"].get("annotations") or {}) if k.startswith("kopf.zalando.org/")]


async def test_a_spec_change_is_found_against_the_record_and_recorded_again(k8s, api, operator):
    await api.create(training("sus"))
    await eventually(lambda: api.get("Job", NAMESPACE, "sus-a1"))
    await set_job_status(api, "sus-a1", RUNNING)
    await eventually(lambda: phase_is(api, "sus", "Running"))
    await api.patch("NSMTraining", NAMESPACE, "sus", {"spec": {"suspend": True}, "metadata": {"generation": 2}})
    await eventually(lambda: phase_is(api, "sus", "Suspended"))
    assert (await eventually(lambda: _suspended_in_record(api, "sus")))
    await asyncio.sleep(0.5)
    assert len(body_patches(k8s)) == 1  # the test's own (kubectl's) patch of the spec, nothing else


async def _suspended_in_record(api, name: str) -> bool:
    return bool((await recorded(api, name)).get("spec", {}).get("suspend"))


async def test_a_restart_resumes_without_writing(k8s, api):
    async with run_operator():
        await api.create(training("rs"))
        await eventually(lambda: phase_is(api, "rs", "Pending"))
        await asyncio.sleep(0.5)
    writes = len(status_patches(k8s)), len(body_patches(k8s))
    async with run_operator():
        await asyncio.sleep(1.5)  # on.resume ran: the record matches, nothing to write
    assert (len(status_patches(k8s)), len(body_patches(k8s))) == writes == (1, 0)


async def test_a_failed_handling_records_nothing_and_kopf_retries_it(k8s, api, operator):
    k8s["patch", TRAININGS, kmock_lib.subresource("status")][:1] << 500  # the write that would record
    await api.create(training("fail"))
    st = await eventually(lambda: phase_is(api, "fail", "Pending"), timeout=20)
    assert st["attempts"] == 1 and FIELD in st  # recorded by the retry's write


async def test_an_older_crd_keeps_the_diff_base_in_kopfs_annotation(k8s, api):
    """An operator newer than its CRD (no status.lastHandledConfiguration: the API server would
    prune the record and kopf would see a creation on every event) keeps kopf's annotation."""
    old = crd()  # a fresh document each call
    del old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][FIELD]
    k8s.objects[CRDS, None, CRD_NAME] = old
    async with run_operator() as op:
        assert op.ctx.record_handled is False
        await api.create(training("legacy"))
        st = await eventually(lambda: phase_is(api, "legacy", "Pending"))
        await asyncio.sleep(1.0)
        assert FIELD not in st
        obj = await api.get("NSMTraining", NAMESPACE, "legacy")
        assert "kopf.zalando.org/last-handled-configuration" in obj["metadata"]["annotations"]
        assert len(status_patches(k8s)) == 1
        # kmock's objects carry no resourceVersion, so kopf cannot tell its own PATCH's echo from an
        # older event and may patch its annotation again once or twice; what matters is that it ends.
        settled = len(body_patches(k8s))
        await asyncio.sleep(1.5)
        assert len(body_patches(k8s)) == settled and len(status_patches(k8s)) == 1
