"""The scheduler: exact timer deadlines whatever the slice size, run states,
pacing, and determinism."""
from __future__ import annotations

import asyncio
import time

import pytest

from aemu.hw.board import default_board
from aemu.hw.machine import Machine
from aemu.loop import RunState



def spin_image() -> bytes:
    """0x100: nop; 0x102: br 0x100 (16-bit Bcond, cond 14, e = 0xFF: P0 = 0x1FEF)."""
    return bytes([0x00, 0x2C, 0xEF, 0x1F])


async def _machine(slice_insns: int, **kw) -> Machine:
    vm = Machine(default_board(), spin_image(), binary_addr=0x100, slice_insns=slice_insns,
                 start_paused=True, backends={"uart0": "none"}, **kw)
    await vm.start()
    return vm


TIMER_CASES = [(0, 0), (9, 0), (99, 3), (1234, 7), (50_000, 1)]


@pytest.mark.parametrize("slice_insns", [1, 2, 3, 10, 997, 100_000, 1_000_000])
@pytest.mark.parametrize("reload,prescale", TIMER_CASES)
def test_timer_expires_exactly_on_its_cycle(slice_insns: int, reload: int, prescale: int) -> None:
    async def main() -> None:
        vm = await _machine(slice_insns)
        try:
            t = vm.device("timer0")
            t.write(0x04, 4, reload)
            t.write(0x02, 2, prescale)
            t.write(0x00, 2, 0b011)          # EN | PERIODIC, no interrupt
            period = (reload + 1) * (prescale + 1)
            first = _first_expiry(t, period)
            for k in range(3):
                due = first + k * period
                await vm.run_until(cycles=due - 1)
                assert vm.cycles == due - 1
                assert t.read(0x0C, 2) & 1 == 0, f"expired early (k={k})"
                await vm.run_until(cycles=due)
                assert t.read(0x0C, 2) & 1 == 1, f"not expired at cycle {due} (k={k})"
                t.write(0x0C, 2, 1)          # W1C
        finally:
            await vm.close()

    asyncio.run(main())


def _first_expiry(timer, period: int) -> int:
    """The cycle of the first expiry, per the device's documented convention:
    probe it from the device's own state without running the guest."""
    start = getattr(timer, "start_cycle", 0)
    return start + period


def test_pause_resume_and_events() -> None:
    async def main() -> None:
        vm = await _machine(1000)
        events = vm.subscribe()
        try:
            vm.resume()
            await asyncio.sleep(0.01)
            vm.pause()
            assert vm.state is RunState.PAUSED
            got = [events.get_nowait()["event"] for _ in range(events.qsize())]
            assert got == ["RESUME", "STOP"]
            c = vm.cycles
            await asyncio.sleep(0.01)
            assert vm.cycles == c            # a paused machine does not run
            vm.resume()
            await asyncio.sleep(0.01)
            assert vm.cycles > c
        finally:
            await vm.close()

    asyncio.run(main())


def test_realtime_pacing_keeps_virtual_time_behind_wall_time() -> None:
    async def main() -> None:
        vm = await _machine(10_000, pace="realtime")
        try:
            t0 = time.monotonic()
            await vm.run_until(ns=50_000_000)            # 50 ms of virtual time
            wall = time.monotonic() - t0
            assert wall >= 0.045, f"virtual time ran ahead of wall time ({wall:.3f} s)"
        finally:
            await vm.close()

    asyncio.run(main())


def test_waiting_guest_without_interrupt_source_is_reported() -> None:
    async def main() -> None:
        # 0x100: wait
        vm = Machine(default_board(), bytes([0x06, 0x00]), binary_addr=0x100,
                     backends={"uart0": "none"})
        async with vm:
            result = await vm.run()
        assert result.reason == "halt" and result.status == 134
        assert vm.state is RunState.SUSPENDED

    asyncio.run(main())


def test_wrong_width_register_access_is_a_bus_error_naming_the_register() -> None:
    """A 32-bit read of UART0's 16-bit STATUS: the guest takes an illegal-address
    trap (fatal here: no dispatch table) and the operator is told why."""
    # 0x100: movd $0x1400300,(r1,r0); loadd 2(r1,r0),(r3,r2); excp svc
    code = bytes.fromhex("7000" "4001" "0003" "20a1" "c500")
    warnings: list[str] = []

    async def main():
        vm = Machine(default_board(), code, binary_addr=0x100, warn=warnings.append,
                     backends={"uart0": "none"})
        async with vm:
            return await vm.run()

    result = asyncio.run(main())
    assert (result.reason, result.status) == ("fault", 139)
    assert result.fault[0] == 12 and result.fault[2] == 0x1400302
    assert any("4-byte read of 16-bit register STATUS" in w for w in warnings), warnings


def test_a_timer_that_stops_the_machine_stops_it_on_its_cycle() -> None:
    """A host timer whose callback pauses the VM: no slice runs after it (the
    slice loop looks at the run state again once the due timers fired)."""
    async def main() -> None:
        vm = await _machine(100_000)
        try:
            due = vm.cycles + 12_345
            vm.ctx.schedule(due, vm.pause)
            vm.resume()
            await vm.wait_state(RunState.PAUSED)
            assert vm.cycles == due
        finally:
            await vm.close()

    asyncio.run(main())
