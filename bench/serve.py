#!/usr/bin/env python3
"""Host benchmark: many idle VMs in one ``aemu serve``, and QMP latency.

One invocation starts ``python -m aemu serve`` in a private state dir under
/tmp and, talking QMP to it over its unix sockets,

1. creates one idle VM (``tests/firmware/irq/idle.elf``: TIMER0 at --hz and
   ``eiwait``, pace realtime, uart none, the smallest RAM the ELF fits in) and
   measures with it alone — the **reference**;
2. creates --vms - 1 more such VMs (the creation rate, VMs/s, first and last
   tenth separately: does creating get slower as the host fills?);
3. with 1 and with N VMs: the serve process's RSS (VmRSS) and open fds, its
   CPU use (utime+stime from /proc/PID/stat) over --window seconds with every
   VM idle-running and no QMP traffic, as % of one core and per guest
   wake-up; sequential ``query-status`` round trips per second on one VM's
   socket; the latency distribution (p50/p90/p99/max) of ``query-status``
   sent at --qps (one request outstanding at a time) for --lat-seconds,
   each to the next VM in a shuffled round-robin over every VM (one
   persistent, negotiated connection per VM); and one "round" of N calls
   (one per VM) timed with this raw client and with qemu.qmp's QMPClient;
4. with --busy K: destroys K of the idle VMs and creates K busy ones instead
   (``workload_1khz.elf noirq`` with many rounds, pace fast) and measures the
   latency again (printed, never a failure).

The QMP client is a raw asyncio stream client (greeting, qmp_capabilities,
then ``{"execute": "query-status", "id": N}`` and one ``readline``), so the
figures are the server's, not a client library's.  The goal (from the issue):
1000 idle VMs with p99 of query-status under 10 ms.

Usage: python bench/serve.py [--vms N] [--hz HZ] [--window S] [--qps Q]
                             [--lat-seconds S] [--busy K] [--loop uvloop|asyncio] [--json]
Exit status: 0; 1 if the host failed (a VM could not be made, a QMP error,
a VM not running when measured).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIRMWARE = ROOT / "tests" / "firmware"
IRQ = FIRMWARE / "irq"
IDLE = IRQ / "idle.elf"
BUSY = IRQ / "workload_1khz.elf"
GOAL_P99_MS = 10.0
GOAL_VMS = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
RAM_CANDIDATES = (256 << 10, 512 << 10, 1 << 20)   # what we would like idle.elf to fit in


# ------------------------------------------------------------------ /proc
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu(pid: int) -> float:
    """utime + stime of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK   # fields 14, 15 of stat(5)


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_nofile(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return "?", "?"


def raise_nofile() -> int:
    """This client holds a socket per VM too: soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def elf_extent(path: Path) -> int:
    """The end of the highest PT_LOAD segment (its run address + p_memsz)."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        return max(s["p_vaddr"] + s["p_memsz"] for s in ELFFile(f).iter_segments()
                   if s["p_type"] == "PT_LOAD")


def pct(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) of xs, nearest rank."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))]


