"""The live-migration test guest (tests/firmware/migrate/pattern.c) on its
16 MiB board: its output, QEMU's check_guests_ram rule on its RAM at any
stopping point, and its self-check catching a corrupted page."""
from __future__ import annotations

import re

import pytest
from elftools.elf.elffile import ELFFile
from migration_guest import (PAGE_SIZE, PATTERN_ELF, PATTERN_IDLE_ELF, PATTERN_RAM,
                             UartCapture, check_pattern_ram, pattern_board, pattern_bytes,
                             pattern_layout)

from aemu.hw.machine import Machine, RunState

BUF, NPAGES = pattern_layout(PATTERN_ELF)


def _vm(elf=PATTERN_ELF) -> tuple[Machine, UartCapture]:
    uart = UartCapture()
    vm = Machine(pattern_board(), str(elf), name=elf.name, pace="fast",
                 backends={"uart0": uart}, start_paused=True)
    return vm, uart


def test_layout_fits_a_16_mib_board() -> None:
    assert (BUF, NPAGES) == (0x300000, 3328)
    assert pattern_layout(PATTERN_IDLE_ELF) == (BUF, NPAGES)
    assert pattern_board().ram_size == PATTERN_RAM == 16 << 20
    assert BUF % PAGE_SIZE == 0 and BUF + NPAGES * PAGE_SIZE <= PATTERN_RAM
    with open(PATTERN_ELF, "rb") as f:
        syms = ELFFile(f).get_section_by_name(".symtab")
        used_end = syms.get_symbol_by_name("__RAM_USED_END")[0]["st_value"]
        stack_top = syms.get_symbol_by_name("__STACK_START")[0]["st_value"]
    # the BSP's heap and stacks are placed at link time, below the buffer
    assert stack_top < used_end <= BUF


def test_check_pattern_ram_rule() -> None:
    def ram(values: list[int]) -> bytes:
        out = bytearray(len(values) * PAGE_SIZE)
        out[::PAGE_SIZE] = bytes(values)
        return bytes(out)

    assert check_pattern_ram(ram([7] * 8), 0, 8) == 7
    assert check_pattern_ram(ram([8, 8, 8, 7, 7]), 0, 5) == 8          # one edge
    assert check_pattern_ram(ram([0, 0, 255, 255]), 0, 4) == 0         # edge across the wrap
    with pytest.raises(AssertionError, match="page 2"):
        check_pattern_ram(ram([8, 8, 9, 9]), 0, 4)                     # a rise
    with pytest.raises(AssertionError, match="page 3"):
        check_pattern_ram(ram([8, 8, 7, 6, 6]), 0, 5)                  # two edges
    with pytest.raises(AssertionError, match="page 2"):
        check_pattern_ram(ram([8, 8, 6, 6]), 0, 4)                     # a drop by two
    with pytest.raises(AssertionError, match=r"12 bad pages.*\(and 2 more\)"):
        check_pattern_ram(ram([1, 2] * 7), 0, 14)


def test_pattern_guest_sweeps_and_ram_is_consistent_anywhere(run) -> None:
    """Stopped at many points (a prime step, so mid-sweep, mid-check and
    in between), the RAM passes check_guests_ram; some stops see the edge."""
    async def main() -> tuple[str, int, int]:
        vm, uart = _vm()
        edges = values = 0
        async with vm:
            for k in range(1, 301):
                assert await vm.run_until(cycles=7919 * k) is RunState.PAUSED
                if not uart.data:
                    continue
                first = check_pattern_ram(vm.cpu.ram, BUF, NPAGES)
                vals = pattern_bytes(vm.cpu.ram, BUF, NPAGES)
                edges += vals[0] != vals[-1]
                values = first
        return uart.text, edges, values

    text, edges, last = run(main())
    assert re.fullmatch(r"AB+", text), text[:40]
    sweeps = text.count("B")
    assert sweeps >= 100              # ~22,500 instructions a sweep
    assert last in (sweeps % 256, (sweeps + 1) % 256)
    assert edges > 20                 # about half the time is spent incrementing


def test_pattern_guest_detects_a_corrupted_page(run) -> None:
    page = 1234

    async def main() -> tuple[str, RunState, int | None]:
        vm, uart = _vm()
        async with vm:
            await vm.run_until(cycles=500_000)
            assert "E" not in uart.text and uart.text.count("B") >= 10
            addr = BUF + page * PAGE_SIZE
            vm.cpu.write(addr, bytes([(vm.cpu.ram[addr] + 0x40) & 0xFF]))
            state = await vm.run_until(cycles=600_000)
            status = vm.result.status if vm.result else None
        return uart.text, state, status

    text, state, status = run(main())
    assert text.endswith(f"E{page:x}\n"), text[-20:]
    assert re.fullmatch(r"AB+E[0-9a-f]+\n", text)
    assert state is RunState.SHUTDOWN and status == 1


def test_idle_guest_sweeps_once_then_ticks(run) -> None:
    async def main() -> tuple[str, int, int]:
        vm, uart = _vm(PATTERN_IDLE_ELF)
        async with vm:
            # 1 virtual second: 100 ticks of TIMER0, each dirtying page 0
            assert await vm.run_until(cycles=100_000_000) is RunState.PAUSED
            assert check_pattern_ram(vm.cpu.ram, BUF, NPAGES) == 1
            return uart.text, vm.cpu.ram[BUF + 1], vm.cpu.insn_count

    text, ticks, insns = run(main())
    assert text == "AB"
    assert ticks == 99                # the timer starts ~40k cycles in: 99 periods fit
    assert insns < 100_000            # asleep: ~40k for the sweep, ~30 a tick
