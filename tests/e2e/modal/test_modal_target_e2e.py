"""``spec.target: modal`` end to end: the real operator process on the local control plane, with
the FAKE Modal bridge (tests/fakes/modal_bridge.py) because Modal's servers are unreachable here.

Each test scripts the fake's calls for its training (start delay, epochs, outcome), creates the
NSMTraining and follows its status: spawn (status.modal.callId), progress copied from the
"Volume", success (status.result), a remote failure retried per spec.retry, cancel on delete and
on suspend, and no second call for an attempt after the operator is killed — also when it dies
between spawning and saving the call id.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.e2e.modal.support import TOKEN_ID, TOKEN_SECRET, wait_for
from tests.fakes.modal_bridge import FakeBridge

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator_logs")]

GROUP, VERSION, PLURAL = "nsm.dev", "v1alpha1", "nsmtrainings"


def training(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "NSMTraining", "metadata": {"name": name},
            "spec": {"domain": "causal", "target": "modal", "epochs": 3,
                     "retry": {"maxRetries": 2, "backoffCoefficient": 1.0, "initialDelaySeconds": 1,
                               "maxDelaySeconds": 1}, **spec}}  # fmt: skip


def get(custom_objects, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def status_of(custom_objects, namespace: str, name: str) -> dict[str, Any]:
    return (get(custom_objects, namespace, name) or {}).get("status") or {}


def phase_is(custom_objects, namespace: str, name: str, phase: str):
    def check():
        status = status_of(custom_objects, namespace, name)
        return status if status.get("phase") == phase else None
    return check


def create(custom_objects, namespace: str, body: dict[str, Any]) -> None:
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def assert_no_secrets(core_v1, custom_objects, namespace: str, name: str) -> None:
    text = json.dumps(get(custom_objects, namespace, name) or {})
    text += json.dumps([e.message for e in core_v1.list_namespaced_event(namespace).items])
    assert TOKEN_ID not in text and TOKEN_SECRET not in text


def test_spawn_progress_success(modal_operator, fake_modal: FakeBridge, custom_objects, core_v1, namespace):
    fake_modal.script("ok", {"startAfter": 1.0, "epochs": 3, "epochSeconds": 1.5})
    modal_operator()
    create(custom_objects, namespace, training("ok"))
    status = wait_for(lambda: (status_of(custom_objects, namespace, "ok").get("modal") or {}).get("callId")
                      and status_of(custom_objects, namespace, "ok"), 30, "status.modal.callId")
    assert status["modal"]["callId"] == fake_modal.calls("ok")[0]["id"] and status["modal"]["attempt"] == 1
    wait_for(phase_is(custom_objects, namespace, "ok", "Running"), 30, "phase Running")
    progress = wait_for(lambda: (status_of(custom_objects, namespace, "ok").get("progress") or {}).get("epoch"),
                        30, "status.progress from the Volume's history.json")
    assert progress >= 1
    status = wait_for(phase_is(custom_objects, namespace, "ok", "Succeeded"), 60, "phase Succeeded")
    assert status["result"]["status"] == "completed" and status["result"]["epochs_run"] == 3
    assert status["progress"]["epoch"] == 3
    assert status["lastCheckpoint"]["path"] == "modal://nsm-checkpoints/ok/last.pt"
    assert [a for a, _ in fake_modal.spawns("ok")] == [1]
    assert (fake_modal.root / "credentials.json").exists()  # the bridge got the Secret's token
    assert_no_secrets(core_v1, custom_objects, namespace, "ok")


def test_remote_failure_is_retried(modal_operator, fake_modal: FakeBridge, custom_objects, namespace):
    fake_modal.script("flaky", {
        "attempts": {"1": {"outcome": "fail", "reason": "RemoteError", "message": "CUDA error: an illegal memory access",
                           "startAfter": 0.5, "epochSeconds": 0.5}},
        "default": {"startAfter": 0.5, "epochSeconds": 0.5},
    })
    modal_operator()
    create(custom_objects, namespace, training("flaky"))
    status = wait_for(phase_is(custom_objects, namespace, "flaky", "Succeeded"), 90, "phase Succeeded")
    assert status["attempts"] == 2 and status["retries"] == 1
    assert [a for a, _ in fake_modal.spawns("flaky")] == [1, 2]
    assert status["modal"]["attempt"] == 2


def test_non_retryable_failure(modal_operator, fake_modal: FakeBridge, custom_objects, namespace):
    fake_modal.script("nan", {"outcome": "fail", "reason": "Diverged", "message": "training loss is not finite",
                              "retryable": False, "startAfter": 0.5, "epochSeconds": 0.5})
    modal_operator()
    create(custom_objects, namespace, training("nan"))
    status = wait_for(phase_is(custom_objects, namespace, "nan", "Failed"), 60, "phase Failed")
    assert status["failureReason"] == "Diverged" and "not finite" in status["message"]
    assert len(fake_modal.spawns("nan")) == 1


def test_cancel_on_delete(modal_operator, fake_modal: FakeBridge, custom_objects, namespace):
    fake_modal.script("doomed", {"outcome": "hang", "startAfter": 0.5, "epochSeconds": 1})
    modal_operator()
    create(custom_objects, namespace, training("doomed"))
    wait_for(phase_is(custom_objects, namespace, "doomed", "Running"), 30, "phase Running")
    custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "doomed")
    wait_for(lambda: fake_modal.calls("doomed")[0]["cancelledAt"], 30, "the call to be cancelled")
    wait_for(lambda: get(custom_objects, namespace, "doomed") is None, 30, "the NSMTraining to be gone")


def test_cancel_on_suspend(modal_operator, fake_modal: FakeBridge, custom_objects, namespace):
    fake_modal.script("paused", {"outcome": "hang", "startAfter": 0.5, "epochSeconds": 1})
    modal_operator()
    create(custom_objects, namespace, training("paused"))
    wait_for(phase_is(custom_objects, namespace, "paused", "Running"), 30, "phase Running")
    custom_objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "paused", {"spec": {"suspend": True}})
    wait_for(phase_is(custom_objects, namespace, "paused", "Suspended"), 30, "phase Suspended")
    wait_for(lambda: fake_modal.calls("paused")[0]["cancelledAt"], 30, "the call to be cancelled")


def test_no_duplicate_call_after_operator_restart(modal_operator, fake_modal: FakeBridge, custom_objects, namespace):
    fake_modal.script("steady", {"startAfter": 0.5, "epochs": 3, "epochSeconds": 3})
    operator = modal_operator()
    create(custom_objects, namespace, training("steady"))
    wait_for(phase_is(custom_objects, namespace, "steady", "Running"), 30, "phase Running")
    os.killpg(operator.proc.pid, signal.SIGKILL)  # no graceful shutdown
    operator.proc.wait(timeout=10)
    modal_operator()
    wait_for(phase_is(custom_objects, namespace, "steady", "Succeeded"), 60, "phase Succeeded")
    assert [a for a, _ in fake_modal.spawns("steady")] == [1]


def test_operator_dies_between_spawn_and_saving_the_call_id(modal_operator, fake_modal: FakeBridge,
                                                            custom_objects, namespace):
    """The fake makes the operator process exit inside spawn (after the call exists, before its
    id reaches the status); the restarted operator adopts the call instead of spawning again."""
    fake_modal.script("crashy", {"crashAfterSpawn": True, "startAfter": 0.5, "epochs": 2, "epochSeconds": 1})
    operator = modal_operator()
    create(custom_objects, namespace, training("crashy"))
    wait_for(lambda: operator.proc.poll() is not None, 30, "the operator to die inside spawn")
    status = status_of(custom_objects, namespace, "crashy")
    assert status["modal"]["launching"]["token"] and not status["modal"].get("callId")
    modal_operator()
    status = wait_for(phase_is(custom_objects, namespace, "crashy", "Succeeded"), 60, "phase Succeeded")
    assert [a for a, _ in fake_modal.spawns("crashy")] == [1]
    # The adopted call is the one that finished; a finished training forgets it (issue #11): lastCallId.
    assert status["modal"]["lastCallId"] == fake_modal.calls("crashy")[0]["id"] and not status["modal"].get("callId")
