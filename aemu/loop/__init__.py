"""The scheduler: a virtual clock, timers on it, and the per-VM slice loop on
asyncio (uvloop by default)."""
from .clock import VirtualClock
from .machine import Machine, MachineError
from .runstate import RunState
from .timers import Timer, TimerQueue

__all__ = ["Machine", "MachineError", "RunState", "Timer", "TimerQueue", "VirtualClock"]
