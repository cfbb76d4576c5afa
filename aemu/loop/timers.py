"""Timers on the virtual clock: a heap of (cycle, sequence) deadlines."""
from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable


class Timer:
    """A scheduled callback; ``cancel()`` is idempotent."""

    __slots__ = ("cycle", "callback", "cancelled", "_seq", "owner")

    def __init__(self, cycle: int, callback: Callable[[], None], seq: int,
                 owner: Any = None) -> None:
        self.cycle = cycle
        self.callback = callback
        self.cancelled = False
        self._seq = seq
        #: whose timer this is (a device): told when it fires (its ``_generation``)
        self.owner = owner

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return (self.cycle, self._seq) < (other.cycle, other._seq)


class TimerQueue:
    """Deadlines fire in cycle order, ties in the order they were scheduled."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = itertools.count()

    def schedule(self, cycle: int, callback: Callable[[], None], owner: Any = None) -> Timer:
        timer = Timer(cycle, callback, next(self._seq), owner)
        heapq.heappush(self._heap, timer)
        return timer

    def next_cycle(self) -> int | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].cycle if heap else None

    def fire_due(self, now: int) -> int:
        """Run every timer due at or before ``now``; returns how many ran."""
        heap, fired = self._heap, 0
        while heap and heap[0].cycle <= now:
            timer = heapq.heappop(heap)
            if not timer.cancelled:
                timer.cancelled = True
                if timer.owner is not None:
                    timer.owner._generation += 1
                timer.callback()
                fired += 1
        return fired

    def clear(self) -> None:
        for timer in self._heap:
            timer.cancelled = True
        self._heap.clear()

    def __len__(self) -> int:
        return sum(1 for t in self._heap if not t.cancelled)
