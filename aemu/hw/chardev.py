"""Host character back-ends: where a UART's bytes go to and come from.

::

    backend = open_backend("tcp:0")      # parse and construct; no I/O yet
    await backend.open()                 # listen / attach to the running loop
    backend.set_receiver(on_bytes)       # on_bytes(data: bytes), on the loop thread
    backend.write(b"hello")              # never blocks, never raises
    print(backend.describe())            # "tcp:127.0.0.1:40123 (waiting for a client)"
    await backend.close()

Specs (``SPEC_HELP``):

``stdio``
    Output to stdout, input from stdin.  ``stdout`` is the same without input.
    The terminal's mode is left alone: on a tty, input arrives a line at a
    time (as the terminal's line editing delivers it) and ^C still reaches
    aemu.
``none``
    Output discarded, no input.
``file:PATH``
    Output appended to PATH (created with mode 0666 & ~umask), no input.
``unix:PATH``
    A listening Unix socket (mode 0600).  A stale socket file left at PATH
    by a dead process is replaced; a live one, or anything that is not a
    socket, is an error.  ``close()`` removes the socket file.
``tcp:PORT``, ``tcp:HOST:PORT``, ``tcp:[V6ADDR]:PORT``
    A listening TCP socket.  HOST defaults to 127.0.0.1 (also when it is
    empty, as in ``tcp::PORT``); all interfaces only if the user names such an
    address (``0.0.0.0``, ``::``), with a warning for any non-loopback
    address.  PORT 0 picks a free port: ``address`` and ``describe()`` give
    the real one.
``pty``
    A pseudo-terminal in raw mode; ``describe()`` and ``address`` name the
    slave (``/dev/pts/N``) for ``screen``, ``picocom``, ``minicom``...

Socket servers take one client at a time: while a client is connected,
further connections are **refused** (accepted and closed at once, so the
newcomer sees an immediate EOF, or a reset if it had sent something) and
logged.  EOF from the client ends its connection (a half-close cannot be told
from a close, and a lingering client would lock the others out).  When the
client goes away, output is dropped until the next client connects.  A
disconnect is noticed when the server reads (or writes): while reading is
paused, a client that left is only seen to be gone once the guest writes or
reading resumes.

Output and its limits
---------------------
``write()`` only appends to a buffer; the bytes written during one turn of
the event loop are handed to the host in one system call at the next turn
(``loop.call_soon``), so a guest writing byte by byte costs one syscall per
slice, not per byte.  ``write()`` may be called from another thread (it is
then forwarded with ``call_soon_threadsafe``).

Everything still queued for the host -- that buffer plus whatever the
transport, the pty or the stdout writer thread holds because the peer reads
slowly -- is bounded by ``output_limit`` (``OUTPUT_LIMIT`` = 1 MiB, settable
per back-end; the kernel's socket or pipe buffer comes on top).  Beyond it the **newest** bytes are dropped: the peer gets an
intact prefix of the stream, then a gap.  Output with no peer (no socket
client, stdout closed, a failed file) is dropped too.  ``dropped`` counts the
bytes lost either way (``none`` discards by design and counts nothing).  A
pty has no notion of "connected": output waits in the kernel's pty buffer
(some KiB) and then in ours until someone reads the slave.

stdio never touches the file status flags of the process's stdin/stdout:
making a terminal non-blocking would make it non-blocking for stderr and for
the shell as well (they share the open file description).  Instead stdout is
written by a daemon thread with ordinary blocking writes, and stdin is read
by a daemon thread that ``poll()``\\ s stdin and a wake-up pipe, so any kind of
stdin works the same way: tty, pipe, socket, regular file, /dev/null, under
asyncio and uvloop alike.  (``connect_read_pipe`` would reject a regular
file, and would set O_NONBLOCK.)  ``close()`` waits up to ``close_timeout``
(1 s) for output still queued for a connected peer or stdout, then discards
it.  Stream objects without a file descriptor (``io.BytesIO`` in tests; a
text stream works too, as UTF-8) are written directly on the loop thread and
read by the thread.

Input and flow control
----------------------
The receiver is called on the loop thread with whatever arrived (one read
of up to 64 KiB).  Nothing is read from the host while there is no receiver
or while reading is paused: ``pause_reading()`` stops the source (the socket
transport, the pty reader, the stdin thread), so the peer is pushed back by
the kernel's buffers.  A chunk that was already on its way is kept and
handed over, in order, after ``resume_reading()``; the receiver is never
called while reading is paused.  ``set_receiver``, ``pause_reading`` and
``resume_reading`` are for the loop thread.

``input_possible`` is False once no more input can ever arrive: ``none``,
``file:``, ``stdout``, stdin at EOF (after the last bytes were delivered),
and any back-end after ``close()``.  A socket server or a pty can always get
a (new) peer, so it stays True while open.
"""
from __future__ import annotations

