"""The fixtures, built once per pytest run by the plugin (aemu/testing/plugin.py).

The async fixtures get an explicit ``loop_scope``: by default the host
project's ``asyncio_default_test_loop_scope``, so that they set up and tear
down on the loop the tests run on whatever the project's defaults are (and
pytest-asyncio sees no loop-scope mismatch).  The machines and the host
client they hand out are not bound to that loop, so a test that picks
another loop with ``@pytest.mark.asyncio(loop_scope=...)`` works too.
"""
from __future__ import annotations

import functools
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from aemu.testing.host import AemuHost, ServeProcess
    from aemu.testing.machines import MachineFactory, MachinePool
    from aemu.testing.pooled import PooledMachine
    from aemu.testing.uart import Uart

#: the aemu marker's keywords (the MachineFactory's, plus the UART of aemu_uart)
MARKER_KEYS = ("firmware", "board", "ram_size", "cpu_hz", "pace", "args", "boot", "boot_uart",
               "boot_timeout", "scope", "uart")


def marker_options(item: pytest.Item) -> dict[str, Any]:
    """The closest ``aemu`` marker's keywords (a test's over its class's over
    its module's); ``firmware`` may also be its one positional argument."""
    options: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("aemu"))):      # farthest first
        if len(mark.args) > 1:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.aemu takes at most one "
                                    "positional argument (the firmware)")
        if mark.args:
            options["firmware"] = mark.args[0]
        for key, value in mark.kwargs.items():
            if key not in MARKER_KEYS:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.aemu got an unknown "
                                        f"keyword {key!r} (known: {', '.join(MARKER_KEYS)})")
            options[key] = value
    return options


def _test_dir(request: pytest.FixtureRequest) -> Path:
    path = getattr(request.node, "path", None)
    return Path(path).parent if path is not None else request.config.rootpath


