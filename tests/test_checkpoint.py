"""In-memory checkpoints (aemu/savevm/checkpoint.py): a restore puts the whole
VM back, and skipping the devices that did not change since (their
_generation) gives the same result as restoring them."""
from __future__ import annotations

import asyncio
import io

from conftest import FIRMWARE

from aemu.hw.board import default_board
from aemu.hw.machine import Machine

IDLE = FIRMWARE / "irq" / "idle.elf"
PRIO = FIRMWARE / "irq" / "prio.elf"


def state(vm: Machine) -> tuple:
    devices = {name: {k: (list(v) if isinstance(v, (list, bytearray)) else v)
                      for k, v in vars(dev).items() if not k.startswith("_") and k != "ctx"}
               for name, dev in vm.devices.items()}
    timers = sorted((t.cycle, t.owner.name) for t in vm.timers._heap if not t.cancelled)
    return (bytes(vm.cpu.ram), vm.cpu.get_state(), vm.cpu.insn_count, vm.cycles,
            vm.cpu.halted, vm.cpu.nmi_pending, devices, timers)


async def machine(image, args) -> Machine:
    vm = Machine(default_board(), str(image), args=args, start_paused=True,
                 backends={"uart0": "none"}, stdout=io.BytesIO())
    await vm.start()
    return vm


def test_restore_is_exact_with_and_without_device_changes() -> None:
    async def main() -> None:
        vm = await machine(IDLE, ["1", "1000"])
        try:
            await vm.run_until(cycles=2_345_678)
            cp = vm.checkpoint()
            at_checkpoint = state(vm)
            await vm.run_until(cycles=5_000_000)       # timers fire, registers change
            reference = state(vm)
            assert cp.restore() > 0
            assert state(vm) == at_checkpoint
            await vm.run_until(cycles=5_000_000)
            assert state(vm) == reference
            # restores with nothing changed in between take the skipping path
            cp.restore()
            cp.restore()
            assert state(vm) == at_checkpoint
            await vm.run_until(cycles=5_000_000)
            assert state(vm) == reference
            # a host-side register write marks just that device
            cp.restore()
            vm.device("timer1").write(0x04, 4, 12345)
            cp.restore()
            assert state(vm) == at_checkpoint
            await vm.run_until(cycles=5_000_000)
            assert state(vm) == reference
            cp.close()
        finally:
            await vm.close()

    asyncio.run(main())


def test_restore_with_a_line_raised_and_masked() -> None:
    """prio.elf raises several lines with interrupts off: checkpoints taken
    there restore the ICU's view (PEND from the devices, the vector) exactly."""
    async def main() -> None:
        vm = await machine(PRIO, [])
        try:
            for n in (40_000, 60_000, 90_000, 150_000):
                await vm.run_until(cycles=n)
                cp = vm.checkpoint()
                at = state(vm) + (vm.icu.pend, vm.icu.vector, vm.cpu.irq)
                await vm.run_until(cycles=n + 50_000)
                after = state(vm)
                cp.restore()
                assert state(vm) + (vm.icu.pend, vm.icu.vector, vm.cpu.irq) == at
                cp.restore()                          # the skipping path
                assert state(vm) + (vm.icu.pend, vm.icu.vector, vm.cpu.irq) == at
                await vm.run_until(cycles=n + 50_000)
                assert state(vm) == after
                cp.close()
        finally:
            await vm.close()

    asyncio.run(main())