import asyncio
import codecs
import io
import logging
import os
import select
import socket
import sys
import termios
import threading
import time
import tty
from typing import Any, Callable, Optional

from aemu.transport import sockets

__all__ = [
    "BackendError",
    "CharBackend",
    "OUTPUT_LIMIT",
    "SPEC_HELP",
    "open_backend",
]

log = logging.getLogger(__name__)

#: Bytes of output that may wait for a slow or absent peer before the newest are dropped.
OUTPUT_LIMIT = 1 << 20
#: Bytes read from the host at a time.
READ_CHUNK = 65536
#: Seconds ``close()`` waits for queued output to reach a connected peer.
CLOSE_TIMEOUT = 1.0
SPEC_HELP = "use stdio, none, file:PATH, unix:PATH, tcp:[HOST:]PORT or pty"

Receiver = Callable[[bytes], Any]


class BackendError(Exception):
    """A bad back-end spec, or a back-end that cannot be opened."""


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


class CharBackend:
    """A host byte stream for a UART.  Make one with :func:`open_backend`."""

    kind = ""
    #: Bound on output queued for the host (see the module docstring).
    output_limit = OUTPUT_LIMIT
    #: Seconds ``close()`` waits for queued output to drain.
    close_timeout = CLOSE_TIMEOUT

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[int] = None
        self._state = "new"                 # new -> open -> closed
        self._closing = False
        self._receiver: Optional[Receiver] = None
        self._paused = False
        self._pending_in = bytearray()      # input held while paused / without a receiver
        self._in_scheduled = False
        self._out = bytearray()             # output waiting for the next loop turn
        self._out_scheduled = False
        self._dropped = 0

    # -- state ------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._state == "open"

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    @property
    def address(self) -> Any:
        """Where peers connect: (host, port) for tcp, the path for unix and
        pty (the slave), None otherwise or before ``open()``."""
        return None

    @property
    def connected(self) -> bool:
        """Is there a peer for output right now?  (Socket servers: a client.)"""
        return self._state == "open" and self._sink_ready()

    @property
    def dropped(self) -> int:
        """Output bytes discarded: no peer, or over ``output_limit``."""
        return self._dropped

    @property
    def reading_paused(self) -> bool:
        return self._paused

    @property
    def input_possible(self) -> bool:
        """Can input still arrive?"""
        if self._state == "closed":
            return False
        return bool(self._pending_in) or self._source_may_produce()

    def describe(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    # -- life cycle ---------------------------------------------------------------
    async def open(self) -> None:
        """Start listening / attach to the running event loop."""
        if self._state == "open":
            raise BackendError(f"UART back-end {self.spec!r} is already open")
        if self._state == "closed":
            raise BackendError(f"UART back-end {self.spec!r} has been closed")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        try:
            await self._open()
        except BackendError:
            self._loop = None
            raise
        except (OSError, ValueError) as exc:
            self._loop = None
            raise BackendError(f"UART back-end {self.spec!r}: {_strerror(exc)}") from exc
        self._state = "open"
        self._update_reading()
        if self._out and not self._out_scheduled:
            self._out_scheduled = True
            self._loop.call_soon(self._flush_out)

    async def close(self) -> None:
        """Flush what can be flushed (bounded by ``close_timeout``), stop
        listening, remove socket files, close descriptors.  Idempotent."""
        if self._state == "closed" or self._closing:
            return
        self._closing = True
        was_open = self._state == "open"
        try:
            if was_open:
                self._flush_out()
                try:
                    await asyncio.wait_for(self._drain(), self.close_timeout)
                except (TimeoutError, asyncio.TimeoutError):
                    log.debug("%s: output still queued at close, discarded", self.describe())
                self._set_reading(False)
        finally:
            self._state = "closed"
            self._pending_in.clear()
            self._dropped += len(self._out)
            self._out.clear()
            if was_open:
                await self._close()

    # -- input --------------------------------------------------------------------
    def set_receiver(self, callback: Optional[Receiver]) -> None:
        """``callback(data: bytes)`` is called on the loop thread with input."""
        self._receiver = callback
        self._update_reading()

    def pause_reading(self) -> None:
        if not self._paused:
            self._paused = True
            self._update_reading()

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._update_reading()

    def _wants_input(self) -> bool:
        return (self._state == "open" and not self._closing
                and self._receiver is not None and not self._paused)

    def _update_reading(self) -> None:
        if self._state != "open":
            return
        want = self._wants_input()
        if want and self._pending_in and not self._in_scheduled:
            self._in_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._deliver_pending)
        self._set_reading(want)

    def _deliver(self, data: bytes) -> None:
        """Input from the host (subclasses call this on the loop thread)."""
        if not data:
            return
        if self._pending_in or not self._wants_input():
            self._pending_in += data
            self._update_reading()
            return
        self._call_receiver(data)

    def _deliver_pending(self) -> None:
        self._in_scheduled = False
        if not self._pending_in or not self._wants_input():
            return
        data = bytes(self._pending_in)
        self._pending_in.clear()
        self._call_receiver(data)
        self._update_reading()

    def _call_receiver(self, data: bytes) -> None:
        receiver = self._receiver
        assert receiver is not None and self._loop is not None
        try:
            receiver(data)
        except Exception as exc:  # a bug in the receiver must not kill the connection
            self._loop.call_exception_handler({
                "message": f"UART back-end {self.describe()}: the input receiver raised",
                "exception": exc,
            })

    # -- output -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue ``data`` for the host.  Never blocks, never raises."""
        n = len(data)
        if not n:
            return
        if self._state == "closed" or self._closing:
            self._dropped += n
            return
        if self._state == "open":
            if threading.get_ident() != self._loop_thread:
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self.write, bytes(data))
                except RuntimeError:       # the loop is closed
                    self._dropped += n
                return
            if not self._sink_ready():
                self._dropped += n
                return
        room = self.output_limit - len(self._out) - self._sink_queued()
        if n > room:                                   # keep the oldest, drop the newest
            room = max(room, 0)
            self._dropped += n - room
            if not room:
                return
            self._out += memoryview(data)[:room]
        else:
            self._out += data
        if self._state == "open" and not self._out_scheduled:
            self._out_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_out)

    def _flush_out(self) -> None:
        self._out_scheduled = False
        if self._state != "open" or not self._out:
            return
        data = bytes(self._out)
        self._out.clear()
        if not self._sink_ready():
            self._dropped += len(data)
            return
        self._sink_write(data)

    # -- what subclasses provide --------------------------------------------------
    async def _open(self) -> None:
        pass

    async def _close(self) -> None:
        pass

    async def _drain(self) -> None:
        """Wait until output queued for a connected peer has been handed over."""

    def _set_reading(self, want: bool) -> None:
        """Start (``want``) or stop reading from the host."""

    def _source_may_produce(self) -> bool:
        return False

    def _sink_ready(self) -> bool:
        return False

    def _sink_queued(self) -> int:
        return 0

    def _sink_write(self, data: bytes) -> None:
        self._dropped += len(data)