def make(loop_scope: str) -> types.ModuleType:
    """The fixtures as a plugin (a module object: pytest reads fixtures of
    every scope from one), with the async fixtures on ``loop_scope``."""
    import pytest_asyncio

    # -- pools: plain fixtures (the machines belong to no loop) ---------------------------
    @pytest.fixture(scope="session")
    def _aemu_session_pool() -> Iterator["MachinePool"]:
        from aemu.testing.machines import MachinePool

        pool = MachinePool("session")
        yield pool
        pool.close()

    @pytest.fixture(scope="module")
    def _aemu_module_pool() -> Iterator["MachinePool"]:
        from aemu.testing.machines import MachinePool

        pool = MachinePool("module")
        yield pool
        pool.close()

    # -- configuration a project may override ------------------------------------------
    @pytest.fixture(scope="session")
    def aemu_firmware(pytestconfig: pytest.Config) -> Path | None:
        """The firmware of tests without one in their marker:
        --aemu-firmware, else the aemu_firmware ini value.  Override this
        fixture to build or find the firmware yourself."""
        from aemu.testing.plugin import configured_path

        return configured_path(pytestconfig, "aemu_firmware")

    @pytest.fixture(scope="session")
    def aemu_board(pytestconfig: pytest.Config) -> Any:
        """The board of tests without one in their marker: the aemu_board
        ini value (a board file), else the default board (None)."""
        from aemu.testing.plugin import configured_path

        return configured_path(pytestconfig, "aemu_board")

    # -- machines ---------------------------------------------------------------------
    @pytest_asyncio.fixture(loop_scope=loop_scope)
    async def aemu_machine_factory(request: pytest.FixtureRequest,
                                   _aemu_session_pool: "MachinePool",
                                   _aemu_module_pool: "MachinePool",
                                   aemu_firmware: Any, aemu_board: Any) -> "MachineFactory":
        """``await aemu_machine_factory(firmware, board=..., ram_size=...,
        pace=..., args=..., boot=..., scope=...)``: a booted machine reset
        to its boot checkpoint (docs/testing.md)."""
        from aemu.testing.machines import BootError, MachineFactory
        from aemu.testing.plugin import MACHINES, STATE, expect_timeout, finish_test

        options = marker_options(request.node)
        options.pop("uart", None)
        defaults = {"firmware": aemu_firmware, "board": aemu_board, **options}
        factory = MachineFactory({"session": _aemu_session_pool,
                                  "module": _aemu_module_pool},
                                 request.config.stash[STATE].resolver, defaults,
                                 _test_dir(request), expect_timeout(request.config))
        request.node.stash[MACHINES] = factory.machines
        # teardown without a loop: one async fixture per test is all the
        # overhead pytest-asyncio adds (see bench/reset.py)
        request.addfinalizer(functools.partial(finish_test, request.node, factory))
        if "aemu_machine" in request.fixturenames:
            # the test's configured machine, booted (if need be) on this loop
            failed = None
            try:
                factory.configured = await factory()
            except BootError as exc:
                failed = str(exc)
            if failed is not None:          # outside the except: no chained traceback
                pytest.fail(failed, pytrace=False)
        return factory

    @pytest.fixture
    def aemu_machine(aemu_machine_factory: "MachineFactory") -> "PooledMachine":
        """The firmware of the test's ``aemu`` marker (or --aemu-firmware),
        booted once per session, reset to its boot checkpoint."""
        vm = aemu_machine_factory.configured
        if vm is None:          # asked for with request.getfixturevalue()
            vm = aemu_machine_factory.configured = aemu_machine_factory.take_now()
        return vm

    @pytest.fixture
    def aemu_uart(request: pytest.FixtureRequest,
                  aemu_machine: "PooledMachine") -> "Uart":
        """aemu_machine's UART (``uart=`` of the marker, default uart0):
        ``await aemu_uart.expect(b"...")``, ``aemu_uart.write(b"...")``."""
        return aemu_machine.uart(marker_options(request.node).get("uart") or "uart0")

    # -- the serve host ----------------------------------------------------------------
    @pytest.fixture(scope="session")
    def aemu_serve(pytestconfig: pytest.Config,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator["ServeProcess"]:
        """One ``aemu serve`` for the session, in a temporary state dir."""
        from aemu.testing.host import ServeProcess
        from aemu.testing.plugin import host_allow_dirs

        serve = ServeProcess(host_allow_dirs(pytestconfig, tmp_path_factory.getbasetemp()))
        yield serve
        serve.stop()

    @pytest_asyncio.fixture(loop_scope=loop_scope)
    async def aemu_host(aemu_serve: "ServeProcess") -> AsyncIterator["AemuHost"]:
        """A QMP client of the session's ``aemu serve``; the test's VMs are
        destroyed afterwards."""
        from aemu.testing.host import AemuHost

        host = AemuHost(aemu_serve)
        await host.connect()
        try:
            yield host
        finally:
            await host.close()

    plugin = types.ModuleType("aemu.testing.fixtures.loaded")
    for fixture in (_aemu_session_pool, _aemu_module_pool, aemu_firmware, aemu_board,
                    aemu_machine_factory, aemu_machine, aemu_uart, aemu_serve, aemu_host):
        setattr(plugin, fixture.__name__, fixture)
    return plugin


def make_unavailable(reason: str) -> types.ModuleType:
    """Fixtures that explain why they cannot work (pytest-asyncio is missing)."""

    def unavailable(name: str) -> Any:
        def fixture() -> None:
            pytest.fail(f"{name}: aemu's fixtures need pytest-asyncio: {reason}",
                        pytrace=False)
        return pytest.fixture(name=name)(fixture)

    plugin = types.ModuleType("aemu.testing.fixtures.unavailable")
    for name in ("aemu_machine_factory", "aemu_machine", "aemu_uart", "aemu_host"):
        setattr(plugin, name, unavailable(name))
    return plugin
