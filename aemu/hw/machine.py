"""A VM: the CPU, a board's devices, the program image, and the asyncio task
that interleaves CPU slices with timers, host I/O and control.

    async with Machine(default_board(), "prog.elf") as vm:
        result = await vm.run()

The slice loop: fire the timers that are due, feed host input to the UARTs,
cut the budget at the next timer deadline (so a timer fires exactly at its
cycle, never "a slice late"), run the slice in C, handle why it ended, pace
against the wall clock if asked, and yield to the event loop.  Slices run on
the loop thread: a slice is short (``slice_insns``, ~0.25 ms by default), so
control and I/O stay responsive and other tasks only ever see the machine
between slices.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence, TextIO

from aemu.cpu import Cpu, Exit, MmioBusError, Vector
from aemu.hw.device import BusError, Device
from aemu.hw.loader import LoadedImage, load_binary, load_elf, write_host_block
from aemu.hw.program import (STATUS_ABORT, STATUS_FAULT, STATUS_MAX_INSNS, VEC_BPT, VEC_IAD,
                             RunResult)
from aemu.hw.semihost import SERVICES, Semihost

from aemu.loop import RunState, Timer, TimerQueue, VirtualClock, run_with_loop

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.board import Board
    from aemu.hw.chardev import CharBackend

DEFAULT_SLICE = 100_000       #: instructions per slice: ~0.25 ms of host time
PACES = ("fast", "realtime")
#: run states in which the guest can no longer run
ENDED = (RunState.SHUTDOWN, RunState.GUEST_PANICKED, RunState.DEBUG, RunState.INTERNAL_ERROR)
INPUT_HIGH_WATER = 64 * 1024  #: host input buffered per UART before reading pauses


class MachineError(Exception):
    """The machine cannot be built (bad board, image, back-end)."""


def backend_spec(conf: dict) -> str:
    """A board file's UART back-end keys as a back-end spec string."""
    kind = conf.get("backend", "null")
    if kind == "null":
        return "none"
    if kind in ("file", "unix"):
        return f"{kind}:{conf['path']}"
    if kind == "tcp":
        return f"tcp:{conf.get('host', '127.0.0.1')}:{conf['port']}"
    return str(kind)


class _Context:
    """What the machine offers its devices (aemu.hw.device.DeviceContext)."""

    def __init__(self, vm: "Machine") -> None:
        self._vm = vm
        self.cpu_hz = vm.board.cpu_hz

    def now(self) -> int:
        return self._vm.clock.cycles()

    def schedule(self, cycle: int, callback: Callable[[], None]) -> Timer:
        vm = self._vm
        owner = getattr(callback, "__self__", None)
        timer = vm.timers.schedule(cycle, callback, owner if isinstance(owner, Device) else None)
        if cycle < vm._slice_end:          # sooner than the running slice ends
            vm.cpu.end_slice()
        return timer

    def irq(self, line: int):
        if self._vm.icu is None:
            raise MachineError("this board has no interrupt controller")
        return self._vm.icu.line(line)

    def raise_nmi(self) -> None:
        icu = self._vm.icu
        if icu is not None:
            icu.raise_nmi()
        else:
            self._vm.cpu.raise_nmi()

    def request_reset(self) -> None:
        self._vm._reset_requested = True
        self._vm.cpu.end_slice()

    def warn(self, message: str) -> None:
        self._vm.warn(message)

    def shadow(self, device: Device, offset: int, size: int, value: int | None, *,
               before: int = 0, at_cycle: int = 0) -> None:
        args = (offset, size, value, before, at_cycle)
        if device.name in self._vm._mapped:
            self._vm.cpu.mmio_shadow(device.base, offset, size, value, before=before,
                                     at_cycle=at_cycle)
        else:                               # still being built: apply once mapped
            self._vm._early_shadows.setdefault(device.name, {})[(offset, size)] = args


