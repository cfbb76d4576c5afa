"""A subset of QEMU's human monitor, for ``human-monitor-command``: what
scripts written for QEMU most often send (info status, info registers, x,
stop/cont, system_reset, savevm/loadvm/delvm, info snapshots, migrate
and its settings).  Output lines
end in CRLF, as QEMU's do."""
from __future__ import annotations

import math
import re
import shlex
import time
from typing import Callable

from aemu import __version__
from aemu.host import hmp_migration
from aemu.host.commands import CommandContext
from aemu.host.protocol import QmpError

_X_FMT = re.compile(r"/([0-9]{0,6})([xdubc]?)([bhwg]?)$", re.ASCII)
_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
HELP = {
    "help": "help|? -- this list",
    "info": "info status|name|version|registers|snapshots|migrate|migrate_capabilities|"
            "migrate_parameters -- show the VM's state",
    "stop": "stop -- pause the guest",
    "cont": "cont|c -- resume the guest",
    "system_reset": "system_reset -- reset the machine",
    "x": "x /fmt addr -- guest memory, e.g. x /8xh 0x1000 (count, format x d u c, size b h w g)",
    "xp": "xp /fmt addr -- the same (no MMU: virtual is physical)",
    "quit": "quit|q -- end this VM",
    "savevm": "savevm [tag] -- save the VM as snapshot tag (default vm-YYYYMMDDhhmmss); "
              "a snapshot of that name is replaced",
    "loadvm": "loadvm tag -- restore the VM from snapshot tag",
    "delvm": "delvm tag -- delete snapshot tag",
}
HELP.update(hmp_migration.HELP)


def _lines(rows: list[str]) -> str:
    return "".join(f"{row}\r\n" for row in rows)


def _info(ctx: CommandContext, args: list[str]) -> str:
    from aemu.host import vm_commands as q

    what = args[0] if args else ""
    if what == "status":
        return f"VM status: {q.query_status(ctx)['status']}\r\n"
    if what == "name":
        return f"{ctx.target.name}\r\n"
    if what == "version":
        return f"aemu {__version__}\r\n"
    if what == "registers":
        regs = q.query_registers(ctx)
        rows = []
        for base in range(0, 16, 4):
            width = 4 if base < 12 else 8
            rows.append(" ".join(f"R{i:<2}={regs[f'r{i}']:0{width}x}"
                                 for i in range(base, base + 4)))
        rows.append(f"PC ={regs['pc']:06x} PSR={regs['psr']:04x} CFG={regs['cfg']:04x} "
                    f"INTBASE={regs['intbase']:08x}")
        rows.append(f"ISP={regs['isp']:08x} USP={regs['usp']:08x} SSP={regs['ssp']:08x}")
        return _lines(rows)
    if what == "snapshots":
        return _info_snapshots(ctx)
    if what in hmp_migration.INFO:
        return hmp_migration.info(ctx, what)
    raise QmpError(f"info {what}: unknown (try: status, name, version, registers, snapshots)")


