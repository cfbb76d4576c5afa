"""Shared test fixtures: where the firmware and the optional toolchain live, and
a runner for coroutines on both event loops."""
from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FIRMWARE = TESTS / "firmware"


def toolchain_prefix() -> Path | None:
    """The cr16-elf toolchain prefix: $AEMU_CR16_PREFIX, else cr16-elf-gcc on PATH."""
    env = os.environ.get("AEMU_CR16_PREFIX")
    if env:
        p = Path(env)
        return p if (p / "bin" / "cr16-elf-gcc").exists() else None
    gcc = shutil.which("cr16-elf-gcc")
    return Path(gcc).resolve().parent.parent if gcc else None


def toolchain_tool(name: str) -> str:
    """Path of a toolchain program (cr16-elf-<name>), or skip the test."""
    prefix = toolchain_prefix()
    if prefix is None:
        if os.environ.get("CI"):
            pytest.fail("the cr16-elf toolchain is required in CI (set AEMU_CR16_PREFIX)")
        pytest.skip("cr16-elf toolchain not found (set AEMU_CR16_PREFIX)")
    return str(prefix / "bin" / f"cr16-elf-{name}")


@pytest.fixture
def firmware_dir() -> Path:
    return FIRMWARE


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """run(coro, timeout=60): run a coroutine to completion, bounded, on a fresh
    event loop of each kind (the test runs once per loop)."""
    if request.param == "uvloop":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            pytest.skip("uvloop is not installed")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    def runner(coro, timeout: float = 60.0):
        async def bounded():
            return await asyncio.wait_for(coro, timeout)
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(bounded())
    runner.kind = request.param
    return runner
