"""Testing CR16C firmware with pytest: aemu's fixtures (docs/testing.md).

The plugin (``aemu.testing.plugin``) loads by itself where aemu is
installed.  This package names what tests and conftests use; nothing here is
imported until it is asked for, so ``import aemu.testing`` stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "PooledMachine": "aemu.testing.pooled",
    "MachineFactory": "aemu.testing.machines",
    "BootError": "aemu.testing.machines",
    "Uart": "aemu.testing.uart",
    "ExpectError": "aemu.testing.uart",
    "ExpectTimeout": "aemu.testing.uart",
    "AemuHost": "aemu.testing.host",
    "ServeProcess": "aemu.testing.host",
    "loop_factories": "aemu.testing.loops",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aemu.testing' has no attribute {name!r}")
    # not cached here: a test harness that unloads modules (pytester) must
    # get the class the fixtures raise, not one of an unloaded copy
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
