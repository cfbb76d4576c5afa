"""Live migration (aemu.migration) in one process: the pattern guest (QEMU's
A-B guest, tests/migration_guest.py) migrated while it runs, over every
transport, checked against a twin that was never migrated.

The guest is deterministic in cycles, so the check is exact: the
destination, run on to a cycle T past the switch-over, holds the same RAM
as the twin at T, and the source's UART output followed by the
destination's is the twin's output (QEMU's check_guests_ram passes too).
Also: convergence and live parameter changes, auto-converge, options,
query-migrate, blockers, and mismatched destinations (the source resumes).
Faults and cancellation: test_migration_faults.py.
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from migration_guest import PATTERN_ELF, PATTERN_IDLE_ELF, pattern_board
from migration_harness import (START_CYCLES, FullBacklogListener, Rig, assert_completed_info,
                               check_twin, run_async, wait_done, wait_for)

from aemu.hw.board import default_board
from aemu.loop import RunState
from aemu.migration import MigrationError, MigrationManager, OptionError, Options, Status
from aemu.migration.options import (CAPABILITIES, LIVE_PARAMETERS, PARAMETERS,
                                    UNSUPPORTED_CAPABILITIES)

FAST = {"max-bandwidth": 0}


@pytest.fixture
def short_tmp():
    """A temporary directory with a short path (Unix socket paths are at most
    107 bytes; pytest's tmp_path can be longer)."""
    d = tempfile.mkdtemp(prefix="aemu-mig-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)

# id: (transport, capabilities, parameters)
CASES = {
    "unix": ("unix", [], {}),
    "unix-rp": ("unix", ["return-path"], {}),
    "tcp": ("tcp", [], {}),
    "tcp-rp": ("tcp", ["return-path"], {}),
    "unix-zero-none": ("unix", ["return-path"], {"zero-page-detection": "none"}),
    "unix-zero-legacy": ("unix", [], {"zero-page-detection": "legacy"}),
    "multifd1-unix": ("unix", ["multifd"], {"multifd-channels": 1}),
    "multifd2-tcp-rp": ("tcp", ["multifd", "return-path"], {"multifd-channels": 2}),
    "multifd4-unix-rp": ("unix", ["multifd", "return-path"], {"multifd-channels": 4}),
    "multifd8-tcp": ("tcp", ["multifd"], {"multifd-channels": 8}),
    "multifd2-zero-none": ("unix", ["multifd"], {"multifd-channels": 2,
                                                 "zero-page-detection": "none"}),
    # compressed: the measured bandwidth is wire bytes (~100:1 for this guest), so
    # with the default 300 ms a guest that re-dirties 13 MiB never converges (as
    # QEMU's estimate); QEMU's compression tests use migrate_ensure_converge too
    "multifd-zstd-tcp-rp": ("tcp", ["multifd", "return-path"],
                            {"multifd-channels": 2, "multifd-compression": "zstd",
                             "downtime-limit": 30000}),
    "multifd-zstd3-unix": ("unix", ["multifd"], {"multifd-channels": 3,
                                                 "multifd-compression": "zstd",
                                                 "multifd-zstd-level": 3,
                                                 "downtime-limit": 30000}),
    "file": ("file", [], {}),
    "file-offset": ("file-offset", [], {}),
    "file-mapped-ram": ("file", ["mapped-ram"], {}),
    "fd-socketpair": ("fd-socketpair", [], {}),
    "fd-socketpair-rp": ("fd-socketpair", ["return-path"], {}),
    "fd-file": ("fd-file", [], {}),
}
BOTH_LOOPS = ["unix-rp", "multifd2-tcp-rp", "fd-socketpair-rp"]
OFFSET = 12345


async def migrate_and_check(short_tmp, transport: str, caps: list[str], params: dict, *,
                            elf=PATTERN_ELF, live: bool = True, pace: str = "fast") -> dict:
    """Migrate the pattern guest (running unless ``live=False``) over
    ``transport`` and check everything against the twin; returns the two
    query-migrate answers."""
    caps = ["events", *caps]
    async with Rig(caps=caps, params={**FAST, **params}, elf=elf, pace=pace) as rig:
        src, dst = rig.src, rig.dst
        assert dst is not None
        path = str(short_tmp / "stream.mig")
        inc = None
        prefix = b""
        if transport in ("unix", "tcp"):
            uri = f"unix:{short_tmp}/dst.sock" if transport == "unix" else "tcp:127.0.0.1:0"
            inc = await dst.mgr.incoming(uri)
            assert inc.status is Status.SETUP and dst.vm.state is RunState.INMIGRATE
            # RAM is cleared (zero pages, pre-faulted) once it listens
            assert dst.vm.cpu.ram[:] == bytes(dst.vm.cpu.ram_size)
            target = str(inc.address)
            if transport == "tcp":
                assert inc.address.port != 0
        elif transport == "fd-socketpair":
            a, b = socket.socketpair()
            src.mgr.add_fd("mig", a.detach())
            # a numeric fd: is taken over by the channel (it closes it): not ours any more
            inc = await dst.mgr.incoming(f"fd:{b.detach()}")
            target = "fd:mig"
        elif transport == "fd-file":
            src.mgr.add_fd("mig", os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
            target = "fd:mig"
        elif transport == "file-offset":
            prefix = os.urandom(OFFSET)
            with open(path, "wb") as f:
                f.write(prefix + b"old bytes past the offset, overwritten" * 100)
            target = f"file:{path},offset={OFFSET}"
        else:
            target = f"file:{path}"
        if live:
            src.vm.resume()
        job = src.mgr.migrate(target)
        assert job.task is not None
        await wait_done(job)
        assert job.status is Status.COMPLETED, job.error
        if transport.startswith("fd-"):
            # migrate took the getfd descriptor over (as QEMU consumes it): the
            # name is gone, and closing it is the channel's business
            assert "mig" not in src.mgr.fds
        if inc is None:                     # a file: the destination reads it afterwards
            if transport == "fd-file":
                # a getfd name on the destination: taken over by incoming too
                dst.mgr.add_fd("in", os.open(path, os.O_RDONLY))
                inc = await dst.mgr.incoming("fd:in")
                assert "in" not in dst.mgr.fds
            else:
                inc = await dst.mgr.incoming(target)
        await wait_done(inc)
        assert inc.status is Status.COMPLETED, inc.error
        assert inc.error is None
        if transport == "file-offset":
            with open(path, "rb") as f:
                data = f.read()
            assert data[:OFFSET] == prefix, "the bytes before the offset were changed"
            assert data[OFFSET:OFFSET + 4] == b"QEVM"
        elif transport in ("file", "fd-file"):
            with open(path, "rb") as f:
                assert f.read(4) == b"QEVM"

        # the switch-over: the source stopped exactly where the destination goes on
        assert src.vm.state is RunState.POSTMIGRATE
        assert dst.vm.state is RunState.PAUSED          # autostart is off (start_paused)
        assert src.vm.cycles == dst.vm.cycles >= START_CYCLES
        if live and "mapped-ram" not in caps:
            assert src.vm.cycles > START_CYCLES          # it ran during the precopy
        assert src.vm.throttle == 0
        i_src, i_dst = src.mgr.info(), dst.mgr.info()
        mapped = "mapped-ram" in caps
        assert_completed_info(i_src, passes=0 if mapped else 1, multifd="multifd" in caps)
        assert_completed_info(i_dst, side="destination")
        assert not src.mgr.running and not dst.mgr.running
        # events: every status change, and a MIGRATION_PASS per dirty sync (QEMU's
        # first one is at setup)
        assert src.statuses() == ["setup", "active", "device", "completed"], src.statuses()
        assert dst.statuses() == ["setup", "active", "completed"], dst.statuses()
        syncs = i_src["ram"]["dirty-sync-count"]
        assert src.passes() == list(range(1, syncs + 1))

        before = bytes(src.uart.data)
        assert before.startswith(b"A") or not live
        await check_twin(dst, before=before)
        return {"src": i_src, "dst": i_dst}


@pytest.mark.parametrize("case", list(CASES))
def test_live_migration(short_tmp, case) -> None:
    run_async(migrate_and_check(short_tmp, *CASES[case]))


@pytest.mark.parametrize("case", BOTH_LOOPS)
def test_live_migration_both_loops(short_tmp, run, case) -> None:
    run(migrate_and_check(short_tmp, *CASES[case]))


async def migrate_completed(rig: Rig, d: Path, *, resume: bool = False,
                            run_for: float = 0.0) -> tuple:
    """The destination listens on unix:{d}/d.sock, the source (when
    ``resume``: resumed, and run for ``run_for`` s) migrates there: both
    complete.  Returns the source's job and the destination's incoming."""
    inc = await rig.dst.mgr.incoming(f"unix:{d}/d.sock")
    if resume:
        rig.src.vm.resume()
        if run_for:
            await asyncio.sleep(run_for)
    job = rig.src.mgr.migrate(str(inc.address))
    await wait_done(job)
    await wait_done(inc)
    assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED), \
        (job.error, inc.error)
    return job, inc


def test_paused_source_stays_paused_at_the_destination(short_tmp) -> None:
    """A stopped source (QEMU's non-live test): the destination loads it
    paused even with autostart on, and goes on after ``resume``."""
    async def main() -> None:
        async with Rig(caps=["return-path"], params=FAST) as rig:
            rig.dst.vm.autostart = True
            await migrate_completed(rig, short_tmp)
            assert rig.src.vm.cycles == rig.dst.vm.cycles == START_CYCLES
            assert rig.src.vm.state is RunState.POSTMIGRATE
            await asyncio.sleep(0.01)
            assert rig.dst.vm.state is RunState.PAUSED
            assert rig.dst.vm.cycles == START_CYCLES
            # a paused source sends every page once: one pass, nothing dirtied
            assert rig.src.mgr.info()["ram"]["dirty-sync-count"] >= 1
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


@pytest.mark.parametrize("how,rp", [("autostart", True), ("cont-while-inmigrate", False)])
def test_destination_starts_the_guest_after_load(short_tmp, how, rp) -> None:
    """A running source, and a destination that may start (autostart, or a
    ``cont`` while it waits): the guest runs there afterwards, never in both."""
    async def main() -> None:
        async with Rig(caps=["return-path"] if rp else [], params=FAST) as rig:
            if how == "autostart":
                rig.dst.vm.autostart = True
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            if how != "autostart":
                rig.dst.vm.resume()
                assert rig.dst.vm.state is RunState.INMIGRATE
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            seen = []

            def both_running() -> None:
                seen.append((rig.src.vm.state, rig.dst.vm.state))
            rig.src.vm.add_listener(lambda e: both_running())
            rig.dst.vm.add_listener(lambda e: both_running())
            await wait_done(job)
            await wait_done(inc)
            assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
            await wait_for(lambda: rig.dst.vm.state is RunState.RUNNING, 2, "the guest to start")
            assert rig.src.vm.state is RunState.POSTMIGRATE
            assert (RunState.RUNNING, RunState.RUNNING) not in seen
            target = (rig.dst.vm.cycles // (1 << 21) + 2) * (1 << 21)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data), target=target)
    run_async(main())


def test_idle_guest(short_tmp) -> None:
    """pattern_idle.elf: one page dirtied by a timer tick; converges at once;
    its timer goes on at the destination (the twin's ticks)."""
    async def main() -> None:
        async with Rig(caps=["return-path", "events"], params=FAST, elf=PATTERN_IDLE_ELF,
                       start_cycles=3_000_000) as rig:
            await migrate_completed(rig, short_tmp, resume=True)
            info = rig.src.mgr.info()
            assert_completed_info(info)
            assert rig.src.vm.cycles == rig.dst.vm.cycles
            await check_twin(rig.dst, before=bytes(rig.src.uart.data), ahead=5_000_000)
    run_async(main())


def test_idle_guest_realtime_pace(short_tmp) -> None:
    """Real-time pacing on both sides (virtual time follows the wall clock):
    still exact against a fast twin, since the guest only depends on cycles."""
    async def main() -> None:
        async with Rig(caps=["return-path"], params=FAST, elf=PATTERN_IDLE_ELF,
                       pace="realtime") as rig:
            await migrate_completed(rig, short_tmp, resume=True, run_for=0.02)
            assert rig.dst.vm.cycles > START_CYCLES
            # (the source's clock may have gone on after the stop: see below)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


def test_realtime_idle_clock_stands_still_when_stopped(short_tmp) -> None:
    """Real-time pace, a guest idle in eiwait: a VM stopped while asleep gets
    no credit for the wall time after the stop (Machine._idle), so its clock
    stands still while it is paused, and a migration's switch-over records
    the clock the stopped source shows."""
    async def main() -> None:
        async with Rig(caps=["return-path"], params=FAST, elf=PATTERN_IDLE_ELF,
                       pace="realtime") as rig:
            rig.src.vm.resume()
            await asyncio.sleep(0.05)
            rig.src.vm.pause()
            stopped_at = rig.src.vm.cycles
            await asyncio.sleep(0.03)
            assert rig.src.vm.state is RunState.PAUSED
            assert rig.src.vm.cycles == stopped_at
            await migrate_completed(rig, short_tmp, resume=True, run_for=0.02)
            assert rig.src.vm.cycles == rig.dst.vm.cycles > stopped_at
            await asyncio.sleep(0.03)                   # postmigrate: it stands still too
            assert rig.src.vm.cycles == rig.dst.vm.cycles
    run_async(main())


# -- convergence -----------------------------------------------------------------------------
def test_no_convergence_until_parameters_change_live(short_tmp) -> None:
    """QEMU's migrate_ensure_non_converge: 3 MB/s and 1 ms cannot finish; the
    migration stays active while passes go on (MIGRATION_PASS counting up);
    raising the limits while it runs lets it complete, exactly."""
    async def main() -> None:
        async with Rig(caps=["events", "return-path"],
                       params={"max-bandwidth": 3_000_000, "downtime-limit": 1}) as rig:
            m1 = rig.src.mgr
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = m1.migrate(str(inc.address))
            await asyncio.sleep(0.3)
            assert job.status is Status.ACTIVE
            info = m1.info()
            assert info["status"] == "active" and "expected-downtime" in info
            assert rig.src.passes() == [1]       # 13 MiB cannot go out at 3 MB/s in 0.3 s
            assert rig.src.vm.state is RunState.RUNNING
            assert m1.running
            # not live-changeable: refused while it runs (the same value is fine)
            with pytest.raises(OptionError, match="multifd-channels.*in progress"):
                m1.options.set_parameters({"multifd-channels": 4}, running=m1.running)
            m1.options.set_parameters({"multifd-channels": 2}, running=m1.running)
            with pytest.raises(OptionError, match="in progress"):
                m1.options.set_capabilities([{"capability": "auto-converge", "state": True}],
                                            running=m1.running)
            assert m1.options["multifd-channels"] == 2
            assert not m1.options.cap("auto-converge")
            # unlimited bandwidth, still 1 ms: passes go by, no switch-over
            m1.options.set_parameters({"max-bandwidth": 0}, running=m1.running)
            await wait_for(lambda: len(rig.src.passes()) >= 4, 10, "three more passes")
            assert job.status is Status.ACTIVE
            passes = rig.src.passes()
            assert passes == list(range(1, 1 + len(passes)))
            assert m1.info()["ram"]["dirty-sync-count"] >= passes[-1]
            m1.options.set_parameters({"downtime-limit": 30000}, running=m1.running)
            await wait_done(job)
            await wait_done(inc)
            assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
            assert_completed_info(m1.info(), passes=4)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


@pytest.mark.parametrize("multifd", [False, True], ids=["main", "multifd"])
def test_max_bandwidth_is_honoured(short_tmp, multifd) -> None:
    """max-bandwidth per 100 ms window: a section (multifd: a packet) is cut
    to what the window has left, so 3 MB/s is 3 MB/s -- not a whole 1 MiB
    section (512 KiB packet) per window."""
    caps = ["multifd"] if multifd else []

    async def main() -> tuple[int, float]:
        async with Rig(caps=caps, params={"max-bandwidth": 3_000_000, "downtime-limit": 1,
                                          "multifd-channels": 2}) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            job = rig.src.mgr.migrate(str(inc.address))
            await asyncio.sleep(0.6)
            # the bytes on every channel (query-migrate's "transferred" is only
            # brought up to date at the end of a multifd pass)
            sent = job._sent()
            elapsed = loop.time() - t0
            assert job.status is Status.ACTIVE
            rig.src.mgr.cancel()
            await wait_done(job)
            return sent, elapsed
    sent, elapsed = run_async(main())
    # one 100 ms window of slack, plus the setup
    assert sent <= 3_000_000 * (elapsed + 0.1) + 64 * 1024, f"{sent} bytes in {elapsed:.2f} s"
    # and it does send (not a limit that stops everything)
    assert sent >= 3_000_000 * (elapsed - 0.2) * 0.5, f"{sent} bytes in {elapsed:.2f} s"


def test_auto_converge(short_tmp) -> None:
    """The pattern guest re-dirties all 13 MiB within 65 us: with a 5 ms
    downtime limit it cannot converge (it would need ~2.7 GB/s; the
    in-process transfer does ~0.1-0.5 GB/s) -- a structural margin, not a
    timing one.  With auto-converge the CPU throttle rises (20 %, +10 %
    per two heavy passes, up to 99 %) until the guest dirties little
    enough; afterwards the throttle is 0 again."""
    params = {**FAST, "downtime-limit": 5}

    async def main() -> None:
        async with Rig(caps=["events"], params=params) as rig:
            m1 = rig.src.mgr
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = m1.migrate(str(inc.address))
            await wait_for(lambda: len(rig.src.passes()) >= 5, 10, "four passes")
            assert job.status is Status.ACTIVE
            info = m1.info()
            assert "cpu-throttle-percentage" not in info and rig.src.vm.throttle == 0
            assert info["ram"]["remaining"] > 2 * 1024 * 1024
            m1.cancel()
            await wait_done(job)
            assert job.status is Status.CANCELLED
            assert rig.src.vm.state is RunState.RUNNING
            await wait_done(inc)

            # the same VM, auto-converge on, to a new destination
            m1.options.set_capabilities([{"capability": "auto-converge", "state": True}])
            dst2 = await rig.side("dst2")
            inc2 = await dst2.mgr.incoming(f"unix:{short_tmp}/d2.sock")
            seen = []
            job = m1.migrate(str(inc2.address))
            while not job.done.is_set():
                seen.append(rig.src.vm.throttle)
                await asyncio.sleep(0.005)
            await wait_done(job, 30)
            await wait_done(inc2)
            assert (job.status, inc2.status) == (Status.COMPLETED, Status.COMPLETED), \
                (job.error, inc2.error)
            info = m1.info()
            assert_completed_info(info)
            assert info["cpu-throttle-percentage"] >= 20
            assert max(seen) >= 20
            assert rig.src.vm.throttle == 0                 # back to 0 afterwards
            await check_twin(dst2, before=bytes(rig.src.uart.data))
    run_async(main(), timeout=60)


def test_auto_converge_throttle_released_on_cancel(short_tmp) -> None:
    async def main() -> None:
        params = {**FAST, "downtime-limit": 0, "max-cpu-throttle": 50,
                  "cpu-throttle-initial": 30}
        async with Rig(caps=["auto-converge"], params=params) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_for(lambda: rig.src.vm.throttle >= 30, 10, "the throttle")
            assert rig.src.mgr.info()["cpu-throttle-percentage"] >= 30
            assert rig.src.vm.throttle <= 50                 # max-cpu-throttle
            rig.src.mgr.cancel()
            await wait_done(job)
            assert job.status is Status.CANCELLED
            assert rig.src.vm.throttle == 0
            assert rig.src.vm.state is RunState.RUNNING
            await check_twin(rig.src)
    run_async(main())


# -- options ---------------------------------------------------------------------------------
def test_option_defaults_are_qemus() -> None:
    o = Options()
    assert o.query_parameters() == {
        "max-bandwidth": 128 << 20, "avail-switchover-bandwidth": 0, "downtime-limit": 300,
        "throttle-trigger-threshold": 50, "cpu-throttle-initial": 20,
        "cpu-throttle-increment": 10, "cpu-throttle-tailslow": False, "max-cpu-throttle": 99,
        "multifd-channels": 2, "multifd-compression": "none", "multifd-zstd-level": 1,
        "zero-page-detection": "multifd", "mode": "normal"}
    caps = o.query_capabilities()
    assert all(set(c) == {"capability", "state"} and c["state"] is False for c in caps)
    names = [c["capability"] for c in caps]
    assert len(names) == len(set(names))
    assert set(names) == set(CAPABILITIES) | set(UNSUPPORTED_CAPABILITIES)
    for name in ("return-path", "multifd", "auto-converge", "events", "mapped-ram",
                 "pause-before-switchover", "postcopy-ram", "xbzrle"):
        assert name in names


def test_capabilities_validation() -> None:
    o = Options()
    o.set_capabilities([{"capability": "return-path", "state": True},
                        {"capability": "events", "state": True}])
    assert o.cap("return-path") and o.cap("events")
    state = {c["capability"]: c["state"] for c in o.query_capabilities()}
    assert state["return-path"] and state["events"] and not state["multifd"]
    with pytest.raises(OptionError, match="Invalid parameter 'no-such-cap'"):
        o.set_capabilities([{"capability": "no-such-cap", "state": True}])
    for name in UNSUPPORTED_CAPABILITIES:
        with pytest.raises(OptionError, match=f"'{name}' is not supported by aemu"):
            o.set_capabilities([{"capability": name, "state": True}])
        o.set_capabilities([{"capability": name, "state": False}])      # off: fine
    # all or nothing: a bad entry after a good one changes nothing
    with pytest.raises(OptionError):
        o.set_capabilities([{"capability": "multifd", "state": True},
                            {"capability": "postcopy-ram", "state": True}])
    assert not o.cap("multifd")
    # no changes while a migration runs
    with pytest.raises(OptionError, match="in progress"):
        o.set_capabilities([{"capability": "multifd", "state": True}], running=True)
    assert not o.cap("multifd")
    o.set_capabilities([{"capability": "return-path", "state": False}])
    assert not o.cap("return-path")


def test_parameters_validation() -> None:
    o = Options()
    with pytest.raises(OptionError, match="'bogus' is unexpected"):
        o.set_parameters({"bogus": 1})
    for name, spec in PARAMETERS.items():
        if spec.kind is int:
            for bad in ("1", 1.5, True, None):
                with pytest.raises(OptionError, match=f"type for '{name}'.*integer"):
                    o.set_parameters({name: bad})
            with pytest.raises(OptionError, match=f"'{name}' expects a value from"):
                o.set_parameters({name: spec.lo - 1})
            with pytest.raises(OptionError, match=f"'{name}' expects a value from"):
                o.set_parameters({name: spec.hi + 1})
        elif spec.kind is bool:
            for bad in (1, "true", None):
                with pytest.raises(OptionError, match=f"type for '{name}'.*boolean"):
                    o.set_parameters({name: bad})
        else:
            for bad in (1, None, True):
                with pytest.raises(OptionError, match=f"type for '{name}'.*string"):
                    o.set_parameters({name: bad})
            with pytest.raises(OptionError, match=f"'{name}' does not accept value"):
                o.set_parameters({name: "bogus"})
    assert o.query_parameters() == Options().query_parameters()      # nothing changed
    # the edges are fine
    o.set_parameters({"downtime-limit": 0, "throttle-trigger-threshold": 100,
                      "multifd-channels": 255, "multifd-zstd-level": 20,
                      "max-bandwidth": 0, "multifd-compression": "zstd",
                      "zero-page-detection": "legacy", "cpu-throttle-tailslow": True})
    o.set_parameters({"downtime-limit": 2_000_000, "multifd-channels": 1})
    assert o["downtime-limit"] == 2_000_000 and o["multifd-channels"] == 1
    # all or nothing
    with pytest.raises(OptionError):
        o.set_parameters({"downtime-limit": 7, "multifd-channels": 0})
    assert o["downtime-limit"] == 2_000_000
    # cross-checks
    with pytest.raises(OptionError, match="max_cpu_throttle"):
        o.set_parameters({"max-cpu-throttle": 10, "cpu-throttle-initial": 20})
    o.set_parameters({"max-cpu-throttle": 30, "cpu-throttle-initial": 30})
    o.set_capabilities([{"capability": "multifd", "state": True}])
    with pytest.raises(OptionError, match="Mapped-ram.*compression"):
        o.set_capabilities([{"capability": "mapped-ram", "state": True}])
    o.set_parameters({"multifd-compression": "none"})
    o.set_capabilities([{"capability": "mapped-ram", "state": True}])
    with pytest.raises(OptionError, match="Mapped-ram.*compression"):
        o.set_parameters({"multifd-compression": "zstd"})


def test_parameters_while_running() -> None:
    o = Options()
    for name in LIVE_PARAMETERS:
        value = {"max-bandwidth": 1, "avail-switchover-bandwidth": 5, "downtime-limit": 9,
                 "throttle-trigger-threshold": 70, "cpu-throttle-initial": 40,
                 "cpu-throttle-increment": 5, "cpu-throttle-tailslow": True,
                 "max-cpu-throttle": 90}[name]
        o.set_parameters({name: value}, running=True)
        assert o[name] == value
    changes = {"multifd-channels": 3, "multifd-compression": "zstd", "multifd-zstd-level": 4,
               "zero-page-detection": "none"}
    for name, value in changes.items():
        assert name not in LIVE_PARAMETERS
        with pytest.raises(OptionError, match=f"'{name}' cannot be changed while"):
            o.set_parameters({name: value}, running=True)
        o.set_parameters({name: o[name]}, running=True)            # unchanged: fine
        o.set_parameters({name: value})                             # stopped: fine


def test_query_migrate_shapes(short_tmp) -> None:
    async def main() -> None:
        async with Rig(caps=["return-path"], params=FAST) as rig:
            m1, m2 = rig.src.mgr, rig.dst.mgr
            assert m1.info() == {} and m2.info() == {}
            # setup: a destination whose accept queue is full (connect hangs)
            hole = FullBacklogListener()
            rig.extras.append(hole)
            job = m1.migrate(hole.uri)
            await asyncio.sleep(0.05)
            info = m1.info()
            assert info["status"] == "setup" and isinstance(info["total-time"], int)
            assert "ram" not in info and "downtime" not in info
            with pytest.raises(MigrationError, match="in progress"):
                m1.migrate(hole.uri)
            with pytest.raises(MigrationError, match="in progress"):
                await m1.incoming(f"unix:{short_tmp}/x.sock")
            m1.cancel()
            await wait_done(job)
            assert m1.info()["status"] == "cancelled"
            assert "error-desc" not in m1.info()

            # a destination listening says where
            inc = await m2.incoming("tcp:127.0.0.1:0")
            info = m2.info()
            assert info["status"] == "setup"
            assert info["socket-address"] == [{"type": "inet", "host": "127.0.0.1",
                                               "port": str(inc.address.port)}]
            with pytest.raises(MigrationError, match="in progress|waiting for an incoming"):
                m2.migrate(f"unix:{short_tmp}/nowhere.sock")
            # active: ram statistics and the expected downtime
            m1.options.set_parameters({"downtime-limit": 1})
            rig.src.vm.resume()
            job = m1.migrate(str(inc.address))
            await wait_for(lambda: m1.info().get("ram", {}).get("dirty-sync-count", 0) >= 2,
                           10, "a pass")
            info = m1.info()
            assert info["status"] == "active"
            assert {"total-time", "setup-time", "expected-downtime", "ram"} <= set(info)
            assert info["ram"]["total"] == 16 << 20
            assert info["ram"]["remaining"] > 0 and info["ram"]["dirty-pages-rate"] > 0
            assert info["ram"]["mbps"] > 0 and info["ram"]["pages-per-second"] > 0
            assert m2.info()["status"] == "active"
            m1.options.set_parameters({"downtime-limit": 30000}, running=True)
            await wait_done(job)
            await wait_done(inc)
            assert_completed_info(m1.info(), passes=2)
            assert_completed_info(m2.info(), side="destination")

            # failed: error-desc
            dst2 = await rig.side("dst2")
            m3 = MigrationManager(dst2.vm)
            inc3 = await m3.incoming(f"unix:{short_tmp}/u.sock")
            assert m3.info()["socket-address"] == [{"type": "unix",
                                                    "path": f"{short_tmp}/u.sock"}]
            m3.cancel()
            await wait_done(inc3)
            assert m3.info()["status"] == "cancelled"
            dst3 = await rig.side("dst3")
            m4 = dst3.mgr
            job = m4.migrate(f"unix:{short_tmp}/nobody-listens.sock")
            await wait_done(job)
            info = m4.info()
            assert info["status"] == "failed" and info["error-desc"]
            assert "nobody-listens.sock" in info["error-desc"]
    run_async(main())


def test_bad_uris_are_refused_before_anything_starts(short_tmp) -> None:
    async def main() -> None:
        async with Rig(dst=False) as rig:
            m = rig.src.mgr
            for uri in ("", "nonsense", "exec:cat", "rdma:1.2.3.4:5", "tcp:", "tcp:host:99999",
                        "unix:", "fd:", "file:", f"file:{short_tmp}/x,offset=-1",
                        f"file:{short_tmp}/x,bogus=1"):
                with pytest.raises(MigrationError):
                    m.migrate(uri)
                assert m.current is None
            job = m.migrate("fd:not-a-getfd-name")
            await wait_done(job)
            assert job.status is Status.FAILED and "not found" in job.error
            assert rig.src.vm.state is RunState.PAUSED
            with pytest.raises(MigrationError):
                await MigrationManager(rig.src.vm).incoming("fd:nope")
    run_async(main())


def test_pause_before_switchover_and_continue(short_tmp) -> None:
    async def main() -> None:
        async with Rig(caps=["pause-before-switchover", "return-path", "events"],
                       params=FAST) as rig:
            m1 = rig.src.mgr
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = m1.migrate(str(inc.address))
            with pytest.raises(MigrationError, match="not in expected state"):
                m1.continue_("pre-switchover")
            await wait_for(lambda: job.status is Status.PRE_SWITCHOVER, 10, "pre-switchover")
            assert rig.src.vm.state is RunState.FINISH_MIGRATE
            with pytest.raises(MigrationError, match="not in expected state"):
                m1.continue_("device")
            await asyncio.sleep(0.05)
            assert job.status is Status.PRE_SWITCHOVER           # it waits
            m1.continue_("pre-switchover")
            await wait_done(job)
            await wait_done(inc)
            assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
            assert rig.src.statuses() == ["setup", "active", "pre-switchover", "device",
                                          "completed"]
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


def test_return_path_over_a_file_fd_is_refused(short_tmp) -> None:
    """return-path over an fd: that is a regular file: refused (a file has
    no way back), the VM goes on as it was."""
    async def main() -> None:
        async with Rig(caps=["return-path"], dst=False) as rig:
            fd = os.open(short_tmp / "f.mig", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            rig.src.mgr.add_fd("f", fd)
            rig.src.vm.resume()
            job = rig.src.mgr.migrate("fd:f")
            await wait_done(job)
            assert job.status is Status.FAILED
            assert "return-path needs a socket" in job.error, job.error
            assert rig.src.mgr.info()["error-desc"] == job.error
            assert rig.src.vm.state is RunState.RUNNING
            assert "f" not in rig.src.mgr.fds                 # taken over all the same
            await check_twin(rig.src)
    run_async(main())


def test_fd_socket_is_taken_over_by_migrate(short_tmp) -> None:
    """migrate('fd:NAME') takes the getfd descriptor over (QEMU consumes it):
    the name is gone and the channel closes the socket when it is done --
    nothing else holds it open -- and the destination starts on the
    source's commit at once (not after RP_TIMEOUT)."""
    async def main() -> None:
        async with Rig(caps=["return-path"], params=FAST) as rig:
            a, b = socket.socketpair()
            rig.src.mgr.add_fd("mig", a.detach())
            inc = await rig.dst.mgr.incoming(f"fd:{b.detach()}")     # taken over too
            rig.src.vm.resume()
            job = rig.src.mgr.migrate("fd:mig")
            await wait_done(job)
            assert job.status is Status.COMPLETED, job.error
            await wait_done(inc, 5)                 # on the commit, far before RP_TIMEOUT (30 s)
            assert inc.status is Status.COMPLETED, inc.error
            assert "mig" not in rig.src.mgr.fds
            with pytest.raises(MigrationError, match="'mig' not found"):
                rig.src.mgr.close_fd("mig")                      # nothing left to close
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


# -- blockers --------------------------------------------------------------------------------
def test_blockers(short_tmp) -> None:
    async def main() -> None:
        async with Rig(params=FAST) as rig:
            m1 = rig.src.mgr
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            uri = str(inc.address)
            handle = m1.blockers.add("test-device: its state cannot be migrated")
            assert m1.info() == {"blocked-reasons": ["test-device: its state cannot be "
                                                     "migrated"]}
            with pytest.raises(MigrationError, match="disallowing migration: test-device"):
                m1.migrate(uri)
            assert m1.current is None
            m1.blockers.remove(handle)
            assert m1.info() == {}

            # the guest holds a host file open through the host services
            host_fd = os.open(os.devnull, os.O_RDONLY)
            rig.src.vm.semihost.files[5] = host_fd
            try:
                assert "host file" in m1.info()["blocked-reasons"][0]
                with pytest.raises(MigrationError, match="host file"):
                    m1.migrate(uri)
            finally:
                del rig.src.vm.semihost.files[5]
                os.close(host_fd)

            # a blocker that appears after migrate() returned: refused in setup
            late = {"on": False}
            m1.blockers.add_check(lambda: "late blocker" if late["on"] else None)
            rig.src.vm.resume()
            job = m1.migrate(uri)
            late["on"] = True
            await wait_done(job)
            assert job.status is Status.FAILED and "late blocker" in job.error
            assert rig.src.vm.state is RunState.RUNNING
            late["on"] = False
            assert inc.status is Status.SETUP           # nothing reached the destination
            job = m1.migrate(uri)                        # now it goes
            await wait_done(job)
            await wait_done(inc)
            assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


# -- mismatched destinations -----------------------------------------------------------------
MISMATCHES = {
    # id: (Rig keyword arguments, destination error pattern)
    "ram-size": ({"dst_board": default_board()},
                 r"the stream has 16777216 bytes of RAM, this VM 20971520"),
    "board-name": ({"dst_board": pattern_board().with_changes(name="other-board")},
                   r"the stream is for board 'aemu-default', this VM is 'other-board'"),
    "zstd-vs-none": ({"caps": ["multifd"], "params": {**FAST, "multifd-compression": "zstd"},
                      "dst_params": FAST}, r"compression"),
}
#: the destination refuses these multifd channels, and says why
MULTIFD_MISMATCHES = {
    "multifd-src-only": ({"caps": ["multifd"], "dst_caps": []},
                         r"a multifd channel connected, but multifd is off here"),
    "more-channels-than-dst": ({"caps": ["multifd"],
                                "params": {**FAST, "multifd-channels": 4},
                                "dst_params": {**FAST, "multifd-channels": 2}},
                               r"multifd channel id [23] is unexpected: multifd-channels is 2 "
                               r"here"),
}


@pytest.mark.parametrize("rp", [False, True], ids=["plain", "rp"])
@pytest.mark.parametrize("what", list(MISMATCHES))
def test_mismatched_destination(short_tmp, what, rp) -> None:
    """The destination refuses the stream with a clear error and stays
    stopped; the source fails and resumes; its guest goes on as the twin."""
    mismatched_destination(short_tmp, *MISMATCHES[what], rp)


@pytest.mark.parametrize("rp", [False, True], ids=["plain", "rp"])
@pytest.mark.parametrize("what", list(MULTIFD_MISMATCHES))
def test_mismatched_multifd_destination_says_why(short_tmp, what, rp) -> None:
    """A multifd channel the destination cannot take: its error says why
    (not just "connection closed")."""
    mismatched_destination(short_tmp, *MULTIFD_MISMATCHES[what], rp)


def mismatched_destination(short_tmp, kw: dict, pattern: str, rp: bool) -> None:
    kw = dict(kw)
    kw["caps"] = [*kw.get("caps", []), *(["return-path"] if rp else [])]
    if "dst_caps" in kw:
        kw["dst_caps"] = [*kw["dst_caps"], *(["return-path"] if rp else [])]
    kw.setdefault("params", FAST)

    async def main() -> None:
        async with Rig(**kw) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_done(inc)
            await wait_done(job)
            assert inc.status is Status.FAILED
            assert inc.error and re.search(pattern, inc.error), inc.error
            assert rig.dst.vm.state is RunState.INMIGRATE      # never started
            assert job.status is Status.FAILED and job.error
            assert rig.src.vm.state is RunState.RUNNING        # resumed
            assert rig.src.mgr.info()["error-desc"] == job.error
            await check_twin(rig.src)
    run_async(main())


def test_destination_with_multifd_and_a_plain_source(short_tmp) -> None:
    """Pages in the main stream are fine for a destination that expects
    multifd channels too (none ever connects)."""
    async def main() -> None:
        async with Rig(caps=["return-path"], dst_caps=["return-path", "multifd"],
                       params=FAST) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_done(job)
            await wait_done(inc)
            assert (job.status, inc.status) == (Status.COMPLETED, Status.COMPLETED)
            await check_twin(rig.dst, before=bytes(rig.src.uart.data))
    run_async(main())


def test_fewer_multifd_channels_than_the_destination(short_tmp, monkeypatch) -> None:
    """The destination expects more multifd channels than the source opens:
    the first FLUSH waits JOIN_TIMEOUT (5 s; 0.5 s here) for the missing
    ones, then fails saying how many came; the source fails and resumes."""
    from aemu.migration import multifd as multifd_mod
    monkeypatch.setattr(multifd_mod, "JOIN_TIMEOUT", 0.5)

    async def main() -> None:
        async with Rig(caps=["multifd", "return-path"],
                       params={**FAST, "multifd-channels": 2},
                       dst_params={**FAST, "multifd-channels": 4}) as rig:
            inc = await rig.dst.mgr.incoming(f"unix:{short_tmp}/d.sock")
            rig.src.vm.resume()
            job = rig.src.mgr.migrate(str(inc.address))
            await wait_done(inc)
            await wait_done(job)
            assert inc.status is Status.FAILED and job.status is Status.FAILED
            assert rig.src.vm.state is RunState.RUNNING
            assert rig.dst.vm.state is RunState.INMIGRATE
            assert re.search(r"only 2 of 4 multifd channels connected", inc.error), inc.error
            assert job.error
            await check_twin(rig.src)
    run_async(main())
