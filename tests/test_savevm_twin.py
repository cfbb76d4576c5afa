"""savevm against twin runs: the oracle is the VM itself.

A guest runs to cycle N and is saved (``save_vm``); the original (A) runs on
to the end cycle; a fresh VM of the same board and program (B) loads the
stream and runs to the same cycle.  Everything must be identical: RAM, the
registers, instruction count, clock, every device's public state, the pending
timers (cycle and owner, in order), how the run ended, and B's UART output
must be exactly what A printed after N.  Then the stream is loaded back into
A itself (after it ran on, or ended) and A runs again: the same once more.

The N: 1, small numbers and primes, and points found by probing a third VM:
inside an interrupt handler (an exception frame on the interrupt stack and
pc in a handler attached through the BSP's dispatch table), and with timers
pending (for the UART, the TX-ready callback still armed after the driver
turned TXIE off).
"""
from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

import aemu.demo
from aemu.hw.board import default_board
from aemu.hw.devices.icu import ICU_VMSD
from aemu.hw.devices.uart import CTRL_TXIE
from aemu.hw.machine import Machine
from aemu.loop import RunState
from aemu.savevm.codec import StreamError
from aemu.savevm.machine import load_vm, save_vm
from aemu.savevm.machine import sections as vm_sections
from aemu.savevm.stream import parse
from aemu.savevm.vmstate import Priority

IRQ = Path(__file__).resolve().parent / "firmware" / "irq"
DEMO = Path(aemu.demo.__file__).resolve().parent / "demo.elf"
PSR_E, PSR_I = 0x200, 0x800
FOREVER = 10 ** 12                 # "run to the end": every guest here exits long before


# -- the guests ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Guest:
    name: str
    elf: Path
    args: tuple[str, ...] = ()
    end: int = FOREVER             #: both twins run to this cycle (or until the guest exits)
    fixed: tuple["int | str", ...] = ()   #: snapshot cycles given outright (or named)
    #: the probe: where to start, where to give up, how to step (see find_cycle)
    probe: tuple[int, int] = (0, 0)
    stride: int = 1
    jump: bool = True
    isr_vectors: tuple[int, ...] = ()   #: dispatch-table entries of the guest's handlers
    min_timers: int = 1                 #: the "timers pending" point has at least this many
    before: bytes = b""                 #: UART0 input queued before the run starts
    after: bytes = b""                  #: UART0 input queued at the snapshot cycle


GUESTS = {g.name: g for g in [
    Guest("idle", IRQ / "idle.elf", ("1", "1000"),
          fixed=(1, 2, 3, 13, 7919, 104729, 999983), probe=(60_000, 2_000_000),
          isr_vectors=(16,)),
    Guest("timer_exact", IRQ / "timer_exact.elf", ("periodic",),
          fixed=(1, 2, 3, 13, 7919, 30011, 65537), probe=(5_000, 90_000),
          isr_vectors=(16, 17), min_timers=2),
    Guest("prio", IRQ / "prio.elf",
          fixed=(1, 2, 3, 13, 7919, 20011, 40009), probe=(10_000, 46_000), stride=2,
          jump=False, isr_vectors=(16, 17, 19)),
    # the watchdog resets the board at about cycle 1046200 and the guest exits
    # 10000 cycles later: "before-reset" is the cycle before the reset
    Guest("nmi_wdt", IRQ / "nmi_wdt.elf",
          fixed=(1, 2, 13, 7919, 524287, 1000003, "before-reset"), probe=(30_000, 1_040_000),
          isr_vectors=(1, 16, 17), min_timers=2),
    Guest("workload_1khz", IRQ / "workload_1khz.elf", ("irq", "10"),
          fixed=(1, 2, 3, 13, 7919, 104729, 300007), probe=(150_000, 550_000),
          isr_vectors=(16,)),
    Guest("demo", DEMO, ("--forever",), end=25_000_000,
          fixed=(1, 2, 3, 13, 7919, 104729, 1299709), probe=(2_000_000, 20_000_000),
          isr_vectors=(16, 18, 19), min_timers=2),
    Guest("uart_echo", IRQ / "uart_echo.elf",
          fixed=(1, 2, 3, 13, 7919, 104729, 300007), probe=(20_000, 700_000),
          isr_vectors=(18, 19), before=b"hello, world! ", after=b"123 qxyz"),
]}
POINTS = ("isr-entry", "isr-deep", "timers")      #: the probed snapshot cycles


