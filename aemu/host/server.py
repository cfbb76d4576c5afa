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
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any, Callable

from aemu import __version__
from aemu.host.commands import Command, CommandContext, CommandTable
from aemu.host.protocol import (MAX_MESSAGE, JsonSplitter, QmpError, command_not_found, encode,
                                event)
from aemu.transport import sockets

log = logging.getLogger(__name__)

MAX_QUEUED = 8              #: in-band requests queued before reading pauses
MAX_OUTPUT = 8 << 20        #: bytes waiting for a slow client before it is dropped
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


class QmpServer:
    """Serve ``commands`` for ``target`` on one endpoint."""

    def __init__(self, commands: CommandTable, target: Any, *,
                 max_message: int = MAX_MESSAGE) -> None:
        self.commands = commands
        self.target = target
        self.max_message = max_message
        self.sessions: set[QmpSession] = set()
        self.where = "(not listening)"
        self._server: asyncio.AbstractServer | None = None
        self._unix: sockets.UnixListener | None = None

    def new_splitter(self) -> JsonSplitter:
        return JsonSplitter(self.max_message)

    async def listen(self, spec: "str | sockets.Endpoint") -> str:
        """Listen on ``unix:PATH`` or ``tcp:[HOST:]PORT``; the address bound."""
        endpoint = sockets.parse_endpoint(spec) if isinstance(spec, str) else spec
        loop = asyncio.get_running_loop()
        factory: Callable[[], QmpSession] = lambda: QmpSession(self)  # noqa: E731
        if isinstance(endpoint, sockets.UnixEndpoint):
            self._unix = sockets.UnixListener(endpoint.path, backlog=64)
            try:
                self._server = await loop.create_unix_server(factory, sock=self._unix.sock)
            except BaseException:
                self._unix.sock.close()
                self._unix.unlink()
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

    def broadcast(self, name: str, data: dict[str, Any] | None = None,
                  when: float | None = None) -> None:
        """Send an event to every negotiated client."""
        if not self.sessions:
            return
        raw = event(name, data, when)
        for session in list(self.sessions):
            session.send_event(raw)

    async def close(self) -> None:
        """Stop listening, disconnect every client, remove the socket file."""
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        if self._unix is not None:
            self._unix.unlink()
            self._unix = None
        if self._server is not None:
            server, self._server = self._server, None
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass


__all__ = ["QmpServer", "QmpSession", "greeting"]
