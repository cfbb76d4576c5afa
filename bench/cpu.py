#!/usr/bin/env python3
"""CPU benchmark: the same C workloads on aemu, on the reference simulator and natively.

For every workload in bench/workloads/ this script

* builds it for CR16 (``cr16-elf-gcc -msim -O2``) and for the host
  (``gcc -O2 -DBENCH_NATIVE``, which times the work in-process);
* runs the ELF on aemu (``--reps`` times; the figure is the median of the
  time spent inside ``Cpu.run()``, i.e. pure execution, with loading timed
  separately), on ``cr16-elf-run`` (``--sim-reps`` times, wall clock of the
  whole process) and natively (``--reps`` times, median of the in-process
  time of the work);
* checks that aemu's stdout equals the native stdout (and reports whether the
  simulator's does);
* prints instructions executed, the times, MIPS of aemu and of the simulator,
  aemu/sim (how many times faster aemu is than the simulator) and
  native/aemu (how many times faster the host runs the same C than aemu).

Usage::

    python bench/cpu.py [--prefix DIR] [--reps N] [--sim-reps N] [--no-sim]
                        [--json] [--only crc32,sieve] [--scale F] [--check-count]

The instruction count is aemu's (the differential test checks that it equals
the count of ``cr16-elf-run-trace``; ``--check-count`` re-checks it here).
Exit status: 0, or 1 if some output did not match.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = HERE / "workloads"
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: workload -> REPS, sized so that the simulator needs ~3 s (~40 M instructions)
DEFAULT_REPS = {"crc32": 200, "sieve": 100, "bytecode": 240, "intmix": 700}

SYS_WRITE, SYS_EXIT, SYS_CLOSE, SYS_GETENV = 0x404, 0x410, 0x402, 0x408
SLICE = 10_000_000
MAX_INSNS = 10_000_000_000


@dataclass
class Result:
    workload: str
    reps: int
    insns: int = 0
    output_ok: bool = False
    sim_output_ok: bool | None = None
    count_ok: bool | None = None
    aemu_exec_s: list[float] = field(default_factory=list)
    aemu_load_s: list[float] = field(default_factory=list)
    sim_s: list[float] = field(default_factory=list)
    native_s: list[float] = field(default_factory=list)
    native_wall_s: list[float] = field(default_factory=list)
    stdout: str = ""
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    def figures(self) -> dict[str, float | None]:
        ae, sim, nat = self.med(self.aemu_exec_s), self.med(self.sim_s), self.med(self.native_s)
        load = self.med(self.aemu_load_s)
        f: dict[str, float | None] = {
            "aemu_exec_s": ae, "aemu_load_s": load,
            "aemu_total_s": (ae + load) if ae is not None and load is not None else None,
            "sim_s": sim, "native_s": nat, "native_wall_s": self.med(self.native_wall_s),
        }
        for key, xs in (("aemu_exec_min_s", self.aemu_exec_s), ("sim_min_s", self.sim_s),
                        ("native_min_s", self.native_s)):
            f[key] = min(xs) if xs else None
        f["aemu_mips"] = self.insns / ae / 1e6 if ae else None
        f["sim_mips"] = self.insns / sim / 1e6 if sim else None
        f["aemu_over_sim"] = sim / ae if ae and sim else None
        f["native_over_aemu"] = ae / nat if ae and nat else None
        return f


# ------------------------------------------------------------------ toolchain
def find_prefix(arg: str | None) -> Path | None:
    cands = [arg, os.environ.get("AEMU_CR16_PREFIX")]
    for c in cands:
        if c:
            p = Path(c)
            if (p / "bin" / "cr16-elf-gcc").exists():
                return p
            raise SystemExit(f"no cr16-elf-gcc under {p}/bin")
    gcc = shutil.which("cr16-elf-gcc")
    return Path(gcc).resolve().parent.parent if gcc else None


def run_cmd(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p


def build(name: str, reps: int, prefix: Path, out: Path, host_cc: str) -> tuple[Path, Path]:
    src = WORKLOADS / f"{name}.c"
    elf, native = out / f"{name}.elf", out / f"{name}.native"
    run_cmd([str(prefix / "bin" / "cr16-elf-gcc"), "-msim", "-O2", f"-DREPS={reps}",
             "-o", str(elf), str(src)])
    run_cmd([host_cc, "-O2", "-DBENCH_NATIVE", f"-DREPS={reps}", "-o", str(native), str(src)])
    return elf, native


# ---------------------------------------------------------------------- aemu
def run_aemu(path: Path) -> tuple[bytes, int, int, float, float]:
    """(stdout, exit status, instructions, exec seconds, load seconds)."""
    from aemu.cpu import Cpu, Exit
    from aemu.hw.loader import load_elf

    t0 = time.perf_counter()
    cpu = Cpu(20 << 20)
    load_elf(cpu, path)
    load_s = time.perf_counter() - t0
    out = bytearray()
    total = 0
    exec_s = 0.0
    run = cpu.run
    clock = time.perf_counter
    while total < MAX_INSNS:
        t = clock()
        why, n = run(SLICE)
        exec_s += clock() - t
        total += n
        if why == Exit.BUDGET:
            continue
        if why != Exit.SYSCALL:
            raise RuntimeError(f"{path.name}: aemu stopped: {why.name} {cpu.fault}")
        r = cpu.get_state()["r"]
        code = r[0] & 0xFFFF
        if code == SYS_EXIT:
            return bytes(out), r[2] & 0xFF, total, exec_s, load_s
        r = list(r)
        if code == SYS_WRITE:
            buf, length = (r[4] << 16) | r[3], r[5]
            out += cpu.read(buf, length)
            r[0] = length
        elif code in (SYS_CLOSE, SYS_GETENV):     # newlib's exit closes stdio
            r[0] = r[1] = 0
        else:
            raise RuntimeError(f"{path.name}: unexpected service {code:#x}")
        r[4] = 0                                  # errno, as the simulator does
        cpu.set_state({"r": r})
    raise RuntimeError(f"{path.name}: instruction limit reached")


# ------------------------------------------------------------------ the rest
def run_native(path: Path) -> tuple[str, float, float]:
    t = time.perf_counter()
    p = run_cmd([str(path)])
    wall = time.perf_counter() - t
    m = re.search(r"native-seconds ([0-9.]+)", p.stderr)
    return p.stdout, float(m.group(1)) if m else wall, wall


def run_sim(path: Path, prefix: Path) -> tuple[str, float]:
    t = time.perf_counter()
    p = subprocess.run([str(prefix / "bin" / "cr16-elf-run"), str(path)], capture_output=True, text=True)
    return p.stdout, time.perf_counter() - t


def sim_count(path: Path, prefix: Path) -> int | None:
    env = dict(os.environ, CR16_SIM_COUNT="1")
    p = subprocess.run([str(prefix / "bin" / "cr16-elf-run-trace"), str(path)],
                       capture_output=True, text=True, env=env)
    m = re.search(r"cr16-sim: (\d+) instructions executed", p.stderr)
    return int(m.group(1)) if m else None


def fmt(v: float | None, spec: str) -> str:
    return "-".rjust(int(spec.split(".")[0])) if v is None else format(v, spec)


def print_table(results: list[Result], args) -> None:
    hdr = (f"{'workload':<9} {'Minsn':>7} {'aemu ms':>8} {'(+load)':>7} {'sim s':>7} {'native ms':>9} "
           f"{'aemu MIPS':>9} {'sim MIPS':>8} {'aemu/sim':>8} {'native/aemu':>11}  check")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        f = r.figures()
        check = "ok" if r.output_ok else "MISMATCH"
        if r.sim_output_ok is False:
            check += " (sim output differs)"
        if r.count_ok is False:
            check += " (sim count differs)"
        print(f"{r.workload:<9} {r.insns / 1e6:>7.1f} {fmt(f['aemu_exec_s'] and f['aemu_exec_s'] * 1e3, '8.1f')} "
              f"{fmt(f['aemu_load_s'] and f['aemu_load_s'] * 1e3, '7.1f')} {fmt(f['sim_s'], '7.2f')} "
              f"{fmt(f['native_s'] and f['native_s'] * 1e3, '9.2f')} {fmt(f['aemu_mips'], '9.0f')} "
              f"{fmt(f['sim_mips'], '8.1f')} {fmt(f['aemu_over_sim'], '8.1f')} "
              f"{fmt(f['native_over_aemu'], '11.1f')}  {check}")
    tot_insn = sum(r.insns for r in results)
    ae = [r.figures()["aemu_exec_s"] for r in results]
    sim = [r.figures()["sim_s"] for r in results]
    if all(ae):
        line = f"{'total':<9} {tot_insn / 1e6:>7.1f} {sum(ae) * 1e3:>8.1f}"
        if all(sim):
            line += (f" {'':>7} {sum(sim):>7.2f} {'':>9} {tot_insn / sum(ae) / 1e6:>9.0f} "
                     f"{tot_insn / sum(sim) / 1e6:>8.1f} {sum(sim) / sum(ae):>8.1f}")
        else:
            line += f" {'':>7} {'':>7} {'':>9} {tot_insn / sum(ae) / 1e6:>9.0f}"
        print(line)
    print(f"\naemu: median of {args.reps} runs, time inside Cpu.run() ({SLICE:,} per slice); "
          f"(+load) = Cpu creation + ELF load.\nsim: cr16-elf-run wall time, median of {args.sim_reps} "
          f"run(s).  native: host gcc -O2, in-process time of the work, median of {args.reps}.\n"
          "aemu/sim = sim time / aemu time; native/aemu = aemu time / native time.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", help="cr16-elf toolchain prefix (default $AEMU_CR16_PREFIX, then PATH)")
    ap.add_argument("--reps", type=int, default=5, help="aemu and native runs per workload (median)")
    ap.add_argument("--sim-reps", type=int, default=1, help="simulator runs per workload (median)")
    ap.add_argument("--no-sim", action="store_true", help="skip the reference simulator")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--only", help="comma-separated workloads (default: all)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every workload's REPS")
    ap.add_argument("--check-count", action="store_true",
                    help="also run cr16-elf-run-trace and compare its instruction count")
    ap.add_argument("--host-cc", default=os.environ.get("CC", "gcc"), help="host C compiler")
    ap.add_argument("--keep", metavar="DIR", help="build in DIR and keep the binaries")
    args = ap.parse_args(argv)

    prefix = find_prefix(args.prefix)
    if prefix is None:
        raise SystemExit("cr16-elf toolchain not found: use --prefix or set AEMU_CR16_PREFIX")
    names = args.only.split(",") if args.only else list(DEFAULT_REPS)
    for n in names:
        if n not in DEFAULT_REPS:
            raise SystemExit(f"unknown workload {n!r}; have {', '.join(DEFAULT_REPS)}")

    tmp = None
    if args.keep:
        out = Path(args.keep)
        out.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="aemu-bench-")
        out = Path(tmp.name)
    results: list[Result] = []
    bad = False
    try:
        for name in names:
            reps = max(1, round(DEFAULT_REPS[name] * args.scale))
            res = Result(name, reps)
            elf, native = build(name, reps, prefix, out, args.host_cc)
            nat_out = None
            for _ in range(args.reps):
                nat_out, secs, wall = run_native(native)
                res.native_s.append(secs)
                res.native_wall_s.append(wall)
            for _ in range(args.reps):
                stdout, status, insns, exec_s, load_s = run_aemu(elf)
                res.aemu_exec_s.append(exec_s)
                res.aemu_load_s.append(load_s)
                res.insns = insns
                res.stdout = stdout.decode(errors="replace")
                if status != 0:
                    res.notes.append(f"aemu exit status {status}")
            res.output_ok = res.stdout == nat_out
            if not res.output_ok:
                res.notes.append(f"aemu printed {res.stdout!r}, native {nat_out!r}")
                bad = True
            if not args.no_sim:
                for _ in range(args.sim_reps):
                    sim_out, secs = run_sim(elf, prefix)
                    res.sim_s.append(secs)
                res.sim_output_ok = sim_out == nat_out
                if not res.sim_output_ok:
                    res.notes.append(f"simulator printed {sim_out!r}")
            if args.check_count:
                n = sim_count(elf, prefix)
                res.count_ok = n == res.insns
                if not res.count_ok:
                    res.notes.append(f"cr16-elf-run-trace counted {n}, aemu {res.insns}")
                    bad = True
            results.append(res)
            if not args.json:
                print(f"# {name}: {res.stdout.strip()}", file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()

    if args.json:
        doc = {
            "host": {"machine": platform.machine(), "processor": platform.processor(),
                     "python": platform.python_version(), "cpus": os.cpu_count()},
            "settings": {"reps": args.reps, "sim_reps": args.sim_reps, "slice": SLICE,
                         "scale": args.scale, "no_sim": args.no_sim},
            "results": [dict(asdict(r), figures=r.figures()) for r in results],
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(results, args)
        for r in results:
            for note in r.notes:
                print(f"note: {r.workload}: {note}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