# -- machines, their state and their output ------------------------------------------------
#: the twins' board: the default one with 3 MiB + 2 KiB of RAM (the guests need
#: 2.4 MiB; a size that is not a whole number of pages is a valid board too)
TWIN_BOARD = default_board().with_changes(ram_size=(3 << 20) + 0x800)


async def boot(g: Guest, uart: "str | Path", board: Any = None, *,
               fresh: bool = True) -> Machine:
    """A paused VM of guest ``g``: UART0 to a file, semihost stdout to memory;
    ``fresh``: the guest's first input is queued (not for a VM that is going
    to load a snapshot: queued host input is the host's, not the VM's)."""
    spec = f"file:{uart}" if uart != "none" else "none"
    vm = Machine(board or TWIN_BOARD, str(g.elf), args=list(g.args), name=g.name,
                 start_paused=True, backends={"uart0": spec}, stdout=io.BytesIO())
    await vm.start()
    if g.before and fresh:
        vm.uart_input("uart0", g.before)
    return vm


async def uart_out(vm: Machine, path: Path) -> bytes:
    """What UART0 sent so far (the file back-end writes on a later loop turn)."""
    for _ in range(10):
        await asyncio.sleep(0)
    return path.read_bytes() if path.exists() else b""


def public(dev: Any) -> dict[str, Any]:
    out = {}
    for k, v in vars(dev).items():
        if k.startswith("_") or k == "ctx":
            continue
        out[k] = bytes(v) if isinstance(v, (bytes, bytearray)) else \
            tuple(v) if isinstance(v, list) else v
    return out


def pending_timers(vm: Machine) -> list[tuple[int, str]]:
    """(cycle, owner) of every pending timer, in firing order."""
    owner = {id(d): name for name, d in vm.devices.items()}
    live = sorted(t for t in vm.timers._heap if not t.cancelled)
    return [(t.cycle, owner.get(id(getattr(t.callback, "__self__", None)), repr(t.callback)))
            for t in live]


def ram_of(vm: Machine) -> dict[int, bytes]:
    """RAM as its non-zero pages (the rest is zero): equal iff RAM is equal."""
    cpu = vm.cpu
    return {p: bytes(cpu.ram[p << 12:(p + 1) << 12]) for p in cpu.nonzero_pages()}


def vm_state(vm: Machine) -> dict[str, Any]:
    cpu = vm.cpu
    return {
        "ram": ram_of(vm), "regs": cpu.get_state(), "insns": cpu.insn_count,
        "cycles": vm.clock.cycles(), "idle_cycles": vm.clock.idle_cycles,
        "cycle_offset": cpu.cycle_offset, "halted": cpu.halted, "nmi": cpu.nmi_pending,
        "irq": cpu.irq, "devices": {n: public(d) for n, d in vm.devices.items()},
        "timers": pending_timers(vm), "runstate": vm.state,
        "semihost_out": vm.semihost.stdout.getvalue(),
    }


def ending(vm: Machine) -> Any:
    r = vm.result
    return None if r is None else (r.reason, r.status, r.insns, r.exit_value, r.fault, r.pc)


