"""Event-loop set-up: uvloop by default, the stock asyncio loop on request."""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine

LOOPS = ("uvloop", "asyncio")


class LoopError(ValueError):
    """An unknown event-loop name."""


def run_with_loop(coro: Coroutine[Any, Any, Any], loop: str = "uvloop") -> Any:
    """Run ``coro`` on uvloop (default) or the stock asyncio loop."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            factory = None
        else:
            factory = uvloop.new_event_loop
    elif loop == "asyncio":
        factory = None
    else:
        raise LoopError(f"unknown event loop {loop!r}: use uvloop or asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
