"""aemu's pytest plugin (aemu/testing/), tested the way a host project uses
it: pytester writes a project (ini file, tests) and runs pytest on it.  The
loop-scope matrix, snapshot-on-fail, the serve host and the example project
have their own files (tests/test_plugin_*.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from aemu.hw.board import default_board
from plugin_helpers import (ECHO, ECHO_BANNER, IDLE, NEUTRAL_CWD, TIMER, make_ini,
                            subprocess_env)

pytest_plugins = ["pytester"]


def run_inline(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


# -- loading -------------------------------------------------------------------------------

def test_importing_the_plugin_loads_neither_the_core_nor_asyncio() -> None:
    code = ("import sys, aemu, aemu.testing, aemu.testing.plugin\n"
            "heavy = ('asyncio', 'uvloop', 'cffi', 'aemu.cpu', 'aemu.hw', 'aemu.savevm',\n"
            "         'aemu.testing.machines', 'aemu.testing.fixtures')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=NEUTRAL_CWD, env=subprocess_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_project_that_does_not_use_aemu_is_left_alone(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = run_inline(pytester, "--setup-plan")
    plan = [line for line in result.outlines if "SETUP" in line or "fixtures used" in line]
    assert plan and not any("aemu" in line for line in plan)     # no autouse fixture
    result = run_inline(pytester, "--fixtures")
    for name in ("aemu_machine", "aemu_machine_factory", "aemu_uart", "aemu_host",
                 "aemu_serve", "aemu_firmware", "aemu_board"):
        assert name in result.stdout.str()
    assert "aemu(firmware=None" in run_inline(pytester, "--markers").stdout.str()


ECHO_TEST = f"""
import pytest

pytestmark = [pytest.mark.asyncio, pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]

async def test_echo(aemu_uart):
    aemu_uart.write(b"hello")
    assert await aemu_uart.expect(b"HELLO") == b"HELLO"
"""


def _subprocess_pytest(pytester: pytest.Pytester, *args: str, **env: str | None
                       ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=pytester.path, timeout=120,
                          env=subprocess_env(**env))


def test_dash_p_aemu_loads_the_plugin_when_autoload_is_off(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makepyfile(ECHO_TEST)
    off = dict(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    done = _subprocess_pytest(pytester, "-p", "aemu", **off)
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    # without -p aemu the fixtures are not there at all
    done = _subprocess_pytest(pytester, **off)
    assert "fixture 'aemu_uart' not found" in done.stdout
    # the flag works as the variable does
    done = _subprocess_pytest(pytester, "--disable-plugin-autoload", "-p", "aemu")
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    # -p aemu brings pytest-asyncio along, unless it is blocked: then it says so
    done = _subprocess_pytest(pytester, "-p", "aemu", "-p", "no:asyncio", **off)
    assert "aemu's fixtures need pytest-asyncio" in done.stdout


def test_dash_p_aemu_without_the_entry_point(pytester: pytest.Pytester) -> None:
    """A source tree on sys.path has no entry point: -p aemu then imports the
    aemu package, which forwards to the plugin (pytest_plugins)."""
    make_ini(pytester)
    pytester.makepyfile(ECHO_TEST)
    hide = ("import importlib.metadata as md, sys\n"
            "every = md.distributions\n"
            "md.distributions = lambda **kw: [d for d in every(**kw)"
            " if d.metadata['Name'] != 'aemu']\n"
            "import pytest\n"
            "sys.exit(pytest.main(sys.argv[1:]))\n")
    done = subprocess.run([sys.executable, "-c", hide, "-p", "no:cacheprovider", "-p", "aemu"],
                          capture_output=True, text=True, cwd=pytester.path, timeout=120,
                          env=subprocess_env(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "1 passed" in done.stdout, done.stdout + done.stderr


# -- aemu_machine: booted once, reset before each test ------------------------------------------

def test_machine_boots_once_per_session_and_each_test_starts_at_the_checkpoint(
        pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    body = f"""
        import pytest
        from aemu.testing import PooledMachine

        pytestmark = [pytest.mark.asyncio,
                      pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]
        SEEN = []

        @pytest.mark.parametrize("n", range(3))
        async def test_it(aemu_machine, aemu_uart, n):
            assert isinstance(aemu_machine, PooledMachine)
            assert aemu_machine.state.value == "paused"
            SEEN.append((id(aemu_machine), aemu_machine.cycles, aemu_uart.output))
            assert aemu_uart.unread == b""          # the boot banner was consumed
            aemu_uart.write(b"x" * (n + 1))
            await aemu_uart.expect(b"X" * (n + 1))

        def test_same_machine_same_start():
            assert len(SEEN) == 3 and len(set(SEEN)) == 1
            assert SEEN[0][2].endswith({ECHO_BANNER!r})
        """
    pytester.makepyfile(test_one=body, test_two=body)
    result = run_inline(pytester)
    result.assert_outcomes(passed=8)


RESET_TEST = f"""
import hashlib
import pytest
from aemu.savevm.machine import save_vm

