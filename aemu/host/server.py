"""A QMP server: one listening socket, one session per client.

A session starts in capabilities negotiation (only ``qmp_capabilities``
works, no events), then executes commands in the order they arrive: a
synchronous handler answers at once, a coroutine handler holds the queue
until it is done.  Requests beyond ``MAX_QUEUED`` pause reading from the
client (so a flood is pushed back by the kernel), and a client that stops
reading its replies and events is disconnected once ``MAX_OUTPUT`` bytes wait
for it.  A client that goes away mid-command changes nothing: the command
finishes and its reply is dropped; what it had queued behind it (or sent
after the replies it did not read) is not executed.

On a Unix socket a client may send descriptors (SCM_RIGHTS, as QEMU clients
do for ``getfd``) with its bytes.  asyncio's and uvloop's transports read
with recv(), which drops them, so Unix clients are served by
``FdPassingTransport``: the server accepts them itself and reads with
recvmsg().  A session keeps what it was sent in ``fds`` (at most
``MAX_PENDING_FDS``; more are closed at once) for a command to take; those no
command took are closed with the session.  TCP clients use the loop's own
transport.
"""
from __future__ import annotations

import array
import asyncio
import collections
import errno
import logging
import os
import socket
from typing import Any, Callable, Optional

from aemu import __version__
from aemu.host.commands import Command, CommandContext, CommandTable
from aemu.host.protocol import (MAX_MESSAGE, JsonSplitter, QmpError, command_not_found, encode,
                                event)
from aemu.transport import sockets

log = logging.getLogger(__name__)

MAX_QUEUED = 8              #: in-band requests queued before reading pauses
MAX_OUTPUT = 8 << 20        #: bytes waiting for a slow client before it is dropped
MAX_PENDING_FDS = 32        #: descriptors a session holds for getfd; more are closed
MAX_FDS_PER_MESSAGE = 16    #: descriptors one recvmsg() takes; the kernel closes more
#: QEMU release whose QMP dialect aemu speaks (the greeting's "qemu" version)
QEMU_VERSION = {"major": 9, "minor": 2, "micro": 0}


def greeting() -> bytes:
    return encode({"QMP": {"version": {"qemu": QEMU_VERSION, "package": f"aemu {__version__}"},
                           "capabilities": []}})


