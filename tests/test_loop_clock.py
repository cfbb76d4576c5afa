"""The virtual clock and the timer queue."""
from __future__ import annotations

import pytest

from aemu.loop import TimerQueue, VirtualClock


def test_clock_derives_time_from_cycles() -> None:
    count = [0]
    clock = VirtualClock(100_000_000, lambda: count[0])
    count[0] = 250
    assert clock.cycles() == 250 and clock.ns() == 2500
    clock.skip(50)
    assert clock.cycles() == 300 and clock.ns() == 3000
    assert clock.idle_cycles == 50


@pytest.mark.parametrize("hz", [1, 3, 7_000_000, 32_768, 100_000_000, 333_333_333])
def test_ns_and_cycles_round_trip(hz: int) -> None:
    clock = VirtualClock(hz, lambda: 0)
    for ns in (0, 1, 999, 10**9, 3 * 10**9 + 7):
        c = clock.ns_to_cycles(ns)
        assert clock.cycles_to_ns(c) >= ns                  # the first cycle at or after ns
        assert c == 0 or clock.cycles_to_ns(c - 1) < ns


def test_clock_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        VirtualClock(0, lambda: 0)


def test_timers_fire_in_order_ties_in_schedule_order() -> None:
    q, fired = TimerQueue(), []
    q.schedule(30, lambda: fired.append("c"))
    q.schedule(10, lambda: fired.append("a"))
    q.schedule(10, lambda: fired.append("b"))
    t = q.schedule(20, lambda: fired.append("x"))
    t.cancel()
    assert q.next_cycle() == 10 and len(q) == 3
    assert q.fire_due(9) == 0 and fired == []
    assert q.fire_due(20) == 2 and fired == ["a", "b"]
    assert q.next_cycle() == 30
    assert q.fire_due(100) == 1 and fired == ["a", "b", "c"]
    assert q.next_cycle() is None


def test_timer_scheduled_from_a_callback_for_now_fires_in_the_same_pass() -> None:
    q, fired = TimerQueue(), []
    q.schedule(5, lambda: (fired.append(1), q.schedule(5, lambda: fired.append(2))))
    q.fire_due(5)
    assert fired == [1, 2]


def test_clear_cancels_everything() -> None:
    q, fired = TimerQueue(), []
    for c in range(5):
        q.schedule(c, lambda: fired.append(c))
    q.clear()
    assert q.fire_due(10) == 0 and q.next_cycle() is None and fired == []