pytestmark = [pytest.mark.asyncio, pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]
BOOT = []

def fingerprint(vm):
    # the whole VM as a migration stream (CPU, RAM, every device, clock, run
    # state), and what the host side holds
    return (hashlib.sha256(save_vm(vm)).hexdigest(), vm.uart().output, vm.uart().unread,
            {{k: bytes(v) for k, v in vm._inputs.items()}}, len(vm._listeners), vm.max_insns,
            vm.host_stdout, vm.state.value)

async def test_1_scribble_and_reconfigure(aemu_machine, aemu_uart):
    vm = aemu_machine
    BOOT.append(fingerprint(vm))
    for addr in (0x4, 0x2000, 0x10000, 0x240000, 0x13FF000):   # code, data, heap, stack, far
        vm.cpu.write(addr + 0x10, b"\\xa5" * 64)
    vm.device("timer0").write(0x04, 4, 999)         # RELOAD
    vm.device("timer0").write(0x00, 2, 0x7)         # CTRL: EN | PERIODIC | IE
    vm.device("icu").write(0x20, 1, 9)              # PRIO of line 0
    vm.device("uart0").write(0x06, 2, 0)            # BAUD 0: no transmit delay
    vm.device("wdt").write(0x04, 4, 123456)         # TIMEOUT
    vm.device("uart0").ovr = True                   # an attribute, not a register
    vm.subscribe()
    vm.max_insns = 10 ** 9
    aemu_uart.write(b"typed ")
    await vm.run_until(ns=vm.clock.ns() + 2_000_000)
    aemu_uart.write(b"never read")
    vm.resume()                                     # and the test ends with it running

async def test_2_sees_the_boot_state(aemu_machine, aemu_uart):
    assert fingerprint(aemu_machine) == BOOT[0]
    aemu_uart.write(b"abc")
    assert await aemu_uart.expect(b"ABC") == b"ABC"

async def test_3_crash_the_guest(aemu_machine, aemu_uart):
    aemu_machine.cpu.halted = False                 # out of its eiwait...
    aemu_machine.cpu.pc = 0x1800000                 # ...into nothing: a trap, and exit
    await aemu_machine.run_until(ns=aemu_machine.clock.ns() + 1_000_000)
    assert aemu_machine.state.value == "shutdown" and aemu_machine.result.status != 0
    assert b"unexpected trap" in aemu_machine.host_stderr

async def test_4_sees_the_boot_state(aemu_machine, aemu_uart):
    assert fingerprint(aemu_machine) == BOOT[0]
    aemu_uart.write(b"q")
    assert (await aemu_machine.run()).status == 0
