"""The ``aemu`` command."""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from typing import Sequence

from aemu import __version__

DEMO_NAME = "demo.elf"

RUN_DESCRIPTION = """\
Run a CR16C program (an ELF executable built with cr16-elf-gcc -msim or with
aemu's BSP, or a raw binary with --binary) until it exits.  Without PROGRAM,
run the bundled demo.  aemu's options go before PROGRAM: everything after it
is passed to the guest (programs built with the aemu BSP see it as argc/argv;
others ignore it, with a warning).  The guest's stdin, stdout and stderr are
aemu's own.

Host services (the simulator's syscall interface, `excp svc` with the code
in r0): exit, read, write, open, close, lseek, rename, unlink, getenv, time,
getpid, kill, and gettime (0x430, virtual nanoseconds).  Time is virtual:
2026-01-01T00:00:00Z plus executed instructions / --cpu-hz, so every run of a
program is identical.  Files are only reachable with --fs-root DIR (the
guest's "/" is DIR; nothing outside it); without it, open/rename/unlink fail
with EACCES.
"""

def _examples() -> str:
    from aemu.hw.program import EXIT_STATUS_TABLE

    width = max(len(what) for what, _ in EXIT_STATUS_TABLE)
    rows = "\n".join(f"  {what:<{width}}  {status}" for what, status in EXIT_STATUS_TABLE)
    return f"""\
examples:
  aemu run                                  run the bundled demo
  aemu run hello.elf                        run a program built with -msim
  echo hi | aemu run cat.elf                the guest reads aemu's stdin
  aemu run --fs-root ./data prog.elf in.txt allow file access below ./data
  aemu run --max-insns 1000000 loop.elf     stop after a million instructions
  aemu run --trace-file t.txt --stats prog.elf
  aemu run --binary 0x2 --entry 0x18 image.bin
  aemu run --loadvm booted --name ec ec.elf start from snapshot 'booted' of served VM ec

exit status:
{rows}

Faults are reported on stderr, e.g.
  aemu: guest fault: illegal address 0x1800000 at pc 0x2e2 (vector 12)
"""


def parse_size(text: str) -> int:
    """'20M', '512K', '0x100000', '1048576' -> bytes."""
    m = re.fullmatch(r"\s*(0x[0-9a-fA-F]+|\d+)\s*([kKmM]?)(?:i?[bB])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 20M, 512K, 0x100000)")
    value = int(m.group(1), 0) << {"": 0, "k": 10, "m": 20}[m.group(2).lower()]
    if value <= 0 or value % 2:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive and even")
    return value


def parse_addr(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid address {text!r} (e.g. 0x2 or 4096)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"address {text!r} is negative")
    return value


def parse_hz(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:[hH][zZ])?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid frequency {text!r} (e.g. 100M, 25000000)")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"frequency {text!r} must be at least 1 Hz")
    return int(value)


