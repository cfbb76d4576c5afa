"""The CPU's vmstate: every architectural register plus the core's own
state that is not derived (instruction count, idle-cycle offset, halted, a
latched NMI).  The maskable interrupt input is not here: the interrupt
controller drives it again when it loads.  Decoded code, dirty maps and
MMIO windows are rebuilt or belong to the host."""
from __future__ import annotations

from typing import Any

from aemu.cpu.core import SPECIAL_REGS, Cpu
from aemu.savevm.vmstate import VMStateDescription, boolean, u16, u32, u64

_WIDE = ("pc", "isp", "usp", "ssp", "intbase", "dcr", "car0", "car1")
_NARROW = ("psr", "cfg", "dbs", "dsr")
assert set(_WIDE + _NARROW) == set(SPECIAL_REGS)


class CpuState:
    """The object the CPU's description walks: a copy of the core's state,
    taken before saving and written back after loading."""

    def __init__(self, cpu: Cpu) -> None:
        self.cpu = cpu
        self.r = [0] * 16
        for name in SPECIAL_REGS:
            setattr(self, name, 0)
        self.insns = self.cycle_offset = 0
        self.halted = self.nmi = False

    def pull(self, *_: Any) -> None:
        cpu = self.cpu
        state = cpu.get_state()
        self.r = list(state["r"])  # type: ignore[arg-type]
        for name in SPECIAL_REGS:
            setattr(self, name, state[name])
        self.insns = cpu.insn_count
        self.cycle_offset = cpu.cycle_offset
        self.halted = cpu.halted
        self.nmi = cpu.nmi_pending

    def push(self, *_: Any) -> None:
        cpu = self.cpu
        cpu.load_registers(self.r, {name: getattr(self, name) for name in SPECIAL_REGS})
        cpu.insn_count = self.insns
        cpu.cycle_offset = self.cycle_offset
        cpu.halted = self.halted
        cpu.nmi_pending = self.nmi


CPU_VMSD = VMStateDescription(
    "cr16c-cpu", version=1, minimum_version=1,
    fields=[u32("r", count=16), *(u32(n) for n in _WIDE), *(u16(n) for n in _NARROW),
            u64("insns"), u64("cycle_offset"), boolean("halted"), boolean("nmi")],
    pre_save=lambda s: s.pull(),
    post_load=lambda s, version: s.push())
