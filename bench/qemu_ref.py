#!/usr/bin/env python3
"""QEMU reference for bench/migrate.py: precopy-migrate a QEMU guest over a
unix socket or TCP loopback and report QEMU's own figures.

``qemu_migrate()`` starts two ``qemu-system-x86_64`` processes (TCG by
default), the source with ``-m <mem_mib>`` booting a tiny guest and the
destination with the same command line plus ``-incoming defer``, drives both
over QMP (``qemu.qmp``), lifts the bandwidth limit (``max-bandwidth`` 0 =
unlimited: QEMU's default is 128 MiB/s), sets ``downtime-limit`` to 50 ms,
migrates, polls ``query-migrate`` every 10 ms until the source says
``completed`` and waits until the destination runs.  It returns QEMU's
``total-time``, ``downtime``, ``setup-time``, ``ram.transferred``,
``ram.total`` and ``ram.mbps`` (plus our own wall time and a few more
counters), or None when QEMU is not installed.

Why 50 ms: QEMU switches over as soon as the RAM still to send is below
measured bandwidth x downtime-limit.  With no bandwidth limit on loopback
(2-3 GB/s) its default 300 ms means "stop the guest once less than ~700 MiB
is left", so for a 1 GiB guest most of the RAM goes out during the
"downtime" (200-1000 ms measured); 50 ms keeps the stop-and-copy phase a
few tens of ms for an idle guest.

Host memory: the destination faults its RAM in while pages arrive.  On a
small VM host that is most of the cost and most of the noise (2 vCPUs,
firecracker, DAMON reclaiming idle memory: 1 GiB over a unix socket takes
0.45-1.5 s a run, medians of 3 between 0.45 and 0.86 s, and ~3 s for the
first run of an invocation, whose memory the host had taken back);
``--prealloc`` (``-mem-prealloc`` on both sides) moves the faults before
the migration: 0.32-0.37 s, steady.  Hence the uncounted warm-up run and
the medians.

**The guest.**  No disk image is needed: the guest is a 8 KiB flat
multiboot kernel (``-kernel``; QEMU's multiboot loader starts it in 32-bit
protected mode) built here as bytes, the same idea as QEMU's migration-test
"A-B" boot block.  It prints ``A`` on COM1, reads the RAM size from the
multiboot info and increments the first byte of every 4 KiB page from 2 MiB
to the top of RAM the multiboot info reports (128 KiB below the real top
with 64 MiB: the BIOS keeps the rest), prints ``B`` and then, by ``guest``:

* ``"idle"`` (default): ``hlt`` with interrupts off -- all of RAM above 2 MiB
  holds non-zero pages (so QEMU sends them in full, no zero-page shortcut)
  and nothing is dirtied during the migration;
* ``"dirty"``: sweeps again forever (``B`` after each): the A-B guest.  At
  TCG speed this re-dirties all of RAM faster than any loopback can send it,
  so it only completes with a large ``downtime_limit_ms`` (or not at all
  within ``timeout``);
* ``"none"``: no kernel, a BIOS-only guest (SeaBIOS finds nothing to boot):
  RAM is almost all zero pages, i.e. what an untouched VM costs.

The source migrates once the guest has printed its first ``B``.  After the
migration the destination's RAM is spot-checked over HMP (``xp``): the test
byte of the first page and of the page 1 MiB below the top must be
non-zero (``dest_ok``).

Usage: python bench/qemu_ref.py [--mem-mib 1024] [--transport unix|tcp|both]
       [--reps 3] [--warmup 1] [--guest idle|dirty|none] [--accel tcg|kvm]
       [--downtime-limit MS] [--max-bandwidth BYTES] [--prealloc] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QEMU = "qemu-system-x86_64"
GUESTS = ("idle", "dirty", "none")
TRANSPORTS = ("unix", "tcp")
PAGE = 4096
SWEEP_START = 0x200000          # the guest leaves its own code (at 1 MiB) alone


def qemu_binary() -> str | None:
    """Path of qemu-system-x86_64 ($AEMU_QEMU overrides), or None."""
    env = os.environ.get("AEMU_QEMU")
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which(QEMU)


def guest_image(guest: str = "idle") -> bytes:
    """The multiboot kernel (a.out kludge: a flat image loaded at 1 MiB)."""
    if guest not in ("idle", "dirty"):
        raise ValueError(f"no kernel for guest {guest!r}")
    magic, flags = 0x1BADB002, 0x00010002      # a.out kludge, memory info wanted
    load = 0x100000
    header = struct.pack("<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF,
                         load, load, 0, 0, load + 32)
    code = bytes.fromhex(
        "8b4b08"            # mov  ecx, [ebx+8]     multiboot mem_upper (KiB above 1 MiB)
        "c1e10a"            # shl  ecx, 10
        "81c100001000"      # add  ecx, 0x100000    end of RAM
        "66baf803"          # mov  dx, 0x3f8        COM1
        "b041ee"            # mov  al, 'A'; out dx, al
    )
    sweep = bytes.fromhex(
        "be" + SWEEP_START.to_bytes(4, "little").hex()   # sweep: mov esi, 0x200000
        + "fe06"            # loop:  inc byte [esi]
        "81c600100000"      #        add esi, 4096
        "39ce"              #        cmp esi, ecx
        "72f4"              #        jb  loop
        "b042ee"            # mov  al, 'B'; out dx, al
    )
    if guest == "idle":
        tail = bytes.fromhex("f4ebfd")                   # hlt; jmp hlt (IF is clear)
    else:
        tail = bytes([0xEB, (-(len(sweep) + 2)) & 0xFF])  # jmp sweep
    # padded: QEMU's loader looks for the multiboot header in the first 8 KiB
    return (header + code + sweep + tail).ljust(8192, b"\0")


class QemuError(RuntimeError):
    pass


async def _start(qemu: str, args: list[str], log: Path) -> asyncio.subprocess.Process:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            qemu, *args, stdin=asyncio.subprocess.DEVNULL, stdout=fd, stderr=fd)
    finally:
        os.close(fd)


async def _connect(name: str, path: Path, proc: asyncio.subprocess.Process, log: Path,
                   timeout: float = 10.0):
    from qemu.qmp import QMPClient

    deadline = time.monotonic() + timeout
    while True:
        if proc.returncode is not None:
            raise QemuError(f"{name} QEMU exited ({proc.returncode}): "
                            f"{log.read_text(errors='replace').strip()}")
        if path.exists():
            qmp = QMPClient(name)
            with contextlib.suppress(Exception):        # not listening yet
                await qmp.connect(str(path))
                return qmp
        if time.monotonic() > deadline:
            raise QemuError(f"{name} QEMU: no QMP socket after {timeout} s")
        await asyncio.sleep(0.02)


async def _wait_for(predicate, what: str, timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise QemuError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def _xp_byte(qmp, addr: int) -> int:
    out = await qmp.execute("human-monitor-command",
                            {"command-line": f"xp /1bx {addr:#x}"})
    m = re.search(r":\s*0x([0-9a-fA-F]+)", str(out))
    if not m:
        raise QemuError(f"unexpected xp output {out!r}")
    return int(m.group(1), 16)


async def qemu_migrate(mem_mib: int = 1024, transport: str = "unix",
                       tmpdir: str | os.PathLike | None = None, *, guest: str = "idle",
                       accel: str = "tcg", max_bandwidth: int = 0,
                       downtime_limit_ms: int | None = 50, prealloc: bool = False,
                       timeout: float = 300.0) -> dict[str, Any] | None:
    """Migrate a ``mem_mib`` MiB QEMU guest from one local QEMU to another
    over ``transport`` ("unix" socket or "tcp" on 127.0.0.1); None if QEMU
    is not installed.  ``max_bandwidth`` is QEMU's parameter in bytes/s
    (0: unlimited); ``downtime_limit_ms`` None keeps QEMU's default (300).
    ``guest`` and ``accel`` (``-accel``: "tcg", or "kvm" where /dev/kvm
    works) as in the module docstring; ``timeout`` bounds the migration
    (QemuError when it has not completed by then, e.g. a "dirty" guest with
    a small downtime limit).
    ``prealloc`` adds ``-mem-prealloc`` (both sides): the destination's RAM
    is faulted in before the migration instead of while pages arrive.
    Sockets, logs and the kernel go to ``tmpdir`` (a fresh temporary
    directory, removed afterwards, if None).  Both QEMUs are always ended."""
    qemu = qemu_binary()
    if qemu is None:
        return None
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    if guest not in GUESTS:
        raise ValueError(f"guest must be one of {GUESTS}, not {guest!r}")
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

    with contextlib.ExitStack() as stack:
        if tmpdir is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qemu-ref-")))
        else:
            tmp = Path(tmpdir)
            tmp.mkdir(parents=True, exist_ok=True)
        files = {k: tmp / f"{k}" for k in ("src.qmp", "dst.qmp", "mig.sock", "src.serial",
                                           "dst.serial", "src.log", "dst.log", "guest.bin")}
        for f in files.values():
            f.unlink(missing_ok=True)

        common = ["-machine", "pc", "-accel", accel, "-m", str(mem_mib), "-nodefaults",
                  "-no-user-config", "-display", "none"]
        if prealloc:
            common.append("-mem-prealloc")
        if guest != "none":
            files["guest.bin"].write_bytes(guest_image(guest))
            common += ["-kernel", str(files["guest.bin"])]

        procs: list[asyncio.subprocess.Process] = []
        clients: list[Any] = []
        try:
            src_p = await _start(qemu, common + [
                "-qmp", f"unix:{files['src.qmp']},server=on,wait=off",
                "-serial", f"file:{files['src.serial']}"], files["src.log"])
            procs.append(src_p)
            dst_p = await _start(qemu, common + [
                "-qmp", f"unix:{files['dst.qmp']},server=on,wait=off",
                "-serial", f"file:{files['dst.serial']}", "-incoming", "defer"],
                files["dst.log"])
            procs.append(dst_p)
            src = await _connect("src", files["src.qmp"], src_p, files["src.log"])
            clients.append(src)
            dst = await _connect("dst", files["dst.qmp"], dst_p, files["dst.log"])
            clients.append(dst)
            ver = await src.execute("query-version")
            q = ver["qemu"]                                        # type: ignore[index]
            version = f"{q['major']}.{q['minor']}.{q['micro']}"

            if guest != "none":     # the guest has touched all its pages
                async def swept() -> bool:
                    return b"B" in files["src.serial"].read_bytes() \
                        if files["src.serial"].exists() else False
                await _wait_for(swept, "the guest's first sweep ('B')", 120)
            else:
                await asyncio.sleep(0.5)     # let SeaBIOS run

            params: dict[str, Any] = {"max-bandwidth": max_bandwidth}
            if downtime_limit_ms is not None:
                params["downtime-limit"] = downtime_limit_ms
            await src.execute("migrate-set-parameters", params)
            got = await src.execute("query-migrate-parameters")

            if transport == "unix":
                uri = f"unix:{files['mig.sock']}"
                await dst.execute("migrate-incoming", {"uri": uri})
            else:
                await dst.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
                info = await dst.execute("query-migrate")
                port = info["socket-address"][0]["port"]           # type: ignore[index]
                uri = f"tcp:127.0.0.1:{port}"

            t0 = time.monotonic()
            await src.execute("migrate", {"uri": uri})
            result: dict[str, Any] = {}

            async def completed() -> bool:
                nonlocal result
                result = await src.execute("query-migrate")        # type: ignore[assignment]
                status = result.get("status")
                if status in ("failed", "cancelled"):
                    raise QemuError(f"migration {status}: {result.get('error-desc', '')}")
                return status == "completed"
            await _wait_for(completed, "the migration to complete", timeout)
            t_src = time.monotonic()

            async def running() -> bool:
                st = await dst.execute("query-status")
                return st["status"] == "running"                   # type: ignore[index]
            await _wait_for(running, "the destination to run", 30)
            t_dst = time.monotonic()

            end = mem_mib << 20
            dest_ok = guest == "none" or (await _xp_byte(dst, SWEEP_START) != 0
                                          and await _xp_byte(dst, end - (1 << 20)) != 0)
            ram = result.get("ram", {})
            total_ms = result.get("total-time")
            return {
                "total_ms": total_ms,
                "downtime_ms": result.get("downtime"),
                "setup_ms": result.get("setup-time"),
                "transferred": ram.get("transferred"),
                "ram_total": ram.get("total"),
                "mbps": ram.get("mbps"),
                "qemu_version": version,
                # ours
                "MiB_per_s": round(ram.get("transferred", 0) / (1 << 20)
                                   / (total_ms / 1000), 1) if total_ms else None,
                "wall_ms": round((t_src - t0) * 1000, 1),
                "dest_running_ms": round((t_dst - t0) * 1000, 1),
                "normal_pages": ram.get("normal"),
                "zero_pages": ram.get("duplicate"),
                "dirty_sync_count": ram.get("dirty-sync-count"),
                "transport": transport, "mem_mib": mem_mib, "guest": guest, "accel": accel,
                "prealloc": prealloc,
                "max_bandwidth": got.get("max-bandwidth"),                  # type: ignore[union-attr]
                "downtime_limit_ms": got.get("downtime-limit"),             # type: ignore[union-attr]
                "dest_ok": dest_ok,
            }
        finally:
            for qmp in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(qmp.execute("quit"), 2)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(qmp.disconnect(), 2)
            for p in procs:
                if p.returncode is None:
                    try:
                        await asyncio.wait_for(p.wait(), 3)
                    except TimeoutError:
                        p.kill()
                        await p.wait()
            for key in ("src.qmp", "dst.qmp", "mig.sock"):
                files[key].unlink(missing_ok=True)


_MEDIAN_KEYS = ("total_ms", "downtime_ms", "setup_ms", "transferred", "mbps", "MiB_per_s",
                "wall_ms", "dest_running_ms")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's dict with the numeric figures replaced by medians."""
    out = dict(runs[0])
    for k in _MEDIAN_KEYS:
        vals = [r[k] for r in runs if r.get(k) is not None]
        if vals:
            out[k] = statistics.median(vals)
    out["reps"] = len(runs)
    out["dest_ok"] = all(r["dest_ok"] for r in runs)
    return out