class Machine:
    """One VM.  Build it, then ``await start()`` (or ``async with``)."""

    def __init__(self, board: "Board | None" = None, image: str | os.PathLike | bytes | None = None,
                 *, args: Sequence[str] = (), name: str | None = None, pace: str = "fast",
                 fs_root: str | os.PathLike | None = None, stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                 trace: TextIO | None = None, max_insns: int | None = None,
                 slice_insns: int = DEFAULT_SLICE, binary_addr: int | None = None,
                 entry: int | None = None, warn: Callable[[str], None] | None = None,
                 backends: dict[str, "CharBackend"] | None = None,
                 start_paused: bool = False) -> None:
        from aemu.hw.board import default_board
        from aemu.hw.devices import DEVICE_KINDS

        if pace not in PACES:
            raise MachineError(f"unknown pacing {pace!r}: use {' or '.join(PACES)}")
        if slice_insns < 1:
            raise MachineError("slice_insns must be positive")
        self.board = board if board is not None else default_board()
        self.board.validate()
        self.pace = pace
        self.slice_insns = slice_insns
        self.max_insns = max_insns
        self.warn = warn or (lambda text: print(f"aemu: warning: {text}", file=sys.stderr,
                                                flush=True))
        self._start_paused = start_paused
        self.cpu = Cpu(self.board.ram_size, svc_host=self.board.svc == "host")
        self.clock = VirtualClock(self.board.cpu_hz, lambda: self.cpu.insn_count)
        self.timers = TimerQueue()
        self._slice_end = 0
        self._reset_requested = False
        self._mapped: set[str] = set()
        self._early_shadows: dict[str, dict] = {}
        self.ctx = _Context(self)

        # devices: the interrupt controller first, since the others take lines from it
        self.devices: dict[str, Device] = {}
        self.icu: Any = None
        self._uart_backends: dict[str, Any] = {}
        uart_backends = self.board.uart_backends()
        specs = sorted(self.board.devices, key=lambda s: s.kind != "icu")
        for spec in specs:
            cls = DEVICE_KINDS[spec.kind]
            kwargs = spec.kwargs()
            if spec.kind == "icu":
                kwargs.update(deliver=self.cpu.set_irq, nmi=self.cpu.raise_nmi)
            device = cls(spec.name, spec.base, self.ctx, **kwargs)
            if spec.kind == "icu":
                self.icu = device
            if spec.kind == "uart":
                self._uart_backends[spec.name] = (backends or {}).get(
                    spec.name, backend_spec(uart_backends[spec.name]))
            self.devices[spec.name] = device
            self._map(device)

        # the program
        self._image_source = image
        self._args = list(args)
        self._binary_addr, self._entry = binary_addr, entry
        if name is None:
            name = "program" if isinstance(image, (bytes, bytearray)) or image is None \
                else os.fspath(image)
        self.name = name
        self.image: LoadedImage | None = None
        if image is not None:
            self._load()
        self._stdout = stdout
        self.semihost = Semihost(self.cpu, fs_root=fs_root, stdin=stdin, stdout=stdout,
                                 stderr=stderr, cpu_hz=self.board.cpu_hz, warn=self.warn,
                                 cycles=self.clock.cycles)
        self.tracer = None
        if trace is not None:
            from aemu.cpu.trace import Tracer
            self.tracer = Tracer(self.cpu, trace)

        self.state = RunState.PAUSED
        #: while a snapshot is saved or loaded (save-vm, restore-vm): the state to go back to
        self.held_state: RunState | None = None
        self.result: RunResult | None = None
        self._listeners: list[Callable[[dict], Any]] = []
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._wake_fut: asyncio.Future | None = None
        self._closing = False
        self._stop_at: int | None = None
        self._epoch = 0               # bumped when the state is replaced (load, restore)
        self._inputs: dict[str, bytearray] = {}
        self._backends: dict[str, "CharBackend"] = {}
        self._wall_start = 0.0
        self._wall_ns_at_start = 0
        self._run_wall = 0.0
        self._throttle = 0
        #: an incoming migration starts the guest when it has arrived
        self.autostart = not start_paused

    # -- building ------------------------------------------------------------
    def _map(self, device: Device) -> None:
        warn = self.warn

        def read(offset: int, size: int) -> int:
            try:
                return device.read(offset, size)
            except BusError as exc:
                warn(f"bus error: {exc}")
                raise MmioBusError(str(exc)) from None

        def write(offset: int, size: int, value: int) -> bool:
            try:
                device.write(offset, size, value)
            except BusError as exc:
                warn(f"bus error: {exc}")
                raise MmioBusError(str(exc)) from None
            return False

        try:
            self.cpu.map_mmio(device.base, device.size, read, write)
        except ValueError as exc:
            raise MachineError(f"{device.name}: {exc}") from None
        self._mapped.add(device.name)
        for offset, size, value, before, at in self._early_shadows.pop(device.name, {}).values():
            self.cpu.mmio_shadow(device.base, offset, size, value, before=before, at_cycle=at)

    def _load(self) -> None:
        src = self._image_source
        if self._binary_addr is not None:
            self.image = load_binary(self.cpu, src, self._binary_addr, self._entry, name=self.name)
        else:
            self.image = load_elf(self.cpu, src, name=self.name)
            if self._entry is not None:
                self.cpu.pc = self._entry
        warning = write_host_block(self.cpu, self.image, [self.name, *self._args])
        if warning:
            self.warn(warning)

    def device(self, name: str) -> Device:
        return self.devices[name]

    @property
    def cycles(self) -> int:
        return self.clock.cycles()

    # -- life cycle ------------------------------------------------------------
    async def __aenter__(self) -> "Machine":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the UART back-ends and start the slice loop (running, unless
        ``start_paused``)."""
        from aemu.hw.chardev import open_backend

        self._changed = asyncio.Event()

        for name, spec in self._uart_backends.items():
            if isinstance(spec, str):
                backend = open_backend(spec, stdout=self._stdout)
            else:
                backend = spec
            await backend.open()
            backend.set_receiver(lambda data, n=name: self._on_input(n, data))
            self.devices[name].attach(backend)
            self._backends[name] = backend
            self._inputs[name] = bytearray()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"vm {self.name}")
        if not self._start_paused:
            self.resume()

    async def close(self) -> None:
        """Stop the loop and release host resources; the guest is lost."""
        self._closing = True
        self._poke()
        if self._task is not None:
            try:
                await self._task
            finally:
                self._task = None
        for backend in self._backends.values():
            await backend.close()
        self._backends.clear()
        self.semihost.close()
        if self.tracer is not None:
            self.tracer.flush()

    # -- control ------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        """A queue of events: dicts with "event", "data" and "timestamp" (host
        seconds).  Events and their data are QEMU's: STOP, RESUME, SUSPEND,
        RESET and SHUTDOWN ({"guest": bool, "reason": ShutdownCause}),
        GUEST_PANICKED ({"action": "pause"})."""
        q: asyncio.Queue = asyncio.Queue()
        self._listeners.append(q.put_nowait)
        return q

    def add_listener(self, callback: Callable[[dict], Any]) -> None:
        """Call ``callback(event)`` for every event (same dicts as subscribe)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[dict], Any]) -> None:
        self._listeners.remove(callback)

    def _emit(self, event: str, **data: Any) -> None:
        item = {"event": event, "data": data, "timestamp": time.time()}
        for listener in self._listeners:
            listener(item)

    def _set_state(self, state: RunState, event: str | None = None, **data: Any) -> None:
        if state is self.state:
            return
        self.state = state
        if event:
            self._emit(event, **data)
        self._poke()

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()
        self._wake()

    def _wake(self) -> None:
        """End an idle wait (input arrived, control changed, deadline reached)."""
        fut = self._wake_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def pause(self) -> None:
        """Stop before the next slice (a STOP event).  While a snapshot is
        being saved, the machine stays paused when the save is done."""
        if self.held_state is not None:
            if self.held_state.is_live:       # its STOP went out when the save began
                self.held_state = RunState.PAUSED
            return
        if self.state in (RunState.RUNNING, RunState.SUSPENDED):
            self._set_state(RunState.PAUSED, "STOP")

    def resume(self) -> None:
        """Continue a paused (or reset, prelaunch) machine (a RESUME event).
        While a snapshot is being saved, it runs once the save is done."""
        if self.held_state is not None:
            if self.held_state in (RunState.PAUSED, RunState.PRELAUNCH):
                self.held_state = RunState.RUNNING
            return
        if self.state is RunState.INMIGRATE:     # QEMU: cont = start once it arrived
            self.autostart = True
            return
        if self.state in (RunState.PAUSED, RunState.PRELAUNCH, RunState.POSTMIGRATE):
            self._mark_wall()
            self._set_state(RunState.RUNNING, "RESUME")

    def hold(self, state: RunState) -> RunState:
        """Stop the guest for a snapshot: ``state`` is save-vm or restore-vm.
        As QEMU's vm_stop: a live guest (running, suspended) gets STOP; any
        other stays silent.  ``release()`` (after a save, or a failed load)
        or ``state_replaced()`` (after a load) ends it.  Returns the state
        the machine was in (what a snapshot taken now records)."""
        if state not in (RunState.SAVE_VM, RunState.RESTORE_VM, RunState.FINISH_MIGRATE):
            raise ValueError(f"hold() is for save-vm, restore-vm and finish-migrate, "
                             f"not {state.value}")
        if self.held_state is not None:
            raise MachineError(f"{self.name}: a snapshot is being saved or loaded already")
        before = self.state
        self.held_state = before
        self._set_state(state, "STOP" if before.is_live else None)
        return before

    def release(self) -> None:
        """End a hold: back to the state from before (RESUME if it is live),
        or to what ``pause()``/``resume()`` asked for meanwhile."""
        target, self.held_state = self.held_state, None
        if target is None:
            return
        if target is RunState.RUNNING:
            self._mark_wall()
        self._set_state(target, "RESUME" if target.is_live else None)

    def migrated_away(self) -> None:
        """The end of a hold(FINISH_MIGRATE) that succeeded: the destination
        runs the guest now; this one stays stopped (postmigrate)."""
        self.held_state = None
        self._set_state(RunState.POSTMIGRATE)

    def await_migration(self) -> None:
        """Wait for an incoming migration (inmigrate): the guest does not run
        until a stream replaced its state (``state_replaced``)."""
        if self.state.is_live:
            self._set_state(RunState.INMIGRATE, "STOP")
        else:
            self._set_state(RunState.INMIGRATE)

    @property
    def throttle(self) -> int:
        """auto-converge's CPU throttle, 0-99 %: the slice loop idles that
        share of wall time (virtual time is not affected)."""
        return self._throttle

    @throttle.setter
    def throttle(self, pct: int) -> None:
        self._throttle = max(0, min(int(pct), 99))
        self._mark_wall()     # real-time pacing must not try to catch up afterwards

    def system_reset(self, *, guest: bool = True, reason: str = "guest-reset") -> None:
        """Reset the board now: CPU, devices, program image (a RESET event with
        QEMU's cause: ``guest=False, reason="host-qmp-system-reset"`` when a
        host asked).  A running or paused machine stays so; one that had ended
        (shut down, panicked) comes back in ``prelaunch``, ready for resume()."""
        self.timers.clear()
        self.cpu.set_irq(0)
        self.cpu.halted = False
        for device in self.devices.values():
            device._generation += 1
            device.reset()
        self.cpu.reset()
        if self._image_source is not None:
            self._load()
        self._reset_requested = False
        if self.state in ENDED:           # a run_until target outlives a guest reset
            self._stop_at = None
        self._emit("RESET", guest=guest, reason=reason)
        if self.state is RunState.SUSPENDED:
            self._set_state(RunState.RUNNING, "RESUME")
        elif self.state in ENDED:
            self.result = None
            self._set_state(RunState.PRELAUNCH)

    def state_replaced(self, saved: RunState) -> None:
        """After savevm replaced the whole state (snapshot load, checkpoint
        restore): forget the old run's host-side plans and take the run state
        QEMU would: a guest that cannot run (suspended, ended) comes back so;
        otherwise a running VM keeps running and any other is paused.  Under
        ``hold(RESTORE_VM)`` "running" means running before the hold, and the
        hold ends here (RESUME if the guest runs again)."""
        self._epoch += 1
        self._stop_at = None
        self._reset_requested = False
        self.result = None
        before, held = self.state, self.held_state is not None
        if held:                      # a snapshot load under hold(RESTORE_VM)
            before, self.held_state = self.held_state, None  # type: ignore[assignment]
        if saved in (RunState.SAVE_VM, RunState.RESTORE_VM):   # never recorded; be safe
            saved = RunState.PAUSED
        if saved in (RunState.RUNNING, RunState.PAUSED, RunState.PRELAUNCH):
            target = RunState.RUNNING if before is RunState.RUNNING else RunState.PAUSED
        else:
            target = saved
        if target is RunState.RUNNING:
            self._mark_wall()
        if held:                      # STOP went out when the load began, if it was live
            event = {RunState.RUNNING: "RESUME", RunState.SUSPENDED: "SUSPEND"}.get(target)
        elif before is RunState.INMIGRATE:    # an incoming migration: never ran, no STOP
            event = {RunState.SUSPENDED: "SUSPEND"}.get(target)
        else:
            event = {RunState.PAUSED: "STOP", RunState.SUSPENDED: "SUSPEND"}.get(target)
        if self.state is not target:
            self._set_state(target, event)
        self._poke()

    def checkpoint(self) -> Any:
        """An in-memory checkpoint of the whole VM; ``restore()`` returns to it
        (only the pages written since are copied back).  See
        aemu.savevm.checkpoint.Checkpoint."""
        from aemu.savevm.checkpoint import Checkpoint   # savevm sits above hw
        return Checkpoint(self)

    async def wait_state(self, *states: RunState) -> RunState:
        """Wait until the machine is in one of ``states`` (default: ended)."""
        wanted = states or ENDED
        assert self._changed is not None, "start() the machine first"
        while self.state not in wanted:
            if self._closing:
                raise MachineError(f"{self.name}: the machine was closed")
            self._changed.clear()
            await self._changed.wait()
        return self.state

    async def run_until(self, *, cycles: int | None = None, ns: int | None = None) -> RunState:
        """Run until the virtual clock reaches ``cycles`` (or ``ns``) and pause
        there exactly; returns the state (PAUSED, or how the run ended)."""
        if (cycles is None) == (ns is None):
            raise ValueError("give exactly one of cycles= or ns=")
        target = cycles if cycles is not None else self.clock.ns_to_cycles(ns)  # type: ignore[arg-type]
        if target <= self.cycles or self.state not in (RunState.PAUSED, RunState.PRELAUNCH,
                                                       RunState.RUNNING):
            return self.state       # there already, or it cannot run (ended, suspended)
        self._stop_at = target
        self.resume()
        try:
            await self.wait_state(RunState.PAUSED, RunState.SUSPENDED, *ENDED)
        finally:
            if self.state is not RunState.RUNNING:
                self._stop_at = None
        return self.state

    async def run(self) -> RunResult:
        """Run to the end of the program; the result says how it ended."""
        self.resume()
        await self.wait_state(RunState.SUSPENDED, *ENDED)
        if self.result is None:          # restored into a state that had ended
            self.result = RunResult(reason=self.state.value, status=STATUS_ABORT,
                                    insns=self.cpu.insn_count, wall=self._run_wall,
                                    pc=self.cpu.pc, message="the VM was restored into the "
                                    f"{self.state.value} state")
        return self.result

    # -- host input ---------------------------------------------------------------
    def uart_input(self, uart: str, data: bytes) -> None:
        """Queue ``data`` for a UART as if its back-end had received it
        (KeyError if there is no such UART, or the machine is not started)."""
        if uart not in self._inputs:
            raise KeyError(uart)
        if len(self._inputs[uart]) + len(data) > INPUT_HIGH_WATER:
            raise BufferError(f"{uart}: {len(self._inputs[uart])} bytes of input are waiting "
                              f"for the guest already (at most {INPUT_HIGH_WATER})")
        self._on_input(uart, data)

    def _on_input(self, uart: str, data: bytes) -> None:
        buf = self._inputs[uart]
        buf += data
        if len(buf) > INPUT_HIGH_WATER:
            self._backends[uart].pause_reading()
        self._wake()

    def _feed_uarts(self) -> int:
        """Move queued host input into the UARTs' FIFOs; returns bytes moved."""
        moved = 0
        for name, buf in self._inputs.items():
            if buf:
                taken = self.devices[name].receive(bytes(buf[:64]))
                if taken:
                    moved += taken
                    del buf[:taken]
                    if len(buf) < INPUT_HIGH_WATER // 2:
                        self._backends[name].resume_reading()
        return moved

    def _input_possible(self) -> bool:
        return any(buf for buf in self._inputs.values()) or any(
            b.input_possible for b in self._backends.values())

    # -- the slice loop -----------------------------------------------------------
    async def _run(self) -> None:
        assert self._changed is not None
        try:
            while not self._closing:
                if self.state is not RunState.RUNNING:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                await self._slice()
        except Exception as exc:   # a bug of ours: keep the host up, say what happened
            self._end(RunResult(reason="internal-error", status=STATUS_ABORT,
                                insns=self.cpu.insn_count, wall=self._run_wall,
                                message=f"internal error: {exc!r}", pc=self.cpu.pc),
                      RunState.INTERNAL_ERROR)
            raise

    def _mark_wall(self) -> None:
        """Real-time pacing measures from here: virtual ns ~ wall ns."""
        self._wall_start = time.monotonic()
        self._wall_ns_at_start = self.clock.ns()

    async def _slice(self) -> None:
        cpu, clock = self.cpu, self.clock
        now = clock.cycles()
        self.timers.fire_due(now)
        if self._reset_requested:
            self.system_reset()
        if self.state is not RunState.RUNNING:     # a timer's callback stopped the VM
            return
        if self._inputs:
            self._feed_uarts()
        if self._stop_at is not None and now >= self._stop_at:
            self._stop_at = None
            self._set_state(RunState.PAUSED, "STOP")
            return
        budget = self.slice_insns
        if self._throttle:              # auto-converge: shorter slices, idle between
            budget = max(budget * (100 - self._throttle) // 100, 1000)
        nxt = self.timers.next_cycle()
        if nxt is not None:
            budget = min(budget, max(nxt - now, 1))
        if self._stop_at is not None:
            budget = min(budget, self._stop_at - now)
        if self.max_insns is not None:
            left = self.max_insns - cpu.insn_count
            if left <= 0:
                self._finish("max-insns", STATUS_MAX_INSNS,
                             message=f"instruction limit reached: {self.max_insns} instructions "
                                     f"executed, stopped at pc {cpu.pc:#x}")
                return
            budget = min(budget, left)
        self._slice_end = now + budget
        t0 = time.perf_counter()
        why, _ = self.tracer.run(budget) if self.tracer else cpu.run(budget)
        spent = time.perf_counter() - t0
        self._run_wall += spent
        self._slice_end = 0
        if why == Exit.SYSCALL:
            self._syscall()
        elif why == Exit.HALT:
            await self._idle()
            return
        elif why == Exit.FAULT or why == Exit.BREAKPOINT:
            self._fault(why)
            return
        if self._throttle:
            await asyncio.sleep(spent * self._throttle / (100 - self._throttle))
            return
        await self._pace()

    def _syscall(self) -> None:
        host, tracer = self.semihost, self.tracer
        before = self.cpu.get_state() if tracer else None
        stop = host.handle()
        if tracer:
            code = before["r"][0] & 0xFFFF  # type: ignore[index]
            tracer.host_call(SERVICES.get(code, f"service {code:#x}"), before)
        if stop is None:
            return
        if stop.kind == "exit":
            self._finish("exit", stop.value & 0xFF, exit_value=stop.value)
        elif stop.kind == "signal":
            self._finish("signal", (128 + stop.value) & 0xFF,
                         message=f"guest killed by signal {stop.value}")
        else:
            self._finish("unknown-service", stop.value & 0xFF, exit_value=stop.value,
                         message=f"unknown host service {stop.code:#x}")

    def _fault(self, why: Exit) -> None:
        vector, pc, addr = self.cpu.fault
        if why == Exit.BREAKPOINT:
            self._finish("breakpoint", STATUS_FAULT[VEC_BPT][0], fault=(vector, pc, addr),
                         message=f"guest breakpoint (excp bpt) at pc {pc:#x} (vector {VEC_BPT})",
                         state=RunState.DEBUG)
            return
        status, what = STATUS_FAULT.get(vector, (STATUS_ABORT, None))
        if what is None:
            try:
                what = f"unhandled exception {Vector(vector).name}"
            except ValueError:
                what = f"unhandled exception {vector}"
        if vector == VEC_IAD:
            what = f"{what} {addr:#x}"
        self._finish("fault", status, fault=(vector, pc, addr),
                     message=f"guest fault: {what} at pc {pc:#x} (vector {vector})",
                     state=RunState.GUEST_PANICKED)

    async def _idle(self) -> None:
        """The CPU waits for an interrupt: let virtual time pass."""
        if self._feed_uarts():      # queued input fits now: that is the wake-up
            return
        now = self.clock.cycles()
        nxt = self.timers.next_cycle()
        if self._stop_at is not None and (nxt is None or self._stop_at < nxt):
            nxt = self._stop_at
        if nxt is None and not self._input_possible():
            self._finish("halt", STATUS_ABORT, state=RunState.SUSPENDED, event="SUSPEND",
                         message="guest is waiting for an interrupt but no interrupt source "
                                 f"exists (pc {self.cpu.pc:#x})")
            return
        assert self._changed is not None
        if self.pace == "fast" and nxt is not None:
            self._skip(nxt - now)
            await asyncio.sleep(0)
            return
        # wait for the deadline in wall time (realtime), or for input / control:
        # one future and one timer handle per wait, as cheap as asyncio gets
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        fut = self._wake_fut = loop.create_future()
        handle = None
        if nxt is not None:
            wall_due = self._wall_start + (self.clock.cycles_to_ns(nxt)
                                           - self._wall_ns_at_start) / 1e9
            # + 1 ms: uvloop's timers have millisecond resolution and fire up
            # to 1 ms early; an early wake would cost a second wait per tick
            handle = loop.call_at(loop.time() + max(0.0, wall_due - time.monotonic()) + 0.001,
                                  self._wake)
        try:
            await fut
        finally:
            self._wake_fut = None
            if handle is not None:
                handle.cancel()
        if self._epoch != epoch:        # the state was replaced while we slept
            return
        if self.state is not RunState.RUNNING:
            # stopped while asleep (pause, a snapshot or a migration): the
            # wall time since then is not the guest's; it sleeps on from here
            # when it runs again
            return
        if self.pace == "realtime":
            elapsed_ns = int((time.monotonic() - self._wall_start) * 1e9)
            target = self.clock.ns_to_cycles(self._wall_ns_at_start + elapsed_ns)
            if nxt is not None:
                target = min(target, nxt)
            self._skip(target - now)
        elif nxt is not None:
            self._skip(nxt - now)

    def _skip(self, cycles: int) -> None:
        """Virtual time passes with the CPU asleep (the core learns it too, for
        shadowed registers that change at a cycle)."""
        self.clock.skip(cycles)
        self.cpu.cycle_offset = self.clock.idle_cycles

    async def _pace(self) -> None:
        if self.pace == "realtime":
            ahead = (self.clock.ns() - self._wall_ns_at_start) / 1e9 \
                - (time.monotonic() - self._wall_start)
            if ahead > 0.0005:
                await asyncio.sleep(ahead)
                return
        await asyncio.sleep(0)

    def _finish(self, reason: str, status: int, *, state: RunState = RunState.SHUTDOWN,
                event: str | None = None, **kw: Any) -> None:
        self._end(RunResult(reason=reason, status=status, insns=self.cpu.insn_count,
                            wall=self._run_wall, pc=self.cpu.pc, **kw), state, event)

    def _end(self, result: RunResult, state: RunState, event: str | None = None) -> None:
        self.result = result
        data: dict[str, Any] = {}
        if event is None:
            event = {RunState.SHUTDOWN: "SHUTDOWN", RunState.GUEST_PANICKED: "GUEST_PANICKED",
                     RunState.DEBUG: "STOP", RunState.INTERNAL_ERROR: "SHUTDOWN"}.get(state, "STOP")
        if event == "SHUTDOWN":
            data = {"guest": True, "reason": "guest-shutdown"}
            if state is RunState.INTERNAL_ERROR:
                data = {"guest": False, "reason": "host-error"}
            elif result.reason == "max-insns":        # no QEMU cause fits a host limit
                data = {"guest": False, "reason": "none"}
        elif event == "GUEST_PANICKED":
            data = {"action": "pause"}
        self._set_state(state, event, **data)


def run_sync(board: "Board | None", image: str | os.PathLike | bytes | None, *,
             loop: str = "uvloop", **kw: Any) -> RunResult:
    """Build a machine, run it to the end on a fresh event loop, close it."""

    async def main() -> RunResult:
        async with Machine(board, image, **kw) as vm:
            return await vm.run()

    return run_with_loop(main(), loop)
