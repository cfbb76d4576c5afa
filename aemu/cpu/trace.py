"""``aemu run --trace``: one line per executed instruction.

The tracer runs the CPU one instruction at a time (``cpu.run(1)``) and writes,
for each instruction::

    <count>    <pc>    <parcels>       <instruction>                  <changed registers>
             1 000018  05f1 381c       movd    $0x1381c,(sp)          sp=0x0001381c
             2 00001c  0501 391c       movd    $0x1391c,(r1,r0)       r0=0x391c r1=0x0001

* ``count`` is the instruction's number (1 = the first executed),
* ``pc`` its address (hex, 6 digits), ``parcels`` its raw 16-bit parcels,
* the disassembly comes from :func:`aemu.cpu.disasm.decode`,
* the registers whose value changed, in the order r0..r13, ra, sp, then the
  special registers in ``SPECIAL_REGS`` order (psr, cfg, isp, usp, ssp, ...);
  16-bit registers print as 4 hex digits, 32-bit ones as 8.  The pc is not
  listed (the next line shows it), nor the stack bank (usp/ssp) that only
  mirrors a listed sp.

A line can end with a note after ``;``: ``; syscall``, ``; breakpoint``,
``; fault vector N``, ``; wait``.  When the runner services a host call it
calls :meth:`Tracer.host_call`, which prints one more line with the
registers the service changed, e.g. ``           host write -> r0=0x000d r4=0x0000``.
"""
from __future__ import annotations

from typing import Callable, TextIO

from .core import REG_NAMES, SPECIAL_REGS, Cpu, Exit

__all__ = ["Tracer", "format_changes"]

_WIDE_REGS = {"r12", "r13", "ra", "sp"}
_NARROW_SPECIALS = {"psr", "cfg", "dbs", "dsr"}
_TRACED_SPECIALS = tuple(s for s in SPECIAL_REGS if s != "pc")


def format_changes(before: dict, after: dict) -> str:
    """``name=value`` for every register (except pc) that differs."""
    out = []
    rb, ra = before["r"], after["r"]
    for i, name in enumerate(REG_NAMES):
        if rb[i] != ra[i]:
            width = 8 if name in _WIDE_REGS else 4
            out.append(f"{name}=0x{ra[i]:0{width}x}")
    sp_changed = rb[15] != ra[15]
    for name in _TRACED_SPECIALS:
        if name not in before or name not in after:
            continue
        if name in ("usp", "ssp") and sp_changed and after[name] == ra[15]:
            continue  # the active stack bank mirrors sp, already listed
        if before[name] != after[name]:
            width = 4 if name in _NARROW_SPECIALS else 8
            out.append(f"{name}=0x{after[name]:0{width}x}")
    return " ".join(out)


def _default_decoder() -> Callable | None:
    try:
        from .disasm import decode  # written separately; the tracer works without it
    except ImportError:
        return None
    return decode


class Tracer:
    """Runs ``cpu`` one instruction at a time and prints each one to ``out``."""

    def __init__(self, cpu: Cpu, out: TextIO, decode: Callable | None = None) -> None:
        self.cpu = cpu
        self.out = out
        self.decode = decode if decode is not None else _default_decoder()
        self._last_state: dict | None = None

    def _read16(self, addr: int) -> int:
        if not 0 <= addr <= self.cpu.ram_size - 2:
            raise IndexError(f"{addr:#x} is outside RAM")
        ram = self.cpu.ram
        return ram[addr] | ram[addr + 1] << 8

    def disassemble(self, pc: int) -> tuple[str, str]:
        """(parcels in hex, instruction text) for the instruction at ``pc``."""
        if not 0 <= pc <= self.cpu.ram_size - 2:
            return "", "<pc outside RAM>"
        if self.decode is None:
            return f"{self._read16(pc):04x}", "?"
        try:
            insn = self.decode(self._read16, pc)
        except Exception as exc:  # a disassembler bug must not stop the run
            return f"{self._read16(pc):04x}", f"<undecodable: {exc}>"
        parcels = getattr(insn, "parcels", None)
        if parcels is None:
            n = max(1, int(getattr(insn, "length", 2)) // 2)
            parcels = [self._read16(pc + 2 * i) for i in range(n)]
        return " ".join(f"{p:04x}" for p in parcels), str(insn).strip()

    def step(self) -> tuple[Exit, int]:
        """Execute one instruction and print its line."""
        cpu = self.cpu
        before = self._last_state or cpu.get_state()
        pc = before["pc"]
        count = cpu.insn_count + 1
        parcels, text = self.disassemble(pc)          # before it runs (it may rewrite itself)
        why, n = cpu.run(1)
        after = cpu.get_state()
        self._last_state = after
        changes = format_changes(before, after)
        note = {
            Exit.SYSCALL: "syscall", Exit.BREAKPOINT: "breakpoint", Exit.HALT: "wait",
        }.get(why)
        if why == Exit.FAULT:
            note = f"fault vector {cpu.fault[0]}"
        line = f"{count:>10} {pc:06x}  {parcels:<14}  {text:<30}"
        if changes:
            line += " " + changes
        if note:
            line += f" ; {note}"
        self.out.write(line.rstrip() + "\n")
        return why, n

    def run(self, budget: int) -> tuple[Exit, int]:
        """Like :meth:`Cpu.run`, tracing every instruction."""
        done = 0
        self._last_state = None
        try:
            while done < budget:
                why, n = self.step()
                done += n
                if why != Exit.BUDGET or n == 0:
                    return why, done
            return Exit.BUDGET, done
        finally:
            self._last_state = None

    def host_call(self, name: str, before: dict) -> None:
        """Print the registers a host service changed (``before`` = state before it)."""
        changes = format_changes(before, self.cpu.get_state())
        self.out.write(f"{'':>10} host {name}" + (f" -> {changes}" if changes else "") + "\n")

    def flush(self) -> None:
        self.out.flush()
