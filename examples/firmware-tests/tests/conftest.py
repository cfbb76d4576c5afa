"""Build the firmware once per test session and hand it to aemu's fixtures.

aemu's plugin takes the firmware of a test from its ``aemu`` marker, else
from the ``aemu_firmware`` fixture; overriding that fixture is how a project
plugs in its own build."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"


def toolchain_prefix() -> str | None:
    """$AEMU_CR16_PREFIX, else the prefix of cr16-elf-gcc on PATH."""
    prefix = os.environ.get("AEMU_CR16_PREFIX")
    if prefix:
        return prefix if os.path.exists(os.path.join(prefix, "bin", "cr16-elf-gcc")) else None
    gcc = shutil.which("cr16-elf-gcc")
    return str(Path(gcc).resolve().parent.parent) if gcc else None


@pytest.fixture(scope="session")
def aemu_firmware() -> Path:
    """firmware/build/shell.elf, (re)built with make."""
    prefix = toolchain_prefix()
    if prefix is None:
        message = ("the cr16-elf toolchain is needed to build the firmware: set "
                   "AEMU_CR16_PREFIX to its prefix or put cr16-elf-gcc on PATH")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)       # CI must not skip silently
        pytest.skip(message)
    if shutil.which("make") is None:
        pytest.fail("make is needed to build the firmware", pytrace=False)
    done = subprocess.run(["make", "-C", str(FIRMWARE), f"CR16_PREFIX={prefix}",
                           f"PYTHON={sys.executable}"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"building the firmware failed:\n{done.stdout}{done.stderr}",
                    pytrace=False)
    return FIRMWARE / "build" / "shell.elf"