def parse_count(text: str) -> int:
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"count {text!r} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aemu", description="aemu: an emulator for the CompactRISC CR16C CPU.",
        epilog="Run 'aemu run --help' for the options, examples and exit statuses.")
    parser.add_argument("--version", action="version", version=f"aemu {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser(
        "run", help="run a CR16C program until it exits",
        description=RUN_DESCRIPTION, epilog=_examples(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="aemu run [options] [PROGRAM [ARGS...]]")
    run.add_argument("program", nargs="?", metavar="PROGRAM",
                     help="ELF executable (default: the bundled demo)")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments for the guest program")
    run.add_argument("--max-insns", type=parse_count, metavar="N",
                     help="stop after N instructions (exit status 124)")
    run.add_argument("--trace", action="store_true",
                     help="print every executed instruction to stderr")
    run.add_argument("--trace-file", metavar="FILE",
                     help="print the instruction trace to FILE instead")
    run.add_argument("--stats", action="store_true",
                     help="print instructions, wall time, MIPS and exit reason to stderr")
    run.add_argument("--board", metavar="FILE",
                     help="board description (TOML, see docs/board.md); default: the built-in "
                          "board (20 MiB RAM, ICU, two timers, UART, watchdog)")
    run.add_argument("--ram-size", type=parse_size, metavar="SIZE",
                     help="guest RAM at address 0 (suffix K or M; default: the board's, 20M)")
    run.add_argument("--fs-root", metavar="DIR",
                     help="let the guest open, create, rename and unlink files below DIR")
    run.add_argument("--binary", type=parse_addr, metavar="ADDR",
                     help="PROGRAM is a raw binary image to load at ADDR")
    run.add_argument("--entry", type=parse_addr, metavar="ADDR",
                     help="start at ADDR (default: the ELF entry point, or the --binary ADDR)")
    run.add_argument("--cpu-hz", type=parse_hz, metavar="HZ",
                     help="CPU frequency for the virtual clock (default: the board's, 100M: "
                          "10 ns per instruction)")
    run.add_argument("--pace", choices=("fast", "realtime"), default="fast",
                     help="fast: as fast as possible, virtual time jumps while the guest "
                          "waits (default); realtime: virtual time never runs ahead of wall "
                          "time")
    run.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                     help="event loop (default uvloop)")
    run.add_argument("--uart", metavar="SPEC",
                     help="host back-end of uart0: stdout (the default board's: output "
                          "only, stdin stays with the program's read()), stdio, none, "
                          "file:PATH, unix:PATH, tcp:[HOST:]PORT or pty")
    run.add_argument("--forever", action="store_true",
                     help="the bundled demo runs until interrupted instead of a few virtual "
                          "seconds")
    run.add_argument("--qmp", metavar="ADDR",
                     help="serve QMP for this VM on unix:PATH (or a path) or tcp:[HOST:]PORT, "
                          "as QEMU's -qmp does; quit or SIGTERM ends the run (status 0)")
    run.add_argument("--paused", action="store_true",
                     help="start paused (like QEMU's -S): a QMP client sends cont")
    run.add_argument("--loadvm", metavar="TAG",
                     help="start from snapshot TAG of VM --name in the --state-dir snapshot "
                          "store (like QEMU's -loadvm); PROGRAM (default: the demo) is still "
                          "loaded, for later resets, and the board must match the snapshot's")
    run.add_argument("--name", metavar="NAME",
                     help="the VM's name: its snapshots go by it in the store (default: "
                          "PROGRAM's file name without extension, 'demo' for the demo), "
                          "and QMP query-name says it")
    run.add_argument("--state-dir", metavar="DIR",
                     help="where the snapshot store is (DIR/snapshots) for --loadvm and the "
                          "QMP snapshot commands (default: the serve host's default state dir)")
    run.add_argument("--incoming", metavar="URI",
                     help="wait for a live migration on URI (tcp:HOST:PORT, unix:PATH, "
                          "fd:N, file:PATH[,offset=N]) and run the VM that arrives, as "
                          "QEMU's -incoming; 'defer' waits for migrate-incoming over --qmp. "
                          "PROGRAM and the board must match the source's")
    run.add_argument("--migrate-set", metavar="KEY=VALUE", action="append", default=[],
                     help="with --incoming: a migration capability (on/off) or parameter "
                          "by QEMU's name, e.g. multifd=on, multifd-channels=4; repeatable")
    run.set_defaults(subparser=run)
    add_host_commands(sub)
    add_snapshot_commands(sub)
    from aemu.cli_migrate import add_migrate_command
    add_migrate_command(sub)
    run.add_argument("--svc", choices=("host", "guest"),
                     help="'excp svc' is a host call (the default board's setting) or a trap "
                          "into the guest's SVC handler")
    return parser


def _error(message: str) -> None:
    print(f"aemu: {message}", file=sys.stderr, flush=True)


def _board(opts: argparse.Namespace, parser: argparse.ArgumentParser):
    from aemu.hw.board import BoardError, default_board, load_board

    try:
        board = load_board(opts.board) if opts.board else default_board()
        changes = {k: v for k, v in (("ram_size", opts.ram_size), ("cpu_hz", opts.cpu_hz),
                                     ("svc", opts.svc)) if v is not None}
        if changes:
            board = board.with_changes(**changes)
        board.validate()
    except (BoardError, OSError) as exc:
        _error(f"board: {exc}")
        return None
    return board


