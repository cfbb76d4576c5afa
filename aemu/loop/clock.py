"""The virtual clock: time advances with executed instructions.

One instruction is one CPU cycle.  While the CPU sleeps (WAIT), the machine
adds idle cycles: in fast pacing it jumps to the next timer, in real-time
pacing it adds the wall time it waited.  Nanoseconds are derived from cycles
with integer arithmetic, so time is exact and reproducible.
"""
from __future__ import annotations

from typing import Callable

NS = 1_000_000_000


class VirtualClock:
    def __init__(self, cpu_hz: int, instructions: Callable[[], int]) -> None:
        if cpu_hz <= 0:
            raise ValueError("cpu_hz must be positive")
        self.cpu_hz = cpu_hz
        self._instructions = instructions
        #: cycles that passed while the CPU executed nothing (part of the saved state)
        self.idle_cycles = 0

    def cycles(self) -> int:
        """Cycles since boot: instructions executed plus idle cycles."""
        return self._instructions() + self.idle_cycles

    def ns(self) -> int:
        return self.cycles() * NS // self.cpu_hz

    def cycles_to_ns(self, cycles: int) -> int:
        return cycles * NS // self.cpu_hz

    def ns_to_cycles(self, ns: int) -> int:
        """The first cycle at or after ``ns`` nanoseconds."""
        return -(-ns * self.cpu_hz // NS)

    def skip(self, cycles: int) -> None:
        """Let ``cycles`` pass with the CPU asleep."""
        if cycles > 0:
            self.idle_cycles += cycles
