"""The scheduler's parts: a virtual clock, timers on it, run states, and the
event-loop set-up (uvloop by default).  The machine that drives a CPU and its
devices with them lives in aemu/hw/machine.py."""
from .clock import VirtualClock
from .eventloop import LOOPS, LoopError, run_with_loop
from .runstate import RunState
from .timers import Timer, TimerQueue

__all__ = ["LOOPS", "LoopError", "RunState", "Timer", "TimerQueue", "VirtualClock", "run_with_loop"]