def cmd_run(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aemu.hw.loader import LoadError
    from aemu.hw.program import STATUS_LOAD_ERROR
    from aemu.hw.machine import MachineError, run_sync

    args = list(opts.args)
    if opts.program is None and args:
        parser.error("ARGS given without PROGRAM")
    if opts.binary is not None and opts.program is None:
        parser.error("--binary needs a PROGRAM")
    if opts.fs_root is not None and not os.path.isdir(opts.fs_root):
        parser.error(f"--fs-root {opts.fs_root}: not a directory")
    if opts.paused and not opts.qmp:
        parser.error("--paused needs --qmp (something has to send cont)")
    if opts.incoming is not None:
        if opts.loadvm is not None:
            parser.error("--incoming and --loadvm exclude each other")
        if opts.incoming == "defer" and not opts.qmp:
            parser.error("--incoming defer needs --qmp (migrate-incoming is sent there)")
    if opts.migrate_set and opts.incoming is None:
        parser.error("--migrate-set needs --incoming (for a source, use aemu migrate)")
    if opts.name is not None and not _NAME_RE.fullmatch(opts.name):
        parser.error(f"--name {opts.name!r}: use a letter followed by up to 63 letters, "
                     "digits, '.', '_' or '-'")
    board = _board(opts, parser)
    if board is None:
        return 2

    with contextlib.ExitStack() as stack:
        if opts.program is None:
            from importlib.resources import as_file, files

            try:
                resource = files("aemu.demo") / DEMO_NAME
                found = resource.is_file()
            except ModuleNotFoundError:
                found = False
            if not found:
                _error(f"the bundled demo (aemu/demo/{DEMO_NAME}) is missing from this "
                       "installation; give a PROGRAM")
                return STATUS_LOAD_ERROR
            program = stack.enter_context(as_file(resource))
            name = DEMO_NAME
            if opts.forever:
                args = ["--forever"]
        else:
            program, name = opts.program, opts.program
        trace = None
        if opts.trace_file:
            try:
                trace = stack.enter_context(open(opts.trace_file, "w", encoding="utf-8"))
            except OSError as exc:
                parser.error(f"--trace-file {opts.trace_file}: {exc.strerror}")
        elif opts.trace:
            trace = sys.stderr
        # a board's stdio UART writes to stdout; stdin stays with the host
        # services (semihosting read) unless --uart stdio hands it over
        backends = {name: "stdout" for name, conf in board.uart_backends().items()
                    if conf.get("backend") == "stdio"}
        if opts.uart:
            backends["uart0"] = opts.uart
        kw = dict(args=args, name=name, binary_addr=opts.binary, entry=opts.entry,
                  pace=opts.pace, max_insns=opts.max_insns, trace=trace, fs_root=opts.fs_root,
                  backends=backends)
        vm_name = opts.name or default_vm_name(None if opts.program is None else opts.program)
        try:
            if opts.loadvm is not None:
                problem = _check_loadvm(opts, vm_name)
                if problem:
                    _error(problem)
                    return STATUS_LOAD_ERROR
            if opts.incoming is not None and not opts.qmp:
                result = _run_incoming(board, program, opts, kw)
            elif opts.qmp:
                result = _run_with_qmp(board, program, opts, kw, vm_name)
                if result is None:          # quit over QMP
                    return 0
            elif opts.loadvm is not None:
                result = _run_loadvm(board, program, opts, kw, vm_name)
            else:
                result = run_sync(board, program, loop=opts.loop, **kw)
        except LoadError as exc:
            _error(str(exc))
            return STATUS_LOAD_ERROR
        except SnapshotLoadError as exc:
            _error(f"--loadvm {opts.loadvm}: {exc}")
            return STATUS_LOAD_ERROR
        except IncomingError as exc:
            _error(f"--incoming {opts.incoming}: {exc}")
            return 1
        except MachineError as exc:
            _error(str(exc))
            return 2
        except KeyboardInterrupt:
            _error("interrupted")
            return 130
    if result.message and result.reason not in ("exit", "unknown-service"):
        _error(result.message)
    if opts.stats:
        wall = f"{result.wall:.3f} s" if result.wall >= 1 else f"{result.wall * 1e3:.2f} ms"
        print(f"aemu: stats: {result.insns} instructions in {wall} "
              f"({result.mips:.2f} MIPS); {result.describe()}", file=sys.stderr)
    sys.stderr.flush()
    return result.status


_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


class SnapshotLoadError(Exception):
    """--loadvm cannot be done (the message says why)."""


class IncomingError(Exception):
    """--incoming failed (the message says why)."""


def _incoming_settings(opts: argparse.Namespace):
    from aemu.cli_migrate import SetError, parse_settings

    try:
        return parse_settings(opts.migrate_set)
    except SetError as exc:
        raise IncomingError(str(exc)) from None


def _run_incoming(board, program, opts: argparse.Namespace, kw: dict):
    """``aemu run --incoming URI`` without QMP: wait for the VM, then run it
    to the end (the migrated guest's result)."""
    from aemu.hw.machine import Machine
    from aemu.loop import run_with_loop
    from aemu.migration import MigrationError, MigrationManager, OptionError, Status

    caps, params = _incoming_settings(opts)

    async def main():
        async with Machine(board, program, start_paused=True, **kw) as vm:
            mgr = MigrationManager(vm)
            try:
                mgr.options.set_capabilities(caps)
                mgr.options.set_parameters(params)
                job = await mgr.incoming(opts.incoming)
            except (MigrationError, OptionError) as exc:
                raise IncomingError(str(exc)) from None
            _error(f"incoming migration on {job.address}")
            await job.done.wait()
            if job.status is not Status.COMPLETED:
                raise IncomingError(job.error or job.status.value)
            return await vm.run()

    return run_with_loop(main(), opts.loop)


def default_vm_name(program: "str | None") -> str:
    """``aemu run``'s VM name for the snapshot store: PROGRAM's file name
    without its extension ('demo' for the bundled demo), made a valid name."""
    if program is None:
        return "demo"
    stem = os.path.splitext(os.path.basename(os.fspath(program)))[0]
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem)[:64]
    if not stem or not stem[0].isalpha():
        stem = ("vm-" + stem)[:64] if stem else "vm"
    return stem


