"""In-memory checkpoints: the fast reset for test and fuzz farms.

    cp = vm.checkpoint()        # or Checkpoint(vm): a RAM copy + every section's values
    ...                         # run, scribble, fault
    cp.restore()                # back, copying only the pages written since

The RAM half runs in C (one dirty-page consumer per checkpoint); the rest
goes through the same vmstate descriptions as a snapshot, as values instead
of bytes, so a checkpoint restores exactly what a snapshot would.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aemu.savevm.codec import Values
from aemu.savevm.machine import apply_sections, sections
from aemu.savevm.vmstate import Scalar, VMStateDescription

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine


def capture(vmsd: VMStateDescription, obj: Any) -> Values:
    """An object's state as values (what decode would give for its payload)."""
    if vmsd.pre_save is not None:
        vmsd.pre_save(obj)
    values = Values(vmsd.version)
    for f in vmsd.fields:
        if f.kind == "unused" or not f.present(obj, vmsd.version):
            continue
        value = getattr(obj, f.name)
        if f.kind == "struct":
            assert f.vmsd is not None
            value = (capture(f.vmsd, value) if f.count is None
                     else [capture(f.vmsd, item) for item in value])
        elif f.kind == "buffer":
            value = bytes(value)
        elif (isinstance(f.kind, Scalar) or f.kind == "cstr") and (
                f.count is not None or f.count_field is not None):
            value = tuple(value)
        values[f.name] = value
    for sub in vmsd.subsections:
        if sub.needed is None or sub.needed(obj):
            values.subsections[sub.name] = capture(sub, obj)
    if vmsd.post_save is not None:
        vmsd.post_save(obj)
    return values


class Checkpoint:
    def __init__(self, vm: "Machine") -> None:
        self.vm = vm
        self._log = vm.cpu.dirty_consumer()
        self._ram = bytes(vm.cpu.ram)
        self._log.clear()
        self._sections = [(sec, capture(sec.vmsd, sec.obj)) for sec in sections(vm)]
        self.state = vm.state

    def restore(self) -> int:
        """Put the VM back as it was at the checkpoint; returns the number of
        RAM pages copied back."""
        vm = self.vm
        if self._log.id < 0:
            raise ValueError("this checkpoint was closed")
        vm.timers.clear()
        vm.cpu.set_irq(0)
        pages = self._log.restore(self._ram)
        apply_sections(vm, self._sections)
        vm.state_replaced(self.state)
        return pages

    def close(self) -> None:
        """Release the RAM copy and the dirty-page consumer."""
        self._log.close()
        self._ram = b""

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
