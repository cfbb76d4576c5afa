"""Shared by the tests of aemu's pytest plugin (tests/test_plugin*.py): the
firmware they boot, and the host project's ini file they write."""
from __future__ import annotations

import os
import tempfile

import pytest

from conftest import FIRMWARE

IRQ = FIRMWARE / "irq"
#: uart_echo.elf: "uart_echo: ready; send text, 'q' ends\n", then echoes upper-cased
ECHO = str(IRQ / "uart_echo.elf")
ECHO_BANNER = b"'q' ends\n"
#: timer_exact.elf [MODE [RELOAD [PRESCALE [WINDOW_US]]]]: prints its ticks, exits 0
TIMER = str(IRQ / "timer_exact.elf")
#: idle.elf [SECONDS [HZ]]: a HZ timer and eiwait, then exits 0
IDLE = str(IRQ / "idle.elf")
#: subprocesses run outside the source tree (see tests/test_serve.py)
NEUTRAL_CWD = tempfile.gettempdir()


def make_ini(pytester: pytest.Pytester, fixture_scope: str | None = "function",
             test_scope: str | None = "function", *extra: str) -> None:
    """The host project's pytest.ini: pytest-asyncio's two defaults and more lines."""
    lines = ["[pytest]"]
    if fixture_scope is not None:
        lines.append(f"asyncio_default_fixture_loop_scope = {fixture_scope}")
    if test_scope is not None:
        lines.append(f"asyncio_default_test_loop_scope = {test_scope}")
    lines += extra
    pytester.makeini("\n".join(lines) + "\n")


def subprocess_env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


__all__ = ["ECHO", "ECHO_BANNER", "IDLE", "IRQ", "NEUTRAL_CWD", "TIMER", "make_ini",
           "subprocess_env"]