def dist(lat_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of latencies in seconds, as milliseconds."""
    if not lat_s:
        return {}
    ms = [x * 1e3 for x in lat_s]
    return {"n": len(ms), "p50": pct(ms, .5), "p90": pct(ms, .9), "p99": pct(ms, .99),
            "max": max(ms), "mean": statistics.fmean(ms)}


# ------------------------------------------------------------------ a raw QMP client
class QmpFailure(Exception):
    pass


class RawQmp:
    """One QMP connection, no library: a request is a write and a readline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 0
        self.events = 0

    @classmethod
    async def connect(cls, path: str) -> RawQmp:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        self = cls(reader, writer)
        greeting = json.loads(await reader.readline())
        if "QMP" not in greeting:
            raise QmpFailure(f"{path}: no QMP greeting: {greeting}")
        await self.execute("qmp_capabilities")
        return self

    def send(self, command: str, arguments: dict | None = None) -> int:
        self.next_id += 1
        msg: dict[str, Any] = {"execute": command, "id": self.next_id}
        if arguments:
            msg["arguments"] = arguments
        self.writer.write(json.dumps(msg).encode() + b"\n")
        return self.next_id

    async def reply(self, ident: int) -> Any:
        """The reply with ``ident`` (events before it are counted and skipped)."""
        while True:
            line = await self.reader.readline()
            if not line:
                raise QmpFailure("connection closed")
            msg = json.loads(line)
            if "event" in msg:
                self.events += 1
                continue
            if msg.get("id") != ident:
                raise QmpFailure(f"reply out of order: {msg}")
            if "error" in msg:
                raise QmpFailure(f"{msg['error'].get('class')}: {msg['error'].get('desc')}")
            return msg["return"]

    async def execute(self, command: str, arguments: dict | None = None) -> Any:
        return await self.reply(self.send(command, arguments))

    async def timed_status(self) -> tuple[float, bytes]:
        """One query-status: (seconds from write to the reply line, the line).
        The request is built before the clock starts and parsed after it stops."""
        self.next_id += 1
        raw = b'{"execute": "query-status", "id": %d}\n' % self.next_id
        reader = self.reader
        t0 = time.perf_counter()
        self.writer.write(raw)
        line = await reader.readline()
        t = time.perf_counter() - t0
        while line.startswith(b'{"event"'):       # an event came first: not ours
            self.events += 1
            line = await reader.readline()
            t = time.perf_counter() - t0
        return t, line

    def check_status(self, line: bytes, want: str = "running") -> None:
        msg = json.loads(line)
        if msg.get("id") != self.next_id or "return" not in msg:
            raise QmpFailure(f"query-status: {line!r}")
        if msg["return"].get("status") != want:
            raise QmpFailure(f"query-status: {msg['return']} (expected {want})")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


# ------------------------------------------------------------------ the host
class Serve:
    """An ``aemu serve`` subprocess and a connection to its host socket."""

    def __init__(self, state_dir: Path, loop: str) -> None:
        self.state_dir = state_dir
        self.loop = loop
        self.proc: subprocess.Popen | None = None
        self.host: RawQmp | None = None
        self.stderr_path = state_dir.parent / "serve.stderr"

    async def start(self) -> None:
        self._stderr = open(self.stderr_path, "wb")
        # the installed aemu (editable: this tree), else this tree; an explicit
        # PYTHONPATH comes first (to measure a build elsewhere)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aemu", "serve", "--state-dir", str(self.state_dir),
             "--allow-dir", str(FIRMWARE), "--loop", self.loop],
            stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr,
            cwd=self.state_dir.parent, env=env)
        sock = self.state_dir / "host.qmp"
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"aemu serve exited ({self.proc.returncode}):\n"
                                 f"{self.stderr_path.read_text()}")
            if sock.exists():
                with contextlib.suppress(OSError):
                    self.host = await RawQmp.connect(str(sock))
                    return
            if time.monotonic() > deadline:
                raise SystemExit("aemu serve did not open its host socket in 30 s")
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def vm_socket(self, name: str) -> str:
        return str(self.state_dir / "vms" / f"{name}.qmp")

    async def create(self, requests: list[dict], window: int = 4) -> tuple[list[float], list[str]]:
        """vm-create each of ``requests``, up to ``window`` in flight on the host
        socket (the host makes them one after the other).  Returns the time at
        which each reply came (from the start) and the errors."""
        assert self.host is not None
        host, done, errors = self.host, [], []
        pending: list[tuple[int, str]] = []
        t0 = time.perf_counter()
        it = iter(requests)
        while True:
            while len(pending) < window:
                req = next(it, None)
                if req is None:
                    break
                pending.append((host.send("__org.aemu_vm-create", req), req["name"]))
            if not pending:
                break
            ident, name = pending.pop(0)
            try:
                info = await host.reply(ident)
                if info.get("status") != "running":
                    errors.append(f"{name}: status {info.get('status')} after vm-create")
            except QmpFailure as exc:
                errors.append(f"{name}: {exc}")
            done.append(time.perf_counter() - t0)
        return done, errors

    async def destroy(self, name: str) -> None:
        assert self.host is not None
        await self.host.execute("__org.aemu_vm-destroy", {"name": name})

    async def try_ram(self, ram: int, firmware: Path, args: list[str]) -> str | None:
        """Make (paused) and destroy a probe VM with ``ram`` bytes: None if it
        could be made, else the host's error."""
        assert self.host is not None
        name = f"probe{ram}"
        try:
            await self.host.execute("__org.aemu_vm-create", {
                "name": name, "firmware": str(firmware), "args": args, "ram-size": ram,
                "paused": True, "uart": "none"})
        except QmpFailure as exc:
            return str(exc)
        await self.destroy(name)
        return None

    async def stop(self) -> float:
        """quit on the host socket; seconds until the process was gone."""
        t0 = time.perf_counter()
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        try:
            if self.host is not None:
                await asyncio.wait_for(self.host.execute("quit"), 30)
            while self.proc.poll() is None and time.perf_counter() - t0 < 120:
                await asyncio.sleep(0.05)
        except (TimeoutError, QmpFailure, OSError):
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return time.perf_counter() - t0


