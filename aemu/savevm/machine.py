"""A whole VM as savevm sections: the CPU, every device, the clock and its
pending timers, RAM and the run state, in QEMU's stream format.

    data = save_vm(vm)          # bytes: a QEVM stream of a VM between slices
    load_vm(vm, data)           # the VM is exactly as it was (or unchanged + StreamError)

Section order is priority order (the interrupt controller first, so that
devices raising their lines again in post_load find it restored), then board
order; the clock goes last because it re-orders the timers that the devices'
post_load armed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from aemu.cpu.vmstate import CPU_VMSD, CpuState
from aemu.loop import RunState
from aemu.savevm.codec import StreamError, apply
from aemu.savevm.stream import PAGE_SIZE, GlobalState, Parsed, Section, parse, write_stream
from aemu.savevm.vmstate import Priority, VMStateDescription, u8, u32, u64

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine


class ClockState:
    """The virtual clock's idle cycles and the order of the pending device
    timers (ties at one cycle fire in the order they were armed)."""

    def __init__(self, vm: "Machine") -> None:
        self.vm = vm
        self.idle_cycles = 0
        self.n_timers = 0
        self.timer_order: list[int] = []

    def _owners(self) -> list[Any]:
        return list(self.vm.devices.values())

    def pull(self) -> None:
        vm = self.vm
        self.idle_cycles = vm.clock.idle_cycles
        owners = {id(dev): i for i, dev in enumerate(self._owners())}
        live = sorted(t for t in vm.timers._heap if not t.cancelled)
        order = []
        for t in live:
            owner = t.owner
            if id(owner) not in owners:
                raise ValueError(f"a pending timer that belongs to no device: {t.callback!r}")
            order.append(owners[id(owner)])
        self.timer_order = order
        self.n_timers = len(order)

    def push(self) -> None:
        vm = self.vm
        vm.clock.idle_cycles = self.idle_cycles
        devices = self._owners()
        rank = {}
        for i, index in enumerate(self.timer_order):
            if index < len(devices):
                rank.setdefault(id(devices[index]), i)
        live = [t for t in vm.timers._heap if not t.cancelled]
        for t in live:
            t._seq = rank.get(id(t.owner), len(rank) + t._seq)
        vm.timers._heap[:] = sorted(live)


CLOCK_VMSD = VMStateDescription(
    "aemu-clock", version=1, minimum_version=1, priority=Priority.LOW,
    fields=[u64("idle_cycles"), u32("n_timers"), u8("timer_order", count_field="n_timers")],
    pre_save=lambda c: c.pull(),
    post_load=lambda c, version: c.push())


def sections(vm: "Machine") -> list[Section]:
    """The VM's sections in save (and load) order."""
    out = [Section("cpu", 0, CPU_VMSD, CpuState(vm.cpu))]
    out += [Section(name, 0, dev.vmsd, dev) for name, dev in vm.devices.items()]
    out.append(Section("clock", 0, CLOCK_VMSD, ClockState(vm)))
    # stable sort: priority, then registration (board) order
    return sorted(out, key=lambda s: -int(s.vmsd.priority))


def runstate_of(vm: "Machine") -> RunState:
    """The run state a stream records: during a snapshot hold (save-vm), the
    state from before it, as QEMU stores the global state before vm_stop."""
    return vm.held_state if vm.held_state is not None else vm.state


def globalstate_of(vm: "Machine") -> GlobalState:
    state = runstate_of(vm)
    return GlobalState(state.value, suspended=state is RunState.SUSPENDED)


def save_vm(vm: "Machine") -> bytearray:
    """The VM's whole state as a QEVM stream, RAM inline.  Call between
    slices (from the event loop); the VM is not changed."""
    return write_stream(vm.board.name, vm.cpu.ram, sections(vm), globalstate_of(vm),
                        vm.cpu.nonzero_pages())


def load_vm(vm: "Machine", data: "bytes | bytearray | memoryview") -> RunState:
    """Replace the VM's whole state with the stream's.  Everything is checked
    first: a bad stream raises StreamError and leaves the VM as it was.
    Afterwards the VM is in the run state QEMU's loadvm gives it (a running VM
    keeps running, a paused one stays paused, a snapshot of a suspended or
    ended guest brings that state back); returns the state it was saved in."""
    parsed = parse(data, sections(vm), machine_type=vm.board.name, ram_size=vm.cpu.ram_size)
    if parsed.bitmap is not None:
        raise StreamError("a mapped-ram stream needs its file: use aemu.savevm.snapfile",
                          None, "ram")

    def load_ram() -> None:
        cpu = vm.cpu
        cpu.clear_ram()
        for offset, page in parsed.pages:
            if page:
                cpu.write(offset, page)
            else:                       # a ZERO record
                cpu.write(offset, bytes(min(PAGE_SIZE, cpu.ram_size - offset)))
    return apply_parsed(vm, parsed, load_ram)


def apply_parsed(vm: "Machine", parsed: Parsed, load_ram: Callable[[], None]) -> RunState:
    """Put a checked stream into the VM: RAM (``load_ram``), then every section
    in stream order, then the clock and the run state."""
    saved = parsed.globalstate.runstate if parsed.globalstate else "paused"
    try:
        state = RunState(saved)
    except ValueError:
        raise StreamError(f"unknown run state {saved!r}", None, "globalstate") from None
    # everything checked: from here on, no errors but bugs
    vm.timers.clear()
    vm.cpu.set_irq(0)
    load_ram()
    apply_sections(vm, parsed.sections)
    vm.state_replaced(state)
    return state


def apply_sections(vm: "Machine", pairs: "list[tuple[Section, Any]]") -> None:
    """Apply (section, values) pairs in order, the clock set first: the
    devices' post_load re-arm timers and compare deadlines with ctx.now()
    (the UART: is the transmitter still busy?), which must already be the
    saved cycle, not the one the VM had before the load."""
    by_name = {sec.idstr: values for sec, values in pairs}
    vm.cpu.insn_count = by_name["cpu"]["insns"]
    vm.clock.idle_cycles = by_name["clock"]["idle_cycles"]
    vm.cpu.cycle_offset = vm.clock.idle_cycles
    for sec, values in pairs:
        apply(sec.vmsd, sec.obj, values)
    vm.cpu.cycle_offset = vm.clock.idle_cycles


__all__ = ["apply_parsed", "apply_sections", "load_vm", "save_vm", "sections", "StreamError"]
