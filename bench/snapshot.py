#!/usr/bin/env python3
"""Snapshot benchmark: snapshot files against cp, lazy loads, in-memory restores.

One invocation prints four figures (medians of --reps runs):

1. **Save and load of a 16 MiB-RAM VM** whose RAM is all non-zero (random
   bytes; the pages `idle.elf` loaded are put back on top, so the snapshot
   still boots), against copying a 16 MiB file of the same bytes in the same
   directory: `save_file(sync=False)` against `cp` (a subprocess) and an
   in-process `shutil.copyfile`; `save_file(sync=True)` against the same
   copies followed by `os.fsync` of the copy.  Loads: `load_files(lazy=False)`
   and `load_files(lazy=True)` against reading the file (`cat > /dev/null`, and
   Python's `read()`).  Ratio = copy (read) time / aemu time; goal: at least 0.5.
2. **Lazy-load latency**: `load_files(lazy=True)` alone (goal: at most 5 ms),
   and the time to the first instructions (load + `run_until` --first-cycles
   cycles more).
3. **In-memory restore rate**: `Machine.checkpoint()`, then loop: write one
   byte into each of K distinct pages (K = 1, 2, 4, 8) and `restore()`.  Only
   the restore is timed.  Restores per second (goal: at least 100k/s), and the
   RAM part alone (the checkpoint's `DirtyLog.restore`) against the whole.
   `--profile` adds a cProfile top-15 of the K=1 loop (writes included).
4. **Parallel against sequential page writes**: `SeekableFile.pwrite_all`
   with 1, 2 and 4 workers against `pwrite_all_sync`, for the page runs a
   full save of that VM writes (all pages non-zero: one 16 MiB run) and for
   the same bytes as sixteen 1 MiB pieces; the files must be byte-identical.

Every figure is preceded by --warmup uncounted rounds (default 1): on a VM
the first writes into fresh host memory are several times slower.

Usage: python bench/snapshot.py [--reps N] [--dir DIR] [--profile] [--json]
"""
from __future__ import annotations

import argparse
import cProfile
import filecmp
import io
import json
import os
import pstats
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IDLE = ROOT / "tests" / "firmware" / "irq" / "idle.elf"
MIB = 1 << 20
PAGE = 4096


def _median(xs) -> float:
    return statistics.median(xs)


async def _boot(ram_size: int, run_cycles: int = 0):
    """idle.elf on a ``ram_size`` board, started paused (and run a little)."""
    from aemu.hw.board import default_board
    from aemu.hw.machine import Machine

    board = default_board().with_changes(ram_size=ram_size)
    vm = Machine(board, str(IDLE), start_paused=True, backends={"uart0": "none"},
                 stdout=io.BytesIO())
    await vm.start()
    if run_cycles:
        await vm.run_until(cycles=vm.cycles + run_cycles)
    return vm


