"""Build a generated program, run it on the reference simulator and on aemu, compare.

Used by tests/test_differential.py; also runnable by hand for long local runs::

    python -m difftest.harness --prefix /tmp/cr16 --seeds 1000 --start 0   # from tests/
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

try:
    from . import gen
except ImportError:  # pragma: no cover - run as a script
    import gen  # type: ignore[no-redef]

SIM_COUNT_RE = re.compile(rb"cr16-sim: (\d+) instructions executed")
MAX_INSNS = 50_000_000        # a generated program runs a few thousand


@dataclass
class RunResult:
    stdout: bytes
    status: int | None        # exit status, None if the run did not end with exit
    count: int | None         # instructions executed (including the final excp)
    error: str = ""           # why the run ended abnormally


@dataclass
class Tools:
    as_: str
    ld: str
    run_trace: str

    @classmethod
    def from_prefix(cls, prefix: str | os.PathLike) -> "Tools":
        b = Path(prefix) / "bin"
        return cls(str(b / "cr16-elf-as"), str(b / "cr16-elf-ld"), str(b / "cr16-elf-run-trace"))


def build(prog: gen.Program, tools: Tools, workdir: Path) -> Path:
    """Assemble and link `prog` in `workdir`; return the ELF path."""
    src = workdir / f"diff{prog.seed}.s"
    obj = workdir / f"diff{prog.seed}.o"
    elf = workdir / f"diff{prog.seed}.elf"
    lds = workdir / "difftest.ld"
    src.write_text(prog.asm)
    if not lds.exists():
        lds.write_text(gen.LINKER_SCRIPT)
    p = subprocess.run([tools.as_, "-o", str(obj), str(src)], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"seed {prog.seed}: assembler failed:\n{p.stderr}")
    p = subprocess.run([tools.ld, "--no-warn-rwx-segments", "-T", str(lds), "-o", str(elf), str(obj)],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"seed {prog.seed}: linker failed:\n{p.stderr}")
    return elf


def run_sim(elf: Path, tools: Tools, timeout: float = 60) -> RunResult:
    env = dict(os.environ, CR16_SIM_COUNT="1")
    env.pop("CR16_SIM_DEBUG", None)
    p = subprocess.run([tools.run_trace, str(elf)], capture_output=True, env=env, timeout=timeout)
    m = SIM_COUNT_RE.search(p.stderr)
    count = int(m.group(1)) if m else None
    other = SIM_COUNT_RE.sub(b"", p.stderr).strip()
    return RunResult(p.stdout, p.returncode, count, other.decode(errors="replace"))


def run_aemu(elf: Path, ram_size: int = 20 << 20, slice_budget: int = 10_000_000) -> RunResult:
    """Run an ELF on aemu with the simulator's write/exit services."""
    from aemu.cpu import Cpu, Exit
    from aemu.hw.loader import load_elf

    cpu = Cpu(ram_size)
    load_elf(cpu, elf)
    out = bytearray()
    total = 0
    while total < MAX_INSNS:
        why, n = cpu.run(slice_budget)
        total += n
        if why == Exit.BUDGET:
            continue
        if why != Exit.SYSCALL:
            vec, pc, addr = cpu.fault
            return RunResult(bytes(out), None, total,
                             f"{why.name} vector={vec} pc={pc:#x} addr={addr:#x}")
        r = cpu.get_state()["r"]
        code = r[0] & 0xFFFF
        if code == gen.SYS_EXIT:
            return RunResult(bytes(out), r[2] & 0xFF, total)
        if code == gen.SYS_WRITE:
            fd, buf, length = r[2], (r[4] << 16) | r[3], r[5]
            if fd not in (1, 2):
                return RunResult(bytes(out), None, total, f"write to fd {fd}")
            out += cpu.read(buf, length)
            # like the simulator: r0 = bytes written, r4 = errno (0)
            r = list(r)
            r[0], r[4] = length, 0
            cpu.set_state({"r": r})
            continue
        return RunResult(bytes(out), None, total, f"unknown service {code:#x}")
    return RunResult(bytes(out), None, total, "instruction limit reached")


# ----------------------------------------------------------------- reporting
def _decode_block(data: bytes) -> dict[str, int]:
    regs = {}
    for i in range(12):
        regs[f"r{i}"] = int.from_bytes(data[2 * i:2 * i + 2], "little")
    for j, name in enumerate(("r12", "r13", "ra", "sp")):
        o = gen.REGS_OFF + 24 + 4 * j
        regs[name] = int.from_bytes(data[o:o + 4], "little")
    regs["psr"] = int.from_bytes(data[gen.PSR_OFF:gen.PSR_OFF + 2], "little")
    return regs


def describe_block_diff(sim: bytes, emu: bytes) -> str:
    """Human-readable differences between two BLOCK_OUT_LEN-byte block dumps."""
    lines = []
    if len(sim) != len(emu):
        lines.append(f"  output length: sim {len(sim)} aemu {len(emu)}")
    a, b = _decode_block(sim), _decode_block(emu) if len(emu) >= gen.SCRATCH_OFF else {}
    for k in a:
        if k in b and a[k] != b[k]:
            w = 4 if k in ("r12", "r13", "ra", "sp") else 2
            lines.append(f"  {k:>4}: sim {a[k]:#0{2 + 2 * w}x}  aemu {b[k]:#0{2 + 2 * w}x}")
    for base, lo, hi in (("near", gen.SCRATCH_OFF, gen.NEAR_LEN),
                         ("far", gen.NEAR_LEN, gen.BLOCK_OUT_LEN)):
        for o in range(lo, min(hi, len(sim), len(emu))):
            if sim[o] != emu[o]:
                off = o - (0 if base == "near" else gen.NEAR_LEN)
                lines.append(f"  {base}+{off:#04x}: sim {sim[o]:#04x}  aemu {emu[o]:#04x}")
    return "\n".join(lines)