def assert_same(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Key by key, RAM by first differing page (no 20 MiB diffs in the report)."""
    assert got.keys() == want.keys()
    for key in want:
        if key == "ram":
            if got[key] != want[key]:
                a, b = got[key], want[key]
                pages = sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))
                pytest.fail(f"{what}: RAM differs in pages {pages[:10]}")
        elif key == "semihost_out":
            continue                           # compared as output, split at N
        else:
            assert got[key] == want[key], f"{what}: {key} differs"


# -- probing for snapshot points -----------------------------------------------------------------
def isr_ranges(vm: Machine, vectors: tuple[int, ...]) -> list[range]:
    """Where the guest's handlers are: each attached dispatch-table entry
    (CFG.ED: 4-byte entries holding the address / 2) up to the next symbol
    or handler start."""
    cpu = vm.cpu
    base = cpu.get_state()["intbase"]
    if not base:
        return []
    assert vm.image is not None
    starts = sorted({cpu.read_u32(base + 4 * v) * 2 for v in vectors})
    bounds = sorted({value for value, _ in vm.image.symbols.values()} | set(starts))
    return [range(s, min((b for b in bounds if b > s), default=s + 0x200)) for s in starts]


def in_handler(g: Guest, deep: bool = False) -> Callable[[Machine], bool]:
    """An exception frame is on the interrupt stack (ISP below its top) and pc
    is in one of the guest's handlers; ``deep``: past the handler's first
    few instructions."""
    def pred(vm: Machine) -> bool:
        assert vm.image is not None
        st = vm.cpu.get_state()
        if st["isp"] >= vm.image.symbol("__ISTACK_START"):
            return False
        for r in isr_ranges(vm, g.isr_vectors):
            if st["pc"] in r:
                return not deep or st["pc"] >= r.start + 12
        return False
    return pred


def timers_pending(g: Guest) -> Callable[[Machine], bool]:
    def pred(vm: Machine) -> bool:
        if len(vm.timers) < g.min_timers:
            return False
        if g.name in ("uart_echo", "demo"):
            # the TX-ready callback armed with TXIE on, still armed with TXIE off
            uart = vm.devices["uart0"]
            return uart._handle is not None and not uart.ctrl & CTRL_TXIE
        return True
    return pred


#: where the probe looks after each timer deadline: a woken CPU enters the
#: handler at +1, a running one a few cycles later; handlers take tens of cycles
AFTER_DEADLINE = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)


async def find_cycle(g: Guest, pred: Callable[[Machine], bool], start: int) -> int:
    """The first cycle from ``start`` on where ``pred`` holds, stepping
    ``g.stride`` -- or, with ``g.jump``, looking only around the timer
    deadlines (the handlers of those guests run when a timer fired)."""
    vm = await boot(g, "none")
    try:
        await vm.run_until(cycles=start)
        while vm.state is RunState.PAUSED and vm.cycles < g.probe[1]:
            if pred(vm):
                return vm.cycles
            nxt = vm.timers.next_cycle()
            if not g.jump or nxt is None:
                await vm.run_until(cycles=vm.cycles + g.stride)
                continue
            for off in AFTER_DEADLINE:
                if nxt + off > vm.cycles:
                    await vm.run_until(cycles=nxt + off)
                    if vm.state is not RunState.PAUSED or pred(vm):
                        break
        if vm.state is RunState.PAUSED and pred(vm):
            return vm.cycles
        raise AssertionError(f"{g.name}: no such point in {start}..{g.probe[1]}")
    finally:
        await vm.close()


_found: dict[tuple[str, str], int] = {}


async def _watchdog_deadline(g: Guest) -> int:
    vm = await boot(g, "none")
    try:
        await vm.run_until(cycles=g.probe[1])
        wdt = vm.devices["wdt"]
        assert wdt.ctrl == 1 and not wdt.reset_requested     # EN, reset mode, not yet fired
        assert pending_timers(vm)[0] == (wdt.deadline, "wdt")
        return wdt.deadline
    finally:
        await vm.close()


def snapshot_cycle(g: Guest, which: "int | str") -> int:
    if isinstance(which, int):
        return which
    key = (g.name, which)
    if key not in _found:
        if which == "before-reset":        # the watchdog armed in reset mode: its deadline
            _found[key] = asyncio.run(_watchdog_deadline(g)) - 1
            return _found[key]
        if which == "isr-entry":
            pred, start = in_handler(g), g.probe[0]
        elif which == "isr-deep":
            pred, start = in_handler(g, deep=True), snapshot_cycle(g, "isr-entry") + 5_000
        else:
            pred, start = timers_pending(g), g.probe[0]
        _found[key] = asyncio.run(find_cycle(g, pred, start))
    return _found[key]


# -- the twin run --------------------------------------------------------------------------------
async def twin(g: Guest, n: int, tmp: Path) -> None:
    pa, pb = tmp / "a.uart", tmp / "b.uart"
    a, b = await boot(g, pa), await boot(g, pb, fresh=False)
    try:
        assert await a.run_until(cycles=n) is RunState.PAUSED and a.cycles == n
        out_n, semi_n = await uart_out(a, pa), a.semihost.stdout.getvalue()
        at_n = vm_state(a)
        blob = bytes(save_vm(a))
        assert_same(vm_state(a), at_n, "A after saving")          # saving changes nothing
        if g.after:
            a.uart_input("uart0", g.after)
        await a.run_until(cycles=g.end)
        ref, ref_end = vm_state(a), ending(a)
        ref_out = (await uart_out(a, pa))[len(out_n):]
        ref_semi = a.semihost.stdout.getvalue()[len(semi_n):]

        # B: a fresh VM, loaded
        assert load_vm(b, blob) is RunState.PAUSED
        assert b.state is RunState.PAUSED
        assert_same(vm_state(b), at_n, "B just loaded")
        if g.after:
            b.uart_input("uart0", g.after)
        await b.run_until(cycles=g.end)
        assert_same(vm_state(b), ref, "B at the end")
        assert ending(b) == ref_end
        assert await uart_out(b, pb) == ref_out
        assert b.semihost.stdout.getvalue() == ref_semi

        # A again: the same stream loaded into the VM that ran on (or ended)
        mark, semi_mark = len(await uart_out(a, pa)), len(a.semihost.stdout.getvalue())
        assert load_vm(a, blob) is RunState.PAUSED
        assert a.state is RunState.PAUSED and a.result is None
        assert_same(vm_state(a), at_n, "A reloaded")
        if g.after:
            a.uart_input("uart0", g.after)
        await a.run_until(cycles=g.end)
        assert_same(vm_state(a), ref, "A re-run")
        assert ending(a) == ref_end
        assert (await uart_out(a, pa))[mark:] == ref_out
        assert a.semihost.stdout.getvalue()[semi_mark:] == ref_semi
    finally:
        await a.close()
        await b.close()


CASES = [(name, which) for name, g in GUESTS.items() for which in (*g.fixed, *POINTS)]


@pytest.mark.parametrize("guest,which", CASES, ids=[f"{n}-{w}" for n, w in CASES])
def test_twin_runs_after_save_and_load_are_identical(guest: str, which: "int | str",
                                                      tmp_path: Path) -> None:
    g = GUESTS[guest]
    n = snapshot_cycle(g, which)
    asyncio.run(twin(g, n, tmp_path))


def test_the_probed_points_are_what_they_claim() -> None:
    """The handler points are inside handlers: an exception frame on the
    interrupt stack, pc in a handler, and at the entry PSR.I clear (the CPU
    clears it when it takes an interrupt); the timer points have timers
    pending (two, where the guest runs two at once)."""
    points = [(g, which, snapshot_cycle(g, which)) for g in GUESTS.values() for which in POINTS]

    async def main() -> None:
        for g, which, n in points:
            vm = await boot(g, "none")
            try:
                await vm.run_until(cycles=n)
                assert vm.cycles == n
                if which.startswith("isr"):
                    assert in_handler(g, deep=which == "isr-deep")(vm), (g.name, which)
                    if which == "isr-entry":
                        assert not vm.cpu.get_state()["psr"] & PSR_I, g.name
                else:
                    assert len(vm.timers) >= g.min_timers, (g.name, n)
            finally:
                await vm.close()

    asyncio.run(main())


@pytest.mark.parametrize("guest,which", [("demo", 1299709), ("demo", "timers"),
                                         ("uart_echo", "timers"), ("nmi_wdt", "before-reset")])
def test_a_checkpoint_restore_runs_on_as_the_original_did(guest: str, which: "int | str",
                                                          tmp_path: Path) -> None:
    """In-memory checkpoints go through the same descriptions: restored into
    the VM after it ran on (more idle time on its clock), it runs on alike."""
    g = GUESTS[guest]
    n = snapshot_cycle(g, which)

    async def main() -> None:
        path = tmp_path / "a.uart"
        a = await boot(g, path)
        cp = None
        try:
            await a.run_until(cycles=n)
            at_n, out_n = vm_state(a), await uart_out(a, path)
            cp = a.checkpoint()
            if g.after:
                a.uart_input("uart0", g.after)
            await a.run_until(cycles=g.end)
            ref, ref_end, out = vm_state(a), ending(a), await uart_out(a, path)
            cp.restore()
            assert a.state is RunState.PAUSED
            assert_same(vm_state(a), at_n, "restored")
            if g.after:
                a.uart_input("uart0", g.after)
            await a.run_until(cycles=g.end)
            assert_same(vm_state(a), ref, "re-run")
            assert ending(a) == ref_end
            assert (await uart_out(a, path))[len(out):] == out[len(out_n):]
        finally:
            if cp is not None:
                cp.close()
            await a.close()

    asyncio.run(main())


# -- saving does not change the run ------------------------------------------------------------
@pytest.mark.parametrize("guest", ["nmi_wdt", "demo", "uart_echo"])
def test_a_run_with_saves_equals_one_without(guest: str, tmp_path: Path) -> None:
    g = GUESTS[guest]

    input_at = 300007                     # uart_echo: the rest of the input comes here

    async def run(path: Path, saves: set[int]) -> tuple[dict, Any, bytes]:
        vm = await boot(g, path)
        try:
            for n in sorted(saves | {input_at}):
                assert await vm.run_until(cycles=n) is RunState.PAUSED
                if n in saves:
                    save_vm(vm)
                if n == input_at and g.after:
                    vm.uart_input("uart0", g.after)
            await vm.run_until(cycles=g.end)
            return vm_state(vm), ending(vm), await uart_out(vm, path)
        finally:
            await vm.close()

    plain = asyncio.run(run(tmp_path / "plain.uart", set()))
    saved = asyncio.run(run(tmp_path / "saved.uart", {1, 13, 7919, 104729, 300007, 299993}))
    assert_same(saved[0], plain[0], "with saves")
    assert saved[1:] == plain[1:]


# -- run states --------------------------------------------------------------------------------
def test_save_and_load_of_a_paused_vm_keeps_it_paused(tmp_path: Path) -> None:
    g = GUESTS["idle"]

    async def main() -> None:
        vm = await boot(g, tmp_path / "u", default_board())
        other = await boot(g, tmp_path / "v", default_board())
        try:
            await vm.run_until(cycles=250_000)
            events = vm.subscribe()
            before = vm_state(vm)
            blob = save_vm(vm)
            assert vm.state is RunState.PAUSED
            assert parse(blob, vm_sections(vm), machine_type=vm.board.name,
                         ram_size=vm.cpu.ram_size).globalstate.runstate == "paused"
            for target in (vm, other):
                assert load_vm(target, blob) is RunState.PAUSED
                assert target.state is RunState.PAUSED
                await asyncio.sleep(0.02)           # a paused VM does not run by itself
                assert_same(vm_state(target), before, "loaded")
            assert events.empty()                   # no RESUME, no STOP: it never ran
        finally:
            await vm.close()
            await other.close()

    asyncio.run(main())


# -- streams that do not fit the VM ------------------------------------------------------------
@pytest.mark.parametrize("src_ram,change", [
    (20 << 20, {"ram_size": 16 << 20}),
    (20 << 20, {"ram_size": (12 << 20) + 2}),
    (20 << 20, {"name": "another-board"}),
    ((3 << 20) + 0x800, {"ram_size": (3 << 20) + 0x802}),   # the same number of pages
])
def test_a_stream_for_another_board_or_ram_size_is_refused(src_ram: int, change: dict,
                                                           tmp_path: Path) -> None:
    g = GUESTS["nmi_wdt"]
    board = default_board().with_changes(ram_size=src_ram)

    async def main() -> None:
        src = await boot(g, tmp_path / "src", board)
        dst = await boot(g, tmp_path / "dst", board.with_changes(**change))
        try:
            await src.run_until(cycles=524287)
            blob = save_vm(src)
            await dst.run_until(cycles=104729)
            before = vm_state(dst)
            with pytest.raises(StreamError) as err:
                load_vm(dst, blob)
            assert err.value.section in ("configuration", "ram") and err.value.offset
            assert ("board" in str(err.value)) == ("name" in change)
            assert_same(vm_state(dst), before, "refused")
            assert dst.state is RunState.PAUSED
            # and it runs on as if nothing had happened
            await dst.run_until(cycles=524287)
            assert dst.cycles == 524287
        finally:
            await src.close()
            await dst.close()

    asyncio.run(main())


# -- the interrupt controller loads first ---------------------------------------------------------
async def _first_masked_pending(g: Guest) -> int:
    """The first cycle at which a line is up and enabled in the ICU but the
    guest has interrupts masked (prio arms its timers with PSR.E/I clear and
    polls STATUS.EXP before it reads ICU PEND)."""
    def pred(vm: Machine) -> bool:
        icu = vm.devices["icu"]
        psr = vm.cpu.get_state()["psr"]
        return bool(icu.pend & icu.enable) and psr & (PSR_E | PSR_I) != PSR_E | PSR_I \
            and vm.devices["timer0"].status & 1
    return await find_cycle(g, pred, 1)


def test_the_icu_must_load_before_the_devices_that_raise_its_lines(tmp_path: Path,
                                                                   monkeypatch) -> None:
    g = GUESTS["prio"]
    n = asyncio.run(_first_masked_pending(g))

    async def run(wrong_order: bool, tag: str) -> tuple[dict, dict, bytes, Any]:
        with monkeypatch.context() as m:
            if wrong_order:     # the ICU after every device: its pre_load drops their lines
                m.setattr(ICU_VMSD, "priority", Priority.LOW)
            a = await boot(g, tmp_path / f"{tag}.a")
            b = await boot(g, tmp_path / f"{tag}.b")
            try:
                await a.run_until(cycles=n)
                order = [s.idstr for s in vm_sections(a)]
                assert (order.index("icu") > order.index("timer0")) == wrong_order
                out_n = await uart_out(a, tmp_path / f"{tag}.a")
                at_n = vm_state(a)
                load_vm(b, save_vm(a))
                loaded = vm_state(b)
                await a.run_until(cycles=g.end)
                await b.run_until(cycles=g.end)
                a_out = (await uart_out(a, tmp_path / f"{tag}.a"))[len(out_n):]
                b_out = await uart_out(b, tmp_path / f"{tag}.b")
                return at_n, loaded, b_out == a_out and ending(a) == ending(b), \
                    (a_out, b_out, ending(b))
            finally:
                await a.close()
                await b.close()

    at_n, loaded, same_run, _ = asyncio.run(run(False, "right"))
    assert at_n["devices"]["icu"]["pend"] & 1          # TIMER0's line is up at N
    assert_same(loaded, at_n, "ICU first")
    assert same_run

    at_n, loaded, same_run, (a_out, b_out, b_end) = asyncio.run(run(True, "wrong"))
    assert loaded["devices"]["icu"]["pend"] == 0 != at_n["devices"]["icu"]["pend"]
    assert loaded["irq"] == 0 != at_n["irq"]
    assert not same_run
    assert b"FAIL" in b_out and b"FAIL" not in a_out and b_end[1] != 0
