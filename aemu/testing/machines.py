"""Booted machines for tests: boot a firmware once per session (or module),
take an in-memory checkpoint, and hand the machine to each test reset to it
(the machines themselves: aemu/testing/pooled.py)."""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from aemu.hw.board import Board, default_board, load_board
from aemu.testing.pooled import PooledMachine
from aemu.testing.uart import DEFAULT_TIMEOUT, ExpectError, _compile

SCOPES = ("session", "module")


class BootError(Exception):
    """The firmware did not boot (no such file, bad board, no boot banner)."""


# -- what to boot ----------------------------------------------------------------------------

@dataclass
class MachineSpec:
    """A firmware on a board, and how it boots; ``key`` tells pooled
    machines apart (a rebuilt firmware file is a new key)."""

    firmware: Path
    board: Board
    board_file: Path | None = None        #: where the board came from, if a file
    pace: str = "fast"
    args: tuple[str, ...] = ()
    boot: "bytes | re.Pattern[bytes] | None" = None
    boot_uart: str = "uart0"
    boot_timeout: float = DEFAULT_TIMEOUT
    scope: str = "session"
    key: tuple = field(default=(), compare=False)

    @property
    def is_default_board(self) -> bool:
        return self.board_file is None and self.board == default_board_cached()


_DEFAULT_BOARD: list[Board] = []


def default_board_cached() -> Board:
    """default_board() parses its TOML each time: once per process is enough."""
    if not _DEFAULT_BOARD:
        _DEFAULT_BOARD.append(default_board())
    return _DEFAULT_BOARD[0]


class SpecResolver:
    """Turns fixture and marker arguments into a MachineSpec, remembering
    parsed boards (a board file is parsed once per change, not per test)."""

    def __init__(self) -> None:
        self._boards: dict[tuple, tuple[Any, Board, str, Path | None]] = {}
        self._specs: dict[tuple, tuple[MachineSpec, tuple[int, int]]] = {}

    def board(self, board: "str | os.PathLike[str] | Board | None", base: Path,
              ram_size: "int | str | None", cpu_hz: "int | str | None"
              ) -> tuple[Board, str, Path | None]:
        """(the board, its TOML text as a key, the file it is exactly, if any)."""
        path: Path | None = None
        if isinstance(board, Board):
            ident: tuple = ("obj", id(board))
        elif board is None or board == "default":
            ident = ("default",)
        else:
            path = (base / os.fspath(board)).resolve()
            try:
                ident = ("file", str(path), path.stat().st_mtime_ns)
            except OSError as exc:
                raise BootError(f"board {path}: {exc.strerror}") from None
        ident += (ram_size, cpu_hz)
        cached = self._boards.get(ident)
        # a Board object is cached by identity; the entry keeps it alive, so
        # its id cannot name another object meanwhile
        if cached is not None and (cached[0] is None or cached[0] is board):
            return cached[1:]
        try:
            if isinstance(board, Board):
                built = board
            elif path is not None:
                built = load_board(path)
            else:
                built = default_board_cached()
            changes = {k: v for k, v in (("ram_size", ram_size), ("cpu_hz", cpu_hz))
                       if v is not None}
            if changes:
                built = built.with_changes(**changes)
            built.validate()
        except ValueError as exc:          # BoardError is a ValueError
            raise BootError(f"board: {exc}") from None
        entry = (board if isinstance(board, Board) else None, built, built.to_toml(),
                 None if changes else path)
        self._boards[ident] = entry
        return entry[1:]

    def spec(self, options: Mapping[str, Any], base: Path) -> MachineSpec:
        """The spec of ``options`` (the factory's arguments over the test's
        defaults); paths are relative to ``base``."""
        try:
            memo = (str(base), *((k, _hashable(options.get(k))) for k in _OPTION_KEYS))
            cached = self._specs.get(memo)
        except TypeError:                    # something unhashable: no memo
            memo, cached = None, None
        if cached is not None:
            spec, stamp = cached
            try:
                st = os.stat(spec.key[0])
            except OSError:
                st = None
            if st is not None and (st.st_mtime_ns, st.st_size) == stamp:
                return spec
        spec = self._build(options, base)
        if memo is not None:
            self._specs[memo] = (spec, spec.key[1:3])
        return spec

    def _build(self, options: Mapping[str, Any], base: Path) -> MachineSpec:
        firmware = options.get("firmware")
        if firmware is None:
            raise BootError("no firmware: give one with @pytest.mark.aemu(firmware=...), "
                            "--aemu-firmware, the aemu_firmware ini value, or an aemu_firmware "
                            "fixture")
        fw = (base / os.fspath(firmware)).resolve()
        try:
            st = fw.stat()
        except OSError as exc:
            raise BootError(f"firmware {fw}: {exc.strerror}") from None
        board, toml, board_file = self.board(options.get("board"), base,
                                             options.get("ram_size"), options.get("cpu_hz"))
        scope = options.get("scope") or "session"
        if scope not in SCOPES:
            raise BootError(f"scope {scope!r}: use {' or '.join(SCOPES)}")
        pace = options.get("pace") or "fast"
        if pace not in ("fast", "realtime"):
            raise BootError(f"pace {pace!r}: use fast or realtime")
        args = options.get("args") or ()
        if isinstance(args, (str, bytes)):
            raise BootError("args must be a list of strings, not one string")
        args = tuple(str(a) for a in args)
        boot = options.get("boot")
        boot = None if boot is None else _compile(boot)
        boot_uart = options.get("boot_uart") or "uart0"
        boot_timeout = float(options.get("boot_timeout") or DEFAULT_TIMEOUT)
        boot_key = boot.pattern if isinstance(boot, re.Pattern) else boot
        key = (str(fw), st.st_mtime_ns, st.st_size, toml, pace, args, boot_key, boot_uart,
               boot_timeout, scope)
        return MachineSpec(fw, board, board_file, pace, args, boot, boot_uart, boot_timeout,
                           scope, key)


