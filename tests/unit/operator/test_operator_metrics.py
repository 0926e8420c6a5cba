from __future__ import annotations

from prometheus_client import generate_latest

from nsm_operator import metrics as m


def _text(om):
    return generate_latest(om.registry).decode()


def test_all_names_are_exposed():
    om = m.OperatorMetrics()
    om.observe_training("ns", "t", "causal", {"phase": "Running", "attempts": 1})
    text = _text(om)
    for name in m.METRIC_NAMES:
        assert f"# HELP {name} " in text, name


def test_per_training_series_follow_phase_and_are_removed():
    om = m.OperatorMetrics()
    status = {
        "phase": "Running", "attempts": 2, "costEstimate": {"usd": 1.5},
        "progress": {"epoch": 37, "epochs": 100, "bestValLoss": 0.4, "valAccuracy": 0.9,
                     "classAccuracy": {"0": 0.8, "1": 0.95}, "updatedAt": "2026-01-01T00:00:00Z"},
    }  # fmt: skip
    om.observe_training("ns", "t", "causal", status)
    labels = {"namespace": "ns", "name": "t", "domain": "causal"}
    get = lambda n, **extra: om.registry.get_sample_value(n, {**labels, **extra})  # noqa: E731
    assert get(m.TRAINING_EPOCH) == 37 and get(m.TRAINING_EPOCHS) == 100
    assert get(m.TRAINING_MIN_CLASS_ACCURACY) == 0.8 and get(m.TRAINING_COST_USD) == 1.5
    assert get(m.TRAINING_PROGRESS_TIMESTAMP) == 1767225600.0
    assert get(m.TRAINING_PHASE, phase="Running") == 1
    assert om.registry.get_sample_value(m.TRAININGS, {"phase": "Running"}) == 1
    om.observe_training("ns", "t", "causal", {**status, "phase": "Succeeded"})
    assert get(m.TRAINING_PHASE, phase="Running") is None and get(m.TRAINING_PHASE, phase="Succeeded") == 1
    assert om.registry.get_sample_value(m.TRAININGS, {"phase": "Running"}) == 0
    om.forget_training("ns", "t", "causal")
    assert 'name="t"' not in _text(om)
    assert om.registry.get_sample_value(m.TRAININGS, {"phase": "Succeeded"}) == 0


def test_waiting_gauges_follow_status_reason_while_pending():
    om = m.OperatorMetrics()
    labels = {"namespace": "ns", "name": "t", "domain": "causal"}
    waiting = lambda reason: om.registry.get_sample_value(m.TRAINING_WAITING, {**labels, "reason": reason})  # noqa: E731
    total = lambda reason: om.registry.get_sample_value(m.TRAININGS_WAITING, {"reason": reason})  # noqa: E731
    om.observe_training("ns", "t", "causal", {"phase": "Pending", "reason": "Unschedulable"})
    om.observe_training("ns", "u", "causal", {"phase": "Pending", "reason": "Unschedulable"})
    assert waiting("Unschedulable") == 1 and total("Unschedulable") == 2
    om.observe_training("ns", "t", "causal", {"phase": "Pending", "reason": "ImagePullBackOff"})
    assert waiting("Unschedulable") is None and waiting("ImagePullBackOff") == 1
    assert total("Unschedulable") == 1 and total("ImagePullBackOff") == 1
    # Failed keeps status.reason, but the training waits no more.
    om.observe_training("ns", "t", "causal", {"phase": "Failed", "reason": "ImagePullBackOff"})
    assert waiting("ImagePullBackOff") is None and total("ImagePullBackOff") == 0
    om.forget_training("ns", "u", "causal")
    assert total("Unschedulable") == 0


async def test_admission_gauges_say_what_waits_by_priority():
    """Read at scrape time from the client's admission: requests waiting per priority, in flight."""
    import asyncio

    from nsm_operator.admission import LATER, NORMAL, URGENT, Admission

    om = m.OperatorMetrics()
    assert f"{m.API_REQUESTS_IN_FLIGHT} 0.0" in _text(om)  # no client yet: nothing in flight
    admission = Admission(2, shared=1)
    om.describe_admission(admission.snapshot)
    release = asyncio.Event()

    async def hold(level):
        async with admission.slot(level):
            await release.wait()

    tasks = [asyncio.create_task(hold(level)) for level in (NORMAL, URGENT, LATER, NORMAL, URGENT)]
    await asyncio.sleep(0.01)
    text = _text(om)
    # NORMAL took the one shared slot and URGENT the other; the rest wait, whatever their priority.
    assert f"{m.API_REQUESTS_IN_FLIGHT} 2.0" in text
    for priority, count in (("urgent", 1), ("normal", 1), ("later", 1)):
        assert f'{m.API_REQUESTS_WAITING}{{priority="{priority}"}} {count}.0' in text, (priority, text)
    release.set()
    await asyncio.gather(*tasks)
    text = _text(om)
    assert f"{m.API_REQUESTS_IN_FLIGHT} 0.0" in text and f'{m.API_REQUESTS_WAITING}{{priority="later"}} 0.0' in text
