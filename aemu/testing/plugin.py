"""aemu's pytest plugin: fixtures that boot CR16C firmware once and reset it
for every test, a UART helper, an ``aemu serve`` host, the ``aemu`` marker
and the ``--aemu-*`` options (docs/testing.md).

Loaded through the ``pytest11`` entry point ``aemu`` (or ``-p aemu`` when
plugin autoload is off).  Importing it is cheap: the emulator, asyncio and
uvloop are imported by the fixtures that need them, when they run.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from aemu.testing.machines import MachineFactory, SpecResolver

MARKER = ("aemu(firmware=None, *, board=None, ram_size=None, cpu_hz=None, pace='fast', "
          "args=(), boot=None, boot_uart='uart0', boot_timeout=None, scope='session', "
          "uart='uart0'): the machine of aemu_machine / aemu_uart, and the defaults of "
          "aemu_machine_factory (paths relative to the test file); see docs/testing.md")
LOOP_SCOPES = ("function", "class", "module", "package", "session")
DEFAULT_SNAPSHOT_DIR = ".aemu-failures"


@dataclass
class _RunState:
    """What the plugin keeps per pytest run (config.stash)."""

    snapshots: list[str] = field(default_factory=list)
    timeout: float | None = None
    _resolver: "SpecResolver | None" = None

    @property
    def resolver(self) -> "SpecResolver":
        if self._resolver is None:
            from aemu.testing.machines import SpecResolver
            self._resolver = SpecResolver()
        return self._resolver


STATE = pytest.StashKey[_RunState]()
#: the machines a test got (item.stash), for its failure report
MACHINES = pytest.StashKey[list]()
#: whether the test's call phase failed (item.stash), for snapshot-on-fail
CALL_FAILED = pytest.StashKey[bool]()


# -- set-up -------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aemu", "aemu (CR16C firmware tests)")
    group.addoption("--aemu-firmware", metavar="ELF", default=None,
                    help="firmware of tests whose aemu marker names none (default: the "
                         "aemu_firmware ini value)")
    group.addoption("--aemu-snapshot-on-fail", action="store_true", default=False,
                    help="save the machines of a failing test as snapshots named after the "
                         "test, and print the commands that load them")
    group.addoption("--aemu-snapshot-dir", metavar="DIR", default=None,
                    help=f"where those snapshots go (a snapshot store; default "
                         f"{DEFAULT_SNAPSHOT_DIR} in the rootdir)")
    parser.addini("aemu_firmware", "firmware of tests whose aemu marker names none "
                  "(relative to the ini file)", default="")
    parser.addini("aemu_board", "board file of tests whose aemu marker names none "
                  "(default: aemu's default board)", default="")
    parser.addini("aemu_timeout", "default timeout of uart.expect() and of booting, in "
                  "seconds (default 5)", default="")
    parser.addini("aemu_loop_scope", "loop_scope of aemu's async fixtures (default: "
                  "asyncio_default_test_loop_scope)", default="")
    parser.addini("aemu_loop_factories", "event loops to run async tests on, through "
                  "pytest-asyncio's loop-factory hook: uvloop and/or asyncio (default: "
                  "pytest-asyncio's own choice)", type="args", default=[])
    parser.addini("aemu_host_allow_dirs", "more directories aemu_serve's VMs may load "
                  "files from (the rootdir and the temporary directory always are)",
                  type="paths", default=[])


def _pytest_asyncio_registered(pm: pytest.PytestPluginManager) -> bool:
    mod = sys.modules.get("pytest_asyncio.plugin")
    return mod is not None and pm.is_registered(mod)


def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> None:
    """With plugin autoload off, ``-p aemu`` brings pytest-asyncio along (as
    its entry point would: under the name "asyncio"), unless ``-p no:asyncio``."""
    pm = early_config.pluginmanager
    if pm.get_plugin("asyncio") is not None or pm.is_blocked("asyncio") \
            or _pytest_asyncio_registered(pm):
        return
    try:
        import pytest_asyncio.plugin as asyncio_plugin
    except ImportError:
        return
    pm.register(asyncio_plugin, "asyncio")


def pytest_configure(config: pytest.Config) -> None:
    from aemu.testing import fixtures

    config.addinivalue_line("markers", MARKER)
    config.stash[STATE] = _RunState()
    pm = config.pluginmanager
    if pm.has_plugin("aemu-fixtures"):        # configured once already (the plugin twice)
        return
    if not _pytest_asyncio_registered(pm):
        reason = ("pytest-asyncio is not loaded (install it; with plugin autoload off, "
                  "add -p asyncio)")
        pm.register(fixtures.make_unavailable(reason), "aemu-fixtures")
        return
    scope = config.getini("aemu_loop_scope")
    if not scope:
        try:
            scope = config.getini("asyncio_default_test_loop_scope") or "function"
        except ValueError:            # a pytest-asyncio without that option
            scope = "function"
    if scope not in LOOP_SCOPES:
        raise pytest.UsageError(f"aemu_loop_scope {scope!r}: use one of "
                                f"{', '.join(LOOP_SCOPES)}")
    pm.register(fixtures.make(scope), "aemu-fixtures")
    names = config.getini("aemu_loop_factories")
    if names:
        from aemu.testing.loops import LoopFactories

        if not hasattr(pm.hook, "pytest_asyncio_loop_factories"):
            raise pytest.UsageError("aemu_loop_factories needs pytest-asyncio 1.4 or later "
                                    "(its loop-factory hook)")
        try:
            pm.register(LoopFactories(names), "aemu-loop-factories")
        except ValueError as exc:
            raise pytest.UsageError(f"aemu_loop_factories: {exc}") from None


# -- configuration the fixtures read --------------------------------------------------------------

def configured_path(config: pytest.Config, name: str) -> Path | None:
    """--NAME (relative to where pytest was started), else the ini value
    (relative to the ini file), else None."""
    option = config.getoption(name, None) if name == "aemu_firmware" else None
    if option:
        return Path(config.invocation_params.dir, option)
    value = config.getini(name)
    if not value:
        return None
    base = config.inipath.parent if config.inipath else config.rootpath
    return Path(base, value)


def expect_timeout(config: pytest.Config) -> float:
    state = config.stash[STATE]
    if state.timeout is None:
        from aemu.testing.uart import DEFAULT_TIMEOUT

        value = config.getini("aemu_timeout")
        try:
            state.timeout = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            raise pytest.UsageError(f"aemu_timeout {value!r} is not a number of "
                                    "seconds") from None
    return state.timeout


def host_allow_dirs(config: pytest.Config, basetemp: Path) -> list[Path]:
    dirs = [config.rootpath, basetemp, *config.getini("aemu_host_allow_dirs")]
    firmware = configured_path(config, "aemu_firmware")
    if firmware is not None:
        dirs.append(firmware.parent)
    return [d for d in dirs if os.path.isdir(d)]


def snapshot_dir(config: pytest.Config) -> Path:
    given = config.getoption("aemu_snapshot_dir")
    if given:
        return Path(config.invocation_params.dir, given)
    return config.rootpath / DEFAULT_SNAPSHOT_DIR


# -- after a test ---------------------------------------------------------------------------------

def finish_test(item: pytest.Item, factory: "MachineFactory") -> None:
    """The factory's teardown: snapshots if the test failed (and they were
    asked for), then the machines go back to their pools."""
    try:
        if factory.machines and item.stash.get(CALL_FAILED, False) \
                and item.config.getoption("aemu_snapshot_on_fail"):
            from aemu.testing.machines import run_private

            run_private(_save_snapshots(item, factory))
    finally:
        factory.release()


async def _save_snapshots(item: pytest.Item, factory: "MachineFactory") -> None:
    from aemu.testing.snapshots import save_failure, snapshot_tag

    config = item.config
    directory = snapshot_dir(config)
    module = Path(str(item.path)).stem if getattr(item, "path", None) else "test"
    for index, vm in enumerate(factory.machines):
        tag = snapshot_tag(module, item.name, index)
        try:
            saved = await save_failure(vm, directory, tag)
        except Exception as exc:  # noqa: BLE001 - report it, keep the run going
            text = f"{item.nodeid}: could not save machine {vm.label}: {exc!r}"
        else:
            text = saved.describe(item.nodeid)
            item.user_properties.append(("aemu_snapshot", str(saved.file)))
        config.stash[STATE].snapshots.append(text)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
        if report.failed:
            for vm in item.stash.get(MACHINES, ()):
                for header, text in _machine_sections(vm):
                    report.sections.append((header, text))
    return report


#: bytes of each UART's output a failure report shows
REPORT_TAIL = 4000


def _machine_sections(vm: Any) -> list[tuple[str, str]]:
    """What a failure report shows about a machine: where it stopped, and
    the end of what it printed."""
    out = []
    where = (f"{vm.state.value} at {vm.clock.ns() / 1e6:.6f} ms of virtual time, cycle "
             f"{vm.cycles}, pc {vm.cpu.pc:#x}")
    if vm.result is not None and vm.result.message:
        where += f"\n{vm.result.message}"
    out.append((f"aemu {vm.label}", where))
    streams = [(f"{name} output", uart.output) for name, uart in vm.uarts.items()]
    streams += [("host stdout", vm.host_stdout), ("host stderr", vm.host_stderr)]
    for label, data in streams:
        if data:
            cut = f"[... {len(data) - REPORT_TAIL} bytes before]\n" if len(data) > REPORT_TAIL \
                else ""
            out.append((f"aemu {vm.label} {label}",
                        cut + data[-REPORT_TAIL:].decode("utf-8", "replace")))
    return out


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.snapshots:
        return
    terminalreporter.section("aemu snapshots of failing tests")
    for text in state.snapshots:
        terminalreporter.line(text)
