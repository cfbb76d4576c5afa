"""examples/firmware-tests/ is a project of its own: its tests run here, in a
subprocess, on the installed aemu (so they run in CI), from a copy of the
example (its firmware build then stays out of the source tree, and the copy
shows that the example needs nothing else from the repository)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import toolchain_tool
from plugin_helpers import subprocess_env

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "firmware-tests"
T = 300


@pytest.fixture
def example(tmp_path: Path) -> Path:
    copy = tmp_path / "firmware-tests"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(
        "build", "__pycache__", ".pytest_cache", ".aemu-failures"))
    return copy


def run_example(where: Path, **env: str | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs"],
                          capture_output=True, text=True, cwd=where, timeout=T,
                          env=subprocess_env(**env))


def outcome(stdout: str) -> dict[str, int]:
    tail = stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", tail)}


@pytest.mark.toolchain
def test_the_example_projects_tests_pass(example: Path) -> None:
    gcc = Path(toolchain_tool("gcc"))
    done = run_example(example, AEMU_CR16_PREFIX=str(gcc.parent.parent))
    assert done.returncode == 0, done.stdout + done.stderr
    counts = outcome(done.stdout)
    assert counts.get("passed", 0) >= 15 and set(counts) == {"passed"}, done.stdout
    assert (example / "firmware" / "build" / "shell.elf").is_file()
    assert not (EXAMPLE / "firmware" / "build").exists()      # the original is untouched


def test_the_example_without_a_toolchain_skips_or_fails_in_ci(example: Path,
                                                               tmp_path: Path) -> None:
    no_toolchain = dict(AEMU_CR16_PREFIX=str(tmp_path / "nothing"), CI=None)
    done = run_example(example, **no_toolchain)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(outcome(done.stdout)) == {"skipped"}
    assert "the cr16-elf toolchain is needed to build the firmware" in done.stdout
    done = run_example(example, **{**no_toolchain, "CI": "true"})
    assert done.returncode == 1
    assert "errors" in outcome(done.stdout) and "passed" not in outcome(done.stdout)
