"""Every transition of the attempt lifecycle."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from nsm.spec import parse_spec
from nsm_operator.lifecycle import (
    Action, ActionKind, Observation, State, cost_estimate, iso, running_gpu_seconds, set_condition, step,
)  # fmt: skip

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


def spec(**kw):
    return parse_spec({"domain": "causal", "retry": {"maxRetries": 2, "initialDelaySeconds": 10,
                                                      "backoffCoefficient": 3, "maxDelaySeconds": 60}, **kw})  # fmt: skip


def conds(status):
    return {c["type"]: c["status"] for c in status.get("conditions", [])}


def run(s, status, obs, now=T0, price=2.0):
    r = step(s, status, obs, now, price)
    merged = {**status, **r.status}
    return r, merged


def test_new_training_starts_attempt_1():
    r, st = run(spec(), {}, None)
    assert r.action == Action(ActionKind.start, 1)
    assert st["phase"] == "Pending" and st["attempts"] == 1 and st["retries"] == 0
    assert conds(st) == {"Created": "True", "Retrying": "False"}
    assert r.events == [("Normal", "AttemptStarted", "attempt 1 started")]


def test_absent_job_is_created_again_idempotently():
    r, st = run(spec(), {"phase": "Pending", "attempts": 1}, Observation(State.absent))
    assert r.action == Action(ActionKind.start, 1) and r.status == {}


def test_running_sets_times_once():
    started = T0 - timedelta(seconds=5)
    r, st = run(spec(), {"phase": "Pending", "attempts": 1}, Observation(State.running, started_at=started))
    assert st["phase"] == "Running" and st["startTime"] == iso(started) == st["attemptStartTime"]
    assert conds(st)["Running"] == "True"
    r2, _ = run(spec(), st, Observation(State.running, started_at=started), now=T0 + timedelta(seconds=30))
    assert {k: v for k, v in r2.status.items() if st.get(k) != v} == {} and r2.events == []


def test_queued():
    r, st = run(spec(), {"phase": "Pending", "attempts": 1}, Observation(State.queued))
    assert st["phase"] == "Queued" and r.action.kind == ActionKind.none


def test_success_is_terminal_with_cost():
    status = {"phase": "Running", "attempts": 1, "attemptStartTime": iso(T0), "gpuSeconds": 0.0}
    end = T0 + timedelta(hours=2)
    r, st = run(spec(resources={"gpu": {"count": 2}}), status, Observation(State.succeeded, finished_at=end), now=end)
    assert r.action.kind == ActionKind.finish
    assert st["phase"] == "Succeeded" and st["completionTime"] == iso(end)
    assert st["costEstimate"] == {"gpuHours": 4.0, "usd": 8.0} and st["gpuSeconds"] == 4 * 3600
    assert conds(st)["Succeeded"] == "True" and conds(st)["Running"] == "False"
    r2, _ = run(spec(), st, Observation(State.succeeded))
    assert r2.status == {} and r2.action.kind == ActionKind.finish


@pytest.mark.parametrize(("retries", "delay"), [(0, 10), (1, 30)])
def test_retryable_failure_waits_backoff(retries, delay):
    status = {"phase": "Running", "attempts": retries + 1, "retries": retries}
    obs = Observation(State.failed, exit_code=1, reason="Error")
    r, st = run(spec(), status, obs)
    assert r.action == Action(ActionKind.wait, retries + 2, T0 + timedelta(seconds=delay))
    assert st["phase"] == "Retrying" and st["retries"] == retries + 1
    assert st["nextAttemptAt"] == iso(T0 + timedelta(seconds=delay)) and st["failureReason"] == "Error"
    assert conds(st)["Retrying"] == "True"
    assert r.events[0][0:2] == ("Warning", "Retrying")
    assert f"attempt {retries + 1} failed (reason Error, exit code 1)" in st["message"]


def test_backoff_is_capped_by_max_delay():
    s = parse_spec({"domain": "kg", "retry": {"maxRetries": 10, "initialDelaySeconds": 10, "maxDelaySeconds": 25}})
    r, st = run(s, {"phase": "Running", "attempts": 5, "retries": 4}, Observation(State.failed, exit_code=1))
    assert r.action.at == T0 + timedelta(seconds=25)


def test_retry_waits_until_due_then_starts_next_attempt():
    status = {"phase": "Retrying", "attempts": 1, "retries": 1, "nextAttemptAt": iso(T0 + timedelta(seconds=10))}
    r, _ = run(spec(), status, None, now=T0 + timedelta(seconds=9))
    assert r.action == Action(ActionKind.wait, 2, T0 + timedelta(seconds=10)) and r.status == {}
    r, st = run(spec(), status, None, now=T0 + timedelta(seconds=10))
    assert r.action == Action(ActionKind.start, 2)
    assert st["phase"] == "Pending" and st["attempts"] == 2 and st["nextAttemptAt"] is None
    assert conds(st)["Retrying"] == "False"


def test_max_retries_exhausted_is_final():
    status = {"phase": "Running", "attempts": 3, "retries": 2}
    r, st = run(spec(), status, Observation(State.failed, exit_code=137, reason="OOMKilled"))
    assert r.action.kind == ActionKind.finish
    assert st["phase"] == "Failed" and st["failureReason"] == "OOMKilled"
    assert "maxRetries (2) exhausted" in st["message"] and conds(st)["Failed"] == "True"


def test_non_retryable_exit_is_final_at_once():
    obs = Observation(State.failed, exit_code=3, reason="PodFailurePolicy", message="diverged", retryable=False)
    r, st = run(spec(), {"phase": "Running", "attempts": 1, "retries": 0}, obs)
    assert st["phase"] == "Failed" and st["failureReason"] == "PodFailurePolicy"
    assert st["message"] == "attempt 1 failed (reason PodFailurePolicy, exit code 3): diverged"
    assert r.action.kind == ActionKind.finish


def test_timeout_counts_and_is_retried():
    obs = Observation(State.failed, reason="DeadlineExceeded", message="Job was active longer than specified")
    r, st = run(spec(), {"phase": "Running", "attempts": 1, "retries": 0}, obs)
    assert st["phase"] == "Retrying" and st["failureReason"] == "DeadlineExceeded" and st["retries"] == 1


def test_disruption_does_not_consume_a_retry():
    obs = Observation(State.failed, reason="Preempted", counts=False)
    r, st = run(spec(), {"phase": "Running", "attempts": 3, "retries": 2}, obs)
    assert r.action == Action(ActionKind.start, 4)
    assert st["retries"] == 2 and st["attempts"] == 4 and st["phase"] == "Pending"


def test_zero_delay_retries_at_once():
    s = parse_spec({"domain": "causal", "retry": {"initialDelaySeconds": 0}})
    r, st = run(s, {"phase": "Running", "attempts": 1, "retries": 0}, Observation(State.failed, exit_code=1))
    assert r.action == Action(ActionKind.start, 2) and st["retries"] == 1


def test_suspend_stops_and_resume_starts_a_new_attempt_without_a_retry():
    status = {"phase": "Running", "attempts": 1, "retries": 0, "attemptStartTime": iso(T0), "gpuSeconds": 0.0}
    later = T0 + timedelta(minutes=30)
    r, st = run(spec(suspend=True), status, Observation(State.running, started_at=T0), now=later)
    assert r.action == Action(ActionKind.stop, 1)
    assert st["phase"] == "Suspended" and conds(st)["Suspended"] == "True" and st["gpuSeconds"] == 1800
    r, st2 = run(spec(suspend=True), st, None)
    assert r.action.kind == ActionKind.none and r.status == {}
    r, st3 = run(spec(), st2, None)
    assert r.action == Action(ActionKind.start, 2)
    assert st3["phase"] == "Pending" and st3["retries"] == 0 and conds(st3)["Suspended"] == "False"


def test_suspend_while_retrying_then_resume():
    status = {"phase": "Retrying", "attempts": 1, "retries": 1, "nextAttemptAt": iso(T0)}
    r, st = run(spec(suspend=True), status, None)
    assert st["phase"] == "Suspended" and st["nextAttemptAt"] is None


def test_terminal_ignores_suspend():
    r, _ = run(spec(suspend=True), {"phase": "Failed", "attempts": 1}, None)
    assert r.status == {} and r.action.kind == ActionKind.finish


def test_condition_transition_time_changes_only_with_status():
    c1 = set_condition([], "Running", True, "A", "m", T0)
    c2 = set_condition(c1, "Running", True, "B", "m2", T0 + timedelta(seconds=5))
    assert c2[0]["lastTransitionTime"] == iso(T0) and c2[0]["reason"] == "B"
    c3 = set_condition(c2, "Running", False, "C", "", T0 + timedelta(seconds=9))
    assert c3[0]["lastTransitionTime"] == iso(T0 + timedelta(seconds=9)) and c3[0]["status"] == "False"
    # A condition written without a time (by hand, or an old operator) gets one, once.
    c4 = set_condition([{"type": "Running", "status": "False"}], "Running", False, "D", "", T0)
    assert c4[0]["lastTransitionTime"] == iso(T0) and c4[0]["reason"] == "D"


def test_cost_helpers():
    assert cost_estimate(7200, 3.0) == {"gpuHours": 2.0, "usd": 6.0}
    s = spec(resources={"gpu": {"count": 4}})
    st = {"phase": "Running", "gpuSeconds": 100.0, "attemptStartTime": iso(T0)}
    assert running_gpu_seconds(s, st, T0 + timedelta(seconds=10)) == 140.0


def test_every_status_field_written_is_in_the_crd_schema():
    # The API server prunes unknown status fields: a field missing from the CRD is silently lost.
    from nsm.crd import STATUS_SCHEMA

    known = set(STATUS_SCHEMA["properties"])
    s = spec()
    written: set[str] = set()
    cases = [
        ({}, None),
        ({"phase": "Pending", "attempts": 1}, Observation(State.running, started_at=T0)),
        ({"phase": "Pending", "attempts": 1}, Observation(State.queued)),
        ({"phase": "Running", "attempts": 1, "retries": 0}, Observation(State.failed, exit_code=1)),
        ({"phase": "Running", "attempts": 3, "retries": 2}, Observation(State.failed, exit_code=1)),
        ({"phase": "Running", "attempts": 1}, Observation(State.succeeded)),
        ({"phase": "Retrying", "attempts": 1, "nextAttemptAt": iso(T0)}, None),
    ]
    for status, obs in cases:
        written |= set(step(s, status, obs, T0).status)
    written |= set(step(spec(suspend=True), {"phase": "Running", "attempts": 1}, None, T0).status)
    written |= {"activeJob", "epochSummary", "observedGeneration"}  # set by handlers/reconcile.py
    written |= {"valAccuracySummary"}  # set by handlers/training.py
    assert written <= known, written - known


@pytest.mark.parametrize(
    ("status", "obs", "suspend", "phase", "reason"),
    [
        ({}, None, False, "Pending", "AttemptCreated"),
        ({"phase": "Pending", "attempts": 1}, Observation(State.queued), False, "Queued", "WaitingForAdmission"),
        ({"phase": "Pending", "attempts": 1}, Observation(State.running, started_at=T0), False, "Running",
         "AttemptRunning"),
        ({"phase": "Running", "attempts": 1, "retries": 0}, Observation(State.failed, exit_code=137, reason="OOMKilled"),
         False, "Retrying", "OOMKilled"),
        ({"phase": "Running", "attempts": 1, "retries": 0}, Observation(State.failed, exit_code=1), False, "Retrying",
         "AttemptFailed"),
        ({"phase": "Running", "attempts": 3, "retries": 2}, Observation(State.failed, reason="DeadlineExceeded"),
         False, "Failed", "DeadlineExceeded"),
        ({"phase": "Running", "attempts": 1}, None, True, "Suspended", "SuspendRequested"),
        ({"phase": "Running", "attempts": 1, "reason": "AttemptRunning"}, Observation(State.succeeded), False,
         "Succeeded", None),
    ],
)
def test_reason_says_why_the_training_is_in_its_phase(status, obs, suspend, phase, reason):
    """status.reason (kubectl get -o wide's Reason column); cleared once the training succeeded."""
    _, st = run(spec(suspend=suspend), status, obs)
    assert (st["phase"], st["reason"]) == (phase, reason)


def test_ready_summary_and_observed_generation():
    from datetime import datetime, timezone

    from nsm_operator.lifecycle import summarize

    t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    running = summarize([{"type": "Running", "status": "True", "reason": "AttemptRunning", "message": "",
                          "lastTransitionTime": "2026-01-01T00:00:00Z"}], "Running", "attempt 1 running", 3, t0)  # fmt: skip
    assert running[1] == {"type": "Ready", "status": "False", "reason": "Running", "message": "attempt 1 running",
                          "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}  # fmt: skip
    assert running[0]["observedGeneration"] == 3
    done = summarize(running, "Succeeded", "attempt 1 succeeded", 4, t1)
    assert (done[1]["status"], done[1]["reason"], done[1]["lastTransitionTime"]) == ("True", "Succeeded", "2026-01-01T01:00:00Z")
    assert {c["observedGeneration"] for c in done} == {4}
    # No generation known (a body without metadata.generation): nothing stamped.
    assert "observedGeneration" not in summarize([], "Pending", None, None, t0)[0]
