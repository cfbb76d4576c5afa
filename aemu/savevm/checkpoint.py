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
from aemu.savevm.machine import sections
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


Step = tuple  # (obj, pre_load, post_load, version, plain, lists, setters, substeps)


def _plan(vmsd: VMStateDescription, obj: Any, values: Values) -> Step:
    """The captured values of one description as a flat plan for restore():
    what ``codec.apply`` would do, decided once instead of at every restore.
    Plain attributes go back with one ``__dict__.update``; lists are copied
    fresh (the VM must never share a list with the checkpoint); properties
    go through their setters."""
    plain: dict[str, Any] = {}
    lists: list[tuple[str, Any]] = []
    setters: list[tuple[str, Any]] = []
    for f in vmsd.fields:
        if f.name not in values or f.kind == "unused":
            continue
        if f.kind == "struct":
            raise TypeError("checkpoint plans do not handle nested structs yet")
        value = values[f.name]
        if isinstance(getattr(type(obj), f.name, None), property) or \
                not hasattr(obj, "__dict__"):
            setters.append((f.name, list(value) if isinstance(value, tuple) else value))
        elif isinstance(value, (list, tuple)):
            lists.append((f.name, value))
        else:
            plain[f.name] = value
    subs = [_plan(sub, obj, values.subsections[sub.name])
            for sub in vmsd.subsections if sub.name in values.subsections]
    return (obj, vmsd.pre_load, vmsd.post_load, values.version, plain, lists, setters, subs)


def _run(step: Step) -> None:
    obj, pre_load, post_load, version, plain, lists, setters, subs = step
    if pre_load is not None:
        pre_load(obj, version)
    if plain:
        obj.__dict__.update(plain)
    for name, value in lists:
        setattr(obj, name, list(value))
    for name, value in setters:
        setattr(obj, name, value)
    for sub in subs:
        _run(sub)
    if post_load is not None:
        post_load(obj, version)


class Checkpoint:
    def __init__(self, vm: "Machine") -> None:
        self.vm = vm
        self._log = vm.cpu.dirty_consumer()
        self._ram = bytes(vm.cpu.ram)
        self._log.clear()
        captured = [(sec, capture(sec.vmsd, sec.obj)) for sec in sections(vm)]
        by_name = {sec.idstr: values for sec, values in captured}
        self._idle = by_name["clock"]["idle_cycles"]
        # the CPU comes back in one call into the core (the same state its
        # description saves, see aemu/cpu/vmstate.py)
        self._core = vm.cpu.core_state()
        devices = {id(dev) for dev in vm.devices.values()}
        #: (plan, the device or None, whether it is the interrupt controller)
        self._steps = [(_plan(sec.vmsd, sec.obj, values),
                        sec.obj if id(sec.obj) in devices else None, sec.obj is vm.icu)
                       for sec, values in captured if sec.idstr != "cpu"]
        #: each device's _generation when it last matched the checkpoint
        self._clean = {id(dev): dev._generation for dev in vm.devices.values()}
        self.state = vm.held_state if vm.held_state is not None else vm.state

    def restore(self) -> int:
        """Put the VM back as it was at the checkpoint; returns the number of
        RAM pages copied back.

        Devices untouched since the checkpoint (or the last restore) -- no
        register access, timer callback, host input or reset, see
        Device._generation -- are left as they are, pending timer included;
        the others get their state back and re-arm their timers.  If the
        interrupt controller changed, every device is restored (its pre_load
        lowers all lines and each device raises its own again)."""
        vm = self.vm
        if self._log.id < 0:
            raise ValueError("this checkpoint was closed")
        cpu = vm.cpu
        cpu.set_irq(0)
        pages = self._log.restore(self._ram)
        # CPU and clock first: devices' post_load compare deadlines with ctx.now()
        cpu.set_core_state(self._core)
        vm.clock.idle_cycles = self._idle
        clean = self._clean
        icu = vm.icu
        everything = icu is None or clean.get(id(icu)) != icu._generation
        for plan, device, is_icu in self._steps:
            if device is not None and not everything and \
                    clean[id(device)] == device._generation:
                if is_icu:
                    device.post_load()      # deliver the vector again (the input was lowered)
                continue
            _run(plan)
            if device is not None:
                clean[id(device)] = device._generation
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