# ------------------------------------------------------------------ measurements
async def idle_cpu(pid: int, window: float) -> float:
    """CPU seconds of ``pid`` per wall second over ``window`` s."""
    c0, t0 = proc_cpu(pid), time.perf_counter()
    await asyncio.sleep(window)
    return (proc_cpu(pid) - c0) / (time.perf_counter() - t0)


async def seq_roundtrips(client: RawQmp, seconds: float) -> tuple[float, list[float]]:
    """query-status back to back on one connection: (calls/s, latencies)."""
    lat = []
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < end:
        t, line = await client.timed_status()
        lat.append(t)
    client.check_status(line)
    return len(lat) / (time.perf_counter() - t0), lat


async def paced_latency(clients: list[RawQmp], qps: float, seconds: float,
                        rng: random.Random) -> tuple[list[float], int]:
    """query-status at ``qps`` (one outstanding), each to the next client of a
    shuffled round-robin.  Returns the latencies and how many replies were
    not "running"."""
    order = list(clients)
    rng.shuffle(order)
    lat, bad = [], 0
    interval = 1.0 / qps
    t_next = time.perf_counter()
    end = t_next + seconds
    i = 0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if now < t_next:
            await asyncio.sleep(t_next - now)
        elif now - t_next > interval:        # late: no catch-up burst
            t_next = now
        t_next += interval
        c = order[i % len(order)]
        i += 1
        t, line = await c.timed_status()
        lat.append(t)
        if b'"running"' not in line:
            bad += 1
    return lat, bad


async def raw_round(clients: list[RawQmp], n: int) -> tuple[float, list[float]]:
    """n sequential query-status calls, one per client in turn: (wall s, latencies)."""
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t, _ = await clients[i % len(clients)].timed_status()
        lat.append(t)
    return time.perf_counter() - t0, lat


async def qmpclient_round(paths: list[str], n: int) -> dict[str, Any]:
    """The same round with qemu.qmp's QMPClient (connections made beforehand)."""
    try:
        from qemu.qmp import QMPClient
    except ImportError:
        return {"error": "qemu.qmp is not installed"}
    clients = []
    try:
        for i, path in enumerate(paths):
            c = QMPClient(f"bench{i}")
            await c.connect(path)
            clients.append(c)
        lat = []
        t0 = time.perf_counter()
        for i in range(n):
            t1 = time.perf_counter()
            await clients[i % len(clients)].execute("query-status")
            lat.append(time.perf_counter() - t1)
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await c.disconnect()
    return {"wall_s": wall, **dist(lat)}


