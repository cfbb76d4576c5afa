"""``aemu migrate VM URI``: drive a served (or ``aemu run --qmp``) VM's
migration over its QMP socket, with a live progress bar (tqdm) and the
final statistics; ``--json`` for scripts.  Also the ``--migrate-set``
parsing that ``aemu run --incoming`` shares."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Optional

from aemu.migration.options import CAPABILITIES, PARAMETERS


class SetError(ValueError):
    pass


def parse_settings(items: list[str]) -> tuple[list[dict], dict[str, Any]]:
    """``KEY=VALUE`` items: capabilities (on/off) and parameters (their type)."""
    caps: list[dict] = []
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise SetError(f"--migrate-set {item!r}: use KEY=VALUE")
        if key in CAPABILITIES:
            if value not in ("on", "off", "true", "false", "1", "0"):
                raise SetError(f"--migrate-set {item!r}: a capability is on or off")
            caps.append({"capability": key, "state": value in ("on", "true", "1")})
        elif key in PARAMETERS:
            kind = PARAMETERS[key].kind
            if kind is bool:
                params[key] = value in ("on", "true", "1")
            elif kind is int:
                try:
                    params[key] = _size(value) if key == "max-bandwidth" else int(value)
                except ValueError:
                    raise SetError(f"--migrate-set {item!r}: {key} is a number") from None
            else:
                params[key] = value
        else:
            raise SetError(f"--migrate-set {item!r}: no capability or parameter {key!r} "
                           f"(capabilities: {', '.join(CAPABILITIES)}; parameters: "
                           f"{', '.join(PARAMETERS)})")
    return caps, params


def _size(text: str) -> int:
    """Bytes/s with an optional K, M or G suffix (powers of 1024)."""
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    return int(text[:-1] if mult > 1 else text) * mult


def add_migrate_command(sub: Any) -> None:
    p = sub.add_parser(
        "migrate", help="live-migrate a served VM to another host or process",
        description="Migrate VM (a served VM's name, 'host', a QMP socket path, unix:PATH "
                    "or tcp:HOST:PORT) to URI (tcp:HOST:PORT, unix:PATH, fd:NAME or "
                    "file:PATH[,offset=N]).  The destination waits with 'aemu run "
                    "--incoming URI' or a serve VM created with incoming=URI; --dest "
                    "gives this command its QMP socket too, so that the same settings "
                    "go to both sides (multifd must be set on both).  Shows a progress "
                    "bar and prints the statistics at the end; exits 0 when the "
                    "destination has the VM, 1 if the migration failed (the source VM "
                    "then carries on where it was).  Ctrl-C cancels.")
    p.add_argument("vm", metavar="VM")
    p.add_argument("uri", metavar="URI")
    p.add_argument("--state-dir", metavar="DIR",
                   help="the serve host's state dir, where VM names are looked up")
    p.add_argument("--dest", metavar="SOCKET",
                   help="the destination VM's QMP socket: set the same capabilities and "
                        "parameters there, and start its migrate-incoming if it waits "
                        "with incoming 'defer'")
    p.add_argument("--multifd", type=int, metavar="N",
                   help="N parallel page channels (multifd, multifd-channels=N)")
    p.add_argument("--compress", choices=("none", "zstd"),
                   help="multifd compression (needs --multifd)")
    p.add_argument("--max-bandwidth", type=_size, metavar="BYTES/S",
                   help="bandwidth limit, e.g. 64M (default QEMU's 128M; 0 = no limit)")
    p.add_argument("--downtime-limit", type=int, metavar="MS",
                   help="the longest pause allowed at switch-over (default 300 ms)")
    p.add_argument("--auto-converge", action="store_true",
                   help="throttle a guest that dirties memory faster than it is sent")
    p.add_argument("--no-return-path", action="store_true",
                   help="no return path: the source cannot learn whether the load "
                        "succeeded (QEMU's default; aemu migrate turns it on)")
    p.add_argument("--migrate-set", metavar="KEY=VALUE", action="append", default=[],
                   help="any capability (on/off) or parameter by QEMU's name; repeatable")
    p.add_argument("--json", action="store_true",
                   help="no progress bar: print the final query-migrate as JSON")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="cancel the migration if it has not finished by then")


def _settings(opts: argparse.Namespace) -> tuple[list[dict], dict[str, Any]]:
    caps, params = parse_settings(opts.migrate_set)
    given = {c["capability"] for c in caps}

    def cap(name: str, state: bool) -> None:
        if name not in given:
            caps.append({"capability": name, "state": state})
    cap("events", True)
    cap("return-path", not opts.no_return_path)
    if opts.multifd:
        cap("multifd", True)
        params.setdefault("multifd-channels", opts.multifd)
    if opts.compress:
        params.setdefault("multifd-compression", opts.compress)
    if opts.auto_converge:
        cap("auto-converge", True)
    if opts.max_bandwidth is not None:
        params.setdefault("max-bandwidth", opts.max_bandwidth)
    if opts.downtime_limit is not None:
        params.setdefault("downtime-limit", opts.downtime_limit)
    return caps, params


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def summary(info: dict) -> str:
    ram = info.get("ram", {})
    lines = [f"status: {info.get('status')}"]
    if "error-desc" in info:
        lines.append(f"error: {info['error-desc']}")
    for key, label in (("total-time", "total time"), ("setup-time", "setup time")):
        if key in info:
            lines.append(f"{label}: {info[key]} ms")
    if "x-aemu-downtime-us" in info:
        lines.append(f"downtime: {info['x-aemu-downtime-us'] / 1000:.3f} ms")
    if ram:
        lines.append(f"transferred: {_fmt_bytes(ram['transferred'])} of "
                     f"{_fmt_bytes(ram['total'])} RAM ({ram['normal']} pages with data, "
                     f"{ram['duplicate']} zero pages)")
        lines.append(f"passes: {ram['dirty-sync-count']}; throughput {ram['mbps']:.1f} Mbit/s"
                     + (f"; multifd {_fmt_bytes(ram['multifd-bytes'])}"
                        if ram.get("multifd-bytes") else ""))
    if info.get("cpu-throttle-percentage"):
        lines.append(f"cpu throttle: {info['cpu-throttle-percentage']} %")
    return "\n".join(lines)


async def _migrate(opts: argparse.Namespace) -> int:
    from qemu.qmp import ExecuteError

    from aemu.host.client import Client, resolve_socket

    caps, params = _settings(opts)
    src = Client("aemu-migrate")
    await src.connect(resolve_socket(opts.vm, opts.state_dir))
    dst: Optional[Client] = None
    try:
        try:
            if opts.dest:
                dst = Client("aemu-migrate-dest")
                await dst.connect(resolve_socket(opts.dest, opts.state_dir))
                for c in (src, dst):
                    await c.execute("migrate-set-capabilities", {"capabilities": caps})
                    if params:
                        await c.execute("migrate-set-parameters", params)
                status = await dst.execute("query-status")
                state = await dst.execute("query-migrate")
                if status["status"] == "inmigrate" and state.get("status") in (None, "none"):
                    await dst.execute("migrate-incoming", {"uri": opts.uri})
            else:
                await src.execute("migrate-set-capabilities", {"capabilities": caps})
                if params:
                    await src.execute("migrate-set-parameters", params)
            await src.execute("migrate", {"uri": opts.uri})
        except ExecuteError as exc:
            print(f"aemu: migrate: {exc.error.error.desc}", file=sys.stderr)
            return 1
        info = await _watch(src, opts)
    finally:
        await src.close()
        if dst is not None:
            await dst.close()
    if opts.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(summary(info))
    return 0 if info.get("status") == "completed" else 1


async def _watch(client: Any, opts: argparse.Namespace) -> dict:
    """Poll query-migrate until it ends; a bar unless --json.  Ctrl-C or
    --timeout cancel the migration (and wait until the source says so)."""
    bar = None
    if not opts.json:
        from tqdm import tqdm
        bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                   desc="migrate", dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} of RAM "
                              "[{elapsed}, {postfix}]")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.timeout if opts.timeout else None
    cancelled = False
    try:
        while True:
            info = await client.execute("query-migrate")
            status = info.get("status", "none")
            ram = info.get("ram")
            if bar is not None and ram:
                if bar.total != ram["total"]:
                    bar.total = ram["total"]
                # progress of the first pass: pages handled (sent or zero)
                done = (ram["normal"] + ram["duplicate"]) * ram["page-size"]
                bar.n = min(done, ram["total"])
                bar.set_postfix_str(f"{status}, pass {ram['dirty-sync-count']}, "
                                    f"{_fmt_bytes(ram['remaining'])} left", refresh=False)
                bar.refresh()
            if status in ("completed", "failed", "cancelled"):
                return info
            if deadline is not None and loop.time() > deadline and not cancelled:
                await client.execute("migrate_cancel")
                cancelled = True
            try:
                await asyncio.sleep(0.1)
            except asyncio.CancelledError:
                await client.execute("migrate_cancel")
                raise
    finally:
        if bar is not None:
            bar.close()


def cmd_migrate(opts: argparse.Namespace) -> int:
    from aemu.host.client import ClientError
    from aemu.loop import run_with_loop

    try:
        _settings(opts)
    except SetError as exc:
        print(f"aemu: {exc}", file=sys.stderr)
        return 2
    try:
        return run_with_loop(_migrate(opts), "asyncio")
    except KeyboardInterrupt:
        print("aemu: migrate: interrupted; the migration was cancelled", file=sys.stderr)
        return 130
    except (ConnectionError, OSError, ClientError) as exc:
        print(f"aemu: migrate: {exc}", file=sys.stderr)
        return 1
