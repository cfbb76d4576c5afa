"""aemu's fixtures under the host project's event-loop settings: every
combination of pytest-asyncio's default fixture and test loop scopes, tests
that pick another loop with their marker, a project fixture on yet another
loop, auto mode, and the asyncio and uvloop loop factories."""
from __future__ import annotations

import pytest

from plugin_helpers import ECHO, ECHO_BANNER, make_ini

pytest_plugins = ["pytester"]

#: one module that uses the machine from every kind of loop, in an order
#: that moves it between loops and back
LOOPS_TEST = f"""
import asyncio
import pytest
import pytest_asyncio

pytestmark = pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})
LOOPS = []

async def echo(uart, text):
    LOOPS.append(asyncio.get_running_loop())
    uart.write(text)
    assert await uart.expect(text.upper()) == text.upper()

@pytest_asyncio.fixture          # on the project's default fixture loop scope
async def warmed(aemu_machine_factory):
    vm = await aemu_machine_factory()
    await echo(vm.uart(), b"fixture")
    return vm

@pytest.mark.asyncio
async def test_default_loop(aemu_machine, aemu_uart):
    await echo(aemu_uart, b"one")

@pytest.mark.asyncio
async def test_machine_from_a_project_fixture(warmed):
    assert warmed.uart().output.endswith(b"FIXTURE")
    await echo(warmed.uart(), b"two")

@pytest.mark.asyncio(loop_scope="function")
async def test_function_loop(aemu_uart):
    await echo(aemu_uart, b"three")

@pytest.mark.asyncio(loop_scope="session")
async def test_session_loop(aemu_uart):
    await echo(aemu_uart, b"four")

@pytest.mark.asyncio(loop_scope="module")
async def test_module_loop(aemu_machine, aemu_uart):
    await echo(aemu_uart, b"five")
    aemu_machine.resume()                   # left running in the background...
    await asyncio.sleep(0.01)

@pytest.mark.asyncio
async def test_running_in_the_background(aemu_machine, aemu_uart):
    aemu_machine.resume()                   # ...and here (reset in between) again
    await asyncio.sleep(0.01)
    aemu_uart.write(b"bg")
    await aemu_uart.expect(b"BG", virtual=False, timeout=5)
    assert aemu_machine.state.value == "running"

def test_sync_test(aemu_machine, aemu_uart):
    assert aemu_machine.state.value == "paused"
    assert aemu_uart.unread == b""

@pytest.mark.asyncio
async def test_run_to_the_end(aemu_machine, aemu_uart):
    aemu_uart.write(b"q")
    assert (await aemu_machine.run()).status == 0

def test_the_loops_were_the_ones_asked_for():
    assert len(LOOPS) == 6                  # every echo ran
    assert len(set(map(id, LOOPS))) >= 2    # on more than one loop (function and session)
"""


@pytest.mark.filterwarnings("ignore:The configuration option:pytest.PytestDeprecationWarning")
@pytest.mark.parametrize("fixture_scope, test_scope", [
    ("function", "function"), ("function", "module"), ("function", "session"),
    ("module", "function"), ("module", "module"), ("session", "function"),
    ("session", "session"), ("fixture-scope", "module"), (None, None),
])
def test_fixtures_under_the_projects_loop_scopes(pytester: pytest.Pytester,
                                                 fixture_scope: str | None,
                                                 test_scope: str | None) -> None:
    make_ini(pytester, fixture_scope, test_scope)
    pytester.makepyfile(test_loops=LOOPS_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W",
                                          "ignore::pytest.PytestDeprecationWarning")
    result.assert_outcomes(passed=9)


def test_auto_mode(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "module", "module", "asyncio_mode = auto")
    pytester.makepyfile(test_loops=LOOPS_TEST.replace("@pytest.mark.asyncio\n", ""))
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=9)


def test_aemu_loop_scope_sets_the_fixtures_loop(pytester: pytest.Pytester) -> None:
    """aemu_loop_scope overrides the default (the test default's loop)."""
    make_ini(pytester, "function", "function", "aemu_loop_scope = session")
    pytester.makepyfile(f"""
        import asyncio
        import pytest
        import pytest_asyncio

        pytestmark = pytest.mark.aemu(firmware={ECHO!r})
        SEEN = []

        @pytest_asyncio.fixture(loop_scope="session")
        async def session_loop():
            return asyncio.get_running_loop()

        @pytest.mark.asyncio(loop_scope="session")
        @pytest.mark.parametrize("n", range(2))
        async def test_it(aemu_machine, session_loop, n):
            assert asyncio.get_running_loop() is session_loop
        """)
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
    make_ini(pytester, "function", "function", "aemu_loop_scope = fortnight")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert "aemu_loop_scope 'fortnight'" in "\n".join(result.errlines + result.outlines)


FACTORY_TEST = f"""
import asyncio
import pytest

pytestmark = pytest.mark.aemu(firmware={ECHO!r}, boot={ECHO_BANNER!r})
KINDS = []

@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(2))
async def test_echo(aemu_uart, n):
    KINDS.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
    aemu_uart.write(b"abc")
    await aemu_uart.expect(b"ABC")

def test_kinds():
    print("KINDS", ",".join(sorted(set(KINDS))), len(KINDS))
"""


@pytest.mark.parametrize("test_scope", ["function", "module"])
def test_both_loop_factories_from_the_ini(pytester: pytest.Pytester, test_scope: str) -> None:
    make_ini(pytester, "function", test_scope, "aemu_loop_factories = asyncio uvloop")
    pytester.makepyfile(test_factories=FACTORY_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s", "-v")
    result.assert_outcomes(passed=5)          # each async test once per loop
    result.stdout.fnmatch_lines(["*test_echo?asyncio-0?*PASSED*", "*test_echo?uvloop-1?*PASSED*",
                                 "*KINDS asyncio,uvloop 4*"])


def test_uvloop_through_the_projects_own_hook(pytester: pytest.Pytester) -> None:
    make_ini(pytester)
    pytester.makeconftest("from aemu.testing import loop_factories\n\n"
                          "def pytest_asyncio_loop_factories(config, item):\n"
                          "    return loop_factories('uvloop')\n")
    pytester.makepyfile(test_factories=FACTORY_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*KINDS uvloop 2*"])


def test_unknown_loop_factory_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make_ini(pytester, "function", "function", "aemu_loop_factories = trio")
    pytester.makepyfile(test_factories=FACTORY_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert "unknown event loop 'trio'" in "\n".join(result.errlines + result.outlines)