async def connect_all(serve: Serve, names: list[str], parallel: int = 32) -> list[RawQmp]:
    sem = asyncio.Semaphore(parallel)

    async def one(name: str) -> RawQmp:
        async with sem:
            return await RawQmp.connect(serve.vm_socket(name))

    return list(await asyncio.gather(*(one(n) for n in names)))


async def measure(serve: Serve, clients: list[RawQmp], names: list[str], args: argparse.Namespace,
                  rng: random.Random, round_n: int, window: float, errors: list[str],
                  qmpclient: bool = True) -> dict[str, Any]:
    """Every figure of one configuration (the VMs the host holds now)."""
    pid = serve.pid
    out: dict[str, Any] = {"vms": len(clients)}
    st = proc_status(pid)
    out["rss_kib"], out["hwm_kib"], out["fds"] = st["VmRSS"], st["VmHWM"], proc_fds(pid)
    if window > 0:
        out["cpu_share"] = await idle_cpu(pid, window)
    # every VM still runs?
    not_running = 0
    for c, name in zip(clients, names):
        _, line = await c.timed_status()
        try:
            c.check_status(line)
        except QmpFailure as exc:
            not_running += 1
            if not_running <= 5:
                errors.append(f"{name}: {exc}")
    out["not_running"] = not_running
    rate, lat = await seq_roundtrips(clients[0], args.rt_seconds)
    out["seq_rt_per_s"], out["seq_rt"] = rate, dist(lat)
    lat, bad = await paced_latency(clients, args.qps, args.lat_seconds, rng)
    out["latency"], out["latency_not_running"] = dist(lat), bad
    if bad:
        errors.append(f"{bad} query-status replies of the latency sample were not 'running'")
    out["qps_achieved"] = len(lat) / args.lat_seconds
    wall, lat = await raw_round(clients, round_n)
    out["raw_round"] = {"wall_s": wall, **dist(lat)}
    if qmpclient:
        out["qmpclient_round"] = await qmpclient_round([serve.vm_socket(n) for n in names],
                                                       round_n)
    return out