def _state_dir(opts: argparse.Namespace):
    from pathlib import Path

    from aemu.host.paths import default_state_dir

    return (Path(opts.state_dir) if opts.state_dir else default_state_dir()).expanduser()


def _open_store(opts: argparse.Namespace, create: bool):
    """The snapshot store of --state-dir (made if ``create``)."""
    from aemu.host.paths import make_private_dir
    from aemu.savevm.store import SnapshotStore

    state = _state_dir(opts)
    if not create and not (state / "snapshots" / "catalogue.sqlite").exists():
        raise SnapshotLoadError(f"there is no snapshot store in {state}")
    make_private_dir(state)
    return SnapshotStore(state / "snapshots")


def _check_loadvm(opts: argparse.Namespace, vm_name: str) -> "str | None":
    """Why --loadvm cannot work (None if it can): the snapshot must exist and
    hold a guest that can run."""
    from aemu.savevm.store import SnapshotError

    try:
        store = _open_store(opts, create=False)
    except (SnapshotLoadError, OSError) as exc:
        return f"--loadvm {opts.loadvm}: {exc}"
    try:
        info = store.get(vm_name, opts.loadvm)
    except SnapshotError as exc:
        return f"--loadvm: {exc} in {_state_dir(opts)} (--name names the VM)"
    finally:
        store.close()
    if info.runstate not in ("running", "paused", "prelaunch"):
        return (f"--loadvm {opts.loadvm}: the snapshot holds a guest that is "
                f"{info.runstate}; there is nothing to run (load it into a serve VM instead)")
    return None


