"""The host control socket's commands: make, list and destroy VMs, quit.

The target is the ``Host`` (aemu.host.host).  VM commands go to each VM's
own socket; these only manage the set of VMs.
"""
from __future__ import annotations

from aemu.host.commands import CommandContext, CommandTable, Int
from aemu.host.protocol import QmpError
from aemu.host.vm_commands import common
from aemu.hw.board import MAX_RAM

host = CommandTable(common)
PACES = ("fast", "realtime")


@host.command("__org.aemu_vm-create", {
    "name": "str", "*firmware": "str", "*args": ["str"], "*board": "str",
    "*ram-size": Int(2, MAX_RAM), "*cpu-hz": Int(1, 10 ** 12), "*pace": PACES,
    "*paused": "bool", "*uart": "str", "*fs-root": "str", "*incoming": "str"})
async def vm_create(ctx: CommandContext, name: str, firmware: str | None = None,
                    args: list[str] | None = None, board: str | None = None,
                    ram_size: int | None = None, cpu_hz: int | None = None,
                    pace: str = "realtime", paused: bool = False, uart: str | None = None,
                    fs_root: str | None = None, incoming: str | None = None) -> dict:
    """Make and start a VM.  firmware: an ELF in an allowed directory (default:
    the bundled demo); paused: start in the paused state; pace: realtime
    (default) or fast; uart: none, unix (a console socket in the state dir, the
    default), unix:PATH, file:PATH or tcp:[HOST:]PORT; incoming: a migration
    URI to wait on (the VM is in inmigrate until a stream arrived and starts
    then, unless paused), or "defer" (until migrate-incoming on its socket).
    Returns the VM's info, with its QMP socket (and the incoming address)."""
    from aemu.host.host import HostError
    from aemu.host.vm import VmConfig

    config = VmConfig(name=name, firmware=firmware, args=list(args or []), board=board,
                      ram_size=ram_size, cpu_hz=cpu_hz, pace=pace, paused=paused, uart=uart,
                      fs_root=fs_root, incoming=incoming)
    try:
        vm = await ctx.target.create_vm(config)
    except HostError as exc:
        raise QmpError(str(exc)) from None
    return vm.info()


@host.command("__org.aemu_vm-list")
def vm_list(ctx: CommandContext) -> list:
    """Every VM: name, status, QMP socket, firmware, pace, RAM size."""
    return [vm.info() for vm in ctx.target.vms.values()]


@host.command("__org.aemu_vm-destroy", {"name": "str"})
async def vm_destroy(ctx: CommandContext, name: str) -> None:
    """End a VM (its clients get SHUTDOWN) and remove its sockets."""
    from aemu.host.host import HostError

    try:
        await ctx.target.destroy_vm(name)
    except HostError as exc:
        raise QmpError(str(exc), "DeviceNotFound") from None


@host.command("__org.aemu_query-host")
def query_host(ctx: CommandContext) -> dict:
    """The host: state dir, pid, its socket, VM count, allowed dirs, uptime."""
    return ctx.target.info()


@host.command("quit")
def quit_host(ctx: CommandContext) -> None:
    """Shut the host down: every VM ends (SHUTDOWN, host-qmp-quit)."""
    ctx.target.request_stop("host-qmp-quit")