class QmpSession(asyncio.Protocol):
    def __init__(self, server: "QmpServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.negotiated = False
        self._splitter = server.new_splitter()
        self._queue: collections.deque[Any] = collections.deque()
        self._busy = False
        self._reading_paused = False
        self.closed = False
        #: descriptors that arrived with the client's bytes (SCM_RIGHTS), oldest first
        self.fds: collections.deque[int] = collections.deque()

    def take_fd(self) -> int | None:
        """The oldest descriptor the client sent and no command took yet (getfd)."""
        return self.fds.popleft() if self.fds else None

    def fds_received(self, fds: list[int]) -> None:
        """Descriptors that came with the client's next bytes (called before
        ``data_received`` with those bytes, so a getfd in them finds them)."""
        dropped = 0
        for fd in fds:
            if self.closed or len(self.fds) >= MAX_PENDING_FDS:
                _close_fd(fd)
                dropped += 1
            else:
                self.fds.append(fd)
        if dropped:
            log.warning("QMP client on %s sent %d file descriptors beyond the %d not yet "
                        "taken by getfd; closed them", self.server.where, dropped,
                        MAX_PENDING_FDS)

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.sessions.add(self)
        transport.write(greeting())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        for item in self._splitter.feed(data):
            self._queue.append(item)
        self._drain_queue()

    def eof_received(self) -> bool:
        return False               # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._queue.clear()
        self.server.sessions.discard(self)
        while self.fds:                 # sent, but no getfd took them
            _close_fd(self.fds.popleft())

    # -- output ----------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > MAX_OUTPUT:
            log.warning("QMP client on %s does not read its replies; disconnecting it",
                        self.server.where)
            transport.abort()

    def send_event(self, data: bytes) -> None:
        if self.negotiated:
            self.send(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- requests --------------------------------------------------------------------
    def _gone(self) -> bool:
        """Closed, or closing (dropped for not reading, or at EOF): what it
        still has queued is not executed."""
        return self.closed or self.transport is None or self.transport.is_closing()

    def _drain_queue(self) -> None:
        while self._queue and not self._busy and not self._gone():
            item = self._queue.popleft()
            self._handle(item)
        transport = self.transport
        if transport is None or self._gone():
            self._queue.clear()
            return
        want_pause = len(self._queue) >= MAX_QUEUED
        if want_pause != self._reading_paused:
            self._reading_paused = want_pause
            (transport.pause_reading if want_pause else transport.resume_reading)()

    def _handle(self, msg: Any) -> None:
        if isinstance(msg, QmpError):
            # parse errors carry no id: nothing could be read reliably
            self.send(encode({"error": msg.to_json()}))
            return
        has_id = isinstance(msg, dict) and "id" in msg
        ident = msg.get("id") if has_id else None
        try:
            command, args = self._resolve(msg)
        except QmpError as err:
            self._reply(has_id, ident, error=err)
            return
        ctx = CommandContext(self.server.target, self)
        if command.is_async:
            self._busy = True
            task = asyncio.get_running_loop().create_task(command.handler(ctx, **args))
            task.add_done_callback(lambda t: self._finished(t, has_id, ident, command))
            return
        try:
            result = command.handler(ctx, **args)
        except QmpError as err:
            self._reply(has_id, ident, error=err)
        except Exception as exc:  # a bug of ours: say so, keep serving
            log.exception("QMP command %s failed", command.name)
            self._reply(has_id, ident, error=QmpError(f"internal error in {command.name}: "
                                                      f"{exc!r}"))
        else:
            self._reply(has_id, ident, result)

    def _finished(self, task: asyncio.Task, has_id: bool, ident: Any, command: Command) -> None:
        self._busy = False
        if task.cancelled():
            self._reply(has_id, ident, error=QmpError(f"{command.name} was cancelled"))
        elif (exc := task.exception()) is not None:
            if not isinstance(exc, QmpError):
                log.error("QMP command %s failed", command.name, exc_info=exc)
                exc = QmpError(f"internal error in {command.name}: {exc!r}")
            self._reply(has_id, ident, error=exc)
        else:
            self._reply(has_id, ident, task.result())
        self._drain_queue()

    def _reply(self, has_id: bool, ident: Any, result: Any = None, *,
               error: QmpError | None = None) -> None:
        msg: dict[str, Any] = ({"error": error.to_json()} if error is not None
                               else {"return": {} if result is None else result})
        if has_id:
            msg["id"] = ident
        self.send(encode(msg))

    def _resolve(self, msg: Any) -> tuple[Command, dict[str, Any]]:
        """Check the request's shape and its arguments: (command, kwargs)."""
        if not isinstance(msg, dict):
            raise QmpError("QMP input must be a JSON object")
        if "exec-oob" in msg:
            if "execute" in msg:
                raise QmpError("QMP input must not contain both 'execute' and 'exec-oob'")
            raise QmpError("QMP input member 'exec-oob' is unexpected: out-of-band execution "
                           "is not enabled")
        for key in msg:
            if key not in ("execute", "arguments", "id"):
                raise QmpError(f"QMP input member '{key}' is unexpected")
        if "execute" not in msg:
            raise QmpError("QMP input lacks member 'execute'")
        name = msg["execute"]
        if not isinstance(name, str):
            raise QmpError("QMP input member 'execute' must be a string")
        arguments = msg.get("arguments", {})
        if not isinstance(arguments, dict):
            raise QmpError("QMP input member 'arguments' must be an object")
        if not self.negotiated and name != "qmp_capabilities":
            raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           "CommandNotFound")
        command = self.server.commands.get(name)
        if command is None:
            raise command_not_found(name)
        return command, command.check(arguments)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


_RECV_SIZE = 64 * 1024
_ANC_SIZE = socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * array.array("i").itemsize)
_MSG_CMSG_CLOEXEC: int = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_MSG_NOSIGNAL: int = getattr(socket, "MSG_NOSIGNAL", 0)
_MSG_CTRUNC: int = socket.MSG_CTRUNC


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors in recvmsg()'s ancillary data (close-on-exec)."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(data[:len(data) - len(data) % got.itemsize])
            fds.extend(got)
    if not _MSG_CMSG_CLOEXEC:          # pragma: no cover - Linux has the flag
        for fd in fds:
            os.set_inheritable(fd, False)
    return fds


