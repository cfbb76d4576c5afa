"""The QMP commands of one VM: QEMU's vocabulary where QEMU has the command,
``__org.aemu_`` names where it has none.

The target of these commands is a ``HostedVm`` (aemu.host.vm): it has
``machine``, ``name``, ``confinement`` and ``quit()``.
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any

from aemu import __version__
from aemu.cpu.core import SPECIAL_REGS
from aemu.host.commands import CommandContext, CommandTable, Int
from aemu.host.paths import PathError
from aemu.host.protocol import QmpError
from aemu.host.server import QEMU_VERSION
from aemu.hw.machine import MachineError
from aemu.loop import RunState

MAX_TRANSFER = 1 << 20          #: bytes one memory read/write command may move

#: commands every QMP socket of aemu has
common = CommandTable()


@common.command("qmp_capabilities", {"*enable": ["str"]})
def qmp_capabilities(ctx: CommandContext, enable: list[str] | None = None) -> dict:
    """Leave capabilities negotiation; no optional capability is offered."""
    if ctx.session.negotiated:
        raise QmpError("Capabilities negotiation is already complete, command ignored",
                       "CommandNotFound")
    for cap in enable or []:
        raise QmpError(f"Capability '{cap}' not available")
    ctx.session.negotiated = True
    return {}


@common.command("query-version")
def query_version(ctx: CommandContext) -> dict:
    """The QEMU version whose QMP this speaks, and aemu's own as the package."""
    return {"qemu": dict(QEMU_VERSION), "package": f"aemu {__version__}"}


@common.command("query-commands")
def query_commands(ctx: CommandContext) -> list:
    """Every command this socket accepts."""
    return [{"name": name} for name in ctx.session.server.commands.names()]


vm = CommandTable(common)


def _machine(ctx: CommandContext):
    return ctx.target.machine


def _changeable(ctx: CommandContext):
    """The machine, if nothing is saving or loading a snapshot of it now
    (the state must not change under a snapshot being written)."""
    machine = ctx.target.machine
    if machine.held_state is not None:
        doing = "saved" if machine.state is RunState.SAVE_VM else "loaded"
        raise QmpError(f"a snapshot of this VM is being {doing}; try again when it is done")
    return machine


@vm.command("query-status")
def query_status(ctx: CommandContext) -> dict:
    """{"running": bool, "status": RunState}."""
    state = _machine(ctx).state
    return {"running": state is RunState.RUNNING, "status": state.value}


@vm.command("query-name")
def query_name(ctx: CommandContext) -> dict:
    return {"name": ctx.target.name}


@vm.command("stop")
def stop(ctx: CommandContext) -> None:
    """Pause the guest before its next slice (STOP event)."""
    _machine(ctx).pause()


@vm.command("cont")
def cont(ctx: CommandContext) -> None:
    """Resume the guest (RESUME event); an ended guest needs system_reset first."""
    machine = _machine(ctx)
    if (machine.held_state or machine.state).needs_reset:    # (held: a snapshot is saved)
        raise QmpError("Resetting the Virtual Machine is required")
    machine.resume()


@vm.command("system_reset")
def system_reset(ctx: CommandContext) -> None:
    """Reset CPU, devices and program image (RESET event); an ended guest
    comes back in prelaunch, ready for cont."""
    _changeable(ctx).system_reset(guest=False, reason="host-qmp-system-reset")


@vm.command("quit")
def quit_(ctx: CommandContext) -> None:
    """End this VM (SHUTDOWN event, reason host-qmp-quit), as QEMU's quit ends
    its process; the socket closes after the reply."""
    ctx.target.request_quit()


def _b64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise QmpError("data must be base64") from None


def _mem_range(machine: Any, addr: int, size: int) -> None:
    if size > MAX_TRANSFER:
        raise QmpError(f"at most {MAX_TRANSFER} bytes at a time")
    if addr + size > machine.cpu.ram_size:
        raise QmpError(f"range {addr:#x}+{size:#x} is outside guest RAM "
                       f"(0..{machine.cpu.ram_size:#x})")


def _save_memory(ctx: CommandContext, val: int, size: int, filename: str) -> None:
    machine = _machine(ctx)
    if val + size > machine.cpu.ram_size:
        raise QmpError(f"range {val:#x}+{size:#x} is outside guest RAM "
                       f"(0..{machine.cpu.ram_size:#x})")
    try:
        path = ctx.target.confinement.check(filename, "filename", must_exist=False)
    except PathError as exc:
        raise QmpError(str(exc)) from None
    data = machine.cpu.read(val, size)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise QmpError(f"could not write {filename}: {exc.strerror}") from None


@vm.command("pmemsave", {"val": Int(0), "size": Int(0), "filename": "str"})
def pmemsave(ctx: CommandContext, val: int, size: int, filename: str) -> None:
    """Write guest memory [val, val+size) to filename (an allowed directory)."""
    _save_memory(ctx, val, size, filename)


@vm.command("memsave", {"val": Int(0), "size": Int(0), "filename": "str", "*cpu-index": Int(0, 0)})
def memsave(ctx: CommandContext, val: int, size: int, filename: str,
            cpu_index: int = 0) -> None:
    """As pmemsave: the CR16C has no MMU, virtual and physical are one."""
    _save_memory(ctx, val, size, filename)


