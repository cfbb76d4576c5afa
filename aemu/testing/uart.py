"""The UART helper of the test fixtures: the guest's output kept in memory,
input queued for the guest, and ``expect``.

    await uart.expect(b"ready\\n")                  # runs a paused machine until it prints that
    uart.write(b"ping\\n")
    m = await uart.expect(re.compile(rb"pong (\\d+)\\n"), timeout=0.5)

Every byte the guest transmits is appended to the capture as the UART
writes it (inside the CPU slice), so a match is seen at the instruction
that completes it.  ``expect`` on a *paused* machine runs it and pauses it
right there: what happens next does not depend on how fast the host is.  On
a *running* machine it only watches, and leaves it running.
"""
from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Callable, Union

from aemu.loop import RunState

if TYPE_CHECKING:  # pragma: no cover
    from aemu.testing.pooled import PooledMachine

Pattern = Union[bytes, bytearray, str, "re.Pattern[bytes]"]

#: seconds ``expect`` waits unless told otherwise (the ``aemu_timeout`` ini value changes it)
DEFAULT_TIMEOUT = 5.0
#: bytes of output an error message quotes
QUOTE = 400


class ExpectError(AssertionError):
    """``expect`` failed: the pattern did not appear (an AssertionError, so
    pytest reports it as a test failure with the output it quotes)."""


class ExpectTimeout(ExpectError):
    """The pattern did not appear within the timeout."""


def _compile(pattern: Pattern) -> "bytes | re.Pattern[bytes]":
    if isinstance(pattern, str):
        return pattern.encode()
    if isinstance(pattern, (bytes, bytearray)):
        if not pattern:
            raise ValueError("expect() needs a non-empty pattern")
        return bytes(pattern)
    if isinstance(pattern, re.Pattern):
        if isinstance(pattern.pattern, str):
            raise TypeError("expect() needs a bytes regex: re.compile(rb'...')")
        return pattern
    raise TypeError(f"expect() takes bytes, str or a compiled bytes regex, "
                    f"not {type(pattern).__name__}")


class _Waiter:
    """One pending ``expect``: searched after every byte the guest writes."""

    __slots__ = ("pattern", "start", "pause", "fut", "span", "match")

    def __init__(self, pattern: "bytes | re.Pattern[bytes]", start: int, pause: bool,
                 fut: "asyncio.Future[None]") -> None:
        self.pattern = pattern
        self.start = start
        self.pause = pause           # stop the machine at the match (expect drives it)
        self.fut = fut
        self.span: tuple[int, int] | None = None
        self.match: "re.Match[bytes] | None" = None

    def search(self, data: bytearray, new: int) -> bool:
        """Look for the pattern; ``new`` bytes were just appended."""
        pattern = self.pattern
        if isinstance(pattern, bytes):
            # only a match that ends in the new bytes can be new
            at = data.find(pattern, max(self.start, len(data) - new - len(pattern) + 1))
            if at < 0:
                return False
            self.span = (at, at + len(pattern))
            return True
        m = pattern.search(data, self.start)
        if m is None:
            return False
        # a match on a frozen copy: the capture keeps growing (and is cleared later)
        self.match = pattern.search(bytes(data), self.start)
        assert self.match is not None
        self.span = self.match.span()
        return True


