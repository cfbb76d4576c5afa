#!/usr/bin/env python3
"""Scheduler benchmark: what the asyncio slice loop costs.

One invocation prints three figures (medians of --reps runs):

1. **1 kHz timer overhead**: `tests/firmware/irq/workload_1khz.elf` (CRC-32 rounds)
   run by the Machine with TIMER0 interrupting at 1 kHz of virtual time, against
   the same program in its no-interrupt mode run as one unbroken slice (the
   Machine with a slice longer than the run: C runs until a host call).  Reported per instruction, since the interrupted
   run also executes the handlers; goal: at most 5 % overhead.
2. **Idle host CPU in real-time pacing**: `idle.elf` sleeps in `wait` between
   timer interrupts (10 Hz, like the demo's heartbeat, and 1 kHz) for
   --idle-seconds of virtual (= wall) time; the host CPU time beyond a 1-second
   run (which carries the start-up) over the extra wall time.  Goal: at most 1 %.
3. **Busy-polled UART**: `uart_poll.elf` prints 4 KiB through UART0 at 115200
   baud, spinning on STATUS.TXE between bytes: MIPS of the whole run (the
   polled register is answered by the core, see docs/cpu.md "MMIO").

Usage: python bench/scheduler.py [--reps N] [--loop uvloop|asyncio] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IRQ = ROOT / "tests" / "firmware" / "irq"


def _machine(elf: Path, args: list[str], loop: str, pace: str = "fast",
             slice_insns: int | None = None) -> tuple[float, float, int, bytes]:
    """(wall s, process CPU s, instructions, output) of a Machine run."""
    from aemu.hw.board import default_board
    from aemu.hw.machine import run_sync

    out = io.BytesIO()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = run_sync(default_board(), str(elf), loop=loop, args=args, name=elf.name,
                      pace=pace, stdin=io.BytesIO(), stdout=out, stderr=out,
                      backends={"uart0": _Capture(out)},
                      **({"slice_insns": slice_insns} if slice_insns else {}))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if result.reason != "exit" or result.status != 0:
        raise SystemExit(f"{elf.name}: {result.describe()} {result.message or ''}")
    return wall, cpu, result.insns, out.getvalue()


class _Capture:
    """A UART back-end that collects the guest's output in memory."""

    input_possible = False

    def __init__(self, sink: io.BytesIO) -> None:
        self.sink = sink

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def set_receiver(self, callback) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.sink.write(data)

    def describe(self) -> str:
        return "memory"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="runs per figure (median)")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--rounds", type=int, default=2000, help="CRC rounds of workload_1khz")
    ap.add_argument("--idle-seconds", type=float, default=4.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figures: dict[str, object] = {}

    # 1. 1 kHz timer against one unbroken run
    wl = IRQ / "workload_1khz.elf"
    # the reference: no interrupts, and one slice as long as the whole run
    ref = [_machine(wl, ["noirq", str(args.rounds)], args.loop, slice_insns=1 << 40)
           for _ in range(args.reps)]
    irq = [_machine(wl, ["irq", str(args.rounds)], args.loop) for _ in range(args.reps)]
    ref_t = statistics.median(r[0] for r in ref)
    ref_n = ref[0][2]
    irq_t = statistics.median(r[0] for r in irq)
    irq_n = irq[0][2]
    per_insn = (irq_t / irq_n) / (ref_t / ref_n) - 1
    figures["timer_1khz"] = {
        "reference_s": ref_t, "reference_insns": ref_n, "reference_mips": ref_n / ref_t / 1e6,
        "machine_s": irq_t, "machine_insns": irq_n, "machine_mips": irq_n / irq_t / 1e6,
        "overhead_per_insn": per_insn, "overhead_wall": irq_t / ref_t - 1}

    # 2. idle guest in real-time pacing: the CPU time the run costs beyond a
    #    1-second run of the same program (which holds the start-up costs)
    idle = IRQ / "idle.elf"
    secs = max(2, round(args.idle_seconds))
    figures["idle_realtime"] = {}
    for hz in (10, 1000):
        short = [_machine(idle, ["1", str(hz)], args.loop, pace="realtime")
                 for _ in range(max(1, args.reps // 2))]
        long = [_machine(idle, [str(secs), str(hz)], args.loop, pace="realtime")
                for _ in range(max(1, args.reps // 2))]
        wall = statistics.median(r[0] for r in long) - statistics.median(r[0] for r in short)
        cpu = statistics.median(r[1] for r in long) - statistics.median(r[1] for r in short)
        figures["idle_realtime"][hz] = {"wall_s": wall, "cpu_s": cpu, "cpu_share": cpu / wall,
                                        "per_wakeup_us": cpu / (hz * (secs - 1)) * 1e6}

    # 3. busy-polled UART
    poll = IRQ / "uart_poll.elf"
    runs3 = [_machine(poll, [], args.loop) for _ in range(args.reps)]
    t = statistics.median(r[0] for r in runs3)
    n = runs3[0][2]
    figures["uart_poll"] = {"insns": n, "wall_s": t, "mips": n / t / 1e6}

    if args.json:
        json.dump(figures, sys.stdout, indent=2)
        print()
        return 0
    f1, f2, f3 = figures["timer_1khz"], figures["idle_realtime"], figures["uart_poll"]
    print(f"event loop: {args.loop}; medians of {args.reps} runs")
    print(f"1 kHz timer: unbroken Cpu.run {f1['reference_mips']:.0f} MIPS "
          f"({f1['reference_insns']/1e6:.1f} M insns in {f1['reference_s']*1e3:.0f} ms); "
          f"Machine + 1 kHz IRQ {f1['machine_mips']:.0f} MIPS "
          f"({f1['machine_insns']/1e6:.1f} M in {f1['machine_s']*1e3:.0f} ms): "
          f"overhead {f1['overhead_per_insn']*100:+.1f} % per instruction "
          f"({f1['overhead_wall']*100:+.1f} % wall)   [goal <= 5 %]")
    for hz, f in f2.items():
        print(f"idle guest, realtime pacing, timer at {hz} Hz: host CPU "
              f"{f['cpu_share']*100:.2f} % of wall time ({f['per_wakeup_us']:.0f} us per "
              f"wake-up)   [goal <= 1 %]")
    print(f"UART busy-poll: {f3['insns']/1e6:.1f} M insns in {f3['wall_s']*1e3:.0f} ms = "
          f"{f3['mips']:.0f} MIPS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