# -- none, file: -----------------------------------------------------------------------
class _NoneBackend(CharBackend):
    kind = "none"

    def write(self, data: bytes) -> None:
        pass

    def _sink_ready(self) -> bool:
        return True


class _FileBackend(CharBackend):
    """Output appended to a (regular) file with plain writes on the loop
    thread -- page-cache writes take microseconds, once per loop turn."""
    kind = "file"

    def __init__(self, spec: str, path: str) -> None:
        super().__init__(spec)
        self.path = path
        self._fd: Optional[int] = None
        self._failed = False

    @property
    def address(self) -> Any:
        return self.path

    def describe(self) -> str:
        return f"file:{self.path}"

    async def _open(self) -> None:
        try:
            # O_NONBLOCK: a FIFO without a reader fails at once instead of hanging the loop.
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                               | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
        except OSError as exc:
            raise BackendError(f"UART back-end {self.spec!r}: cannot open {self.path!r} "
                               f"for writing: {_strerror(exc)}") from exc

    def _sink_ready(self) -> bool:
        return self._fd is not None and not self._failed

    def _sink_write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except InterruptedError:
                continue
            except OSError as exc:
                self._dropped += len(view)
                if not isinstance(exc, BlockingIOError):
                    self._failed = True
                    log.warning("UART output to %s failed (%s); further output is discarded",
                                self.path, _strerror(exc))
                return

    async def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- stdio -----------------------------------------------------------------------------
