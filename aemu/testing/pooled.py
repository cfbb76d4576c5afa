"""The machine the fixtures hand out: a Machine that belongs to no event loop.

The fixtures cannot know which event loop a test will run on: that depends
on the host project's pytest-asyncio settings and on each test's marker.  So
a pooled machine has no slice-loop task while it is paused; whichever loop
runs it (``resume()``, ``run_until()``, ``uart.expect()``...) gets the task,
and running it later from another loop moves the task there.  The task ends
by itself when the machine stops running.

This reaches into Machine's slice loop (``_run``, ``_changed``,
``_wake_fut``, ``_inputs``, ``_listeners``, devices' ``_generation``): the
tests of aemu/testing/ run it on every kind of loop, and catch a change there.
"""
from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from aemu.hw.board import Board
from aemu.hw.machine import Machine
from aemu.hw.program import STATUS_ABORT, RunResult
from aemu.loop import RunState
from aemu.testing.uart import DEFAULT_TIMEOUT, Capture, Uart

if TYPE_CHECKING:  # pragma: no cover
    from aemu.savevm.checkpoint import Checkpoint
    from aemu.testing.machines import MachineSpec


class _AnyLoopEvent:
    """asyncio.Event without a loop of its own: each waiter waits on a future
    of its running loop, so ``wait_state`` works from any loop."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        for fut in self._waiters:
            if not fut.done() and not fut.get_loop().is_closed():
                fut.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> bool:
        if self._flag:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            self._waiters.remove(fut)
        return True


class PooledMachine(Machine):
    """A Machine whose UARTs are captured in memory (``vm.uart("uart0")``),
    whose host-service output is kept (``host_stdout``), and that runs on
    whichever event loop drives it.  The fixtures hand these out; everything
    of :class:`aemu.hw.machine.Machine` works as documented there."""

    _driver: "asyncio.Task[None] | None" = None

    def __init__(self, board: Board, image: "str | os.PathLike[str]", *, name: str,
                 args: Sequence[str] = (), pace: str = "fast",
                 expect_timeout: float = DEFAULT_TIMEOUT, **kw: Any) -> None:
        captures = {d.name: Capture() for d in board.devices_of("uart")}
        self._host_out, self._host_err = io.BytesIO(), io.BytesIO()
        super().__init__(board, image, args=args, name=name, pace=pace, backends=captures,
                         start_paused=True, stdin=io.BytesIO(), stdout=self._host_out,
                         stderr=self._host_err, **kw)
        self.uarts: dict[str, Uart] = {n: Uart(self, n, c) for n, c in captures.items()}
        #: the default timeout of ``Uart.expect`` (seconds)
        self.expect_timeout = expect_timeout
        #: how the pool built it (None if built by hand)
        self.spec: MachineSpec | None = None
        self.closed = False
        self._checkpoint: "Checkpoint | None" = None
        self._sealed: dict[str, Any] = {}

    # -- what tests use ----------------------------------------------------------------
    @property
    def label(self) -> str:
        """A short name for messages: the firmware's file name without extension."""
        return Path(self.name).stem or self.name

    def uart(self, name: str = "uart0") -> Uart:
        """The helper of UART ``name`` (output, ``write``, ``expect``)."""
        try:
            return self.uarts[name]
        except KeyError:
            raise KeyError(f"{self.label}: no UART {name!r} (the board has: "
                           f"{', '.join(self.uarts) or 'none'})") from None

    @property
    def host_stdout(self) -> bytes:
        """What the guest wrote to stdout through the host services (printf in
        ``-msim``-style programs), since power-on."""
        return self._host_out.getvalue()

    @property
    def host_stderr(self) -> bytes:
        return self._host_err.getvalue()

    def stop_here(self) -> None:
        """Pause, ending the running slice after the current instruction (for
        callbacks inside a slice, such as a UART write)."""
        self.pause()
        self.cpu.end_slice()

    async def wait_driven(self, fut: "asyncio.Future[Any]", timeout: float | None = None) -> Any:
        """Await ``fut`` while this loop drives the machine."""
        self._ensure_driver()
        if timeout is None:
            return await fut
        return await asyncio.wait_for(fut, timeout)

    # -- any loop may drive it ---------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        # Machine.start() made a loop-bound Event and a slice-loop task; the
        # task ends at once (it is not the driver) and the event is replaced
        self._changed = _AnyLoopEvent()  # type: ignore[assignment]
        self._task = None

    def _ensure_driver(self) -> None:
        """A running machine needs a slice-loop task on the running loop."""
        if self.state is not RunState.RUNNING or self._closing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:          # resumed outside a loop: the next await drives it
            return
        driver = self._driver
        if driver is not None and not driver.done():
            if driver.get_loop() is loop:
                return
            # its loop is not running now (one thread): it is no longer the
            # driver, so it leaves without another slice when it next wakes
            if not driver.get_loop().is_closed():
                driver.cancel()
        self._driver = loop.create_task(self._run(), name=f"vm {self.name}")

    def _set_state(self, state: RunState, event: str | None = None, **data: Any) -> None:
        super()._set_state(state, event, **data)
        if state is RunState.RUNNING:
            self._ensure_driver()

    async def wait_state(self, *states: RunState) -> RunState:
        self._ensure_driver()
        return await super().wait_state(*states)

    async def _run(self) -> None:
        # Machine._run waits for the next resume on its loop; this one returns
        # as soon as the machine stops running, or another loop took over
        me = asyncio.current_task()
        try:
            while self._driver is me and not self._closing and self.state is RunState.RUNNING:
                await self._slice()
        except Exception as exc:   # as Machine._run: a bug of ours ends the run, said so
            self._end(RunResult(reason="internal-error", status=STATUS_ABORT,
                                insns=self.cpu.insn_count, wall=self._run_wall,
                                message=f"internal error: {exc!r}", pc=self.cpu.pc),
                      RunState.INTERNAL_ERROR)
            raise
        finally:
            if self._driver is me:
                self._driver = None

    def _wake(self) -> None:
        fut = self._wake_fut
        # the idle wait of a driver whose loop was closed under it is gone
        if fut is not None and not fut.done() and not fut.get_loop().is_closed():
            fut.set_result(None)

    async def close(self) -> None:
        self._stop_driver()
        await super().close()
        self._release()

    def dispose(self) -> None:
        """close() without awaiting anything (the UARTs are in memory), for
        pools torn down outside any loop."""
        self._stop_driver()
        self.semihost.close()
        self._release()

    def _stop_driver(self) -> None:
        self._closing = True
        self._poke()
        driver, self._driver = self._driver, None
        if driver is not None and not driver.done() and not driver.get_loop().is_closed():
            driver.cancel()

    def _release(self) -> None:
        self.closed = True
        if self._checkpoint is not None:
            self._checkpoint.close()
            self._checkpoint = None

    # -- the pool's side -----------------------------------------------------------------
    def seal(self) -> None:
        """Booted: take the checkpoint that every reset returns to."""
        if self.state is RunState.RUNNING:
            raise RuntimeError("pause the machine before sealing it")
        self._checkpoint = self.checkpoint()
        for uart in self.uarts.values():
            uart._seal()
        self._sealed = dict(listeners=list(self._listeners), out=self.host_stdout,
                            err=self.host_stderr, pace=self.pace,
                            slice_insns=self.slice_insns, max_insns=self.max_insns,
                            expect_timeout=self.expect_timeout)

    def reset(self) -> int:
        """Back to the sealed state: CPU, RAM (only the pages written since),
        devices, clock, run state, UART output and host-service output, and
        what the host side had changed (listeners, pending input, pacing).
        Returns the number of RAM pages copied back."""
        if self._checkpoint is None:
            raise RuntimeError(f"{self.label}: not sealed")
        sealed = self._sealed
        self._listeners[:] = sealed["listeners"]     # the last test's subscribers go
        self.pause()
        for pending in self._inputs.values():        # input the guest never took
            pending.clear()
        # every device comes back, also one a test changed by setting its
        # attributes (which the checkpoint's change tracking does not see)
        for device in self.devices.values():
            device._generation += 1
        pages = self._checkpoint.restore()
        for uart in self.uarts.values():
            uart._reset()
        _refill(self._host_out, sealed["out"])
        _refill(self._host_err, sealed["err"])
        self.pace, self.slice_insns = sealed["pace"], sealed["slice_insns"]
        self.max_insns, self.expect_timeout = sealed["max_insns"], sealed["expect_timeout"]
        return pages


def _refill(stream: io.BytesIO, data: bytes) -> None:
    """``stream`` holds ``data`` again (it only ever grows past it)."""
    if stream.tell() != len(data):
        stream.seek(0)
        stream.truncate()
        stream.write(data)


__all__ = ["PooledMachine"]