def _run_loadvm(board, program, opts: argparse.Namespace, kw: dict, vm_name: str):
    """``aemu run --loadvm TAG`` without QMP: load, then run to the end."""
    from aemu.hw.machine import Machine
    from aemu.loop import run_with_loop
    from aemu.savevm.codec import StreamError
    from aemu.savevm.store import SnapshotError

    store = _open_store(opts, create=False)

    async def main():
        async with Machine(board, program, start_paused=True, **kw) as vm:
            try:
                store.load(vm_name, vm, opts.loadvm)
            except (SnapshotError, StreamError, OSError) as exc:
                raise SnapshotLoadError(str(exc)) from None
            return await vm.run()

    try:
        return run_with_loop(main(), opts.loop)
    finally:
        store.close()


def _run_with_qmp(board, program, opts: argparse.Namespace, kw: dict, vm_name: str):
    """``aemu run --qmp``: the run's result, or None after a QMP quit."""
    from aemu.host.paths import Confinement
    from aemu.host.snapshots import SnapshotFailed
    from aemu.host.vm import run_with_qmp
    from aemu.hw.machine import Machine
    from aemu.loop import run_with_loop

    from aemu.host.vm import IncomingFailed

    spec = opts.qmp if opts.qmp.startswith(("unix:", "tcp:")) else f"unix:{opts.qmp}"
    loading = opts.loadvm is not None or opts.incoming is not None
    caps, params = _incoming_settings(opts) if opts.incoming else ([], {})

    async def main():
        machine = Machine(board, program, start_paused=opts.paused or loading, **kw)
        try:
            return await run_with_qmp(machine, spec, Confinement([os.getcwd()]),
                                      announce=lambda where: _error(f"QMP on {where}"),
                                      snapshots=lambda: _open_store(opts, create=True),
                                      snapshot_name=vm_name, loadvm=opts.loadvm,
                                      autostart=not opts.paused, name=opts.name,
                                      incoming=opts.incoming, incoming_settings=(caps, params),
                                      announce_incoming=lambda where: _error(
                                          f"incoming migration on {where}"))
        except SnapshotFailed as exc:
            raise SnapshotLoadError(str(exc)) from None
        except IncomingFailed as exc:
            raise IncomingError(str(exc)) from None

    return run_with_loop(main(), opts.loop)


SERVE_DESCRIPTION = """\
Run a long-lived host for many VMs on one event loop.  The host listens for
QMP on its control socket (default STATE_DIR/host.qmp); create VMs there
(__org.aemu_vm-create, or 'aemu qmp host vm-create name=NAME
firmware=/abs/fw.elf'); each VM gets its own QMP socket, STATE_DIR/vms/NAME.qmp,
that any QMP client drives as it would drive one QEMU.  Firmware, boards and
files named in commands must lie in the state dir or an --allow-dir.
SIGTERM, SIGINT or quit on the host socket stop every VM and remove the
sockets.
"""


def cmd_serve(opts: argparse.Namespace) -> int:
    from aemu.host import Host, HostError
    from aemu.loop import run_with_loop

    for d in opts.allow_dir:
        if not os.path.isdir(d):
            _error(f"--allow-dir {d}: not a directory")
            return 2

    async def main() -> None:
        host = Host(opts.state_dir, listen=opts.listen, allow_dirs=opts.allow_dir)
        await host.start()
        _error(f"serve: state dir {host.state_dir}; host QMP on {host.address}")
        await host.serve_forever()

    try:
        run_with_loop(main(), opts.loop)
    except HostError as exc:
        _error(f"serve: {exc}")
        return 1
    return 0


