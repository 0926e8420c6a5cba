"""A stuck attempt says why and ends (issue #10, part B) on the local control plane: the real
scheduler reports Unschedulable for a GPU product no node has; a kwok stage leaves a pod in
ImagePullBackOff (annotation kwok.nsm.dev/outcome: image-pull-backoff); a Job deleted by hand
mid-run is re-created as the same attempt once its pod is gone.

Test names start with ``test_op_`` so the session's operator serves their namespaces.
"""

from __future__ import annotations

import time

import pytest

from tests.cluster.waiting import wait_for

pytestmark = pytest.mark.e2e


def _reason(nsmt, name: str, reason: str) -> dict | None:
    st = nsmt.status(name)
    return st if st.get("reason") == reason else None


def _warnings(core_v1, ns: str, name: str, reason: str) -> list:
    events = core_v1.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    return [e for e in events if e.type == "Warning" and e.reason == reason]


def test_op_unschedulable_gpu_product_says_why_and_is_retried_after_the_startup_timeout(nsmt, core_v1):
    # No node is labelled with an H100: the real scheduler leaves the pod Pending, Unschedulable.
    start = time.monotonic()
    nsmt.apply("nogpu", resources={"gpu": {"count": 1, "product": "H100"}}, startupTimeoutSeconds=10,
               retry={"maxRetries": 1, "initialDelaySeconds": 1, "maxDelaySeconds": 1})  # fmt: skip
    st = wait_for(lambda: _reason(nsmt, "nogpu", "Unschedulable"), 30, "status.reason Unschedulable",
                  lambda: str(nsmt.status("nogpu")))  # fmt: skip
    assert st["phase"] == "Pending" and time.monotonic() - start < 30
    waiting = next(c for c in st["conditions"] if c["type"] == "Waiting")
    assert waiting["status"] == "True" and "nodes are available" in waiting["message"]  # the scheduler's own words
    wait_for(lambda: _warnings(core_v1, nsmt.ns, "nogpu", "Unschedulable"), max(1.0, 30 - (time.monotonic() - start)),
             "Warning event Unschedulable within 30 s of the apply")  # fmt: skip

    st = nsmt.wait_phase("nogpu", "Failed", timeout=90)
    assert st["failureReason"] == "Unschedulable" and st["attempts"] == 2 and st["retries"] == 1
    assert "startupTimeoutSeconds (10s)" in st["message"] and "maxRetries (1) exhausted" in st["message"]
    # Each stuck attempt was stopped: no Job keeps its place in the scheduler's queue.
    wait_for(lambda: not nsmt.jobs("nogpu"), 30, "stuck Jobs deleted")
    assert len(_warnings(core_v1, nsmt.ns, "nogpu", "Unschedulable")) <= 2  # once per attempt


def test_op_image_pull_backoff_is_shown_and_fails_without_retry(nsmt, core_v1):
    nsmt.apply("badimage", annotations={"kwok.nsm.dev/outcome": "image-pull-backoff"}, startupTimeoutSeconds=5,
               retry={"maxRetries": 3, "initialDelaySeconds": 1})  # fmt: skip
    st = wait_for(lambda: _reason(nsmt, "badimage", "ImagePullBackOff"), 30, "status.reason ImagePullBackOff",
                  lambda: str(nsmt.status("badimage")))  # fmt: skip
    assert st["phase"] == "Pending" and "Back-off pulling image" in st["message"]
    st = nsmt.wait_phase("badimage", "Failed", timeout=60)
    assert st["failureReason"] == "ImagePullBackOff" and st["attempts"] == 1 and st.get("retries", 0) == 0
    assert st["reason"] == "ImagePullBackOff"  # kubectl get -o wide shows why it failed
    wait_for(lambda: _warnings(core_v1, nsmt.ns, "badimage", "ImagePullBackOff"), 30, "the ImagePullBackOff event")


def test_op_job_deleted_by_hand_is_recreated_as_the_same_attempt(nsmt, cluster):
    # Documented outcome (docs/operator.md): the operator re-creates <name>-a<n> once the deleted
    # Job's pod is gone; no retry is consumed and the training finishes.
    nsmt.apply("handdel", annotations={"kwok.nsm.dev/run-seconds": "6"})
    nsmt.wait_phase("handdel", "Running")
    (old,) = nsmt.jobs("handdel")
    cluster.kubectl("delete", "job", "handdel-a1", "-n", nsmt.ns, check=True)
    wait_for(lambda: any(j.metadata.uid != old.metadata.uid for j in nsmt.jobs("handdel")), 30, "handdel-a1 re-created")
    st = nsmt.wait_phase("handdel", "Succeeded", timeout=60)
    assert st["attempts"] == 1 and st.get("retries", 0) == 0
    assert [j.metadata.name for j in nsmt.jobs("handdel")] == ["handdel-a1"]
