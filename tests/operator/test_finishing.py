"""The children a launch makes after its status write (handlers/finishing.py): failures go back
through the reconcile under the training's lock, transient ones are tried again, and a restart
finishes what a stopped operator left undone."""

from __future__ import annotations

import asyncio

import kmock as kmock_lib
from tests.operator.conftest import NAMESPACE, eventually, phase_is, run_operator, training
from tests.operator.test_faults import fresh_api

CONFIGMAPS = kmock_lib.resource("v1/configmaps")
PVCS = kmock_lib.resource("v1/persistentvolumeclaims")
ROLEBINDINGS = kmock_lib.resource("rbac.authorization.k8s.io/v1/rolebindings")
LATER = (("PersistentVolumeClaim", "checkpoints"), ("ConfigMap", "spec"), ("ConfigMap", "progress"),
         ("Role", "trainer"), ("RoleBinding", "trainer"))  # fmt: skip


async def _gone(api, kind: str, name: str) -> bool:
    return await api.get(kind, NAMESPACE, name) is None


async def test_a_foreign_spec_configmap_fails_the_attempt_and_deletes_its_job(k8s, api, operator):
    await api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fc-spec", "namespace": NAMESPACE},
                      "data": {"training.yaml": "someone else's"}})  # fmt: skip
    await api.create(training("fc"))
    st = await eventually(lambda: phase_is(api, "fc", "Failed"), timeout=15)
    assert st["failureReason"] == "ForeignObject" and st["attempts"] == 1
    assert f"ConfigMap {NAMESPACE}/fc-spec already exists and is not this training's" in st["message"]
    # The Job was made before the ConfigMap was found taken: it is deleted, so no pod mounts it.
    assert await eventually(lambda: _gone(api, "Job", "fc-a1"))
    assert (await api.get("ConfigMap", NAMESPACE, "fc-spec"))["data"] == {"training.yaml": "someone else's"}


async def test_a_rejected_later_child_fails_the_attempt_once(k8s, api, operator):
    k8s["post", PVCS] << 422 << {"kind": "Status", "code": 422, "message": "storage: Invalid value"}
    await api.create(training("rj"))
    st = await eventually(lambda: phase_is(api, "rj", "Failed"), timeout=15)
    assert st["failureReason"] == "InvalidSpec" and st["attempts"] == 1
    assert "creating PersistentVolumeClaim rj-checkpoints (HTTP 422)" in st["message"]
    assert await eventually(lambda: _gone(api, "Job", "rj-a1"))
    assert len(list(k8s["post", PVCS])) == 1  # refused for good: not tried again


async def test_a_transient_error_on_a_later_child_is_tried_again(k8s, api, operator):
    k8s["post", CONFIGMAPS][:2] << 500
    await api.create(training("tr"))
    await eventually(lambda: phase_is(api, "tr", "Pending"))
    for kind, suffix in LATER:
        assert await eventually(lambda: api.get(kind, NAMESPACE, f"tr-{suffix}"), timeout=15), (kind, suffix)
    st = await eventually(lambda: phase_is(api, "tr", "Pending"))
    assert st["attempts"] == 1 and st["activeJob"] == "tr-a1"
    assert operator.ctx.metrics.registry.get_sample_value(
        "nsm_operator_reconcile_errors_total", {"handler": "children"}) >= 1  # fmt: skip
    assert not operator.ctx.finishing