"""


@pytest.mark.parametrize("sabotage", [False, True], ids=["reset", "no-reset"])
def test_reset_isolation(pytester: pytest.Pytester, sabotage: bool) -> None:
    """A test that scribbles over RAM, reconfigures devices (registers and
    attributes), leaves input, a subscriber and a running guest behind, or
    crashes the guest leaves nothing for the next.  With the reset disabled
    the same tests fail: they can tell."""
    make_ini(pytester)
    pytester.makepyfile(RESET_TEST)
    if sabotage:
        pytester.makeconftest("from aemu.testing import PooledMachine\n"
                              "PooledMachine.reset = lambda self: 0\n")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=2, failed=2)
    else:
        run_inline(pytester).assert_outcomes(passed=4)


def test_module_scope_boots_per_module(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    body = f"""
        import pytest
        pytestmark = [pytest.mark.asyncio, pytest.mark.aemu(firmware={ECHO!r}, scope="module")]
        IDS = []

        async def test_a(aemu_machine, aemu_machine_factory):
            IDS.append(id(aemu_machine))
            session = await aemu_machine_factory(scope="session")
            assert session is not aemu_machine

        async def test_b(aemu_machine):
            IDS.append(id(aemu_machine))
            assert IDS[0] == IDS[1]
            with open("ids.txt", "a") as f:
                print(IDS[0], file=f)
        """
    pytester.makepyfile(test_m1=body, test_m2=body)
    run_inline(pytester).assert_outcomes(passed=4)
    ids = (pytester.path / "ids.txt").read_text().split()
    assert len(ids) == 2 and ids[0] != ids[1]


# -- the UART helper --------------------------------------------------------------------------

def test_uart_helper(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makepyfile(f"""
        import asyncio, re
        import pytest
        from aemu.testing import ExpectError, ExpectTimeout

        pytestmark = [pytest.mark.asyncio,
                      pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]

        async def test_patterns_and_the_cursor(aemu_machine, aemu_uart):
            aemu_uart.write("ab1 cd22 ef333 ")
            assert await aemu_uart.expect(b"B1") == b"AB1"
            assert await aemu_uart.expect("D2") == b" CD2"        # str: UTF-8
            m = await aemu_uart.expect(re.compile(rb"F(\\d+) "))
            assert m.group(1) == b"333" and m.string.endswith(b"EF333 ")
            assert aemu_uart.unread == b""
            assert aemu_uart.output.endswith(b"AB1 CD22 EF333 ")
            # a match pauses the machine at the byte that completed it
            assert aemu_machine.state.value == "paused"
            aemu_uart.write(b"xyz")
            await aemu_machine.run_until(ns=aemu_machine.clock.ns() + 5_000_000)
            assert aemu_uart.read() == b"XYZ" and aemu_uart.unread == b""
            aemu_uart.clear()
            assert aemu_uart.output == b""
            assert aemu_uart.text == ""

        async def test_stops_exactly_at_the_match(aemu_machine, aemu_uart):
            aemu_uart.write(b"abcdefgh")
            await aemu_uart.expect(b"D")
            at = aemu_machine.cycles
            assert aemu_uart.output.endswith(b"ABCD")          # not one byte more
            await aemu_uart.expect(b"H")
            assert aemu_machine.cycles > at

        async def test_virtual_timeout(aemu_machine, aemu_uart):
            start = aemu_machine.clock.ns()
            with pytest.raises(ExpectTimeout) as info:
                await aemu_uart.expect(b"never", timeout=0.25)
            # the guest idled 0.25 s of virtual time: no wall-clock wait at all
            assert aemu_machine.clock.ns() - start == 250_000_000
            assert aemu_machine.state.value == "paused"
            assert "within 0.25 s of virtual time" in str(info.value)
            assert isinstance(info.value, AssertionError)

        async def test_wall_timeout(aemu_machine, aemu_uart):
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ExpectTimeout, match="wall-clock"):
                await aemu_uart.expect(b"never", timeout=0.2, virtual=False)
            assert loop.time() - start >= 0.19
            assert aemu_machine.state.value == "paused"

        async def test_watching_a_running_machine(aemu_machine, aemu_uart):
            aemu_machine.resume()
            aemu_uart.write(b"run")
            assert await aemu_uart.expect(b"RUN") == b"RUN"
            assert aemu_machine.state.value == "running"       # it keeps running
            with pytest.raises(ExpectTimeout):
                await aemu_uart.expect(b"nothing", timeout=0.5)
            assert aemu_machine.state.value == "running"

        async def test_the_guest_ends_first(aemu_machine, aemu_uart):
            aemu_uart.write(b"q")
            with pytest.raises(ExpectError, match="stopped first .shutdown."):
                await aemu_uart.expect(b"never")
            with pytest.raises(ExpectError, match="the machine is shutdown"):
                await aemu_uart.expect(b"never")
            # output that is there already still matches
            assert await aemu_uart.expect(b"overruns") 

        async def test_bad_patterns(aemu_uart):
            with pytest.raises(TypeError):
                await aemu_uart.expect(re.compile("text"))
            with pytest.raises(ValueError):
                await aemu_uart.expect(b"")

        async def test_another_uart_name(aemu_machine):
            with pytest.raises(KeyError, match="uart1.*uart0"):
                aemu_machine.uart("uart1")
        """)
    run_inline(pytester).assert_outcomes(passed=8)


def test_default_timeout_comes_from_the_ini(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "function", "function", "aemu_timeout = 0.125")
    pytester.makepyfile(f"""
        import pytest
        pytestmark = [pytest.mark.asyncio, pytest.mark.aemu(firmware={ECHO!r})]

        async def test_it(aemu_machine, aemu_uart):
            start = aemu_machine.clock.ns()
            with pytest.raises(AssertionError, match="within 0.125 s"):
                await aemu_uart.expect(b"never")
            assert aemu_machine.clock.ns() - start == 125_000_000

        async def test_boot_too(aemu_machine_factory):
            from aemu.testing import BootError
            with pytest.raises(BootError, match="within 0.125 s"):
                await aemu_machine_factory({IDLE!r}, boot=b"never")
        """)
    run_inline(pytester).assert_outcomes(passed=2)


# -- the factory ----------------------------------------------------------------------------------

def test_factory(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    board = default_board().with_changes(name="half-speed", cpu_hz=50_000_000)
    (pytester.path / "half.toml").write_text(board.to_toml())
    pytester.makepyfile(f"""
        import pytest
        from aemu.testing import BootError

        pytestmark = pytest.mark.asyncio

        async def test_two_machines(aemu_machine_factory):
            one = await aemu_machine_factory({ECHO!r}, boot={ECHO_BANNER!r})
            two = await aemu_machine_factory({ECHO!r}, boot={ECHO_BANNER!r})
            assert one is not two
            one.uart().write(b"one")
            two.uart().write(b"two")
            await one.uart().expect(b"ONE")
            await two.uart().expect(b"TWO")
            assert b"TWO" not in one.uart().output

        async def test_board_file_ram_and_args(aemu_machine_factory):
            vm = await aemu_machine_factory({TIMER!r}, board="half.toml", ram_size="4M",
                                            args=["periodic", "999", "0", "100"])
            assert vm.board.name == "half-speed" and vm.board.cpu_hz == 50_000_000
            assert vm.cpu.ram_size == 4 << 20
            result = await vm.run()
            assert result.status == 0
            assert b"timer_exact: mode periodic reload 999" in vm.uart().output

        async def test_boot_failure_is_reported_once(aemu_machine_factory):
            with pytest.raises(BootError, match="did not boot.*within 0.01 s"):
                await aemu_machine_factory({IDLE!r}, boot=b"never", boot_timeout=0.01)
            with pytest.raises(BootError, match="failed earlier"):
                await aemu_machine_factory({IDLE!r}, boot=b"never", boot_timeout=0.01)

        async def test_no_such_firmware(aemu_machine_factory):
            with pytest.raises(BootError, match="nothing.elf"):
                await aemu_machine_factory("nothing.elf")

        async def test_realtime_pacing(aemu_machine_factory):
            vm = await aemu_machine_factory({IDLE!r}, args=["1", "100"], pace="realtime")
            assert vm.pace == "realtime"
            import time
            start = time.monotonic()
            await vm.run_until(ns=vm.clock.ns() + 100_000_000)
            assert time.monotonic() - start >= 0.09
        """)
    run_inline(pytester).assert_outcomes(passed=5)


def test_aemu_machine_asked_for_from_a_sync_test_or_fixture(pytester: pytest.Pytester) -> None:
    """request.getfixturevalue("aemu_machine") outside any loop: the machine
    boots on a loop of its own; later tests get it from the pool."""
    make_ini(pytester)
    pytester.makepyfile(f"""
        import pytest
        pytestmark = pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})

        @pytest.mark.parametrize("n", range(2))
        def test_dynamic(request, n):
            vm = request.getfixturevalue("aemu_machine")
            assert vm.uart().output.endswith({ECHO_BANNER!r}) and vm.state.value == "paused"
        """)
    run_inline(pytester).assert_outcomes(passed=2)


def test_a_boot_failure_is_one_clear_line(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makepyfile(f"""
        import pytest
        pytestmark = pytest.mark.aemu(firmware={IDLE!r}, boot=b"never", boot_timeout=0.01)

        def test_one(aemu_machine):
            pass

        def test_two(aemu_uart):
            pass
        """)
    result = run_inline(pytester)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*/idle.elf did not boot: idle uart0: expected b'never': "
                                 "nothing matched within 0.01 s of virtual time*",
                                 "*the boot failed earlier in this session*"])
    out = result.stdout.str()
    assert "machines.py" not in out and "During handling" not in out


# -- where the firmware comes from ---------------------------------------------------------

PRECEDENCE_TEST = f"""
import pytest
pytestmark = pytest.mark.asyncio