def size_to_str(value: int) -> str:
    """QEMU's size_to_str: three significant digits and a binary unit."""
    suffixes = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
    i = 0
    if value > 0:
        _, exp = math.frexp(value / (1000 / 1024.0))
        i = max(0, min((exp - 1) // 10, len(suffixes) - 1))
    return f"{value / (1 << (i * 10)):0.3g} {suffixes[i]}B"


def format_clock(ns: int) -> str:
    """A virtual clock as QEMU's snapshot table shows it: hh:mm:ss.mmm."""
    secs = ns // 1_000_000_000
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{ns // 1_000_000 % 1000:03d}"


def format_date(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _snapshot_row(ident: str, tag: str, size: int, date: float, clock_ns: int,
                  icount: str) -> str:
    return (f"{ident:<9} {tag:<16} {size_to_str(size):>8}{format_date(date):>20}"
            f"{format_clock(clock_ns):>13}{icount:>11}")


def _info_snapshots(ctx: CommandContext) -> str:
    """QEMU's table (bdrv_snapshot_dump): ID, TAG, VM SIZE, DATE, VM CLOCK, ICOUNT."""
    from aemu.host.snapshots import SnapshotFailed

    snaps = ctx.target.snapshots
    try:
        infos = snaps.list()
    except SnapshotFailed as exc:
        raise QmpError(str(exc)) from None
    if not infos:
        return "There is no snapshot available.\r\n"
    ids = snaps.store.ids(snaps.name)
    rows = ["List of snapshots present on all disks:",
            f"{'ID':<10}{'TAG':<17}{'VM SIZE':>8}{'DATE':>20}{'VM CLOCK':>13}{'ICOUNT':>11}"]
    for info in infos:
        rows.append(_snapshot_row(str(ids.get(info.name, "--")), info.name, info.size,
                                  info.created, info.vm_clock, str(info.insns)))
    return _lines(rows)


async def _snapshot(ctx: CommandContext, name: str, args: list[str]) -> str:
    """savevm [tag], loadvm tag, delvm tag: nothing printed when they work."""
    from aemu.host.snapshots import SnapshotFailed, auto_tag

    snaps = ctx.target.snapshots
    if len(args) > 1 or (name != "savevm" and not args):
        raise QmpError(f"usage: {HELP[name].split(' -- ')[0]}")
    try:
        if name == "savevm":
            await snaps.save(args[0] if args else auto_tag(), overwrite=True)
        elif name == "loadvm":
            await snaps.load(args[0])
        else:
            await snaps.delete(args[0])
    except SnapshotFailed as exc:
        raise QmpError(str(exc)) from None
    return ""


def _examine(ctx: CommandContext, args: list[str]) -> str:
    fmt, addr_text = ("/1xw", args[0]) if len(args) == 1 else (args[0], args[1]) \
        if len(args) == 2 else ("", "")
    m = _X_FMT.match(fmt)
    if not m or not addr_text:
        raise QmpError("usage: x /fmt addr (e.g. x /4xw 0x1000)")
    count = int(m.group(1) or 1)
    kind = m.group(2) or "x"
    size = _SIZES[m.group(3) or ("b" if kind == "c" else "w")]
    try:
        addr = int(addr_text, 0)
    except ValueError:
        raise QmpError(f"bad address {addr_text!r}") from None
    machine = ctx.target.machine
    if count < 1 or count * size > 64 * 1024 or addr < 0 \
            or addr + count * size > machine.cpu.ram_size:
        raise QmpError("range is outside guest RAM (or more than 64 KiB)")
    data = machine.cpu.read(addr, count * size)
    per_line = max(1, 16 // size)
    rows = []
    for start in range(0, count, per_line):
        items = []
        for i in range(start, min(count, start + per_line)):
            raw = data[i * size:(i + 1) * size]
            value = int.from_bytes(raw, "little")
            if kind == "x":
                items.append(f"0x{value:0{size * 2}x}")
            elif kind == "d":
                items.append(str(value - (1 << (8 * size)) if value >> (8 * size - 1) else value))
            elif kind == "u":
                items.append(str(value))
            else:
                items.append(repr(chr(value & 0xFF)))
        rows.append(f"{addr + start * size:08x}: " + " ".join(items))
    return _lines(rows)


async def run_hmp(ctx: CommandContext, line: str) -> str:
    """Execute one HMP command line; its output text (errors too, as QEMU's
    monitor prints them)."""
    try:
        return await _run(ctx, line)
    except QmpError as exc:
        return f"Error: {exc.desc}\r\n"


async def _run(ctx: CommandContext, line: str) -> str:
    from aemu.host import vm_commands as q

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise QmpError(f"cannot parse {line!r}: {exc}") from None
    if not words:
        return ""
    name, args = words[0], words[1:]
    if name.startswith("x/") or name.startswith("xp/"):       # "x/4xw 0x100"
        head, fmt = name.split("/", 1)
        name, args = head, ["/" + fmt, *args]
    simple: dict[str, Callable[[CommandContext], object]] = {
        "stop": q.stop, "cont": q.cont, "c": q.cont, "system_reset": q.system_reset,
        "quit": q.quit_, "q": q.quit_}
    if name in simple:
        simple[name](ctx)
        return ""
    if name == "info":
        return _info(ctx, args)
    if name in ("savevm", "loadvm", "delvm"):
        return await _snapshot(ctx, name, args)
    if name in ("x", "xp"):
        return _examine(ctx, args)
    if name in hmp_migration.HELP:
        return await hmp_migration.run(ctx, name, args)
    if name in ("help", "?"):
        return _lines(list(HELP.values()))
    return f"unknown command: '{name}'\r\n"