# ------------------------------------------------------------------ main
async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    errors: list[str] = []
    fig: dict[str, Any] = {"vms": args.vms, "hz": args.hz, "busy": args.busy, "loop": args.loop,
                           "errors": errors, "goal": {"vms": GOAL_VMS, "p99_ms": GOAL_P99_MS}}
    fig["client_nofile"] = raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="aes", dir="/tmp"))
    serve = Serve(tmp / "s", args.loop)
    try:
        await serve.start()
        pid = serve.pid
        await asyncio.sleep(0.5)
        fig["serve_nofile"] = proc_nofile(pid)
        fig["rss0_kib"] = proc_status(pid)["VmRSS"]
        seconds = max(1, min(args.seconds, (2 ** 32 - 1) // args.hz))
        idle_args = [str(seconds), str(args.hz)]

        # the smallest RAM idle.elf runs in
        probes = {}
        if args.ram_size:
            ram = args.ram_size
        else:
            extent = elf_extent(IDLE)
            ram = extent + (extent & 1)
            for cand in RAM_CANDIDATES:
                why = await serve.try_ram(cand, IDLE, idle_args)
                probes[cand] = why or "ok"
                if why is None:
                    ram = cand
                    break
            if ram not in probes:
                why = await serve.try_ram(ram, IDLE, idle_args)
                probes[ram] = why or "ok"
                if why is not None:
                    raise SystemExit(f"idle.elf does not load with {ram} bytes of RAM: {why}")
        fig["ram_size"], fig["ram_probes"] = ram, {str(k): v for k, v in probes.items()}

        def idle_req(name: str) -> dict:
            return {"name": name, "firmware": str(IDLE), "args": idle_args, "ram-size": ram,
                    "pace": "realtime", "uart": "none"}

        names = [f"vm{i:04d}" for i in range(args.vms)]
        round_n = fig["round_n"] = max(args.vms, 500)   # calls in a "round"

        # -- reference: one VM ------------------------------------------------------
        _, errs = await serve.create([idle_req(names[0])])
        if errs:
            raise SystemExit(f"cannot make the reference VM: {errs[0]}")
        clients = await connect_all(serve, names[:1])
        await asyncio.sleep(0.5)
        print(f"[1 VM] measuring (window {args.window:g} s, latency {args.lat_seconds:g} s)...",
              file=sys.stderr, flush=True)
        fig["one"] = await measure(serve, clients, names[:1], args, rng, round_n, args.window,
                                   errors)

        # -- N VMs ----------------------------------------------------------------------
        print(f"creating {args.vms - 1} more VMs...", file=sys.stderr, flush=True)
        rest = names[1:]
        done, errs = await serve.create([idle_req(n) for n in rest], window=args.create_window)
        errors.extend(errs)
        if done:
            tenth = max(1, len(done) // 10)
            first = done[tenth - 1]
            last = done[-1] - done[-tenth - 1] if len(done) > tenth else done[-1]
            fig["create"] = {"n": len(done), "wall_s": done[-1], "per_s": len(done) / done[-1],
                             "first_tenth_per_s": tenth / first, "last_tenth_per_s": tenth / last,
                             "tenth": tenth, "rss_kib": proc_status(pid)["VmRSS"]}
        t0 = time.perf_counter()
        clients += await connect_all(serve, rest)
        fig["connect_s"] = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        print(f"[{args.vms} VMs] measuring...", file=sys.stderr, flush=True)
        fig["many"] = await measure(serve, clients, names, args, rng, round_n, args.window,
                                    errors)
        one, many = fig["one"], fig["many"]
        if args.vms > 1:
            fig["per_vm_kib"] = (many["rss_kib"] - one["rss_kib"]) / (args.vms - 1)
            fig["per_vm_cpu_share"] = (many["cpu_share"] - one["cpu_share"]) / (args.vms - 1)
        fig["per_wakeup_us"] = many["cpu_share"] / (args.vms * args.hz) * 1e6

        # -- busy neighbours ------------------------------------------------------------
        if args.busy:
            k = fig["busy"] = min(args.busy, args.vms - 1)
            victims = names[-k:]
            for c in clients[-k:]:
                await c.close()
            clients, names = clients[:-k], names[:-k]
            for name in victims:
                await serve.destroy(name)
            busy = [f"busy{i:03d}" for i in range(k)]
            busy_ram = max(ram, elf_extent(BUSY) + (elf_extent(BUSY) & 1))
            _, errs = await serve.create([{
                "name": n, "firmware": str(BUSY), "args": ["noirq", str(args.busy_rounds)],
                "ram-size": busy_ram, "pace": "fast", "uart": "none"} for n in busy])
            errors.extend(errs)
            clients += await connect_all(serve, busy)
            names += busy
            await asyncio.sleep(0.5)
            print(f"[{args.vms - k} idle + {k} busy VMs] measuring...", file=sys.stderr, flush=True)
            fig["busy_run"] = await measure(serve, clients, names, args, rng, round_n,
                                            min(args.window, 3.0), errors, qmpclient=False)

        for c in clients:
            await c.close()
        fig["quit_s"] = await serve.stop()
    finally:
        await serve.stop()
        if serve.stderr_path.exists():
            text = serve.stderr_path.read_text(errors="replace").strip().splitlines()
            fig["serve_stderr"] = [line for line in text if "host QMP on" not in line][:20]
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            fig["tmp"] = str(tmp)
    return fig


def report(fig: dict[str, Any]) -> None:
    one, many = fig["one"], fig["many"]
    n = fig["vms"]
    mib = 1 / 1024

    def row(label: str, a: Any, b: Any, ratio: float | None = None, fmt: str = "{:.2f}") -> None:
        fa = fmt.format(a) if isinstance(a, (int, float)) else str(a)
        fb = fmt.format(b) if isinstance(b, (int, float)) else str(b)
        r = "" if ratio is None else f"{ratio:.2f}"
        print(f"  {label:<34} {fa:>12} {fb:>12} {r:>8}")

    def ratio(a: float, b: float) -> float | None:
        return b / a if a else None     # none when the 1-VM figure rounds to 0

    print(f"aemu serve ({fig['loop']}): {n} idle VMs: idle.elf, TIMER0 at {fig['hz']} Hz, "
          f"pace realtime, uart none, ram-size {fig['ram_size']} "
          f"({fig['ram_size'] / 1024:.0f} KiB)")
    if fig["ram_probes"]:
        print("  RAM probes: " + "; ".join(
            f"{int(k) // 1024} KiB: {'ok' if v == 'ok' else 'no (' + v.split(':')[0] + ' ...)'}"
            if "outside guest RAM" not in v else f"{int(k) // 1024} KiB: no (image does not fit)"
            for k, v in fig["ram_probes"].items()))
    soft, hard = fig["serve_nofile"]
    print(f"  serve's RLIMIT_NOFILE: soft {soft}, hard {hard} (aemu raises soft to hard); "
          f"fds open with {n} VMs: {many['fds']} ({(many['fds'] - one['fds']) / max(1, n - 1):.1f}"
          f" per VM); this client's limit {fig['client_nofile']}")
    c = fig.get("create")
    if c:
        print(f"  creation: {c['n']} VMs in {c['wall_s']:.2f} s = {c['per_s']:.1f} VMs/s "
              f"(first {c['tenth']}: {c['first_tenth_per_s']:.1f}/s, last {c['tenth']}: "
              f"{c['last_tenth_per_s']:.1f}/s); connecting {n} QMP clients: "
              f"{fig['connect_s']:.2f} s")
    print(f"  RSS: {fig['rss0_kib'] * mib:.1f} MiB with no VM, "
          f"{one['rss_kib'] * mib:.1f} MiB with 1, {many['rss_kib'] * mib:.1f} MiB with {n}: "
          f"{fig.get('per_vm_kib', 0):.0f} KiB per VM (VmHWM {many['hwm_kib'] * mib:.1f} MiB)")
    print()
    print(f"  {'':<34} {'1 VM':>12} {f'{n} VMs':>12} {'N/1':>8}")
    row("idle CPU, % of one core", one["cpu_share"] * 100, many["cpu_share"] * 100,
        ratio(one["cpu_share"], many["cpu_share"]))
    print(f"  {'  per added VM, % of one core':<34} {'':>12} "
          f"{fig.get('per_vm_cpu_share', 0) * 100:>12.4f}")
    print(f"  {'  per guest wake-up (CPU / N·hz), us':<34} {'':>12} "
          f"{fig['per_wakeup_us']:>12.1f}")
    row("seq. query-status, calls/s", one["seq_rt_per_s"], many["seq_rt_per_s"],
        ratio(one["seq_rt_per_s"], many["seq_rt_per_s"]), "{:.0f}")
    row("  its median, ms", one["seq_rt"]["p50"], many["seq_rt"]["p50"],
        ratio(one["seq_rt"]["p50"], many["seq_rt"]["p50"]), "{:.3f}")
    lo, lm = one["latency"], many["latency"]
    print(f"  query-status at {fig['qps']:g}/s over all VMs "
          f"({lo['n']} / {lm['n']} samples):")
    for key in ("p50", "p90", "p99", "max", "mean"):
        row(f"  {key}, ms", lo[key], lm[key], ratio(lo[key], lm[key]), "{:.3f}")
    for key, label in (("raw_round", f"round of {fig['round_n']} calls, raw client"),
                       ("qmpclient_round", f"round of {fig['round_n']}, qemu.qmp")):
        a, b = one.get(key, {}), many.get(key, {})
        if "error" in a or "error" in b:
            print(f"  {label}: {a.get('error') or b.get('error')}")
            continue
        row(f"{label}: s", a["wall_s"], b["wall_s"], ratio(a["wall_s"], b["wall_s"]), "{:.3f}")
        row("  p50, ms", a["p50"], b["p50"], ratio(a["p50"], b["p50"]), "{:.3f}")
        row("  p99, ms", a["p99"], b["p99"], ratio(a["p99"], b["p99"]), "{:.3f}")
    q = many.get("qmpclient_round", {})
    if "p50" in q:
        r = many["raw_round"]
        print(f"  qemu.qmp's QMPClient vs the raw client, {n} VMs: p50 {q['p50'] / r['p50']:.2f}x,"
              f" round {q['wall_s'] / r['wall_s']:.2f}x")
    b = fig.get("busy_run")
    if b:
        bl = b["latency"]
        print(f"\n  busy neighbours: {fig['busy']} of the VMs run workload_1khz noirq (pace "
              f"fast): CPU {b['cpu_share'] * 100:.0f} % of one core; query-status p50 "
              f"{bl['p50']:.2f} ms, p90 {bl['p90']:.2f}, p99 {bl['p99']:.2f}, max "
              f"{bl['max']:.2f} ms ({bl['n']} samples, {b['qps_achieved']:.0f}/s achieved); "
              f"seq. {b['seq_rt_per_s']:.0f} calls/s")
    print()
    p99 = lm["p99"]
    verdict = "met" if n >= GOAL_VMS and p99 < GOAL_P99_MS else (
        "not met" if p99 >= GOAL_P99_MS else f"p99 under {GOAL_P99_MS:g} ms, but with {n} VMs")
    print(f"  goal: {GOAL_VMS} idle VMs with p99 of query-status < {GOAL_P99_MS:g} ms: "
          f"{n} VMs, p99 {p99:.2f} ms ({p99 / lo['p99']:.2f}x the 1-VM p99): {verdict}")
    busy = f" ({fig['busy']} of them busy)" if b else ""
    print(f"  quit on the host socket with {n} VMs{busy}: the process was gone after "
          f"{fig['quit_s']:.2f} s")
    for e in fig["errors"][:10]:
        print(f"  ERROR: {e}")
    if len(fig["errors"]) > 10:
        print(f"  ... {len(fig['errors']) - 10} more errors")
    for line in fig.get("serve_stderr", []):
        print(f"  serve: {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=1000, help="idle VMs (default 1000)")
    ap.add_argument("--hz", type=int, default=1, help="idle guests' TIMER0 rate (default 1)")
    ap.add_argument("--seconds", type=int, default=10 ** 6,
                    help="idle guests' run time, virtual s (default: far longer than the run)")
    ap.add_argument("--window", type=float, default=10.0,
                    help="CPU measurement window, s (default 10)")
    ap.add_argument("--qps", type=float, default=1000.0,
                    help="query-status rate of the latency sample (default 1000/s)")
    ap.add_argument("--lat-seconds", type=float, default=5.0,
                    help="latency sample length, s (default 5)")
    ap.add_argument("--rt-seconds", type=float, default=2.0,
                    help="sequential round-trip measurement, s (default 2)")
    ap.add_argument("--busy", type=int, default=0, metavar="K",
                    help="then replace K idle VMs by busy ones and measure again")
    ap.add_argument("--busy-rounds", type=int, default=10 ** 7,
                    help="workload_1khz CRC rounds of a busy VM (default: longer than the run)")
    ap.add_argument("--ram-size", type=int, default=0,
                    help="guest RAM, bytes (default: the smallest of 256K/512K/1M that "
                         "idle.elf loads in, else the ELF's extent)")
    ap.add_argument("--create-window", type=int, default=4,
                    help="vm-create requests in flight on the host socket (default 4)")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="the host's event loop (default uvloop)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the state dir (VM logs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.vms < 1 or args.hz < 1 or args.qps <= 0:
        ap.error("--vms, --hz and --qps must be positive")

    fig = asyncio.run(run(args))
    fig["qps"] = args.qps
    if args.json:
        json.dump(fig, sys.stdout, indent=2)
        print()
    else:
        report(fig)
    return 1 if fig["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