def _fileno(stream: Any) -> Optional[int]:
    if isinstance(stream, int):
        return stream
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation is both
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class _ThreadReader:
    """Reads one chunk per ``request()`` in a daemon thread and hands it to
    ``on_data`` on the loop (b"" at EOF).  One chunk in flight at most, so
    pausing the requests pauses the source."""

    def __init__(self, source: Any, loop: asyncio.AbstractEventLoop,
                 on_data: Callable[[bytes], None]) -> None:
        self._source = source
        self._fd = _fileno(source)
        self._loop = loop
        self._on_data = on_data
        self._request = threading.Event()
        self._stop = False
        self._lock = threading.Lock()
        self._wake_r = self._wake_w = -1
        if self._fd is not None:
            self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="aemu-uart-stdin", daemon=True)
        self._thread.start()

    def request(self) -> None:
        self._request.set()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._request.set()
            if self._wake_w >= 0:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass

    def _read(self) -> Optional[bytes]:
        """One chunk, b"" at EOF, None when stopped."""
        if self._fd is None:
            read = getattr(self._source, "read1", None) or self._source.read
            while not self._stop:
                data = read(READ_CHUNK)
                if isinstance(data, str):            # a text stream
                    return data.encode("utf-8", "surrogateescape")
                if data is not None:
                    return bytes(data)
                time.sleep(0.05)             # a non-blocking raw stream with nothing yet
            return None
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stop:
            poller.poll()
            if self._stop:
                return None
            try:
                return os.read(self._fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
        return None

    def _run(self) -> None:
        try:
            while True:
                self._request.wait()
                self._request.clear()
                if self._stop:
                    return
                try:
                    data = self._read()
                except (OSError, ValueError) as exc:     # a closed or unreadable stdin
                    log.debug("UART input: reading stdin failed: %s", exc)
                    data = b""
                if data is None or self._stop:
                    return
                try:
                    self._loop.call_soon_threadsafe(self._on_data, data)
                except RuntimeError:                     # the loop is closed
                    return
                if not data:
                    return
        finally:
            with self._lock:
                for fd in (self._wake_r, self._wake_w):
                    if fd >= 0:
                        os.close(fd)
                self._wake_r = self._wake_w = -1


class _ThreadWriter:
    """Writes to a file descriptor from a daemon thread with plain blocking
    writes, so the loop never waits for a slow terminal or pipe reader."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._inflight = 0
        self._closing = False
        self._abandon = False
        self.dead = False
        self.lost = 0
        self.done: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="aemu-uart-stdout", daemon=True)
        self._thread.start()

    def queued(self) -> int:
        return len(self._buf) + self._inflight

    def put(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()

    def abandon(self) -> None:
        self._abandon = True
        self.close()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._buf and not self._closing:
                        self._cond.wait()
                    if not self._buf or self._abandon:
                        return
                    chunk = bytes(self._buf)
                    self._buf.clear()
                    self._inflight = len(chunk)
                ok = self._write_all(chunk)
                self._inflight = 0
                if not ok:
                    return
        finally:
            with self._cond:
                self.lost += len(self._buf) + self._inflight
                self._buf.clear()
                self._inflight = 0
            try:
                self._loop.call_soon_threadsafe(self._finished)
            except RuntimeError:
                pass

    def _finished(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _write_all(self, chunk: bytes) -> bool:
        view = memoryview(chunk)
        while view:
            if self._abandon:
                self.lost += len(view)
                return False
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:          # somebody else made the fd non-blocking
                select.select([], [self._fd], [], 0.1)
            except InterruptedError:
                pass
            except OSError as exc:
                self.dead = True
                self.lost += len(view)
                log.warning("UART output to stdout failed (%s); further output is discarded",
                            _strerror(exc))
                return False
        return True


class _StdioBackend(CharBackend):
    kind = "stdio"

    def __init__(self, spec: str, stdin: Any = None, stdout: Any = None,
                 with_input: bool = True) -> None:
        super().__init__(spec)
        self._stdin_arg = stdin
        self._stdout_arg = stdout
        self._with_input = with_input
        self._reader: Optional[_ThreadReader] = None
        self._requested = False
        self._eof = not with_input
        self._writer: Optional[_ThreadWriter] = None
        self._stream: Any = None           # an output object without a file descriptor
        self._stream_dead = False
        self._decoder: Any = None          # for a text stream

    @property
    def dropped(self) -> int:
        return self._dropped + (self._writer.lost if self._writer is not None else 0)

    def describe(self) -> str:
        if self._with_input and self._eof and self._state == "open":
            return f"{self.spec} (stdin at EOF)"
        return self.spec

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        stdout = self._stdout_arg
        if stdout is None:
            try:
                sys.stdout.flush()           # keep what Python printed before us in order
            except (AttributeError, OSError, ValueError):
                pass
            stdout = getattr(sys.stdout, "buffer", sys.stdout)
        elif hasattr(stdout, "flush"):
            try:
                stdout.flush()
            except (OSError, ValueError):
                pass
        fd = _fileno(stdout) if stdout is not None else None
        if fd is not None:
            self._writer = _ThreadWriter(fd, loop)
        else:
            self._stream = stdout
            self._stream_dead = stdout is None
            if isinstance(stdout, io.TextIOBase):
                self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if self._with_input:
            stdin = self._stdin_arg
            if stdin is None:
                stdin = getattr(sys.stdin, "buffer", sys.stdin)
            if stdin is None:
                self._eof = True
            else:
                self._reader = _ThreadReader(stdin, loop, self._on_input)

    # input
    def _set_reading(self, want: bool) -> None:
        if want and self._reader is not None and not self._eof and not self._requested:
            self._requested = True
            self._reader.request()

    def _on_input(self, data: bytes) -> None:
        self._requested = False
        if self._state != "open":
            return
        if not data:
            self._eof = True
            return
        self._deliver(data)
        self._set_reading(self._wants_input())

    def _source_may_produce(self) -> bool:
        return not self._eof

    # output
    def _sink_ready(self) -> bool:
        if self._writer is not None:
            return not self._writer.dead
        return not self._stream_dead

    def _sink_queued(self) -> int:
        return self._writer.queued() if self._writer is not None else 0

    def _sink_write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.put(data)
            return
        try:
            if self._decoder is not None:
                self._stream.write(self._decoder.decode(data))
            else:
                self._stream.write(data)
            flush = getattr(self._stream, "flush", None)
            if flush is not None:
                flush()
        except (OSError, ValueError) as exc:
            self._stream_dead = True
            self._dropped += len(data)
            log.warning("UART output to stdout failed (%s); further output is discarded",
                        _strerror(exc))

    async def _drain(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await asyncio.shield(self._writer.done)

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        if self._writer is not None:
            self._writer.abandon()      # a no-op if it has drained and finished


# -- pty -------------------------------------------------------------------------------
class _PtyBackend(CharBackend):
    """The master side of a pseudo-terminal.  We keep the slave open too, so
    the master never sees a hang-up when a terminal program comes and goes."""
    kind = "pty"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self._master = -1
        self._slave = -1
        self.path: Optional[str] = None
        self._reading = False
        self._writing = False
        self._wbuf = bytearray()
        self._dead = False

    @property
    def address(self) -> Any:
        return self.path

    def describe(self) -> str:
        return f"pty:{self.path}" if self.path else "pty"

    async def _open(self) -> None:
        try:
            master, slave = os.openpty()
        except OSError as exc:
            raise BackendError(f"UART back-end 'pty': cannot allocate a pseudo-terminal: "
                               f"{_strerror(exc)}") from exc
        try:
            tty.setraw(slave, termios.TCSANOW)
            os.set_blocking(master, False)
            self.path = os.ttyname(slave)
        except (OSError, termios.error) as exc:
            os.close(master)
            os.close(slave)
            raise BackendError(f"UART back-end 'pty': {exc}") from exc
        self._master, self._slave = master, slave

    def _set_reading(self, want: bool) -> None:
        if self._master < 0 or self._dead or want == self._reading:
            return
        assert self._loop is not None
        if want:
            self._loop.add_reader(self._master, self._on_readable)
        else:
            self._loop.remove_reader(self._master)
        self._reading = want

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data = b""
            log.warning("UART pty %s: read failed: %s", self.path, _strerror(exc))
        if not data:            # cannot happen while we hold the slave; be safe
            self._set_reading(False)
            self._dead = True
            return
        self._deliver(data)

    def _source_may_produce(self) -> bool:
        return not self._dead

    def _sink_ready(self) -> bool:
        return self._master >= 0 and not self._dead

    def _sink_queued(self) -> int:
        return len(self._wbuf)

    def _sink_write(self, data: bytes) -> None:
        if self._wbuf:
            self._wbuf += data
            return
        try:
            n = os.write(self._master, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._write_failed(exc, len(data))
            return
        if n < len(data):
            self._wbuf += memoryview(data)[n:]
            self._start_writer()

    def _start_writer(self) -> None:
        if not self._writing:
            assert self._loop is not None
            self._loop.add_writer(self._master, self._on_writable)
            self._writing = True

    def _stop_writer(self) -> None:
        if self._writing:
            assert self._loop is not None
            self._loop.remove_writer(self._master)
            self._writing = False

    def _on_writable(self) -> None:
        try:
            n = os.write(self._master, self._wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._write_failed(exc, len(self._wbuf))
            return
        del self._wbuf[:n]
        if not self._wbuf:
            self._stop_writer()

    def _write_failed(self, exc: OSError, n: int) -> None:
        self._dropped += n
        self._wbuf.clear()
        self._stop_writer()
        self._dead = True
        log.warning("UART pty %s: write failed (%s); further output is discarded",
                    self.path, _strerror(exc))

    async def _close(self) -> None:
        # Not drained: a pty nobody reads would only make close() wait.
        if self._master >= 0:
            self._set_reading(False)
            self._stop_writer()
            self._dropped += len(self._wbuf)
            self._wbuf.clear()
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1


# -- socket servers ---------------------------------------------------------------------
class _ClientProtocol(asyncio.Protocol):
    def __init__(self, owner: "_ServerBackend") -> None:
        self.owner = owner
        self.transport: Any = None
        self.peer = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.owner._on_connect(self)

    def data_received(self, data: bytes) -> None:
        if self.owner._client is self:
            self.owner._deliver(data)

    def eof_received(self) -> bool:
        # A client's EOF ends the connection: a full close looks the same
        # from here, and a lingering half-open client would lock others out.
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.owner._on_lost(self, exc)


class _ServerBackend(CharBackend):
    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self._server: Optional[asyncio.AbstractServer] = None
        self._client: Optional[_ClientProtocol] = None

    def describe(self) -> str:
        where = self._where()
        if self._state == "new":
            return f"{where} (not open)"
        if self._state == "closed":
            return f"{where} (closed)"
        if self._sink_ready():
            return f"{where} (client connected)"
        return f"{where} (waiting for a client)"

    def _where(self) -> str:
        raise NotImplementedError

    def _on_connect(self, proto: _ClientProtocol) -> None:
        transport = proto.transport
        peer = transport.get_extra_info("peername")
        proto.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"
        if self._state != "open" or self._closing:
            transport.abort()
            return
        if self._client is not None:
            log.warning("%s: refused %s: the UART already has a client", self._where(), proto.peer)
            transport.close()
            return
        self._client = proto
        log.info("%s: %s connected", self._where(), proto.peer)
        self._set_reading(self._wants_input())
        # Some loops start reading only after connection_made() returns and
        # ignore a pause_reading() made inside it (cpython gh-103607, uvloop):
        # apply the reading state again once the transport is set up.
        assert self._loop is not None
        self._loop.call_soon(self._update_reading)

    def _on_lost(self, proto: _ClientProtocol, exc: Optional[Exception]) -> None:
        if proto is self._client:
            self._client = None
            log.info("%s: %s disconnected%s", self._where(), proto.peer,
                     f" ({exc})" if exc else "")

    def _set_reading(self, want: bool) -> None:
        client = self._client
        if client is None:
            return
        transport = client.transport
        if transport.is_closing() or transport.is_reading() == want:
            return
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def _source_may_produce(self) -> bool:
        return True            # a client can always (re)connect

    def _sink_ready(self) -> bool:
        return self._client is not None and not self._client.transport.is_closing()

    def _sink_queued(self) -> int:
        if self._client is None:
            return 0
        return self._client.transport.get_write_buffer_size()

    def _sink_write(self, data: bytes) -> None:
        assert self._client is not None
        self._client.transport.write(data)

    async def _drain(self) -> None:
        while self._sink_ready() and self._sink_queued():
            await asyncio.sleep(0.01)

    async def _listen(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.transport.is_closing():
            if client.transport.get_write_buffer_size():
                client.transport.abort()
            else:
                client.transport.close()
        server, self._server = self._server, None
        if server is not None:
            server.close()
            try:
                await asyncio.wait_for(server.wait_closed(), self.close_timeout)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        self._after_close()

    def _after_close(self) -> None:
        pass


class _UnixBackend(_ServerBackend):
    kind = "unix"

    def __init__(self, spec: str, path: str) -> None:
        super().__init__(spec)
        self.path = os.path.abspath(path)
        self._bind_path = path
        self._listener: Optional[sockets.UnixListener] = None

    @property
    def address(self) -> Any:
        return self.path

    def _where(self) -> str:
        return f"unix:{self.path}"

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            listener = sockets.UnixListener(self._bind_path)
        except sockets.EndpointError as exc:
            raise BackendError(f"UART back-end {self.spec!r}: {exc}") from exc
        try:
            self._server = await loop.create_unix_server(
                lambda: _ClientProtocol(self), sock=listener.sock)
        except BaseException:
            listener.sock.close()
            listener.unlink()
            raise
        self._listener = listener

    def _after_close(self) -> None:
        if self._listener is not None:
            self._listener.unlink()


class _TcpBackend(_ServerBackend):
    kind = "tcp"

    def __init__(self, spec: str, host: str, port: int) -> None:
        super().__init__(spec)
        self.host = host
        self.port = port
        self._address: Optional[tuple[str, int]] = None

    @property
    def address(self) -> Any:
        """(host, port) actually bound, after ``open()``."""
        return self._address

    def _where(self) -> str:
        host, port = self._address or (self.host, self.port)
        return str(sockets.TcpEndpoint(host, port))

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock = sockets.tcp_listener(self.host, self.port)
        except sockets.EndpointError as exc:
            raise BackendError(f"UART back-end {self.spec!r}: {exc}") from exc
        try:
            name = sock.getsockname()
            self._address = (name[0], name[1])
            self._server = await loop.create_server(lambda: _ClientProtocol(self), sock=sock)
        except BaseException:
            sock.close()
            self._address = None
            raise
        if not sockets.is_loopback(self._address[0]):
            log.warning("UART listening on %s, which is not a loopback address: anyone who "
                        "can reach it can talk to the guest", self._where())


# -- parsing ---------------------------------------------------------------------------
def open_backend(spec: str, *, stdin: Any = None, stdout: Any = None) -> CharBackend:
    """Parse ``spec`` and build the back-end (nothing is opened yet).

    ``stdin``/``stdout`` replace the process's streams for ``stdio``: binary
    file objects (with or without a file descriptor) or raw fds.
    """
    if not isinstance(spec, str):
        raise BackendError(f"a UART back-end spec must be a string, not {type(spec).__name__}")
    kind, colon, arg = spec.partition(":")
    if not colon:
        if kind == "stdio":
            return _StdioBackend(spec, stdin, stdout)
        if kind == "stdout":
            return _StdioBackend(spec, None, stdout, with_input=False)
        if kind == "none":
            return _NoneBackend(spec)
        if kind == "pty":
            return _PtyBackend(spec)
    if kind in ("stdio", "stdout", "none", "pty"):
        raise BackendError(f"UART back-end {kind!r} takes no argument (got {spec!r}); "
                           + SPEC_HELP)
    if kind in ("file", "unix"):
        if not arg:
            raise BackendError(f"UART back-end {spec!r} needs a path: {kind}:PATH")
        if "\0" in arg:
            raise BackendError(f"bad UART back-end {spec!r}: NUL in the path")
        if kind == "file":
            return _FileBackend(spec, os.path.expanduser(arg))
        try:
            return _UnixBackend(spec, sockets.check_unix_path(spec, arg))
        except sockets.EndpointError as exc:
            raise BackendError(f"UART back-end: {exc}") from None
    if kind == "tcp":
        try:
            host, port = sockets.parse_tcp(spec, arg)
        except sockets.EndpointError as exc:
            raise BackendError(f"UART back-end: {exc}") from None
        return _TcpBackend(spec, host, port)
    raise BackendError(f"unknown UART back-end {spec!r}: {SPEC_HELP}")