class Capture:
    """The UART back-end of a pooled machine: output into memory.  Input does
    not come through here (``Uart.write`` queues it with
    ``Machine.uart_input``), but input stays *possible*, as with a terminal
    that is connected: a guest that waits for a byte waits, it is not
    suspended."""

    kind = "memory"
    input_possible = True

    def __init__(self) -> None:
        self.data = bytearray()
        self.waiters: list[_Waiter] = []
        self.on_match: Callable[[_Waiter], None] | None = None

    # the CharBackend protocol the machine uses (aemu/hw/chardev.py)
    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def set_receiver(self, callback: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def describe(self) -> str:
        return "memory"

    def write(self, data: bytes) -> None:
        """The guest sent ``data`` (called by the UART, inside a slice)."""
        self.data += data
        if self.waiters:
            for waiter in list(self.waiters):
                if waiter.search(self.data, len(data)):
                    self.waiters.remove(waiter)
                    if self.on_match is not None:
                        self.on_match(waiter)
                    if not waiter.fut.done():
                        waiter.fut.set_result(None)


class Uart:
    """One UART of a machine from the fixtures (``aemu_uart``,
    ``vm.uart("uart0")``).  Output is kept from power-on; ``expect`` and
    ``read`` consume it from a cursor, so each ``expect`` looks only at
    what came after the previous match."""

    def __init__(self, vm: "PooledMachine", name: str, capture: Capture) -> None:
        self.vm = vm
        self.name = name
        self._capture = capture
        self._pos = 0
        self._boot: tuple[bytes, int] = (b"", 0)
        capture.on_match = self._on_match

    # -- output --------------------------------------------------------------------------
    @property
    def output(self) -> bytes:
        """Everything the guest sent on this UART since power-on (the boot
        output included) or the last ``clear()``."""
        return bytes(self._capture.data)

    @property
    def text(self) -> str:
        """``output`` as text (UTF-8, undecodable bytes replaced)."""
        return self._capture.data.decode("utf-8", "replace")

    @property
    def unread(self) -> bytes:
        """Output after the cursor (what the next ``expect`` searches)."""
        return bytes(self._capture.data[self._pos:])

    def read(self) -> bytes:
        """The unread output; the cursor moves to its end."""
        data = self.unread
        self._pos = len(self._capture.data)
        return data

    def clear(self) -> None:
        """Forget the output so far."""
        self._capture.data.clear()
        self._pos = 0
        for waiter in self._capture.waiters:
            waiter.start = 0

    # -- input ---------------------------------------------------------------------------
    def write(self, data: "bytes | bytearray | str") -> None:
        """Queue ``data`` for the guest, as if it came down the wire.  It
        enters the UART's receive FIFO as the guest makes room (no byte is
        lost), from the next slice on; a paused machine gets it when it runs."""
        if isinstance(data, str):
            data = data.encode()
        self.vm.uart_input(self.name, bytes(data))

    # -- expect --------------------------------------------------------------------------
    async def expect(self, pattern: Pattern, timeout: float | None = None, *,
                     virtual: bool = True) -> "bytes | re.Match[bytes]":
        """Wait until the guest's output after the cursor matches ``pattern``
        and move the cursor past the match.

        ``pattern``: bytes (or str, as UTF-8) to find, or a compiled bytes
        regex (it matches as soon as it can: end it with a delimiter).
        Returns, for bytes, the output from the cursor up to and including
        the match; for a regex, the match (``m.string`` is the output).

        ``timeout`` is in seconds (default 5, or the ``aemu_timeout`` ini
        value) of *virtual* time, or with ``virtual=False`` of wall time.

        A paused machine is run, and paused again at the instruction that
        sent the last byte of the match (or when the time is up).  A running
        machine is watched and keeps running.  ExpectTimeout (an
        AssertionError) if the time runs out; ExpectError if the guest ends
        or stops first."""
        __tracebackhide__ = True      # a failure points at the test, not in here
        compiled = _compile(pattern)
        found = self._search_now(compiled)
        if found is not None:
            return found
        vm = self.vm
        if timeout is None:
            timeout = vm.expect_timeout
        if timeout < 0:
            raise ValueError("timeout must not be negative")
        state = vm.state
        if state in (RunState.PAUSED, RunState.PRELAUNCH):
            drive = True
        elif state is RunState.RUNNING:
            drive = False
        else:
            raise self._error(compiled, f"the machine is {state.value}", ExpectError)
        waiter = _Waiter(compiled, self._pos, drive, asyncio.get_running_loop().create_future())
        self._capture.waiters.append(waiter)
        try:
            if drive:
                timed_out = await self._drive(waiter, timeout, virtual)
            else:
                timed_out = await self._watch(waiter, timeout, virtual)
        finally:
            if waiter in self._capture.waiters:
                self._capture.waiters.remove(waiter)
        if waiter.span is not None:
            return self._consume(waiter)
        if timed_out:
            clock = "virtual" if virtual else "wall-clock"
            raise self._error(compiled, f"nothing matched within {timeout:g} s of {clock} "
                                        "time", ExpectTimeout)
        raise self._error(compiled, f"the machine stopped first ({vm.state.value})",
                          ExpectError)

    async def _drive(self, waiter: _Waiter, timeout: float, virtual: bool) -> bool:
        """Run a paused machine until the match pauses it; True on timeout."""
        vm = self.vm
        if virtual:
            target = vm.cycles + max(1, vm.clock.ns_to_cycles(int(timeout * 1e9)))
            await vm.run_until(cycles=target)
            return waiter.span is None and vm.state is RunState.PAUSED and vm.cycles >= target
        vm.resume()
        try:
            await asyncio.wait_for(vm.wait_state(RunState.PAUSED, RunState.SUSPENDED,
                                                 *_ended()), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            vm.pause()
            return waiter.span is None
        return False

    async def _watch(self, waiter: _Waiter, timeout: float, virtual: bool) -> bool:
        """Wait for the match on a running machine; True on timeout."""
        vm = self.vm
        fut = waiter.fut
        timer = None

        def on_event(event: dict) -> None:
            if vm.state is not RunState.RUNNING and not fut.done():
                fut.set_result(None)

        def expired() -> None:
            if not fut.done():
                fut.set_result(None)

        vm.add_listener(on_event)
        try:
            if virtual:
                # a host timer on the virtual clock: an idle guest's time jumps to it
                timer = vm.ctx.schedule(vm.cycles + max(1, vm.clock.ns_to_cycles(
                    int(timeout * 1e9))), expired)
                await vm.wait_driven(fut)
                return waiter.span is None and vm.state is RunState.RUNNING
            try:
                await vm.wait_driven(fut, timeout)
            except (TimeoutError, asyncio.TimeoutError):
                return waiter.span is None
            return False
        finally:
            vm.remove_listener(on_event)
            if timer is not None:
                timer.cancel()

    def _on_match(self, waiter: _Waiter) -> None:
        if waiter.pause:
            self.vm.stop_here()

    def _search_now(self, compiled: "bytes | re.Pattern[bytes]"
                    ) -> "bytes | re.Match[bytes] | None":
        data = self._capture.data
        if isinstance(compiled, bytes):
            at = data.find(compiled, self._pos)
            if at < 0:
                return None
            out = bytes(data[self._pos:at + len(compiled)])
            self._pos = at + len(compiled)
            return out
        m = compiled.search(bytes(data), self._pos)
        if m is None:
            return None
        self._pos = m.end()
        return m

    def _consume(self, waiter: _Waiter) -> "bytes | re.Match[bytes]":
        assert waiter.span is not None
        start, end = waiter.span
        data = self._capture.data
        if waiter.match is not None:
            result: "bytes | re.Match[bytes]" = waiter.match
        else:
            result = bytes(data[self._pos:end])
        self._pos = end
        return result

    def _error(self, compiled: "bytes | re.Pattern[bytes]", why: str,
               cls: type[ExpectError]) -> ExpectError:
        vm = self.vm
        what = compiled if isinstance(compiled, bytes) else f"re.compile({compiled.pattern!r})"
        unread = self._capture.data[self._pos:]
        quoted = bytes(unread[-QUOTE:])
        more = f" (the last {QUOTE} of {len(unread)} bytes)" if len(unread) > QUOTE else ""
        return cls(f"{vm.label} {self.name}: expected {what!r}: {why}; the machine is "
                   f"{vm.state.value} at {vm.clock.ns() / 1e6:.6f} ms of virtual time "
                   f"(cycle {vm.cycles}).\nunread output{more}: {quoted!r}")

    # -- the pool's side -------------------------------------------------------------------
    def _seal(self) -> None:
        """The machine is booted: what a reset brings back."""
        self._boot = (bytes(self._capture.data), self._pos)

    def _reset(self) -> None:
        data, pos = self._boot
        self._capture.data[:] = data
        self._capture.waiters.clear()
        self._pos = pos


def _ended() -> tuple:
    from aemu.hw.machine import ENDED
    return ENDED


__all__ = ["Capture", "DEFAULT_TIMEOUT", "ExpectError", "ExpectTimeout", "Uart"]