async def _main(ns: argparse.Namespace) -> int:
    if qemu_binary() is None:
        print(f"{QEMU} not found (apt-get install qemu-system-x86, or set AEMU_QEMU)",
              file=sys.stderr)
        return 2
    transports = TRANSPORTS if ns.transport == "both" else (ns.transport,)
    summary = {}
    for transport in transports:
        runs = []
        for i in range(ns.warmup + ns.reps):
            r = await qemu_migrate(ns.mem_mib, transport, ns.dir, guest=ns.guest,
                                   accel=ns.accel, max_bandwidth=ns.max_bandwidth,
                                   downtime_limit_ms=ns.downtime_limit, prealloc=ns.prealloc,
                                   timeout=ns.timeout)
            assert r is not None
            if i >= ns.warmup:
                runs.append(r)
            if not ns.json:
                print(("warm-up " if i < ns.warmup else "") + json.dumps(r), flush=True)
        summary[transport] = median_of(runs)
    if ns.json:
        print(json.dumps(summary, indent=2))
    else:
        for transport, m in summary.items():
            print(f"median of {m['reps']}, {transport}: {json.dumps(m)}")
    return 0 if all(m["dest_ok"] for m in summary.values()) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem-mib", type=int, default=1024)
    ap.add_argument("--transport", choices=(*TRANSPORTS, "both"), default="both")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="uncounted runs first (default 1: fresh host memory is slow "
                         "to fault in)")
    ap.add_argument("--guest", choices=GUESTS, default="idle")
    ap.add_argument("--accel", default="tcg", help="tcg (default) or kvm")
    ap.add_argument("--max-bandwidth", type=int, default=0,
                    help="bytes/s, 0 = unlimited (QEMU's default is 128 MiB/s)")
    ap.add_argument("--downtime-limit", type=int, default=50,
                    help="ms (default 50; QEMU's own default is 300)")
    ap.add_argument("--prealloc", action="store_true",
                    help="-mem-prealloc: fault the RAM in before migrating")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--dir", default=None, help="for sockets and logs (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="only the medians, as JSON")
    return asyncio.run(_main(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