_OPTION_KEYS = ("firmware", "board", "ram_size", "cpu_hz", "pace", "args", "boot", "boot_uart",
                "boot_timeout", "scope")


def _hashable(value: Any) -> Any:
    if isinstance(value, Board):            # by identity in SpecResolver.board, not here
        raise TypeError("a Board is not memoised")
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


# -- the pools -------------------------------------------------------------------------------

class MachinePool:
    """Booted machines of one scope, idle between tests."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._idle: dict[tuple, list[PooledMachine]] = {}
        self._failed: dict[tuple, str] = {}
        self._all: list[PooledMachine] = []

    async def checkout(self, spec: MachineSpec, expect_timeout: float) -> PooledMachine:
        """A machine of ``spec`` at its boot checkpoint (booted now if none is idle)."""
        failed = self._failed.get(spec.key)
        if failed is not None:
            raise BootError(f"{failed} (the boot failed earlier in this {self.scope}; "
                            "it is not tried again)")
        vm = self.take_idle(spec, expect_timeout)
        if vm is not None:
            return vm
        try:
            vm = await boot(spec, expect_timeout)
        except BootError as exc:
            self._failed[spec.key] = str(exc)
            raise
        self._all.append(vm)
        return vm

    def take_idle(self, spec: MachineSpec, expect_timeout: float) -> PooledMachine | None:
        """An idle machine of ``spec`` at its boot checkpoint, if there is one."""
        idle = self._idle.get(spec.key)
        if not idle:
            return None
        vm = idle.pop()
        vm.reset()
        vm.expect_timeout = expect_timeout
        return vm

    def checkin(self, vm: PooledMachine) -> None:
        if vm.closed:
            self._all.remove(vm)
            return
        assert vm.spec is not None
        self._idle.setdefault(vm.spec.key, []).append(vm)

    def close(self) -> None:
        for vm in self._all:
            if not vm.closed:
                vm.dispose()
        self._all.clear()
        self._idle.clear()


async def boot(spec: MachineSpec, expect_timeout: float = DEFAULT_TIMEOUT) -> PooledMachine:
    """Build, start and boot a machine of ``spec``, and seal it."""
    from aemu.hw.loader import LoadError
    from aemu.hw.machine import MachineError

    try:
        # named as `aemu run FIRMWARE` names it: the name is the guest's argv[0]
        vm = PooledMachine(spec.board, str(spec.firmware), name=str(spec.firmware),
                           args=spec.args, pace=spec.pace, expect_timeout=expect_timeout)
    except (LoadError, MachineError, OSError, ValueError) as exc:
        raise BootError(f"{spec.firmware}: {exc}") from None
    vm.spec = spec
    try:
        await vm.start()
        if spec.boot is not None:
            try:
                uart = vm.uart(spec.boot_uart)
            except KeyError as exc:
                raise BootError(str(exc.args[0])) from None
            try:
                await uart.expect(spec.boot, spec.boot_timeout)
            except ExpectError as exc:
                raise BootError(f"{spec.firmware} did not boot: {exc}") from None
        vm.pause()
        vm.seal()
    except BaseException:
        await vm.close()
        raise
    return vm


def run_private(coro: Any) -> Any:
    """Run ``coro`` to the end on an event loop of its own, from code outside
    any loop (a teardown), leaving the thread's current event loop alone."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        coro.close()
        raise RuntimeError("this needs the machine from an async fixture or test argument: "
                           "an event loop is running here")
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