def compare(prog: gen.Program, sim: RunResult, emu: RunResult) -> str | None:
    """None if the runs agree, else a report naming the first differing block."""
    problems = []
    if sim.error or sim.status != prog.exit_status:
        problems.append(f"simulator did not run cleanly: status {sim.status}, stderr {sim.error!r}")
    if emu.error:
        problems.append(f"aemu stopped abnormally: {emu.error}")
    if sim.status != emu.status:
        problems.append(f"exit status: sim {sim.status} aemu {emu.status}")
    first_bad = None
    if sim.stdout != emu.stdout:
        n = gen.BLOCK_OUT_LEN
        for i in range(max(len(sim.stdout), len(emu.stdout)) // n + 1):
            s, e = sim.stdout[i * n:(i + 1) * n], emu.stdout[i * n:(i + 1) * n]
            if s != e:
                first_bad = i
                problems.append(f"stdout differs, first in block {i}:\n{describe_block_diff(s, e)}")
                break
    if sim.count != emu.count:
        problems.append(f"instruction count: sim {sim.count} aemu {emu.count}")
    if not problems:
        return None
    report = [f"seed {prog.seed}: " + "\n".join(problems)]
    if first_bad is not None and first_bad < len(prog.blocks):
        report.append(f"--- assembly of block {first_bad} (seed {prog.seed}) ---")
        report.append(prog.block_asm(first_bad))
    return "\n".join(report)


def check_seed(seed: int, tools: Tools, workdir: Path, n_blocks: int = 50, n_ops: int = 40,
               keep: bool = False) -> str | None:
    prog = gen.generate_program(seed, n_blocks, n_ops)
    elf = build(prog, tools, workdir)
    sim = run_sim(elf, tools)
    emu = run_aemu(elf)
    report = compare(prog, sim, emu)
    if report is None and not keep:
        for suffix in (".s", ".o", ".elf"):
            (workdir / f"diff{seed}{suffix}").unlink(missing_ok=True)
    return report


def first_bad_block(prog: gen.Program, sim: RunResult, emu: RunResult) -> int | None:
    n = gen.BLOCK_OUT_LEN
    for i in range(len(prog.blocks)):
        if sim.stdout[i * n:(i + 1) * n] != emu.stdout[i * n:(i + 1) * n]:
            return i
    return None


def minimize(seed: int, tools: Tools, workdir: Path, n_blocks: int = 50, n_ops: int = 40,
             block: int | None = None) -> str:
    """Shrink the first failing block of `seed` (or block number `block`) by
    deleting lines while it still runs cleanly on the simulator and still
    disagrees with aemu.  Returns a report with the reduced block."""
    prog = gen.generate_program(seed, n_blocks, n_ops)
    if block is None:
        elf = build(prog, tools, workdir)
        sim, emu = run_sim(elf, tools), run_aemu(elf)
        block = first_bad_block(prog, sim, emu)
        if block is None:
            return f"seed {seed}: no differing block (count: sim {sim.count} aemu {emu.count})"
    orig = prog.blocks[block]

    def attempt(lines: list[str]) -> str | None:
        b = gen.Block(orig.index, lines, orig.near, orig.far)
        p = gen.assemble_program(seed, [b], prog.exit_status)
        try:
            elf = build(p, tools, workdir)
        except RuntimeError:
            return None
        try:        # a deletion can make a loop endless
            sim = run_sim(elf, tools, timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if sim.error or sim.status != p.exit_status:
            return None
        return compare(p, sim, run_aemu(elf))

    lines = list(orig.asm)
    report = attempt(lines)
    if report is None:
        return f"seed {seed} block {block}: does not fail on its own"
    changed = True
    while changed:
        changed = False
        i = 2
        while i < lines.index("# dump"):
            if lines[i].startswith("#"):
                i += 1
                continue
            cand = lines[:i] + lines[i + 1:]
            r = attempt(cand)
            if r is not None:
                lines, report, changed = cand, r, True
            else:
                i += 1
    return f"seed {seed} block {block}, reduced:\n{report}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default=os.environ.get("AEMU_CR16_PREFIX", "/tmp/cr16"))
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--blocks", type=int, default=50)
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--keep", action="store_true", help="keep the .s/.elf of passing seeds too")
    ap.add_argument("--sim-only", action="store_true", help="only check that the simulator runs")
    ap.add_argument("--minimize", action="store_true",
                    help="reduce the first failing block of each failing seed")
    args = ap.parse_args(argv)
    tools = Tools.from_prefix(args.prefix)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="aemu-diff-") as tmp:
        work = Path(tmp)
        for seed in range(args.start, args.start + args.seeds):
            if args.sim_only:
                prog = gen.generate_program(seed, args.blocks, args.ops)
                res = run_sim(build(prog, tools, work), tools)
                ok = (res.status == prog.exit_status and not res.error
                      and len(res.stdout) == args.blocks * gen.BLOCK_OUT_LEN)
                if not ok:
                    bad += 1
                    print(f"seed {seed}: sim status {res.status} {res.error} out {len(res.stdout)}")
                continue
            report = check_seed(seed, tools, work, args.blocks, args.ops, args.keep)
            if report:
                bad += 1
                if args.minimize:
                    report = minimize(seed, tools, work, args.blocks, args.ops)
                print(report, "\n", flush=True)
    print(f"{args.seeds - bad}/{args.seeds} seeds agree", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
