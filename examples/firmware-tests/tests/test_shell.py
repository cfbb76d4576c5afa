"""The shell firmware, driven over its UART.  Each test gets the machine as
it was at the first prompt: it booted once for the whole session, and is
reset from an in-memory checkpoint before every test."""
import re

import pytest

# boot until the first prompt; that is where every test starts
pytestmark = pytest.mark.aemu(boot=b"ready\n> ")


async def test_banner(aemu_uart):
    assert aemu_uart.output == b"shell 1.0 ready\n> "


async def test_ping(aemu_uart):
    aemu_uart.write(b"ping\n")
    assert await aemu_uart.expect(b"> ") == b"pong\n> "


@pytest.mark.parametrize("a, b", [(1, 2), (-5, 5), (40000, 50000), (0x7FFFFFFF, -1)])
async def test_add(aemu_uart, a, b):
    aemu_uart.write(f"add {a} {b}\n")
    m = await aemu_uart.expect(re.compile(rb"(-?\d+)\n> "))
    assert int(m.group(1)) == a + b


@pytest.mark.parametrize("round", [1, 2, 3])
async def test_every_test_starts_from_the_boot_checkpoint(aemu_machine, aemu_uart, round):
    counter = aemu_machine.image.symbol("_counter")      # C symbols get a leading _
    assert aemu_machine.cpu.read_u32(counter) == 0       # not what the last test left
    for n in (1, 2, 3):
        aemu_uart.write(b"count\n")
        await aemu_uart.expect(f"count {n}\n> ")
    assert aemu_machine.cpu.read_u32(counter) == 3


async def test_memory_written_by_the_test_is_seen_by_the_firmware(aemu_machine, aemu_uart):
    aemu_machine.cpu.write(aemu_machine.image.symbol("_counter"), (41).to_bytes(4, "little"))
    aemu_uart.write(b"count\n")
    await aemu_uart.expect(b"count 42\n")


async def test_sleep_takes_virtual_time(aemu_machine, aemu_uart):
    start = aemu_machine.clock.ns()
    aemu_uart.write(b"sleep 250\n")
    await aemu_uart.expect(b"slept 250 ms\n> ")
    # virtual time, the same however fast the host is ("fast" pacing skips
    # the wait): 250 ms, plus sending the 15-byte reply at 115200 baud
    assert 250_000_000 <= aemu_machine.clock.ns() - start < 252_000_000


async def test_timeout_is_virtual_time(aemu_uart):
    aemu_uart.write(b"sleep 500\n")
    with pytest.raises(AssertionError, match="within 0.1 s of virtual time"):
        await aemu_uart.expect(b"slept", timeout=0.1)
    await aemu_uart.expect(b"slept 500 ms\n", timeout=1)


async def test_exit_status(aemu_machine, aemu_uart):
    aemu_uart.write(b"exit 3\n")
    result = await aemu_machine.run()
    assert (result.reason, result.status) == ("exit", 3)


async def test_two_machines_are_independent(aemu_machine_factory):
    one = await aemu_machine_factory()
    two = await aemu_machine_factory()
    one.uart().write(b"led on\n")
    two.uart().write(b"count\n")
    await one.uart().expect(b"led on\n> ")
    await two.uart().expect(b"count 1\n> ")
    led = one.image.symbol("_led")
    assert one.cpu.read_u16(led) == 1 and two.cpu.read_u16(led) == 0


@pytest.mark.aemu(ram_size="4M")
async def test_smaller_board(aemu_machine, aemu_uart):
    assert aemu_machine.cpu.ram_size == 4 << 20
    aemu_uart.write(b"ping\n")
    await aemu_uart.expect(b"pong\n")
