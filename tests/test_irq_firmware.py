"""Interrupt-driven guests on the default board (tests/firmware/irq/): exact
behaviour, determinism across slice sizes and pacing, and the UART through
real sockets."""
from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import pytest

from aemu.hw.board import default_board
from aemu.hw.machine import Machine

IRQ = Path(__file__).resolve().parent / "firmware" / "irq"


class Recorder:
    """A UART back-end that records every byte with the cycle it was sent at."""

    input_possible = False

    def __init__(self) -> None:
        self.vm: Machine | None = None
        self.log: list[tuple[int, int]] = []

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def set_receiver(self, cb) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def describe(self) -> str: return "recorder"

    def write(self, data: bytes) -> None:
        assert self.vm is not None
        self.log.extend((self.vm.cycles, b) for b in data)

    @property
    def text(self) -> str:
        return bytes(b for _, b in self.log).decode()


def run(elf: str, args: list[str] = (), *, slice_insns: int = 100_000,
        pace: str = "fast") -> tuple[object, Recorder, str]:
    rec = Recorder()

    async def main():
        vm = Machine(default_board(), str(IRQ / elf), args=list(args), name=elf,
                     slice_insns=slice_insns, pace=pace, backends={"uart0": rec})
        rec.vm = vm
        async with vm:
            result = await vm.run()
        st = vm.cpu.get_state()
        digest = hashlib.sha256(repr((st, vm.cycles, vm.cpu.insn_count)).encode()
                                + bytes(vm.cpu.ram)).hexdigest()
        return result, digest

    result, digest = asyncio.run(main())
    return result, rec, digest


def test_prio_orders_and_nests_interrupts() -> None:
    result, rec, _ = run("prio.elf")
    assert result.status == 0, rec.text
    assert "prio: 7 cases, 0 failed" in rec.text
    assert 'nested: PEND 0x00000001 IVCT 16 order "T0< T1 T0>" depth 2 ok' in rec.text


def test_watchdog_nmi_then_reset() -> None:
    result, rec, _ = run("nmi_wdt.elf")
    assert result.status == 0, rec.text
    assert "started again after a watchdog reset" in rec.text and "nmi_wdt: ok" in rec.text


@pytest.mark.parametrize("reload,prescale", [(999, 0), (99, 9), (49, 3), (1999, 0)])
def test_timer_ticks_are_exactly_one_period_apart(reload: int, prescale: int) -> None:
    result, rec, _ = run("timer_exact.elf", ["periodic", str(reload), str(prescale), "100"])
    assert result.status == 0, rec.text
    period_ns = (reload + 1) * (prescale + 1) * 10
    deltas = [int(line.split("(+")[1].split(" ns")[0]) for line in rec.text.splitlines()
              if line.startswith("tick ") and "(+" in line]
    ticks = int(rec.text.split("ticks ")[-1].split()[0])
    assert ticks == 100 * 100 // ((reload + 1) * (prescale + 1))
    assert deltas[1:] and all(d == period_ns for d in deltas[1:])


def test_idle_guest_counts_every_tick() -> None:
    result, rec, _ = run("idle.elf", ["1", "1000"])
    assert result.status == 0
    assert "idle: 1000 ticks, 1000 wakeups" in rec.text


@pytest.mark.parametrize("elf,args", [("timer_exact.elf", ["periodic", "99", "9", "100"]),
                                      ("prio.elf", []), ("uart_poll.elf", ["64"])])
def test_same_bytes_at_the_same_cycles_whatever_the_slice_size(elf: str, args: list[str]) -> None:
    """Determinism: every UART byte leaves at the same cycle, and the final
    state (registers, RAM, clock) is identical, for any slice size."""
    ref_result, ref, ref_digest = run(elf, args, slice_insns=100_000)
    for slice_insns in (1, 37, 4096, 1_000_000):
        result, rec, digest = run(elf, args, slice_insns=slice_insns)
        assert rec.log == ref.log, f"slice {slice_insns}"
        assert digest == ref_digest, f"slice {slice_insns}"
        assert result.insns == ref_result.insns


def test_realtime_pacing_runs_the_same_instruction_stream() -> None:
    fast = run("timer_exact.elf", ["periodic", "99", "9", "100"])
    slow = run("timer_exact.elf", ["periodic", "99", "9", "100"], pace="realtime")
    assert slow[1].log == fast[1].log and slow[2] == fast[2]


def _echo_over(spec_for, connect, text: bytes = b"hello, world q") -> str:
    async def main() -> str:
        vm = Machine(default_board(), str(IRQ / "uart_echo.elf"), name="uart_echo",
                     backends={"uart0": spec_for()}, pace="realtime")
        async with vm:
            reader, writer = await asyncio.wait_for(connect(vm), 5)
            banner = await asyncio.wait_for(reader.readuntil(b"'q' ends\n"), 5)
            assert b"ready" in banner
            writer.write(text)
            await writer.drain()
            result = await asyncio.wait_for(vm.run(), 10)
            rest = await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
            assert result.status == 0
            return rest.decode()

    return asyncio.run(main())


def _unix_connect(path: Path):
    """A connect(vm) for _echo_over: wait for the UART's socket, then connect."""
    async def connect(vm):
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.01)
        return await asyncio.open_unix_connection(str(path))
    return connect


def test_uart_over_a_unix_socket_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "uart.sock"

    out = _echo_over(lambda: f"unix:{path}", _unix_connect(path))
    assert out.startswith("HELLO, WORLD Q")
    assert "14 bytes echoed" in out


def test_uart_over_tcp_both_ways() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def connect(vm):
        for _ in range(100):
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.01)
        raise AssertionError("the UART's TCP server never listened")

    out = _echo_over(lambda: f"tcp:127.0.0.1:{port}", connect)
    assert out.startswith("HELLO, WORLD Q")


def test_uart_input_longer_than_the_fifo_is_all_delivered(tmp_path: Path) -> None:
    """More input than the 16-byte FIFO holds, arriving at once: the rest waits
    on the host side and must reach the guest as it drains the FIFO, even when
    the guest sleeps in between with no timer running."""
    path = tmp_path / "uart.sock"

    text = b"abcdefghij" * 10 + b"q"
    out = _echo_over(lambda: f"unix:{path}", _unix_connect(path), text)
    assert out.startswith(text.upper().decode())
    assert f"{len(text)} bytes echoed" in out