def cmd_qmp(opts: argparse.Namespace) -> int:
    from aemu.host.client import ClientError, one_shot, resolve_socket, shell
    from aemu.loop import run_with_loop

    try:
        address = resolve_socket(opts.socket, opts.state_dir)
        if opts.qmp_command is None:
            if opts.wait_event:
                _error("qmp: --wait-event needs a COMMAND")
                return 2
            return run_with_loop(shell(address, opts.socket), "asyncio")
        return run_with_loop(one_shot(address, opts.qmp_command, opts.arguments,
                                      wait_event=opts.wait_event, timeout=opts.timeout),
                             "asyncio")
    except ClientError as exc:
        _error(f"qmp: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


def add_host_commands(sub) -> None:
    serve = sub.add_parser("serve", help="run a multi-VM host with QMP control sockets",
                           description=SERVE_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--state-dir", metavar="DIR",
                       help="where sockets and logs live (default $AEMU_STATE_DIR, else "
                            "$XDG_STATE_HOME/aemu, else ~/.local/state/aemu); made 0700")
    serve.add_argument("--listen", metavar="ADDR",
                       help="host control socket: unix:PATH or tcp:[HOST:]PORT (loopback "
                            "unless an address is named; default unix:STATE_DIR/host.qmp)")
    serve.add_argument("--allow-dir", metavar="DIR", action="append", default=[],
                       help="a directory VMs may load firmware and boards from and commands "
                            "may write to (repeatable); the state dir always is one")
    serve.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                       help="event loop (default uvloop)")
    qmp = sub.add_parser(
        "qmp", help="send a QMP command to a VM or host, or open a QMP shell",
        description="Send one QMP command and print its result as JSON (exit status 1 on "
                    "a QMP error), or without COMMAND open an interactive shell that "
                    "prints events as they arrive.  SOCKET is unix:PATH, tcp:HOST:PORT, a "
                    "socket path, 'host' (the serve host's socket) or a VM name.  ARGS are "
                    "one JSON object or key=value words; aemu's own commands may be "
                    "given without their __org.aemu_ prefix.",
        epilog="examples:\n"
               "  aemu qmp host vm-create name=fw1 firmware=/srv/fw/app.elf paused=true\n"
               "  aemu qmp fw1 cont\n"
               "  aemu qmp fw1 query-status\n"
               "  aemu qmp fw1 read-memory '{\"addr\": 4096, \"size\": 16}'\n"
               "  aemu qmp fw1 human-monitor-command command-line='info registers'\n"
               "  aemu qmp fw1 cont --wait-event SHUTDOWN --timeout 10\n"
               "  aemu qmp fw1                      (an interactive shell)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    qmp.add_argument("socket", metavar="SOCKET")
    qmp.add_argument("qmp_command", nargs="?", metavar="COMMAND")
    qmp.add_argument("arguments", nargs="*", metavar="ARGS")
    qmp.add_argument("--state-dir", metavar="DIR",
                     help="the serve host's state dir, for 'host' and VM names")
    qmp.add_argument("--wait-event", metavar="EVENT",
                     help="after the command, wait for this event and print it")
    qmp.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="how long --wait-event waits (default: forever)")


SNAPSHOT_DESCRIPTION = """\
Save, load, list, delete or describe snapshots of a VM that a running 'aemu
serve' hosts (or an 'aemu run --qmp'), over the VM's QMP socket.  VM is a VM
name (its socket in the state dir), a socket path, unix:PATH or
tcp:HOST:PORT.  Snapshots live in the host's snapshot store,
STATE_DIR/snapshots: one mapped-ram file per snapshot and a SQLite catalogue.
"""

SNAPSHOT_EPILOG = """\
examples:
  aemu snapshot save ec booted              save VM ec as 'booted' (paused while written)
  aemu snapshot save ec step1 --parent booted   a diff: only pages written since 'booted'
  aemu snapshot load ec booted              restore it (lazily: pages read on first touch)
  aemu snapshot list ec                     the table HMP 'info snapshots' shows, with PARENT
  aemu snapshot info ec step1 --json        one snapshot's catalogue entry and its chain
  aemu snapshot delete ec booted --rebase   merge its pages into step1 first, then delete
  aemu savevm-info ~/.local/state/aemu/snapshots/ec/booted.snap

exit status: 0 done, 1 the VM refused (the reason on stderr), 2 no VM to talk to
"""