def _fill_random(vm, seed: int) -> bytes:
    """Every byte of RAM random (written in 1 MiB pieces), then the pages the
    program image occupied put back; returns the whole RAM."""
    cpu = vm.cpu
    image = {p: cpu.read(p * PAGE, min(PAGE, cpu.ram_size - p * PAGE))
             for p in cpu.nonzero_pages()}
    rng = random.Random(seed)
    for addr in range(0, cpu.ram_size, MIB):
        n = min(MIB, cpu.ram_size - addr)
        cpu.write(addr, rng.randbytes(n))
    for p, data in image.items():
        cpu.write(p * PAGE, data)
    blob = bytes(cpu.ram)
    npages = -(-cpu.ram_size // PAGE)
    if len(cpu.nonzero_pages()) != npages:
        raise SystemExit("the random fill left a zero page (change --seed)")
    return blob


def _unlink(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                             text=True, check=True).stdout.strip()
        return out or "?"
    except (OSError, subprocess.CalledProcessError):
        return "?"


# -- 1 and 2: files ---------------------------------------------------------------------------
async def bench_files(args, work: Path) -> dict:
    from aemu.savevm.snapfile import load_files, save_file

    vm = await _boot(args.ram_mib * MIB)
    try:
        blob = _fill_random(vm, args.seed)
        src = work / "ram.bin"
        _write_durably(src, blob)
        snap, copy = work / "vm.snap", work / "ram-copy.bin"
        runs: dict[str, list[float]] = {k: [] for k in (
            "save_nosync", "cp", "copyfile", "save_sync", "cp_fsync", "copyfile_fsync",
            "load_eager", "lazy_after_eager", "load_lazy", "lazy_touch_all", "first_insn",
            "cat", "py_read")}
        snap_size = 0
        first_insns: list[int] = []
        checks: dict[str, bool] = {}

        def timed(key: str, fn) -> None:
            t0 = time.perf_counter()
            fn()
            runs[key].append(time.perf_counter() - t0)

        for rep in range(args.warmup + args.reps):
            if rep == args.warmup:      # the warm-up rounds are not counted
                for v in runs.values():
                    v.clear()
                first_insns.clear()
            # -- saves and copies, interleaved so that noise spreads over all
            for sync in (False, True):
                _unlink(snap)
                t0 = time.perf_counter()
                saved = await save_file(vm, snap, sync=sync)
                runs["save_sync" if sync else "save_nosync"].append(time.perf_counter() - t0)
                snap_size = saved.size
                suffix = "_fsync" if sync else ""
                _unlink(copy)
                timed("cp" + suffix, lambda sync=sync: (
                    subprocess.run(["cp", str(src), str(copy)], check=True),
                    sync and _fsync_path(copy)))
                _unlink(copy)
                timed("copyfile" + suffix, lambda sync=sync: (
                    shutil.copyfile(src, copy), sync and _fsync_path(copy)))
            # -- loads and reads (everything in the page cache: just written).
            #    Replacing RAM costs the kernel the freeing of what the old RAM
            #    had populated: the lazy figures proper follow an untimed lazy
            #    load (nothing populated); "lazy after eager" shows the other end.
            def lazy() -> None:
                load_files(vm, [snap], lazy=True)

            timed("load_eager", lambda: load_files(vm, [snap], lazy=False))
            if rep == 0:
                checks["eager load gives the saved RAM"] = bytes(vm.cpu.ram) == blob
            timed("lazy_after_eager", lazy)
            lazy()
            timed("load_lazy", lazy)
            if rep == 0:
                checks["lazy load gives the saved RAM"] = bytes(vm.cpu.ram) == blob
                lazy()
            timed("lazy_touch_all", lambda: (lazy(), bytes(vm.cpu.ram)))
            # time to first instruction: a lazy load, then a few cycles of idle.elf
            lazy()
            t0 = time.perf_counter()
            lazy()
            before = vm.cpu.insn_count
            state = await vm.run_until(cycles=vm.cycles + args.first_cycles)
            runs["first_insn"].append(time.perf_counter() - t0)
            first_insns.append(vm.cpu.insn_count - before)
            if rep == 0:
                checks[f"the loaded VM runs (state {state.value})"] = (
                    vm.cpu.insn_count > before and state.value == "paused")
            timed("cat", lambda: subprocess.run(f"cat {shlex.quote(str(snap))} > /dev/null",
                                                shell=True,
                                                check=True))
            timed("py_read", snap.read_bytes)
        _unlink(snap, copy, src)
    finally:
        await vm.close()
    med = {k: _median(v) for k, v in runs.items()}
    return {
        "ram_bytes": len(blob), "snapshot_file_bytes": snap_size,
        "runs_s": runs, "median_s": med, "first_insns": first_insns, "checks": checks,
        "ratios": {
            "save_nosync_vs_cp": med["cp"] / med["save_nosync"],
            "save_nosync_vs_copyfile": med["copyfile"] / med["save_nosync"],
            "save_sync_vs_cp_fsync": med["cp_fsync"] / med["save_sync"],
            "save_sync_vs_copyfile_fsync": med["copyfile_fsync"] / med["save_sync"],
            "load_eager_vs_cat": med["cat"] / med["load_eager"],
            "load_eager_vs_py_read": med["py_read"] / med["load_eager"],
            "load_lazy_vs_cat": med["cat"] / med["load_lazy"],
            "load_lazy_vs_py_read": med["py_read"] / med["load_lazy"],
        },
    }


# -- 3: in-memory restores ------------------------------------------------------------------
def _restore_loop(vm, restore, pages: list[int], iters: int) -> tuple[float, int]:
    """(seconds spent in ``restore`` over ``iters`` rounds, pages it reported
    in the last round); each round writes a byte into every page first."""
    write = vm.cpu.write
    addrs = [p * PAGE + 123 for p in pages]
    clock = time.perf_counter
    spent = 0.0
    n = 0
    for i in range(iters):
        b = bytes((i & 0x7F | 0x80,))
        for a in addrs:
            write(a, b)
        t0 = clock()
        n = restore()
        spent += clock() - t0
    return spent, n


async def bench_restore(args) -> dict:
    vm = await _boot(args.ram_mib * MIB, run_cycles=args.warm_cycles)
    try:
        cp = vm.checkpoint()
        npages = -(-vm.cpu.ram_size // PAGE)
        base = npages // 2
        whole = cp.restore

        def ram() -> int:                           # the RAM half alone
            return cp._log.restore(cp._ram)

        out: dict = {"state": vm.state.value, "cycles": vm.cycles,
                     "pending_timers": sum(1 for t in vm.timers._heap if not t.cancelled),
                     "by_pages": {}, "checks": {}}
        for k in args.pages:
            pages = [base + 37 * i for i in range(k)]
            r_whole, r_ram = [], []
            ok = True
            for _ in range(args.warmup):
                _restore_loop(vm, whole, pages, args.restores)
                _restore_loop(vm, ram, pages, args.restores)
            for _ in range(args.reps):
                s, n = _restore_loop(vm, whole, pages, args.restores)
                r_whole.append(s / args.restores)
                ok &= n == k
                s, n = _restore_loop(vm, ram, pages, args.restores)
                r_ram.append(s / args.restores)
                ok &= n == k
            cp.restore()
            out["checks"][f"restore copies back {k} page(s)"] = ok
            w, r = _median(r_whole), _median(r_ram)
            out["by_pages"][k] = {"whole_s": w, "ram_s": r, "per_second": 1 / w,
                                  "ram_share": r / w, "runs_whole_s": r_whole,
                                  "runs_ram_s": r_ram}
        if args.profile:
            prof = cProfile.Profile()
            pages = [base]
            prof.enable()
            _restore_loop(vm, whole, pages, args.restores)
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
            out["profile"] = buf.getvalue()
        cp.close()
    finally:
        await vm.close()
    return out


# -- 4: parallel against sequential page writes ------------------------------------------------
async def bench_pwrite(args, work: Path) -> dict:
    from aemu.savevm.snapfile import page_runs
    from aemu.transport.file import SeekableFile

    size = args.ram_mib * MIB
    blob = random.Random(args.seed + 1).randbytes(size)
    view = memoryview(blob)
    npages = -(-size // PAGE)
    nz = [p for p in range(npages) if any(view[p * PAGE:(p + 1) * PAGE])]
    runs = [(first * PAGE, view[first * PAGE:min((first + count) * PAGE, size)])
            for first, count in page_runs(nz)]
    mib = [(a, view[a:min(a + MIB, size)]) for a in range(0, size, MIB)]
    methods = ["sync"] + [f"workers={w}" for w in args.workers]
    out: dict = {}
    for label, pieces in ((f"save runs ({len(runs)} piece{'s' * (len(runs) != 1)})", runs),
                          (f"{len(mib)} x 1 MiB pieces", mib)):
        times: dict[str, list[float]] = {m: [] for m in methods}
        for rep in range(args.warmup + args.reps):
            if rep == args.warmup:
                for v in times.values():
                    v.clear()
            for m in methods:
                path = work / f"pw-{m}.bin"
                _unlink(path)
                f = SeekableFile.create(path)
                try:
                    f.truncate(size)
                    t0 = time.perf_counter()
                    if m == "sync":
                        n = f.pwrite_all_sync(pieces)
                    else:
                        n = await f.pwrite_all(pieces, workers=int(m.split("=")[1]))
                    times[m].append(time.perf_counter() - t0)
                    if n != size:
                        raise SystemExit(f"pwrite {m}: wrote {n} bytes of {size}")
                    f.commit(sync=False)
                finally:
                    f.close()
        ref = work / "pw-sync.bin"
        identical = {m: filecmp.cmp(ref, work / f"pw-{m}.bin", shallow=False)
                     for m in methods[1:]}
        identical["sync"] = ref.read_bytes() == blob
        _unlink(*(work / f"pw-{m}.bin" for m in methods))
        med = {m: _median(v) for m, v in times.items()}
        out[label] = {"pieces": len(pieces), "median_s": med, "runs_s": times,
                      "identical": identical}
    return out


# -- output ---------------------------------------------------------------------------------
def _goals(f1: dict, f3: dict) -> dict[str, tuple[str, bool]]:
    """issue 5's goals: name -> (figure as text, met?).  The file ratios are
    taken against the cp / cat subprocesses (the in-process copies are in the table)."""
    r, med = f1["ratios"], f1["median_s"]
    worst = min(x["per_second"] for x in f3["by_pages"].values())
    return {
        "save vs cp >= 0.5": (f"{r['save_nosync_vs_cp']:.2f}", r["save_nosync_vs_cp"] >= 0.5),
        "save(sync) vs cp+fsync >= 0.5": (f"{r['save_sync_vs_cp_fsync']:.2f}",
                                          r["save_sync_vs_cp_fsync"] >= 0.5),
        "eager load vs cat >= 0.5": (f"{r['load_eager_vs_cat']:.2f}",
                                     r["load_eager_vs_cat"] >= 0.5),
        "lazy load <= 5 ms": (f"{med['load_lazy'] * 1e3:.2f} ms", med["load_lazy"] <= 5e-3),
        "restores >= 100k/s": (f"{worst / 1e3:.0f}k/s", worst >= 100e3),
    }


def _ms(s: float) -> str:
    return f"{s * 1e3:8.2f}"


def _print(args, fs: str, work: Path, f1: dict, f3: dict, f4: dict) -> None:
    def ok(b: bool) -> str:
        return "ok" if b else "FAIL"

    med = f1["median_s"]
    print(f"snapshot benchmark: {args.ram_mib} MiB RAM, medians of {args.reps} runs; "
          f"files in {work} ({fs})")
    print(f"snapshot file {f1['snapshot_file_bytes'] / MIB:.2f} MiB "
          f"(RAM {f1['ram_bytes'] / MIB:.0f} MiB, every page non-zero)")
    print()
    print("1. save / load against copying / reading the same bytes     [goal: ratio >= 0.5]")
    print(f"{'operation':<38}{'aemu ms':>9}{'ref':>18}{'ref ms':>9}{'ratio':>8}")
    rows = [
        ("save_file(sync=False)", "save_nosync", "cp", "cp"),
        ("", None, "shutil.copyfile", "copyfile"),
        ("save_file(sync=True)", "save_sync", "cp + fsync", "cp_fsync"),
        ("", None, "copyfile + fsync", "copyfile_fsync"),
        ("load_files(lazy=False)", "load_eager", "cat > /dev/null", "cat"),
        ("", None, "Python read()", "py_read"),
        ("load_files(lazy=True)", "load_lazy", "cat > /dev/null", "cat"),
        ("", None, "Python read()", "py_read"),
    ]
    last = None
    for name, key, ref_name, ref in rows:
        key = key or last
        last = key
        aemu = _ms(med[key]) if name else " " * 8
        print(f"{name:<38} {aemu}{ref_name:>18} {_ms(med[ref])}{med[ref] / med[key]:8.2f}")
    print(f"{'(lazy load + reading all of RAM)':<38} {_ms(med['lazy_touch_all'])}")
    print()
    print("2. lazy load latency")
    print(f"   {'load_files(lazy=True)':<36}{_ms(med['load_lazy'])} ms   [goal <= 5 ms]")
    print(f"   {'  the same, just after an eager load':<36}{_ms(med['lazy_after_eager'])} ms   "
          f"(+ freeing the 16 MiB it had populated)")
    label = f"load + run_until(+{args.first_cycles} cycles)"
    print(f"   {label:<36}{_ms(med['first_insn'])} ms   "
          f"({_median(f1['first_insns']):.0f} instructions run)")
    print()
    print("3. in-memory restore   [goal >= 100k restores/s]")
    print(f"   (checkpoint of idle.elf after {f3['cycles']} cycles, {f3['pending_timers']} "
          f"timer(s) pending; {args.restores} restores per run, only restore() timed)")
    print(f"{'dirty pages':>12}{'restore us':>12}{'restores/s':>12}{'RAM part us':>13}"
          f"{'RAM share':>11}")
    for k, r in f3["by_pages"].items():
        print(f"{k:>12}{r['whole_s'] * 1e6:12.2f}{r['per_second']:12.0f}"
              f"{r['ram_s'] * 1e6:13.2f}{r['ram_share'] * 100:10.1f}%")
    print()
    print("4. page writes: SeekableFile.pwrite_all (workers) against pwrite_all_sync")
    for label, r in f4.items():
        m = r["median_s"]
        cells = "  ".join(f"{k} {_ms(v).strip()} ms" for k, v in m.items())
        same = all(r["identical"].values())
        print(f"   {label:<24} {cells}   identical: {ok(same)}")
    print()
    goals = _goals(f1, f3)
    print("goals: " + "; ".join(
        f"{name} {value} ({'met' if met else 'MISSED'})" for name, (value, met) in goals.items()))
    checks = {**f1["checks"], **f3["checks"]}
    print("checks: " + "; ".join(f"{k}: {ok(v)}" for k, v in checks.items()))
    if "profile" in f3:
        print()
        print("cProfile of the restore loop (1 dirty page, writes included), by own time:")
        print(f3["profile"].rstrip())


async def _main(args, work: Path) -> tuple[dict, dict, dict]:
    f1 = await bench_files(args, work)
    f3 = await bench_restore(args)
    f4 = await bench_pwrite(args, work)
    return f1, f3, f4


def main() -> int:
    from aemu.loop.eventloop import run_with_loop

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="runs per figure (median)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="uncounted rounds first (the first writes into fresh memory are slow)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where to write the files (default: a new directory under $TMPDIR)")
    ap.add_argument("--ram-mib", type=int, default=16, help="guest RAM (and file) size in MiB")
    ap.add_argument("--restores", type=int, default=5000, help="restores per timed run")
    ap.add_argument("--pages", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 2, 4, 8], help="dirty pages per restore (comma-separated)")
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 2, 4], help="pwrite_all worker counts (comma-separated)")
    ap.add_argument("--first-cycles", type=int, default=100,
                    help="cycles run after a lazy load for the time to first instruction")
    ap.add_argument("--warm-cycles", type=int, default=300_000,
                    help="cycles idle.elf runs before the checkpoint (timers pending)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--profile", action="store_true", help="cProfile top-15 of the restore loop")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.reps < 1 or args.restores < 1 or args.warmup < 0 or not args.pages:
        ap.error("--reps and --restores must be positive, --warmup not negative, "
                 "--pages not empty")

    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="aemu-snapbench-", dir=args.dir))
    try:
        fs = _fs_type(work)
        f1, f3, f4 = run_with_loop(_main(args, work), args.loop)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checks = {**f1["checks"], **f3["checks"],
              **{f"pwrite {label} identical": all(r["identical"].values())
                 for label, r in f4.items()}}
    if args.json:
        json.dump({"ram_mib": args.ram_mib, "reps": args.reps, "dir": str(work), "fs": fs,
                   "files": f1, "restore": f3, "pwrite": f4, "checks": checks,
                   "goals": {k: {"figure": v, "met": m} for k, (v, m) in _goals(f1, f3).items()}},
                  sys.stdout, indent=2, default=str)
        print()
    else:
        _print(args, fs, work, f1, f3, f4)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