class FdPassingTransport(asyncio.Transport):
    """A connected Unix stream socket as an asyncio transport that also
    receives descriptors: ``loop.add_reader`` and non-blocking ``recvmsg``
    for input (descriptors go to ``protocol.fds_received(fds)`` before the
    bytes they came with go to ``data_received``), buffered non-blocking
    ``send`` with ``loop.add_writer`` for output.  It works on any loop that
    has add_reader/add_writer (asyncio's, uvloop).

    Behaves as the loop's socket transport does for what a QMP session uses:
    write (no-op once closing), close (connection_lost once the buffer is
    out), abort, is_closing, pause_reading / resume_reading,
    get_write_buffer_size, get_extra_info ("socket", "sockname", "peername").
    EOF calls ``eof_received`` and closes unless it returns true; an error
    (or an exception in the protocol) aborts with connection_lost(exc).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.Protocol,
                 on_closed: Optional[Callable[["FdPassingTransport"], None]] = None) -> None:
        extra: dict[str, Any] = {"socket": sock}
        for key, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                extra[key] = get()
            except OSError:
                extra[key] = None
        super().__init__(extra)
        self._loop = loop
        self._sock: Optional[socket.socket] = sock
        self._fileno = sock.fileno()
        self._recvmsg = sock.recvmsg
        self._send = sock.send
        self._protocol = protocol
        self._on_closed = on_closed
        self._buffer = bytearray()
        self._closing = False          # close() or abort(): no more reading or writes
        self._lost = False             # connection_lost is scheduled
        self._paused = False
        self._reading = False
        self._writing = False

    def start(self) -> None:
        """connection_made, then start reading."""
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "protocol.connection_made() failed")
            return
        if not self._closing and not self._paused:
            self._add_reader()

    # -- asyncio.Transport ---------------------------------------------------------
    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._remove_reader()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._add_reader()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if self._closing or not data:
            return
        if not self._buffer:
            try:
                sent = self._send(data, _MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "write failed")
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
            self._loop.add_writer(self._fileno, self._write_ready)
            self._writing = True
        self._buffer += data

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._remove_reader()
        if not self._buffer:
            self._schedule_lost(None)

    def abort(self) -> None:
        self._force_close(None)

    # -- the loop's callbacks ------------------------------------------------------
    def _read_ready(self) -> None:
        if self._closing:
            return
        try:
            data, ancdata, flags, _ = self._recvmsg(_RECV_SIZE, _ANC_SIZE, _MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "read failed")
            return
        if flags & _MSG_CTRUNC:
            log.warning("a client sent more than %d file descriptors at once; the "
                        "kernel closed the rest", MAX_FDS_PER_MESSAGE)
        try:
            if ancdata:
                fds = _fds_of(ancdata)
                if fds:
                    receive = getattr(self._protocol, "fds_received", None)
                    if receive is None:
                        for fd in fds:
                            _close_fd(fd)
                    else:
                        receive(fds)
            if data:
                self._protocol.data_received(data)
            elif not ancdata:
                self._eof()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "protocol callback failed")

    def _eof(self) -> None:
        self._remove_reader()
        if not self._protocol.eof_received():
            self.close()

    def _write_ready(self) -> None:
        if self._sock is None:
            return
        try:
            sent = self._send(self._buffer, _MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "write failed")
            return
        if sent:
            del self._buffer[:sent]
        if not self._buffer:
            self._remove_writer()
            if self._closing:
                self._schedule_lost(None)

    # -- closing -------------------------------------------------------------------
    def _fatal_error(self, exc: BaseException, what: str) -> None:
        if isinstance(exc, OSError):
            log.debug("QMP connection: %s: %s", what, exc)
        else:
            log.error("QMP connection: %s", what, exc_info=exc)
        self._force_close(exc)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._buffer.clear()
        self._remove_writer()
        self._closing = True
        self._remove_reader()
        self._schedule_lost(exc)

    def _schedule_lost(self, exc: Optional[BaseException]) -> None:
        if not self._lost:
            self._lost = True
            self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        try:
            self._protocol.connection_lost(exc)  # type: ignore[arg-type]
        finally:
            self._remove_reader()
            self._remove_writer()
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()
            if self._on_closed is not None:
                self._on_closed(self)

    def _add_reader(self) -> None:
        if not self._reading and self._sock is not None:
            self._loop.add_reader(self._fileno, self._read_ready)
            self._reading = True

    def _remove_reader(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fileno)

    def _remove_writer(self) -> None:
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fileno)


class QmpServer:
    """Serve ``commands`` for ``target`` on one endpoint."""

    def __init__(self, commands: CommandTable, target: Any, *,
                 max_message: int = MAX_MESSAGE) -> None:
        self.commands = commands
        self.target = target
        self.max_message = max_message
        self.sessions: set[QmpSession] = set()
        self.where = "(not listening)"
        self._server: asyncio.AbstractServer | None = None     # TCP
        self._unix: sockets.UnixListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._retry_accept: asyncio.TimerHandle | None = None
        #: the Unix clients' transports, until their connection_lost
        self._transports: set[FdPassingTransport] = set()
        self._all_closed: asyncio.Future | None = None

    def new_splitter(self) -> JsonSplitter:
        return JsonSplitter(self.max_message)

    async def listen(self, spec: "str | sockets.Endpoint") -> str:
        """Listen on ``unix:PATH`` or ``tcp:[HOST:]PORT``; the address bound."""
        endpoint = sockets.parse_endpoint(spec) if isinstance(spec, str) else spec
        loop = asyncio.get_running_loop()
        factory: Callable[[], QmpSession] = lambda: QmpSession(self)  # noqa: E731
        if isinstance(endpoint, sockets.UnixEndpoint):
            self._unix = sockets.UnixListener(endpoint.path, backlog=64)
            self._loop = loop
            try:
                self._start_accepting()
            except BaseException:
                self._unix.sock.close()
                self._unix.unlink()
                self._unix = None
                raise
            self.where = f"unix:{self._unix.path}"
        else:
            sock = sockets.tcp_listener(endpoint.host, endpoint.port, backlog=64)
            try:
                self._server = await loop.create_server(factory, sock=sock)
            except BaseException:
                sock.close()
                raise
            host, port = sock.getsockname()[:2]
            self.where = str(sockets.TcpEndpoint(host, port))
            if not sockets.is_loopback(host):
                log.warning("QMP listening on %s, which is not a loopback address: anyone "
                            "who can reach it controls the VM", self.where)
        return self.where

    # -- Unix clients: accepted here, served by FdPassingTransport ------------------
    def _start_accepting(self) -> None:
        self._retry_accept = None
        if self._unix is not None and not self._accepting:
            self._loop.add_reader(self._unix.sock.fileno(), self._accept)  # type: ignore[union-attr]
            self._accepting = True

    def _stop_accepting(self) -> None:
        if self._retry_accept is not None:
            self._retry_accept.cancel()
            self._retry_accept = None
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self._unix.sock.fileno())  # type: ignore[union-attr]

    def _accept(self) -> None:
        loop = self._loop
        assert self._unix is not None and loop is not None
        for _ in range(64):             # the backlog, then let others run
            try:
                conn, _ = self._unix.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # as asyncio does: out of descriptors, try again in a second
                    log.error("cannot accept a QMP client on %s: %s; trying again in "
                              "1 s", self.where, sockets.strerror(exc))
                    self._stop_accepting()
                    self._retry_accept = loop.call_later(1.0, self._start_accepting)
                else:
                    log.error("cannot accept a QMP client on %s: %s", self.where,
                              sockets.strerror(exc))
                return
            try:
                conn.setblocking(False)
                transport = FdPassingTransport(loop, conn, QmpSession(self),
                                               on_closed=self._transport_closed)
            except BaseException:
                conn.close()
                raise
            self._transports.add(transport)
            transport.start()

    def _transport_closed(self, transport: FdPassingTransport) -> None:
        self._transports.discard(transport)
        if not self._transports and self._all_closed is not None \
                and not self._all_closed.done():
            self._all_closed.set_result(None)

    def broadcast(self, name: str, data: dict[str, Any] | None = None,
                  when: float | None = None) -> None:
        """Send an event to every negotiated client."""
        if not self.sessions:
            return
        raw = event(name, data, when)
        for session in list(self.sessions):
            session.send_event(raw)

    async def close(self) -> None:
        """Stop listening, disconnect every client, remove the socket file.
        Unix clients are waited for (up to a second: what was written to them
        goes out first), then dropped."""
        if self._server is not None:
            self._server.close()
        if self._unix is not None:
            self._stop_accepting()
            self._unix.sock.close()
        for session in list(self.sessions):
            session.close()
        if self._unix is not None:
            self._unix.unlink()
            self._unix = None
        if self._transports:
            self._all_closed = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_closed), 1.0)
            except asyncio.TimeoutError:
                pass
            finally:
                self._all_closed = None
            if self._transports:
                for transport in list(self._transports):
                    transport.abort()
                await asyncio.sleep(0)          # their connection_lost
        if self._server is not None:
            server, self._server = self._server, None
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass


__all__ = ["FdPassingTransport", "QmpServer", "QmpSession", "greeting"]