def _snapshot_text(info: dict) -> str:
    from aemu.host.hmp import size_to_str

    ns = info["vm-clock-ns"]
    parent = f", diff on {info['parent']!r}" if info.get("parent") else ""
    return (f"snapshot {info['name']!r}: {info['pages']} pages, "
            f"{size_to_str(info['vm-state-size'])}, vm clock {ns / 1e9:.9f} s, "
            f"{info['icount']} instructions, saved {info['status']}{parent}")


def _snapshot_table(infos: list) -> str:
    """HMP info snapshots' columns (without ID), and each snapshot's parent."""
    from aemu.host.hmp import format_clock, format_date, size_to_str

    if not infos:
        return "There is no snapshot available."
    width = max(16, *(len(i["name"]) for i in infos))
    rows = [f"{'TAG':<{width}} {'VM SIZE':>9}{'DATE':>20}{'VM CLOCK':>13}{'ICOUNT':>11}  "
            "PARENT"]
    for i in infos:
        rows.append(f"{i['name']:<{width}} {size_to_str(i['vm-state-size']):>9}"
                    f"{format_date(i['date']):>20}{format_clock(i['vm-clock-ns']):>13}"
                    f"{i['icount']:>11}  {i.get('parent') or '-'}")
    return "\n".join(rows)


async def _snapshot_client(opts: argparse.Namespace) -> int:
    import json

    from qemu.qmp import ExecuteError

    from aemu.host.client import Client, resolve_socket
    from aemu.host.hmp import format_date

    address = resolve_socket(opts.vm, opts.state_dir)
    client = Client("aemu-snapshot")
    await client.connect(address)
    action = opts.action
    try:
        try:
            if action == "save":
                args: dict = {}
                if opts.tag:
                    args["tag"] = opts.tag
                if opts.parent:
                    args["parent"] = opts.parent
                if opts.overwrite:
                    args["overwrite"] = True
                result = await client.execute("__org.aemu_snapshot-save", args)
                text = f"{opts.vm}: saved {_snapshot_text(result)}"
            elif action == "load":
                result = await client.execute("__org.aemu_snapshot-load",
                                              {"tag": opts.tag, "lazy": not opts.eager})
                text = f"{opts.vm}: loaded snapshot {opts.tag!r}; the VM is {result['status']}"
            elif action == "delete":
                result = await client.execute("__org.aemu_snapshot-delete",
                                              {"tag": opts.tag, "rebase": opts.rebase})
                text = f"{opts.vm}: deleted snapshot {opts.tag!r}"
                if result["rebased"]:
                    text += f"; rebased {', '.join(result['rebased'])} onto its parent"
            else:
                infos = await client.execute("__org.aemu_snapshot-list")
                if action == "list":
                    result, text = infos, _snapshot_table(infos)
                else:
                    by_name = {i["name"]: i for i in infos}
                    if opts.tag not in by_name:
                        _error(f"snapshot: VM {opts.vm} has no snapshot named {opts.tag!r}")
                        return 1
                    chain = [by_name[opts.tag]]
                    while chain[-1].get("parent") in by_name and len(chain) <= len(by_name):
                        chain.append(by_name[chain[-1]["parent"]])
                    result = dict(chain[0], chain=[c["name"] for c in reversed(chain)])
                    top = chain[0]
                    text = "\n".join([f"{opts.vm}: {_snapshot_text(top)}",
                                      f"  chain: {' -> '.join(result['chain'])}",
                                      f"  file: {top['file']}",
                                      f"  board: {top['board']}, RAM {top['ram-size']} bytes",
                                      f"  date: {format_date(top['date'])}"])
        except ExecuteError as exc:
            _error(f"snapshot {action}: {exc.error.error.desc}")
            return 1
        print(json.dumps(result, indent=2, sort_keys=True) if opts.json else text)
        return 0
    finally:
        await client.close()