@vm.command("__org.aemu_query-registers")
def query_registers(ctx: CommandContext) -> dict:
    """All CPU registers: r0..r15 and the special registers, as integers."""
    state = _machine(ctx).cpu.get_state()
    out = {f"r{i}": v for i, v in enumerate(state["r"])}
    out.update({name: state[name] for name in SPECIAL_REGS})
    return out


_GPR = re.compile(r"r(1[0-5]|[0-9])", re.ASCII)
#: widths of the special registers in the core (csrc/cr16.h struct cr16_regs)
_SPECIAL_BITS = {"pc": 24, "psr": 16, "cfg": 16, "dbs": 16, "dsr": 16}


@vm.command("__org.aemu_set-registers", {"registers": "object"})
def set_registers(ctx: CommandContext, registers: dict) -> None:
    """Set some registers (names as query-registers gives them)."""
    machine = _changeable(ctx)
    state = machine.cpu.get_state()
    regs = list(state["r"])
    special = {}
    for key, value in registers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise QmpError(f"register {key}: expected a non-negative integer")
        m = _GPR.fullmatch(key)
        if m:
            i = int(m.group(1))
            bits = 16 if i < 12 else 32
        elif key in SPECIAL_REGS:
            bits = _SPECIAL_BITS.get(key, 32)
        else:
            raise QmpError(f"unknown register {key!r}")
        if value >> bits:
            raise QmpError(f"register {key}: {value:#x} does not fit in {bits} bits")
        if m:
            regs[i] = value
        else:
            special[key] = value
    machine.cpu.set_state({"r": regs, **special})


@vm.command("__org.aemu_read-memory", {"addr": Int(0), "size": Int(0)})
def read_memory(ctx: CommandContext, addr: int, size: int) -> dict:
    """Guest RAM [addr, addr+size) as {"data": base64}."""
    machine = _machine(ctx)
    _mem_range(machine, addr, size)
    return {"data": base64.b64encode(machine.cpu.read(addr, size)).decode("ascii")}


@vm.command("__org.aemu_write-memory", {"addr": Int(0), "data": "str"})
def write_memory(ctx: CommandContext, addr: int, data: str) -> None:
    """Write base64 ``data`` to guest RAM at addr (decoded code there is dropped)."""
    raw = _b64(data)
    machine = _changeable(ctx)
    _mem_range(machine, addr, len(raw))
    machine.cpu.write(addr, raw)


@vm.command("__org.aemu_query-run")
def query_run(ctx: CommandContext) -> dict:
    """Run state, virtual clock, instructions, pacing, and how the run ended."""
    machine = _machine(ctx)
    out: dict[str, Any] = {
        "status": machine.state.value, "cycles": machine.cycles,
        "virtual-ns": machine.clock.ns(), "insns": machine.cpu.insn_count,
        "pc": machine.cpu.pc, "pace": machine.pace, "cpu-hz": machine.board.cpu_hz,
        "ram-size": machine.cpu.ram_size,
    }
    result = machine.result
    if result is not None:
        out["exit"] = {"reason": result.reason, "status": result.status,
                       "message": result.message or "", "pc": result.pc}
    return out


@vm.command("__org.aemu_run-until", {"*cycles": Int(0), "*ns": Int(0)})
async def run_until(ctx: CommandContext, cycles: int | None = None,
                    ns: int | None = None) -> dict:
    """Run until the virtual clock reaches cycles (or ns), then pause exactly
    there; replies when it stops, with the status."""
    if (cycles is None) == (ns is None):
        raise QmpError("give exactly one of 'cycles' and 'ns'")
    machine = _changeable(ctx)
    if machine.state.needs_reset:
        raise QmpError("Resetting the Virtual Machine is required")
    try:
        state = await machine.run_until(cycles=cycles, ns=ns)
    except MachineError as exc:             # the VM went away meanwhile
        raise QmpError(str(exc)) from None
    return {"status": state.value, "cycles": machine.cycles}


@vm.command("__org.aemu_uart-input", {"data": "str", "*device": "str"})
def uart_input(ctx: CommandContext, data: str, device: str = "uart0") -> None:
    """Queue base64 ``data`` as input to a UART, as if its back-end received it."""
    raw = _b64(data)
    if len(raw) > MAX_TRANSFER:
        raise QmpError(f"at most {MAX_TRANSFER} bytes at a time")
    try:
        _machine(ctx).uart_input(device, raw)
    except KeyError:
        raise QmpError(f"no UART named {device!r}", "DeviceNotFound") from None
    except BufferError as exc:
        raise QmpError(str(exc)) from None


@vm.command("human-monitor-command", {"command-line": "str", "*cpu-index": Int(0, 0)})
async def human_monitor_command(ctx: CommandContext, command_line: str,
                                cpu_index: int = 0) -> str:
    """A subset of QEMU's human monitor (see 'help')."""
    from aemu.host.hmp import run_hmp
    return await run_hmp(ctx, command_line)