class MachineFactory:
    """The ``aemu_machine_factory`` fixture: ``await factory(firmware, ...)``
    gives a booted machine reset to its boot checkpoint.  Machines come from
    the session's pool (or the module's, ``scope="module"``); each call in a
    test gives another machine, and all go back to the pool after the test."""

    def __init__(self, pools: Mapping[str, MachinePool], resolver: SpecResolver,
                 defaults: Mapping[str, Any], base: Path,
                 expect_timeout: float = DEFAULT_TIMEOUT) -> None:
        self._pools = pools
        self._resolver = resolver
        self.defaults = dict(defaults)
        self._base = base
        self.expect_timeout = expect_timeout
        #: the machines this test got, in order
        self.machines: list[PooledMachine] = []
        #: aemu_machine: the machine of the test's defaults
        self.configured: PooledMachine | None = None

    async def __call__(self, firmware: "str | os.PathLike[str] | None" = None, *,
                       board: "str | os.PathLike[str] | Board | None" = None,
                       ram_size: "int | str | None" = None, cpu_hz: "int | str | None" = None,
                       pace: str | None = None, args: Sequence[str] | None = None,
                       boot: "bytes | str | re.Pattern[bytes] | None" = None,
                       boot_uart: str | None = None, boot_timeout: float | None = None,
                       scope: str | None = None) -> PooledMachine:
        """A machine running ``firmware`` (default: the test's configured one,
        see docs/testing.md) on ``board`` (a board file, a Board, or None for
        the configured/default board), with ``ram_size``/``cpu_hz``
        overrides, ``pace`` ("fast" or "realtime") and the guest's ``args``.
        ``boot``: run until this appears on ``boot_uart`` before sealing (the
        checkpoint every reset returns to); without it the checkpoint is taken
        before the first instruction.  ``scope``: "session" (default) or
        "module": how long the booted machine is kept.  Relative paths are
        relative to the test file's directory."""
        given = dict(firmware=firmware, board=board, ram_size=ram_size, cpu_hz=cpu_hz,
                     pace=pace, args=args, boot=boot, boot_uart=boot_uart,
                     boot_timeout=boot_timeout, scope=scope)
        options = {**self._options(), **{k: v for k, v in given.items() if v is not None}}
        spec = self._resolver.spec(options, self._base)
        vm = await self._pools[spec.scope].checkout(spec, self.expect_timeout)
        self.machines.append(vm)
        return vm

    def take_now(self) -> PooledMachine:
        """``await self()`` without an await: from a fixture that is not async
        (a machine of the defaults, booted on a loop of its own if none is idle)."""
        spec = self._resolver.spec(self._options(), self._base)
        pool = self._pools[spec.scope]
        vm = pool.take_idle(spec, self.expect_timeout)
        if vm is None:
            vm = run_private(pool.checkout(spec, self.expect_timeout))
        self.machines.append(vm)
        return vm

    def _options(self) -> dict[str, Any]:
        # a boot may take as long as an expect (the aemu_timeout ini value)
        return {"boot_timeout": self.expect_timeout, **self.defaults}

    def release(self) -> None:
        """After the test: every machine stops where it is and goes back to its pool."""
        for vm in self.machines:
            if not vm.closed:
                vm.pause()
            assert vm.spec is not None
            self._pools[vm.spec.scope].checkin(vm)
        self.machines.clear()


__all__ = ["BootError", "MachineFactory", "MachinePool", "MachineSpec", "PooledMachine",
           "SpecResolver", "boot"]
