"""Deleting a Modal training never hangs (issue #11): the cancel is bounded, a training whose call
ended needs no finalizer. The FAKE Modal bridge stands in for Modal's servers (unreachable here).
"""

from __future__ import annotations

import time

import pytest
from kubernetes.client.rest import ApiException

from tests.e2e.modal.support import wait_for
from tests.e2e.modal.test_modal_target_e2e import GROUP, PLURAL, VERSION, create, get, phase_is, status_of, training
from tests.fakes.modal_bridge import FakeBridge

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator_logs")]


def _namespace_gone(core_v1, namespace: str) -> bool:
    try:
        core_v1.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_namespace_with_a_running_modal_training_and_no_secret_is_deleted_within_60s(
    modal_operator, fake_modal: FakeBridge, custom_objects, core_v1, namespace
):
    fake_modal.script("stuck", {"outcome": "hang", "startAfter": 0.5, "epochSeconds": 1})
    operator = modal_operator()
    create(custom_objects, namespace, training("stuck"))
    wait_for(phase_is(custom_objects, namespace, "stuck", "Running"), 30, "phase Running")
    body = get(custom_objects, namespace, "stuck")
    assert body["metadata"].get("finalizers"), "a running Modal training carries the operator's finalizer"
    call_id = body["status"]["modal"]["callId"]

    core_v1.delete_namespaced_secret("modal-credentials", namespace)  # as namespace deletion may do first
    start = time.monotonic()
    core_v1.delete_namespace(namespace)
    wait_for(lambda: _namespace_gone(core_v1, namespace), 60, f"namespace {namespace} to be gone")
    took = time.monotonic() - start
    assert took < 60
    log = operator.log()
    assert f"could not cancel Modal call {call_id}" in log and f"nsm modal cancel {call_id}" in log
    assert fake_modal.calls("stuck")[0]["cancelledAt"] is None  # nothing could cancel it: said so instead


def test_a_finished_training_forgets_its_call_and_carries_no_finalizer(
    modal_operator, fake_modal: FakeBridge, custom_objects, namespace
):
    fake_modal.script("done", {"startAfter": 0.5, "epochs": 1, "epochSeconds": 0.5})
    modal_operator()
    create(custom_objects, namespace, training("done"))
    status = wait_for(phase_is(custom_objects, namespace, "done", "Succeeded"), 60, "phase Succeeded")
    assert status["modal"].get("callId") is None and status["modal"]["lastCallId"] == fake_modal.calls("done")[0]["id"]
    wait_for(lambda: not get(custom_objects, namespace, "done")["metadata"].get("finalizers"), 30, "no finalizer")
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "done")
    wait_for(lambda: get(custom_objects, namespace, "done") is None, 10, "the NSMTraining to be gone")
    assert status_of(custom_objects, namespace, "done") == {}
