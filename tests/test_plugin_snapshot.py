"""--aemu-snapshot-on-fail: a failing test's machines are saved as snapshots
named after the test, and the commands printed for them work: the guest
continues from where the test failed, or loads into a serve host."""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from aemu.testing.snapshots import safe_name, snapshot_tag
from plugin_helpers import ECHO, ECHO_BANNER, IDLE, NEUTRAL_CWD, make_ini, subprocess_env

pytest_plugins = ["pytester"]
T = 60


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A snapshot dir with a short path: `aemu serve` puts sockets there."""
    path = Path(tempfile.mkdtemp(prefix="aemu-snap-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def printed_commands(stdout: str) -> list[list[str]]:
    """The commands of the "aemu snapshots of failing tests" summary."""
    section = stdout.split("aemu snapshots of failing tests", 1)[1]
    return [shlex.split(line.strip().removesuffix(" &")) for line in section.splitlines()
            if line.startswith("    aemu ")]


def aemu(cmd: list[str]) -> list[str]:
    """A printed command, run with this interpreter's aemu."""
    assert cmd[0] == "aemu"
    return [sys.executable, "-m", "aemu", *cmd[1:]]


def straight_run(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "aemu", "run", *args], capture_output=True,
                          text=True, cwd=NEUTRAL_CWD, timeout=T, env=subprocess_env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_failing_test_leaves_a_snapshot_that_continues_where_it_failed(
        pytester: pytest.Pytester, short_dir: Path) -> None:
    make_ini(pytester)
    pytester.makepyfile(test_fw=f"""
        import pytest
        pytestmark = pytest.mark.asyncio

        @pytest.mark.aemu(firmware={IDLE!r}, args=["1", "10"], ram_size="4M")
        async def test_half_way(aemu_machine):
            await aemu_machine.run_until(ns=500_000_000)
            assert aemu_machine.uart().output == b"nothing like this"

        @pytest.mark.aemu(firmware={IDLE!r}, args=["1", "10"])
        async def test_passes(aemu_machine):
            await aemu_machine.run_until(ns=500_000_000)
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aemu-snapshot-on-fail",
                                           f"--aemu-snapshot-dir={short_dir}")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    snap = short_dir / "snapshots" / "idle" / "test_fw.test_half_way.snap"
    assert f"test_fw.py::test_half_way: machine idle (paused at 500.000000 ms of virtual " \
           f"time) saved to {snap}" in out
    assert "test_passes" not in out.split("aemu snapshots of failing tests")[1]
    run, info = printed_commands(out)
    assert run[:2] == ["aemu", "run"] and "--loadvm" in run and info[:2] == ["aemu", "savevm-info"]
    assert "--board" in run                          # 4 MiB of RAM: not the default board

    # the printed command continues the guest from 500 ms: the rest of its output, exit 0
    loaded = subprocess.run(aemu(run), capture_output=True, text=True, cwd=NEUTRAL_CWD,
                            timeout=T, env=subprocess_env(), stdin=subprocess.DEVNULL)
    assert loaded.returncode == 0, loaded.stderr
    whole = straight_run("--ram-size", "4M", IDLE, "1", "10")
    first = whole.splitlines(keepends=True)[0]       # printed before the snapshot
    assert first.startswith("idle: TIMER0") and whole == first + loaded.stdout

    described = subprocess.run(aemu(info), capture_output=True, text=True, cwd=NEUTRAL_CWD,
                               timeout=T, env=subprocess_env())
    assert described.returncode == 0, described.stderr
    assert "run state: paused" in described.stdout
    assert "ram: mapped-ram, 4194304 bytes" in described.stdout


def test_an_ended_guest_loads_into_a_serve_host(pytester: pytest.Pytester,
                                                short_dir: Path) -> None:
    """`aemu run --loadvm` refuses a guest that has ended; the printed
    commands load it into `aemu serve` instead, where QMP shows it."""
    make_ini(pytester)
    pytester.makepyfile(test_fw=f"""
        import pytest
        pytestmark = [pytest.mark.asyncio,
                      pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]

        async def test_exits(aemu_machine, aemu_uart):
            aemu_uart.write(b"bye q")
            result = await aemu_machine.run()
            assert result.status == 1
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aemu-snapshot-on-fail",
                                           f"--aemu-snapshot-dir={short_dir}")
    result.assert_outcomes(failed=1)
    serve, create, load, info = printed_commands(result.stdout.str())
    assert serve[:2] == ["aemu", "serve"] and load[:3] == ["aemu", "snapshot", "load"]
    host = subprocess.Popen(aemu(serve), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=NEUTRAL_CWD, env=subprocess_env())
    try:
        deadline = time.monotonic() + T
        while not (short_dir / "host.qmp").exists():
            assert host.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.02)
        for cmd in (create, load):
            done = subprocess.run(aemu(cmd), capture_output=True, text=True, cwd=NEUTRAL_CWD,
                                  timeout=T, env=subprocess_env())
            assert done.returncode == 0, done.stdout + done.stderr
        assert "the VM is shutdown" in done.stdout
        query = subprocess.run(aemu(["aemu", "qmp", "--state-dir", str(short_dir),
                                     "uart_echo", "query-run"]), capture_output=True,
                               text=True, cwd=NEUTRAL_CWD, timeout=T, env=subprocess_env())
        assert '"status": "shutdown"' in query.stdout, query.stdout + query.stderr
    finally:
        host.terminate()
        host.wait(T)


def test_every_machine_of_the_test_is_saved_under_its_own_name(pytester: pytest.Pytester,
                                                               short_dir: Path) -> None:
    make_ini(pytester)
    pytester.makepyfile(test_fw=f"""
        import pytest
        pytestmark = pytest.mark.asyncio

        @pytest.mark.parametrize("case", ["a/b c"])
        async def test_two(aemu_machine_factory, case):
            await aemu_machine_factory({ECHO!r})
            await aemu_machine_factory({ECHO!r})
            assert 0
        """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--aemu-snapshot-on-fail",
                                           f"--aemu-snapshot-dir={short_dir}")
    result.assert_outcomes(failed=1)
    saved = sorted(p.name for p in (short_dir / "snapshots" / "uart_echo").glob("*.snap"))
    assert saved == ["test_fw.test_two_a_b_c-2.snap", "test_fw.test_two_a_b_c.snap"]


def test_no_snapshots_unless_asked(pytester: pytest.Pytester, short_dir: Path) -> None:
    make_ini(pytester)
    pytester.makepyfile(test_fw=f"""
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.aemu(firmware={ECHO!r})
        async def test_fails(aemu_machine):
            assert 0
        """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider",
                                          f"--aemu-snapshot-dir={short_dir}")
    result.assert_outcomes(failed=1)
    assert "aemu snapshots" not in result.stdout.str()
    assert not (short_dir / "snapshots").exists()


def test_names() -> None:
    assert safe_name("uart_echo") == "uart_echo"
    assert safe_name("9lives") == "t-9lives"
    long = safe_name("x" * 100)
    assert len(long) == 64 and long != safe_name("x" * 99)
    assert snapshot_tag("test_fw", "test_it[a/b]") == "test_fw.test_it_a_b"
    assert snapshot_tag("test_fw", "test_it", 2) == "test_fw.test_it-3"
    assert len(snapshot_tag("m" * 40, "t" * 40, 11)) <= 64