async def test_children_that_keep_failing_are_given_up_once_the_attempt_is_over(k8s, api, operator):
    """Transient errors are retried only while the attempt is on: suspended, the loop ends."""
    k8s["post", CONFIGMAPS] << 500  # (kmock stores the object all the same: the answer is what fails)
    await api.create(training("gu"))
    await eventually(lambda: phase_is(api, "gu", "Pending"))
    metric = {"handler": "children"}
    registry = operator.ctx.metrics.registry
    await eventually(lambda: (registry.get_sample_value("nsm_operator_reconcile_errors_total", metric) or 0) >= 1)
    assert operator.ctx.finishing == {(NAMESPACE, "gu", 1)}
    await api.patch("NSMTraining", NAMESPACE, "gu", {"spec": {"suspend": True}, "metadata": {"generation": 2}})
    await eventually(lambda: phase_is(api, "gu", "Suspended"))
    await eventually(lambda: not operator.ctx.finishing, timeout=15)  # the next look finds it over
    tries = registry.get_sample_value("nsm_operator_reconcile_errors_total", metric)
    assert await phase_is(api, "gu", "Suspended")
    await asyncio.sleep(3)
    assert registry.get_sample_value("nsm_operator_reconcile_errors_total", metric) == tries  # no more tries


async def test_a_restart_makes_the_children_a_stopped_operator_left_undone(k8s, api):
    async with run_operator() as op:
        await api.create(training("rs"))
        await eventually(lambda: api.get("RoleBinding", NAMESPACE, "rs-trainer"))
        await eventually(lambda: not op.ctx.finishing)
    # As if the operator had stopped between the Job and its later children.
    for kind, suffix in LATER:
        resource = {"PersistentVolumeClaim": PVCS, "ConfigMap": CONFIGMAPS, "RoleBinding": ROLEBINDINGS}.get(
            kind, kmock_lib.resource("rbac.authorization.k8s.io/v1/roles"))
        del k8s.objects[resource, NAMESPACE, f"rs-{suffix}"]
    api = fresh_api()
    assert (await api.get("Job", NAMESPACE, "rs-a1")) is not None
    async with run_operator():
        for kind, suffix in LATER:
            assert await eventually(lambda: api.get(kind, NAMESPACE, f"rs-{suffix}"), timeout=15), (kind, suffix)
        assert (await phase_is(api, "rs", "Pending"))["attempts"] == 1


async def test_an_attempt_launched_before_its_creation_was_recorded_gets_its_children(k8s, api):
    """An earlier operator launched it from its Job's event and stopped before the create handler
    recorded the creation: kopf calls the create handler again, which finishes the launch."""
    from nsm_operator.builders import build_job
    from nsm_operator.resource import Training
    from nsm_operator.settings import OperatorSettings

    body = training("lr")
    await api.create(body)
    await api.create(build_job(Training.from_body(body), 1, OperatorSettings()))
    await api.patch("NSMTraining", NAMESPACE, "lr", {"status": {"phase": "Pending", "attempts": 1,
                                                                "activeJob": "lr-a1"}}, subresource="status")  # fmt: skip
    async with run_operator():
        for kind, suffix in LATER:
            assert await eventually(lambda: api.get(kind, NAMESPACE, f"lr-{suffix}"), timeout=15), (kind, suffix)
        assert (await phase_is(api, "lr", "Pending"))["attempts"] == 1
    assert len(list(k8s["post", kmock_lib.resource("batch/v1/jobs")])) == 1  # the test's own: no second Job


async def test_a_restart_with_the_children_made_reads_one_and_writes_none(k8s, api):
    async with run_operator() as op:
        await api.create(training("rd"))
        await eventually(lambda: api.get("RoleBinding", NAMESPACE, "rd-trainer"))
        await eventually(lambda: not op.ctx.finishing)
    posts, reads = len(list(k8s["post"])), len(list(k8s["get", ROLEBINDINGS]))
    configmap = (await fresh_api().get("ConfigMap", NAMESPACE, "rd-spec"))["data"]
    api = fresh_api()
    async with run_operator() as op:
        await eventually(lambda: len(list(k8s["get", ROLEBINDINGS])) > reads)
        await eventually(lambda: not op.ctx.finishing)
    assert len(list(k8s["post"])) == posts  # nothing created again (not even a 409)
    assert len(list(k8s["patch", CONFIGMAPS])) == 0
    assert (await api.get("ConfigMap", NAMESPACE, "rd-spec"))["data"] == configmap
