"""Admission: requests in flight are bounded; the waiting ones go in by priority, then in order."""

from __future__ import annotations

import asyncio

import pytest

from nsm_operator.admission import LATER, NORMAL, URGENT, Admission, current_priority, priority


async def _hold(admission: Admission, level: int | None, log: list, name: str, release: asyncio.Event) -> None:
    async with admission.slot(level):
        log.append(name)
        await release.wait()


async def test_waiters_are_admitted_most_urgent_first_then_in_arrival_order():
    admission, log, release = Admission(1), [], asyncio.Event()
    holder = asyncio.create_task(_hold(admission, NORMAL, log, "holder", asyncio.Event()))
    await asyncio.sleep(0)
    order = [("later", LATER), ("normal-1", NORMAL), ("urgent", URGENT), ("normal-2", NORMAL)]
    waiters = [asyncio.create_task(_hold(admission, level, log, name, release)) for name, level in order]
    await asyncio.sleep(0)
    assert admission.in_flight == 1 and admission.waiting == 4
    release.set()
    holder.cancel()  # the holder leaves: its slot passes on, one at a time
    await asyncio.gather(*waiters)
    assert log == ["holder", "urgent", "normal-1", "normal-2", "later"]
    assert admission.in_flight == 0 and admission.waiting == 0


async def test_never_more_in_flight_than_its_size():
    admission, peak, inside = Admission(3), [0], [0]

    async def one() -> None:
        async with admission.slot():
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            await asyncio.sleep(0.001)
            inside[0] -= 1

    await asyncio.gather(*(one() for _ in range(20)))
    assert peak[0] == 3 and admission.in_flight == 0


async def test_a_cancelled_waiter_takes_no_slot_with_it():
    admission, log, gate = Admission(1), [], asyncio.Event()
    holder = asyncio.create_task(_hold(admission, NORMAL, log, "holder", gate))
    await asyncio.sleep(0)
    gone = asyncio.create_task(_hold(admission, URGENT, log, "gone", asyncio.Event()))
    kept = asyncio.create_task(_hold(admission, LATER, log, "kept", asyncio.Event()))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert admission.waiting == 1
    gate.set()
    await holder
    await asyncio.sleep(0)
    assert log == ["holder", "kept"] and admission.in_flight == 1
    kept.cancel()
    await asyncio.gather(kept, return_exceptions=True)
    assert admission.in_flight == 0
    async with admission.slot():  # a fresh request goes straight in
        pass


async def test_admitted_as_it_was_cancelled_passes_the_slot_on():
    admission, log = Admission(1), []
    first = asyncio.create_task(_hold(admission, NORMAL, log, "first", asyncio.Event()))
    await asyncio.sleep(0)
    racing = asyncio.create_task(_hold(admission, NORMAL, log, "racing", asyncio.Event()))
    after = asyncio.create_task(_hold(admission, NORMAL, log, "after", asyncio.Event()))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)  # its release admits "racing"...
    racing.cancel()  # ...which is cancelled before it ran
    await asyncio.gather(racing, return_exceptions=True)
    await asyncio.sleep(0)
    assert log[-1] == "after" and admission.in_flight == 1
    after.cancel()
    await asyncio.gather(after, return_exceptions=True)
    assert admission.in_flight == 0


async def test_the_priority_in_force_reaches_tasks_started_inside():
    seen = []

    async def probe() -> None:
        seen.append(current_priority())

    assert current_priority() == NORMAL
    with priority(URGENT):
        await asyncio.gather(probe(), probe())
        await asyncio.create_task(probe())
    await probe()
    assert seen == [URGENT, URGENT, URGENT, NORMAL]


def test_an_admission_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        Admission(0)


async def test_the_non_urgent_hold_at_most_their_share_and_the_urgent_pass_them():
    admission, log, gate = Admission(4, shared=1), [], asyncio.Event()
    first = asyncio.create_task(_hold(admission, NORMAL, log, "normal-1", gate))
    await asyncio.sleep(0)
    second = asyncio.create_task(_hold(admission, LATER, log, "later", gate))
    third = asyncio.create_task(_hold(admission, NORMAL, log, "normal-2", gate))
    await asyncio.sleep(0)
    assert log == ["normal-1"] and admission.in_flight == 1 and admission.waiting == 2  # slots free, share used
    urgent = [asyncio.create_task(_hold(admission, URGENT, log, f"urgent-{i}", gate)) for i in range(3)]
    await asyncio.sleep(0)
    assert log[1:] == ["urgent-0", "urgent-1", "urgent-2"] and admission.in_flight == 4
    gate.set()
    await asyncio.gather(first, second, third, *urgent)
    assert log[4:] == ["normal-2", "later"] and admission.in_flight == 0