def cmd_snapshot(opts: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from aemu.host.client import ClientError
    from aemu.loop import run_with_loop

    if opts.action in ("load", "delete", "info") and not opts.tag:
        parser.error(f"snapshot {opts.action} needs a TAG")
    if opts.action in ("list",) and opts.tag:
        parser.error("snapshot list takes no TAG")
    if opts.parent and opts.action != "save":
        parser.error("--parent is for save")
    if opts.overwrite and opts.action != "save":
        parser.error("--overwrite is for save")
    if opts.rebase and opts.action != "delete":
        parser.error("--rebase is for delete")
    if opts.eager and opts.action != "load":
        parser.error("--eager is for load")
    try:
        return run_with_loop(_snapshot_client(opts), "asyncio")
    except ClientError as exc:
        _error(f"snapshot: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_savevm_info(opts: argparse.Namespace) -> int:
    import json

    from aemu.savevm.info import InfoError, format_info, read_info, to_json

    try:
        info = read_info(opts.file)
    except OSError as exc:
        _error(f"savevm-info: {opts.file}: {exc.strerror or exc}")
        return 2
    except InfoError as exc:
        _error(f"savevm-info: {opts.file}: {exc}")
        return 1
    try:
        print(json.dumps(to_json(info), indent=2) if opts.json else format_info(info))
    except BrokenPipeError:
        return 141
    return 0


def add_snapshot_commands(sub) -> None:
    snap = sub.add_parser("snapshot", help="save, load, list or delete snapshots of a served VM",
                          description=SNAPSHOT_DESCRIPTION, epilog=SNAPSHOT_EPILOG,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    snap.add_argument("action", choices=("save", "load", "list", "delete", "info"),
                      metavar="{save,load,list,delete,info}")
    snap.add_argument("vm", metavar="VM")
    snap.add_argument("tag", nargs="?", metavar="TAG",
                      help="the snapshot (save: default vm-YYYYMMDDhhmmss)")
    snap.add_argument("--state-dir", metavar="DIR",
                      help="the serve host's state dir, for VM names (default as 'aemu serve')")
    snap.add_argument("--parent", metavar="TAG",
                      help="save: a diff snapshot holding only the pages written since TAG "
                           "was saved or loaded")
    snap.add_argument("--overwrite", action="store_true",
                      help="save: replace a snapshot of the same name")
    snap.add_argument("--rebase", action="store_true",
                      help="delete: merge the snapshot's pages into the diff snapshots on "
                           "top of it instead of refusing")
    snap.add_argument("--eager", action="store_true",
                      help="load: read all of RAM now instead of on first touch")
    snap.add_argument("--json", action="store_true", help="print the result as JSON")
    snap.set_defaults(subparser=snap)
    info = sub.add_parser(
        "savevm-info", help="describe a migration stream or snapshot file",
        description="Print what a QEMU-format migration stream or an aemu snapshot file "
                    "holds: its configuration, sections (idstr, instance, version, size), "
                    "every device's fields with their values, decoded from the file's own "
                    "JSON VM description, and a RAM summary (inline or mapped-ram, pages "
                    "present).  No VM is needed.")
    info.add_argument("file", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print it as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.command == "run":
        try:
            status = cmd_run(opts, opts.subparser)
        except BrokenPipeError:
            # the trace/stats reader went away (e.g. `aemu run --trace 2>&1 | head`):
            # end quietly, like other tools (128 + SIGPIPE)
            devnull = os.open(os.devnull, os.O_WRONLY)
            for stream in (sys.stdout, sys.stderr):
                try:
                    os.dup2(devnull, stream.fileno())
                except (OSError, ValueError, AttributeError):
                    pass
            status = 141
        sys.exit(status)
    if opts.command == "serve":
        sys.exit(cmd_serve(opts))
    if opts.command == "qmp":
        sys.exit(cmd_qmp(opts))
    if opts.command == "snapshot":
        sys.exit(cmd_snapshot(opts, opts.subparser))
    if opts.command == "savevm-info":
        sys.exit(cmd_savevm_info(opts))
    if opts.command == "migrate":
        from aemu.cli_migrate import cmd_migrate
        sys.exit(cmd_migrate(opts))
    parser.error(f"unknown command {opts.command}")
    return 2


if __name__ == "__main__":  # pragma: no cover
    main()
