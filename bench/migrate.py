#!/usr/bin/env python3
"""Live-migration benchmark: a 16 MiB VM, idle and busy, over unix and TCP
loopback, plain and multifd (4 channels, none / zstd), against a raw socket
copy of the same bytes; and 1 GiB of aemu VMs against a 1 GiB QEMU guest.

Source and destination run in separate processes, as in real use: this
process runs the source VMs (uvloop by default) and starts one destination
process (``bench/migrate.py --dest``), which it drives with JSON lines on
its stdin/stdout: "make N VMs waiting for an incoming migration on
unix|tcp, answer with their addresses, then (once every migration ended)
with their results", "receive a raw copy of N bytes".  Destination VMs are
made paused, so they stay paused when their state has arrived (no guest
competes for the CPU afterwards); their RAM is checked with the pattern
guest's rule (QEMU's check_guests_ram).

1. **16 MiB cases**: the pattern guest (tests/firmware/migrate) on
   ``pattern_board()`` (the default board, 16 MiB RAM), booted until its
   first sweep is done (``B``: 13 MiB of non-zero pages):

   * ``idle``: ``pattern_idle.elf``, pace realtime (one page dirtied by a
     100 Hz tick);
   * ``busy``: ``pattern.elf``, pace fast (re-dirties its 13 MiB buffer
     every ~65 us; it shares the source's event loop with the migration).

   Each over ``unix:`` and ``tcp:127.0.0.1``, plain precopy and multifd with
   4 channels, compression none or zstd (level 1).  Always: return-path on,
   events on (for the pass timestamps), max-bandwidth 0 (no limit).
   Settings: ``dl300`` = downtime-limit 300 ms (QEMU's default); for busy
   also ``ac+dlN`` = auto-converge on (QEMU's default throttle steps) and
   downtime-limit --busy-limit ms.  A migration that has not completed
   after --timeout s is cancelled and counted as not converged (the case's
   further runs are skipped).

   Per run, after the migration: a **raw copy** of exactly the bytes that
   migration transferred, over the same transport: this process
   ``sendall``s them on a blocking socket (a worker thread), the
   destination process ``recv_into``s them into a fresh anonymous mapping
   of that size (as the destination VM's RAM is fresh: on a VM host, the
   page faults are a large part of both) and answers one byte; timed from
   ``connect`` to that byte.  Ratios are taken per run (the migration
   against the copy made right after it; the machine's speed drifts) and
   their median is shown.  With zstd the transferred bytes are compressed,
   so the pages' uncompressed bytes are copied too, for the "RAM" ratios.
   The runs of all cases are interleaved (round r of every case, then
   round r+1), after one uncounted warm-up migration and copy per
   transport.

   The first pass is timed from the source's "active" to the moment the
   destination had received every byte the source sent during that pass
   (the source's own end of the pass comes earlier: up to 4 MiB per
   channel can still be queued in the process, more in the kernel); the
   destination samples its byte count every ~1 ms (CLOCK_MONOTONIC on
   both sides).

2. **1 GiB** (``--qemu``, default on when qemu-system-x86_64 is installed;
   off with ``--no-qemu`` or ``--quick``), over --big-transports (default
   tcp): QEMU 1 GiB (bench/qemu_ref.py: TCG, the idle multiboot guest with
   every page above 2 MiB non-zero, max-bandwidth 0, downtime-limit 50 ms,
   return path off) against --vms (64) idle aemu VMs of 16 MiB (1 GiB of
   guest RAM) migrated **concurrently** from this one process to the one
   destination process (all 64 ``migrate`` started at once; total = until
   the last completed) with max-bandwidth 0, downtime-limit 50 ms and
   return-path on; and a raw copy of 1 GiB into a fresh mapping and into a
   reused 64 MiB buffer.  One uncounted round, then --qemu-runs rounds of
   the four; then the 64 VMs once more, **sequentially** (one migration
   after the other).

Figures per case are medians over --runs runs.  No asserts: failures are
reported (exit status 1 if a migration that should have completed did not,
or a destination VM's RAM fails the pattern check).

Usage: python bench/migrate.py [--runs 5] [--quick] [--no-qemu] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))          # migration_guest
sys.path.insert(0, str(ROOT / "bench"))          # qemu_ref
MIB = 1 << 20
PAGE = 4096
TRANSPORTS = ("unix", "tcp")
MODES = {                                       # mode -> (capabilities, parameters)
    "plain": ([], {}),
    "mf4": ([{"capability": "multifd", "state": True}],
            {"multifd-channels": 4, "multifd-compression": "none"}),
    "mf4+zstd": ([{"capability": "multifd", "state": True}],
                 {"multifd-channels": 4, "multifd-compression": "zstd"}),
}
BASE_CAPS = [{"capability": "return-path", "state": True},
             {"capability": "events", "state": True}]
GOAL_IDLE_MS, GOAL_BUSY_MS, GOAL_RATIO = 1.0, 10.0, 0.5


_T0 = time.monotonic()


def _progress(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# =============================================================================================
# the destination process
# =============================================================================================
def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _raw_listen(transport: str, where: str) -> tuple[socket.socket, str]:
    if transport == "unix":
        path = os.path.join(where, "raw.sock")
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(1)
        return s, path
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, f"127.0.0.1:{s.getsockname()[1]}"


_WARM: list = []       # the reused receive buffer of warm raw copies


def _raw_receive(lsock: socket.socket, nbytes: int, fresh: bool) -> int:
    """Accept one connection, receive ``nbytes`` into a fresh anonymous
    mapping of that size (``fresh``: every page faulted in on arrival, as a
    destination VM's RAM is) or round and round a 64 MiB buffer faulted in
    before (only the socket's cost), answer one byte."""
    if fresh:
        buf = mmap.mmap(-1, max(nbytes, 1))
    else:
        if not _WARM:
            _WARM.append(mmap.mmap(-1, 64 * MIB))
            _WARM[0].write(b"\1" * (64 * MIB))
        buf = _WARM[0]
    size = len(buf)
    view = memoryview(buf)
    got = 0
    try:
        conn, _ = lsock.accept()
        with conn:
            while got < nbytes:
                at = got % size
                k = conn.recv_into(view[at:min(size, at + nbytes - got)])
                if not k:
                    break
                got += k
            conn.sendall(b"k")
    finally:
        lsock.close()
        view.release()
        if fresh:
            buf.close()
    return got


_LAYOUT: list = []


async def _sample(job, out: list) -> None:
    """(monotonic s, bytes received) whenever the count changed, every ~1 ms
    (libuv's timer resolution) until the incoming migration ends."""
    last = -1
    while not job.done.is_set():
        n = job._received()
        if n != last:
            out.append((time.monotonic(), n))
            last = n
        await asyncio.sleep(0.001)


async def _dest_incoming(req: dict) -> None:
    from migration_guest import (
        PATTERN_ELF,
        UartCapture,
        check_pattern_ram,
        pattern_board,
        pattern_layout,
    )

    from aemu.hw.machine import Machine
    from aemu.migration import MigrationManager, Status

    if not _LAYOUT:
        _LAYOUT.append(pattern_layout(PATTERN_ELF))
    buf_addr, npages = _LAYOUT[0]
    vms, jobs = [], []
    samples: list[list] = []
    try:
        for i in range(req["n"]):
            vm = Machine(pattern_board(), req["elf"], name=f"dst{i}", pace="fast",
                         backends={"uart0": UartCapture()}, start_paused=True)
            await vm.start()
            vms.append(vm)
            m = MigrationManager(vm)
            m.options.set_capabilities(req["caps"])
            m.options.set_parameters(req["params"])
            uri = (f"unix:{req['dir']}/d{i}.sock" if req["transport"] == "unix"
                   else "tcp:127.0.0.1:0")
            jobs.append(await m.incoming(uri))
        samplers = []
        if req.get("sample"):
            for j in jobs:
                samples.append([])
                samplers.append(asyncio.get_running_loop().create_task(
                    _sample(j, samples[-1])))
        _reply({"addresses": [str(j.address) for j in jobs]})
        await asyncio.gather(*(j.done.wait() for j in jobs))
        for t in samplers:
            t.cancel()
        out = []
        for i, (vm, j) in enumerate(zip(vms, jobs)):
            r: dict[str, Any] = {"status": j.status.value, "error": j.error,
                                 "received": j.stats.transferred, "end_ms": j.stats.end_ms,
                                 "samples": samples[i] if samples else None}
            if j.status is Status.COMPLETED:
                try:
                    check_pattern_ram(vm.cpu.ram, buf_addr, npages)
                    r["check"] = "ok"
                except AssertionError as exc:
                    r["check"] = str(exc)[:200]
            out.append(r)
        _reply({"done": out})
    except Exception as exc:                          # noqa: BLE001 - reported to the parent
        _reply({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for vm in vms:
            await vm.close()


async def dest_main() -> int:
    loop = asyncio.get_running_loop()
    _reply({"ready": os.getpid()})
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return 0
        req = json.loads(line)
        op = req["op"]
        if op == "quit":
            return 0
        if op == "incoming":
            await _dest_incoming(req)
        elif op == "raw":
            try:
                lsock, addr = _raw_listen(req["transport"], req["dir"])
            except OSError as exc:
                _reply({"error": f"raw listen: {exc}"})
                continue
            _reply({"address": addr})
            got = await asyncio.to_thread(_raw_receive, lsock, req["nbytes"],
                                          req.get("fresh", True))
            _reply({"raw_done": got})
        else:
            _reply({"error": f"unknown op {op!r}"})


class DestProcess:
    """The destination process and its JSON-line protocol."""

    def __init__(self, loop_name: str, work: Path) -> None:
        self.loop_name = loop_name
        self.work = work
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_path = work / "dest.stderr"

    async def start(self) -> None:
        err = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).resolve()), "--dest", "--loop",
                self.loop_name, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, limit=1 << 24)
        finally:
            os.close(err)
        ready = await self.read(30)
        if "ready" not in ready:
            raise RuntimeError(f"destination process: {ready}")

    async def send(self, obj: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        await self.proc.stdin.drain()

    async def read(self, timeout: float = 120.0) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError("the destination process ended: " + self.stderr_tail())
        return json.loads(line)

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            await self.send({"op": "quit"})
            await asyncio.wait_for(self.proc.wait(), 10)
        except (TimeoutError, OSError, ConnectionError):
            self.proc.kill()
            await self.proc.wait()


# =============================================================================================
# the source side
# =============================================================================================
class PassClock:
    """MIGRATION / MIGRATION_PASS events (the ``emit`` of a MigrationManager):
    when the first pass began (active) and ended, and the bytes sent by then."""

    def __init__(self) -> None:
        self.mgr: Any = None
        self.t_active: float | None = None
        self.b_active = 0
        self.t_first: float | None = None
        self.b_first = 0
        self.p_active = self.p_first = 0          # pages sent with data by then

    def __call__(self, event: str, data: dict) -> None:
        job = self.mgr.current if self.mgr is not None else None
        if job is None:
            return
        if event == "MIGRATION" and data.get("status") == "active" and self.t_active is None:
            self.t_active, self.b_active = time.monotonic(), job.stats.transferred
            self.p_active = job.stats.normal
        elif event == "MIGRATION_PASS" and data.get("pass") == 2:
            self.t_first, self.b_first = time.monotonic(), job.stats.precopy_bytes
            self.p_first = job.stats.normal

    def first_pass(self, samples: list | None) -> dict:
        """The first pass: bytes and pages the source sent from 'active' to
        its end, the seconds until then on the source (``src_s``: bytes
        handed to the sockets, some still queued) and until the destination
        had received them all (``s``: from its samples, both clocks
        CLOCK_MONOTONIC)."""
        if self.t_active is None or self.t_first is None:
            return {}
        out = {"bytes": self.b_first - self.b_active, "pages": self.p_first - self.p_active,
               "src_s": self.t_first - self.t_active, "s": None}
        prev = None
        for t, n in samples or ():
            if n >= self.b_first:
                if prev is not None and n > prev[1]:     # interpolate within the sample
                    t = prev[0] + (t - prev[0]) * (self.b_first - prev[1]) / (n - prev[1])
                out["s"] = max(t - self.t_active, 1e-6)
                break
            prev = (t, n)
        return out


async def boot_source(guest: str, name: str = "src"):
    from migration_guest import (
        PATTERN_ELF,
        PATTERN_IDLE_ELF,
        UartCapture,
        pattern_board,
    )

    from aemu.hw.machine import Machine

    elf = PATTERN_IDLE_ELF if guest == "idle" else PATTERN_ELF
    uart = UartCapture()
    vm = Machine(pattern_board(), str(elf), name=name,
                 pace="realtime" if guest == "idle" else "fast",
                 backends={"uart0": uart}, start_paused=False)
    await vm.start()
    deadline = time.monotonic() + 30
    while b"B" not in uart.data:                 # the first sweep: 13 MiB non-zero
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: no first sweep after 30 s ({uart.text[:40]!r})")
        await asyncio.sleep(0.001)
    return vm, str(elf)


def settings_of(mode: str, tune: str, busy_limit: int) -> tuple[list[dict], dict]:
    caps, params = MODES[mode]
    caps = BASE_CAPS + list(caps)
    params = {"max-bandwidth": 0, "downtime-limit": 300, **params}
    if tune == "ac":
        caps = caps + [{"capability": "auto-converge", "state": True}]
        params["downtime-limit"] = busy_limit
    return caps, params


async def migrate_once(dest: DestProcess, guest: str, transport: str, caps: list, params: dict,
                       timeout: float, work: Path) -> dict:
    """One migration of a fresh source VM; the destination's verdict."""
    from aemu.migration import MigrationManager

    vm, elf = await boot_source(guest)
    try:
        await dest.send({"op": "incoming", "n": 1, "elf": elf, "transport": transport,
                         "dir": str(work), "caps": caps, "params": params, "sample": True})
        got = await dest.read()
        if "addresses" not in got:
            raise RuntimeError(f"destination: {got}")
        clock = PassClock()
        m = MigrationManager(vm, emit=clock)
        clock.mgr = m
        m.options.set_capabilities(caps)
        m.options.set_parameters(params)
        t0 = time.perf_counter()
        job = m.migrate(got["addresses"][0])
        converged = True
        try:
            await asyncio.wait_for(job.done.wait(), timeout)
        except TimeoutError:
            converged = False
            m.cancel()
            await job.done.wait()
        wall = time.perf_counter() - t0
        info = m.info()
        done = await dest.read()
        if "done" not in done:
            raise RuntimeError(f"destination: {done}")
        d = done["done"][0]
        st = job.stats
        ram = info.get("ram", {})
        fp = clock.first_pass(d.get("samples"))
        return {
            "status": info.get("status"), "converged": converged, "error": info.get("error-desc"),
            "dest_status": d["status"], "dest_error": d["error"], "dest_check": d.get("check"),
            "wall_s": wall,
            "total_ms": (st.end_ms - st.start_ms) if st.end_ms is not None else None,
            "setup_ms": st.setup_ms,
            "downtime_ms": (info["x-aemu-downtime-us"] / 1000
                            if "x-aemu-downtime-us" in info else None),
            "transferred": ram.get("transferred"), "normal": ram.get("normal"),
            "duplicate": ram.get("duplicate"), "syncs": ram.get("dirty-sync-count"),
            "precopy_bytes": ram.get("precopy-bytes"), "downtime_bytes": ram.get("downtime-bytes"),
            "multifd_bytes": ram.get("multifd-bytes"), "mbps": ram.get("mbps"),
            "throttle": info.get("cpu-throttle-percentage", 0),
            "first_pass_s": fp.get("s"), "first_pass_src_s": fp.get("src_s"),
            "first_pass_bytes": fp.get("bytes"), "first_pass_pages": fp.get("pages"),
        }
    finally:
        await vm.close()


def _raw_send(transport: str, addr: str, data: memoryview, nbytes: int) -> float:
    if transport == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = addr
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    with s:
        t0 = time.perf_counter()
        s.connect(target)
        left = nbytes
        while left:
            k = min(left, len(data))
            s.sendall(data[:k])
            left -= k
        if s.recv(1) != b"k":
            raise RuntimeError("raw copy: no answer")
        return time.perf_counter() - t0


async def raw_copy(dest: DestProcess, transport: str, nbytes: int, data: memoryview,
                   work: Path, fresh: bool = True) -> float:
    await dest.send({"op": "raw", "transport": transport, "nbytes": nbytes, "dir": str(work),
                     "fresh": fresh})
    got = await dest.read()
    if "address" not in got:
        raise RuntimeError(f"destination: {got}")
    secs = await asyncio.to_thread(_raw_send, transport, got["address"], data, nbytes)
    done = await dest.read()
    if done.get("raw_done") != nbytes:
        raise RuntimeError(f"raw copy: destination got {done}")
    return secs


# -- the 16 MiB cases --------------------------------------------------------------------------
def make_cases(args) -> list[dict]:
    cases = []
    for guest in args.guests:
        tunes = ["dl300"] if guest == "idle" else ["dl300", "ac"]
        if guest == "busy" and args.busy_tune != "both":
            tunes = [args.busy_tune]
        for tune in tunes:
            for transport in args.transports:
                for mode in args.modes:
                    caps, params = settings_of(mode, tune, args.busy_limit)
                    label = "dl300" if tune == "dl300" else f"ac+dl{args.busy_limit}"
                    cases.append({"name": f"{guest:<4} {transport:<4} {mode:<8} {label}",
                                  "guest": guest, "transport": transport, "mode": mode,
                                  "tune": label, "caps": caps, "params": params,
                                  "runs": [], "raw_s": [], "raw_ram_s": [], "skipped": 0})
    return cases


def summarise(case: dict) -> dict:
    ok = [r for r in case["runs"] if r["status"] == "completed"]
    s: dict[str, Any] = {"completed": len(ok), "attempted": len(case["runs"]),
                         "skipped": case["skipped"]}
    if not ok:
        return s

    def med(key):
        return _median([r[key] for r in ok])
    for key in ("total_ms", "setup_ms", "downtime_ms", "transferred", "syncs", "normal",
                "downtime_bytes", "throttle", "wall_s"):
        s[key] = med(key)
    s["mib_s"] = _median([r["transferred"] / MIB / (r["total_ms"] / 1e3) for r in ok])
    s["ram_mib_s"] = _median([r["normal"] * PAGE / MIB / (r["total_ms"] / 1e3) for r in ok])
    s["first_pass_mib_s"] = _median([r["first_pass_bytes"] / MIB / r["first_pass_s"]
                                     for r in ok if r["first_pass_s"]])
    s["first_pass_ram_mib_s"] = _median([r["first_pass_pages"] * PAGE / MIB / r["first_pass_s"]
                                         for r in ok if r["first_pass_s"]])
    raws = case["raw_s"]                 # one per completed run, in the same order
    if raws and len(raws) == len(ok):
        # ratios per run against the copy made right after it (the machine's
        # speed drifts), then their median
        raw = [n / MIB / t for n, t in raws]
        # the RAM figures against a raw copy of the RAM bytes (zstd: of the
        # uncompressed pages; otherwise the same copy as above)
        rr = case["raw_ram_s"]
        raw_ram = [n / MIB / t for n, t in rr] if len(rr) == len(ok) else raw
        s["raw_ms"] = _median([t * 1e3 for _, t in raws])
        s["raw_mib_s"] = _median(raw)
        s["raw_ram_mib_s"] = _median(raw_ram)
        s["ratio"] = _median([r["transferred"] / MIB / (r["total_ms"] / 1e3) / x
                              for r, x in zip(ok, raw)])
        s["ram_ratio"] = _median([r["normal"] * PAGE / MIB / (r["total_ms"] / 1e3) / x
                                  for r, x in zip(ok, raw_ram)])
        s["first_pass_ratio"] = _median([r["first_pass_pages"] * PAGE / MIB / r["first_pass_s"] / x
                                         for r, x in zip(ok, raw_ram) if r["first_pass_s"]])
    return s


async def bench_16(args, dest: DestProcess, work: Path, data: memoryview,
                   errors: list[str]) -> list[dict]:
    cases = make_cases(args)
    # warm-up (uncounted): fresh host memory on both sides, imports, the first sockets
    for transport in args.transports:
        caps, params = settings_of("plain", "dl300", args.busy_limit)
        r = await migrate_once(dest, "idle", transport, caps, params, args.timeout, work)
        await raw_copy(dest, transport, r["transferred"] or MIB, data, work)
    for rnd in range(args.runs):
        for case in cases:
            if any(not r["converged"] for r in case["runs"]):
                case["skipped"] += 1                  # did not converge once: not again
                continue
            _progress(f"run {rnd + 1}/{args.runs}: {case['name']}")
            r = await migrate_once(dest, case["guest"], case["transport"], case["caps"],
                                   case["params"], args.timeout, work)
            case["runs"].append(r)
            if r["status"] == "completed":
                if r["dest_status"] != "completed" or r["dest_check"] != "ok":
                    errors.append(f"{case['name']}: destination {r['dest_status']}: "
                                  f"{r['dest_error'] or r['dest_check']}")
                n = r["transferred"]
                case["raw_s"].append((n, await raw_copy(dest, case["transport"], n, data, work)))
                ram = r["normal"] * PAGE
                if ram > 1.5 * n:                    # compressed: also the uncompressed bytes
                    case["raw_ram_s"].append(
                        (ram, await raw_copy(dest, case["transport"], ram, data, work)))
            elif r["converged"]:
                errors.append(f"{case['name']}: {r['status']}: {r['error']} (destination "
                              f"{r['dest_status']}: {r['dest_error']})")
    for case in cases:
        case["summary"] = summarise(case)
    return cases


# -- 1 GiB ---------------------------------------------------------------------------------------
async def big_aemu(args, dest: DestProcess, transport: str, work: Path, concurrent: bool,
                   errors: list[str]) -> dict:
    """--vms idle VMs of 16 MiB migrated to the destination process at once
    (or one after the other)."""
    from aemu.migration import MigrationManager

    caps = [{"capability": "return-path", "state": True}]
    params = {"max-bandwidth": 0, "downtime-limit": 50}
    vms = []
    try:
        booted = await asyncio.gather(*(boot_source("idle", f"src{i}") for i in range(args.vms)),
                                      return_exceptions=True)
        vms = [b[0] for b in booted if not isinstance(b, BaseException)]
        for b in booted:
            if isinstance(b, BaseException):
                raise b
        elf = booted[0][1]
        await dest.send({"op": "incoming", "n": args.vms, "elf": elf, "transport": transport,
                         "dir": str(work), "caps": caps, "params": params})
        got = await dest.read()
        if "addresses" not in got:
            raise RuntimeError(f"destination: {got}")
        _progress(f"  {len(vms)} sources booted, {len(vms)} destinations waiting; migrating "
                  f"{'concurrently' if concurrent else 'sequentially'}")
        mgrs = []
        for vm in vms:
            m = MigrationManager(vm)
            m.options.set_capabilities(caps)
            m.options.set_parameters(params)
            mgrs.append(m)
        t0 = time.perf_counter()
        if concurrent:
            jobs = [m.migrate(a) for m, a in zip(mgrs, got["addresses"])]
            await asyncio.wait_for(asyncio.gather(*(j.done.wait() for j in jobs)),
                                   args.timeout * 20)
        else:
            jobs = []
            for m, a in zip(mgrs, got["addresses"]):
                j = m.migrate(a)
                jobs.append(j)
                await asyncio.wait_for(j.done.wait(), args.timeout)
        wall = time.perf_counter() - t0
        done = await dest.read()
        _progress(f"  done in {wall:.2f} s")
        infos = [m.info() for m in mgrs]
        ok = sum(i.get("status") == "completed" for i in infos)
        checked = sum(d.get("check") == "ok" for d in done.get("done", []))
        if ok != len(vms) or checked != len(vms):
            bad = [i.get("error-desc") for i in infos if i.get("status") != "completed"][:3]
            errors.append(f"1 GiB aemu {transport} {'concurrent' if concurrent else 'sequential'}"
                          f": {ok}/{len(vms)} completed, {checked} passed the pattern check "
                          f"{bad}")
        transferred = sum(i.get("ram", {}).get("transferred", 0) for i in infos)
        downs = [i["x-aemu-downtime-us"] / 1000 for i in infos if "x-aemu-downtime-us" in i]
        totals = [j.stats.end_ms - j.stats.start_ms for j in jobs if j.stats.end_ms]
        return {"wall_ms": wall * 1e3, "transferred": transferred, "completed": ok,
                "checked": checked,
                "downtime_ms_median": _median(downs), "downtime_ms_max": max(downs, default=None),
                "per_vm_total_ms_median": _median(totals),
                "per_vm_total_ms_max": max(totals, default=None),
                "mib_s": transferred / MIB / wall}
    finally:
        for vm in vms:
            await vm.close()


async def bench_1g(args, dest: DestProcess, work: Path, data: memoryview,
                   errors: list[str]) -> dict:
    import qemu_ref

    out: dict[str, Any] = {"vms": args.vms, "vm_ram_mib": 16,
                           "qemu": qemu_ref.qemu_binary()}
    for transport in args.big_transports:
        res: dict[str, Any] = {"qemu_runs": [], "aemu_conc_runs": [], "aemu_seq_runs": [],
                               "raw_ms": [], "raw_warm_ms": []}
        for i in range(1 + args.qemu_runs):            # round 0: an uncounted warm-up
            tag = "warm-up" if i == 0 else f"run {i}/{args.qemu_runs}"
            _progress(f"1 GiB {transport} {tag}: QEMU")
            try:
                q = await qemu_ref.qemu_migrate(1024, transport, work / "qemu")
            except Exception as exc:                   # noqa: BLE001 - reported
                errors.append(f"QEMU 1 GiB {transport}: {exc}")
                q = None
            _progress(f"1 GiB {transport} {tag}: {args.vms} aemu VMs")
            a = await big_aemu(args, dest, transport, work, True, errors)
            if i:
                raw = await raw_copy(dest, transport, 1 << 30, data, work) * 1e3
                warm = await raw_copy(dest, transport, 1 << 30, data, work, fresh=False) * 1e3
                if q is not None:
                    res["qemu_runs"].append(q)
                res["aemu_conc_runs"].append(a)
                res["raw_ms"].append(raw)
                res["raw_warm_ms"].append(warm)
        if args.big_sequential:
            _progress(f"1 GiB {transport}: {args.vms} aemu VMs, sequential")
            res["aemu_seq_runs"].append(await big_aemu(args, dest, transport, work, False,
                                                       errors))
        q = res["qemu_runs"]
        res["qemu"] = ({"total_ms": _median([r["total_ms"] for r in q]),
                        "downtime_ms": _median([r["downtime_ms"] for r in q]),
                        "transferred": _median([r["transferred"] for r in q]),
                        "version": q[0]["qemu_version"],
                        "dest_ok": all(r["dest_ok"] for r in q)} if q else None)
        for key in ("aemu_conc", "aemu_seq"):
            runs = res[key + "_runs"]
            res[key] = {k: _median([r[k] for r in runs]) for k in runs[0]} if runs else None
        res["raw_1g_ms"] = _median(res["raw_ms"])
        res["raw_1g_warm_ms"] = _median(res["raw_warm_ms"])
        out[transport] = res
    return out


# =============================================================================================
# output
# =============================================================================================
def _f(x, fmt: str, width: int) -> str:
    return f"{x:{width}{fmt}}" if isinstance(x, (int, float)) else f"{'-':>{width}}"


def report(fig: dict) -> None:
    a = fig["args"]
    print(f"migration benchmark: 16 MiB pattern guest, source in this process ({a['loop']}), "
          f"destination in another; medians of {a['runs']} runs")
    print("  always: return-path on, events on, max-bandwidth 0; dl300 = downtime-limit 300 ms "
          f"(default); ac+dl{a['busy_limit']} = auto-converge on, downtime-limit "
          f"{a['busy_limit']} ms; multifd: 4 channels")
    print("  total, setup, down (x-aemu-downtime-us): source side; MiB sent = "
          "ram.transferred (every channel), 'in down' = after the stop; syncs = "
          "dirty-sync-count; thr% = final throttle")
    print("  MiB/s = transferred / total-time; raw = a raw socket copy of the same number of "
          "bytes over the same transport right after each run; ratio = median over the runs of "
          "MiB/s / that run's raw MiB/s")
    print("  RAM MiB/s = pages sent with data x 4 KiB / total-time, RAM ratio = that / a raw "
          "copy of those bytes (differs from ratio only with zstd)")
    print("  1st pass = RAM MiB/s of the first pass alone: its pages x 4 KiB / (from 'active' "
          "on the source until the destination had received every byte the source sent in "
          "that pass; ~1 ms samples); 1st/raw = that / the raw copy of RAM bytes")
    print()
    hdr = (f"{'case':<28}{'ok':>5}{'total ms':>9}{'setup':>7}{'down ms':>9}{'MiB sent':>9}"
           f"{'in down':>8}{'syncs':>6}{'thr%':>5}{'MiB/s':>7}{'raw':>6}{'ratio':>6}"
           f"{'RAM MiB/s':>10}{'RAM ratio':>10}{'1st pass':>9}{'1st/raw':>8}")
    print(hdr)
    print("-" * len(hdr))
    last_guest = None
    for c in fig["cases"]:
        s = c["summary"]
        if last_guest is not None and c["guest"] != last_guest:
            print()
        last_guest = c["guest"]
        okcell = f"{s['completed']}/{s['attempted'] + s['skipped']}"
        if not s["completed"]:
            r = c["runs"][0] if c["runs"] else {}
            if r and not r.get("converged"):
                why = (f"did not converge in {a['timeout']:g} s (cancelled after "
                       f"{r.get('syncs', '?')} syncs)")
            else:
                why = r.get("error") or "no run"
            print(f"{c['name']:<28}{okcell:>5}  {why}")
            continue
        dbytes = s.get("downtime_bytes")
        print(f"{c['name']:<28}{okcell:>5}{_f(s['total_ms'], '.1f', 9)}"
              f"{_f(s['setup_ms'], '.1f', 7)}{_f(s['downtime_ms'], '.2f', 9)}"
              f"{_f(s['transferred'] / MIB, '.2f', 9)}"
              f"{_f(dbytes / MIB if dbytes is not None else None, '.2f', 8)}"
              f"{_f(s['syncs'], '.0f', 6)}{_f(s['throttle'], '.0f', 5)}"
              f"{_f(s['mib_s'], '.0f', 7)}{_f(s.get('raw_mib_s'), '.0f', 6)}"
              f"{_f(s.get('ratio'), '.2f', 6)}{_f(s['ram_mib_s'], '.0f', 10)}"
              f"{_f(s.get('ram_ratio'), '.2f', 10)}{_f(s['first_pass_ram_mib_s'], '.0f', 9)}"
              f"{_f(s.get('first_pass_ratio'), '.2f', 8)}")
    print()
    # goals
    parts = []
    for guest, goal in (("idle", GOAL_IDLE_MS), ("busy", GOAL_BUSY_MS)):
        cs = [c for c in fig["cases"] if c["guest"] == guest]
        if not cs:
            continue
        met = [c for c in cs if c["summary"].get("downtime_ms") is not None
               and c["summary"]["downtime_ms"] <= goal]
        best = min((c["summary"]["downtime_ms"] for c in cs
                    if c["summary"].get("downtime_ms") is not None), default=None)
        parts.append(f"downtime <= {goal:g} ms {guest}: {len(met)}/{len(cs)} cases met "
                     f"(best {best:.2f} ms)" if best is not None else
                     f"downtime <= {goal:g} ms {guest}: no case completed")
    # throughput in RAM moved per second against a raw copy of those bytes:
    # with zstd the wire carries ~1 % of them, so the wire ratio says nothing
    rs = [c for c in fig["cases"] if c["summary"].get("ram_ratio") is not None]
    if rs:
        met = [c for c in rs if c["summary"]["ram_ratio"] >= GOAL_RATIO]
        worst = min(c["summary"]["ram_ratio"] for c in rs)
        parts.append(f"throughput >= {GOAL_RATIO:g}x raw (RAM ratio): {len(met)}/{len(rs)} "
                     f"cases met (worst {worst:.2f})")
    print("goals: " + "; ".join(parts))

    big = fig.get("big")
    if big:
        print()
        print(f"1 GiB: QEMU {big.get('qemu_version', '')} 1 GiB guest (TCG, idle, every page "
              f"above 2 MiB non-zero; downtime-limit 50 ms, no return path) against "
              f"{big['vms']} idle aemu VMs x 16 MiB")
        print(f"  (downtime-limit 50 ms, return-path on; 'concurrent' = all {big['vms']} "
              f"migrations at once, one source and one destination process); medians of "
              f"{a['qemu_runs']} runs after one warm-up (sequential: one run)")
        hdr = (f"  {'':<30}{'total ms':>10}{'GiB sent':>10}{'MiB/s':>8}{'down ms':>10}"
               f"{'vs QEMU':>9}")
        print(hdr)
        for transport in a["big_transports"]:
            r = big.get(transport)
            if not r:
                continue
            q = r["qemu"]
            rows = []
            if q:
                rows.append((f"QEMU 1 GiB, {transport}", q["total_ms"], q["transferred"],
                             q["downtime_ms"]))
            for key, label in (("aemu_conc", "concurrent"), ("aemu_seq", "sequential")):
                x = r.get(key)
                if x:
                    rows.append((f"aemu {big['vms']}x16 MiB {label}", x["wall_ms"],
                                 x["transferred"], x["downtime_ms_max"]))
            if r.get("raw_1g_ms"):
                rows.append(("raw 1 GiB, fresh receive buf", r["raw_1g_ms"], 1 << 30, None))
            if r.get("raw_1g_warm_ms"):
                rows.append(("raw 1 GiB, reused 64 MiB buf", r["raw_1g_warm_ms"], 1 << 30, None))
            for label, ms, nbytes, down in rows:
                vs = (ms / q["total_ms"]) if q and q["total_ms"] else None
                print(f"  {label:<30}{_f(ms, '.0f', 10)}{_f(nbytes / (1 << 30), '.3f', 10)}"
                      f"{_f(nbytes / MIB / (ms / 1e3), '.0f', 8)}{_f(down, '.1f', 10)}"
                      f"{_f(vs, '.2f', 9)}")
        print("  down ms: QEMU's downtime; for aemu the largest of the VMs' downtimes. "
              "vs QEMU = total time / QEMU's total time (lower is faster)")
    if fig["errors"]:
        print()
        for e in fig["errors"][:20]:
            print(f"ERROR: {e}")
    if fig["loop_errors"]:
        print()
        print(f"asyncio reported {len(fig['loop_errors'])} unhandled error(s) in the source "
              f"process, e.g.: {fig['loop_errors'][0]}")


# =============================================================================================
async def run(args) -> dict:
    loop_errors: list[str] = []

    def handler(loop, context):
        exc = context.get("exception")
        loop_errors.append(f"{context.get('message')}: {type(exc).__name__}: {exc}"
                           if exc else str(context.get("message")))
    asyncio.get_running_loop().set_exception_handler(handler)

    errors: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="amig", dir="/tmp"))    # short: unix socket paths
    dest = DestProcess(args.loop, work)
    fig: dict[str, Any] = {"args": vars(args), "errors": errors, "loop_errors": loop_errors}
    data = memoryview(os.urandom(32 * MIB))
    try:
        await dest.start()
        fig["cases"] = await bench_16(args, dest, work, data, errors)
        if args.qemu:
            fig["big"] = await bench_1g(args, dest, work, data, errors)
            for t in args.transports:
                q = fig["big"].get(t, {}).get("qemu")
                if q:
                    fig["big"]["qemu_version"] = q["version"]
    finally:
        await dest.stop()
        tail = dest.stderr_tail().strip()
        if tail:
            fig["dest_stderr"] = tail.splitlines()[-20:]
        shutil.rmtree(work, ignore_errors=True)
    return fig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per case (medians; default 5)")
    ap.add_argument("--quick", action="store_true",
                    help="1 run per case, --timeout 2, no 1 GiB comparison (under 20 s)")
    ap.add_argument("--transports", type=lambda s: s.split(","), default=list(TRANSPORTS),
                    help="comma-separated: unix,tcp")
    ap.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES),
                    help="comma-separated: plain,mf4,mf4+zstd")
    ap.add_argument("--guests", type=lambda s: s.split(","), default=["idle", "busy"])
    ap.add_argument("--busy-tune", choices=("dl300", "ac", "both"), default="both",
                    help="busy settings: the default downtime-limit, auto-converge with "
                         "--busy-limit, or both (default)")
    ap.add_argument("--busy-limit", type=int, default=10,
                    help="downtime-limit (ms) of the auto-converge busy cases (default 10)")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="cancel a 16 MiB migration not completed after this many s (default 5)")
    qemu = ap.add_mutually_exclusive_group()
    qemu.add_argument("--qemu", dest="qemu", action="store_true", default=None,
                      help="the 1 GiB comparison (default: on if qemu-system-x86_64 is found)")
    qemu.add_argument("--no-qemu", dest="qemu", action="store_false")
    ap.add_argument("--qemu-runs", type=int, default=2,
                    help="1 GiB runs per transport after one warm-up (default 2)")
    ap.add_argument("--vms", type=int, default=64, help="aemu VMs of 16 MiB for the 1 GiB part")
    ap.add_argument("--big-transports", type=lambda s: s.split(","), default=["tcp"],
                    help="transports of the 1 GiB part, comma-separated (default tcp)")
    ap.add_argument("--no-sequential", dest="big_sequential", action="store_false",
                    help="1 GiB part: skip the sequential aemu run")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--dest", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    from aemu.loop.eventloop import run_with_loop

    if args.dest:
        return run_with_loop(dest_main(), args.loop)
    bad = [m for m in args.modes if m not in MODES] + \
        [t for t in args.transports if t not in TRANSPORTS] + \
        [g for g in args.guests if g not in ("idle", "busy")]
    if bad or args.runs < 1:
        ap.error(f"bad --modes/--transports/--guests value(s) {bad}, or --runs < 1")
    if args.quick:
        args.runs = 1
        args.timeout = min(args.timeout, 2.0)
        if args.qemu is None:
            args.qemu = False
    if args.qemu is None:
        import qemu_ref
        args.qemu = qemu_ref.qemu_binary() is not None
    fig = run_with_loop(run(args), args.loop)
    if args.json:
        json.dump(fig, sys.stdout, indent=2, default=str)
        print()
    else:
        report(fig)
        for line in fig.get("dest_stderr", []):
            print(f"  destination: {line}")
    return 1 if fig["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
