"""Event loops for async tests, offered through pytest-asyncio's loop-factory
hook (never forced: aemu's fixtures work on any loop)::

    # conftest.py: every async test on uvloop
    from aemu.testing import loop_factories

    def pytest_asyncio_loop_factories(config, item):
        return loop_factories("uvloop")          # ("asyncio", "uvloop"): each test on both

or without code, in the ini file: ``aemu_loop_factories = uvloop``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import asyncio

LOOPS = ("asyncio", "uvloop")


def loop_factories(*names: str) -> "dict[str, Callable[[], asyncio.AbstractEventLoop]]":
    """A pytest_asyncio_loop_factories result: name -> factory, for
    ``names`` out of "asyncio" and "uvloop" (default: uvloop)."""
    out: "dict[str, Callable[[], asyncio.AbstractEventLoop]]" = {}
    for name in names or ("uvloop",):
        if name == "asyncio":
            import asyncio
            out[name] = asyncio.new_event_loop
        elif name == "uvloop":
            import uvloop
            out[name] = uvloop.new_event_loop
        else:
            raise ValueError(f"unknown event loop {name!r}: use {' or '.join(LOOPS)}")
    return out


class LoopFactories:
    """The hook, as the plugin registers it for the aemu_loop_factories ini value."""

    def __init__(self, names: Sequence[str]) -> None:
        self.factories = loop_factories(*names)      # unknown names fail at start-up

    def pytest_asyncio_loop_factories(self, config: object, item: object
                                      ) -> "dict[str, Callable[[], asyncio.AbstractEventLoop]]":
        return dict(self.factories)