async def test_no_marker(aemu_machine):
    print("FIRMWARE", aemu_machine.spec.firmware.name)

@pytest.mark.aemu({IDLE!r})
async def test_marker(aemu_machine):
    assert aemu_machine.spec.firmware.name == "idle.elf"

@pytest.mark.aemu(firmware={IDLE!r})
class TestClass:
    async def test_class_marker(self, aemu_machine):
        assert aemu_machine.spec.firmware.name == "idle.elf"

    @pytest.mark.aemu(firmware={TIMER!r})
    async def test_closest_marker_wins(self, aemu_machine):
        assert aemu_machine.spec.firmware.name == "timer_exact.elf"
"""


@pytest.mark.parametrize("where", ["nothing", "ini", "option", "ini+option", "fixture",
                                   "fixture+option"])
def test_marker_option_ini_and_fixture_precedence(pytester: pytest.Pytester, where: str
                                                  ) -> None:
    """A marker wins; without one: the aemu_firmware fixture, whose default
    is --aemu-firmware, else the aemu_firmware ini value."""
    ini = [f"aemu_firmware = {TIMER}"] if "ini" in where else []
    make_ini(pytester, "function", "function", *ini)
    pytester.makepyfile(PRECEDENCE_TEST)
    args = ["-s"]
    if "option" in where:
        args.append(f"--aemu-firmware={ECHO}")
    if "fixture" in where:
        pytester.makeconftest(f"import pytest\n\n"
                              f"@pytest.fixture(scope='session')\n"
                              f"def aemu_firmware():\n    return {IDLE!r}\n")
    result = run_inline(pytester, *args)
    expected = {"nothing": None, "ini": "timer_exact.elf", "option": "uart_echo.elf",
                "ini+option": "uart_echo.elf", "fixture": "idle.elf",
                "fixture+option": "idle.elf"}[where]
    if expected is None:
        result.assert_outcomes(passed=3, errors=1)
        assert "no firmware: give one with @pytest.mark.aemu" in result.stdout.str()
    else:
        result.assert_outcomes(passed=4)
        result.stdout.fnmatch_lines([f"*FIRMWARE {expected}*"])


def test_bad_marker_use_is_an_error(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makepyfile(f"""
        import pytest
        pytestmark = pytest.mark.asyncio

        @pytest.mark.aemu(firmware={ECHO!r}, bord="x.toml")
        async def test_typo(aemu_machine):
            pass
        """)
    result = run_inline(pytester)
    result.assert_outcomes(errors=1)
    assert "unknown keyword 'bord'" in result.stdout.str()


# -- failure reports ----------------------------------------------------------------------------

def test_a_failure_shows_where_the_machine_stopped_and_its_output(pytester: pytest.Pytester
                                                                 ) -> None:
    make_ini(pytester)
    pytester.makepyfile(f"""
        import pytest
        pytestmark = [pytest.mark.asyncio,
                      pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})]

        async def test_fails(aemu_uart):
            aemu_uart.write(b"hello")
            await aemu_uart.expect(b"HELLO")
            await aemu_uart.expect(b"GOODBYE", timeout=0.01)
        """)
    result = run_inline(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "ExpectTimeout: uart_echo uart0: expected b'GOODBYE'" in out
    result.stdout.fnmatch_lines(["*- aemu uart_echo -*", "paused at * ms of virtual time*",
                                 "*- aemu uart_echo uart0 output -*",
                                 "uart_echo: ready; send text, 'q' ends", "HELLO"])
    assert "aemu/testing/uart.py" not in out          # the traceback stops in the test
