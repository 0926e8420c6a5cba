"""Job (and pod) bodies -> lifecycle observations."""

from __future__ import annotations

from nsm_operator.lifecycle import State
from nsm_operator.targets.kubernetes import job_attempt, observe_job


def job(conditions=(), suspend=False, **status):
    return {
        "metadata": {"name": "t-a1", "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"nsm.dev/attempt": "1"}},
        "spec": {"suspend": suspend},
        "status": {"startTime": "2026-01-01T00:00:01Z", "conditions": list(conditions), **status},
    }


def cond(type_, reason="", message=""):
    return {"type": type_, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:10:00Z"}  # fmt: skip


def pod(exit_code, reason="Error", created="2026-01-01T00:00:02Z", message=None):
    term = {"exitCode": exit_code, "reason": reason}
    if message:
        term["message"] = message
    return {"metadata": {"creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "trainer", "state": {"terminated": term}}]}}  # fmt: skip


def test_absent_pending_running_queued():
    assert observe_job(None).state == State.absent
    assert observe_job(job(active=1)).state == State.pending
    running = observe_job(job(active=1, ready=1))
    assert running.state == State.running and running.started_at.second == 1 and running.created_at.second == 0
    assert observe_job(job(suspend=True)).state == State.queued
    assert job_attempt(job()) == 1


def test_complete():
    obs = observe_job(job([cond("Complete")], completionTime="2026-01-01T00:05:00Z"))
    assert obs.state == State.succeeded and obs.finished_at.minute == 5 and obs.exit_code == 0


def test_retryable_failure_takes_exit_code_and_reason_from_the_newest_pod():
    pods = [pod(1, created="2026-01-01T00:00:02Z"), pod(137, "OOMKilled", created="2026-01-01T00:00:09Z")]
    obs = observe_job(job([cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]), pods)
    assert (obs.state, obs.exit_code, obs.reason, obs.retryable) == (State.failed, 137, "OOMKilled", True)
    assert obs.message == "Job has reached the specified backoff limit"


def test_pod_failure_policy_is_not_retryable():
    obs = observe_job(job([cond("Failed", "PodFailurePolicy", "Container trainer failed with exit code 3")]),
                      [pod(3, message="loss is NaN")])  # fmt: skip
    assert (obs.reason, obs.exit_code, obs.retryable) == ("PodFailurePolicy", 3, False)
    assert obs.message.endswith("loss is NaN")


def test_deadline_exceeded_is_retryable():
    obs = observe_job(job([cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")]))
    assert (obs.state, obs.reason, obs.retryable, obs.exit_code) == (State.failed, "DeadlineExceeded", True, None)


def test_failure_target_counts_as_failed():
    obs = observe_job(job([cond("FailureTarget", "PodFailurePolicy")]), [pod(2)])
    assert obs.state == State.failed and not obs.retryable
