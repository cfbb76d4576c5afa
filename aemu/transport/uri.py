"""Migration URIs as QEMU spells them, and the channels they open.

    tcp:HOST:PORT         connect (migrate) / listen (incoming; tcp::PORT = all
                          addresses, port 0 = any free port)
    unix:PATH             connect / listen (0600, stale sockets replaced)
    fd:NAME               a descriptor passed earlier with QMP ``getfd`` (or a
                          number: one inherited at start, as ``-incoming fd:3``);
                          a socket or a file
    file:PATH[,offset=N]  a file, the stream starting N bytes in
"""
from __future__ import annotations

import asyncio
import os
import socket
import stat
from dataclasses import dataclass
from typing import Awaitable, Callable, MutableMapping, Optional

from aemu.transport.channel import (BULK_STORE, Channel, ChannelError, FileChannel,
                                    SocketChannel, open_socket)
from aemu.transport.sockets import (EndpointError, UnixListener, check_unix_path, parse_tcp,
                                    strerror, tcp_listener)


class UriError(ValueError):
    """A migration URI that cannot be used (QMP: GenericError with this text)."""


@dataclass(frozen=True)
class MigrationUri:
    kind: str                    #: tcp, unix, fd or file
    host: str = ""
    port: int = 0
    path: str = ""
    fd_name: str = ""
    offset: int = 0

    def __str__(self) -> str:
        if self.kind == "tcp":
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"tcp:{host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd:{self.fd_name}"
        return f"file:{self.path}" + (f",offset={self.offset}" if self.offset else "")

    @property
    def is_socket(self) -> bool:
        return self.kind in ("tcp", "unix")


def parse_uri(uri: str) -> MigrationUri:
    if not isinstance(uri, str) or not uri:
        raise UriError("a migration URI must be a non-empty string")
    kind, colon, rest = uri.partition(":")
    if not colon:
        raise UriError(f"bad migration URI {uri!r}: use tcp:HOST:PORT, unix:PATH, fd:NAME "
                       "or file:PATH[,offset=N]")
    try:
        if kind == "tcp":
            host, port = parse_tcp(uri, rest)
            return MigrationUri("tcp", host=host, port=port)
        if kind == "unix":
            return MigrationUri("unix", path=check_unix_path(uri, rest))
    except EndpointError as exc:
        raise UriError(str(exc)) from None
    if kind == "fd":
        if not rest:
            raise UriError(f"bad migration URI {uri!r}: fd: needs a name from getfd or a number")
        return MigrationUri("fd", fd_name=rest)
    if kind == "file":
        path, _, opts = rest.partition(",")
        offset = 0
        if opts:
            key, eq, value = opts.partition("=")
            if key != "offset" or not eq or not value.isdigit():
                raise UriError(f"bad migration URI {uri!r}: the only file: option is offset=N")
            offset = int(value)
        if not path:
            raise UriError(f"bad migration URI {uri!r}: file: needs a path")
        return MigrationUri("file", path=os.path.expanduser(path), offset=offset)
    raise UriError(f"unsupported migration URI {uri!r}: use tcp:, unix:, fd: or file:")


def resolve_fd(uri: MigrationUri, fds: "MutableMapping[str, int]") -> int:
    """The descriptor an fd: URI names -- a getfd name, else a plain number --
    taken over: a named one leaves ``fds``, as QEMU's migration consumes it
    (the channel closes it when the migration ends)."""
    if uri.fd_name in fds:
        return fds.pop(uri.fd_name)
    if uri.fd_name.isdigit():
        fd = int(uri.fd_name)
        try:
            os.fstat(fd)
        except OSError:
            raise UriError(f"fd:{uri.fd_name}: descriptor {fd} is not open") from None
        return fd
    raise UriError(f"File descriptor named '{uri.fd_name}' not found")


async def connect(uri: MigrationUri, *, fds: "MutableMapping[str, int] | None" = None,
                  timeout: float = 10.0,
                  label: str = "migration") -> Channel:
    """Open the outgoing end of ``uri``."""
    if uri.kind == "file":
        try:
            fd = os.open(uri.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.ftruncate(fd, uri.offset)     # a prefix before the offset is kept
        except OSError as exc:
            raise ChannelError(f"cannot write {uri.path!r}: {strerror(exc)}") from None
        return FileChannel(fd, f"file {uri.path}", uri.offset)
    if uri.kind == "fd":
        fd = resolve_fd(uri, fds if fds is not None else {})
        return await channel_for_fd(fd, f"fd:{uri.fd_name}", writing=True)
    loop = asyncio.get_running_loop()
    name = f"{label} to {uri}"
    try:
        if uri.kind == "tcp":
            coro = loop.create_connection(lambda: SocketChannel(name), uri.host, uri.port)
        else:
            coro = loop.create_unix_connection(lambda: SocketChannel(name), uri.path)
        _, proto = await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        raise ChannelError(f"{name}: no answer in {timeout:g} s") from None
    except OSError as exc:
        raise ChannelError(f"{name}: {strerror(exc)}") from None
    return proto  # type: ignore[return-value]


async def channel_for_fd(fd: int, name: str, *, writing: bool) -> Channel:
    """A channel over a descriptor we own: a socket, or a file from its
    current position."""
    st = os.fstat(fd)
    if stat.S_ISSOCK(st.st_mode):
        sock = socket.socket(fileno=fd)
        return await open_socket(sock, name)
    if stat.S_ISREG(st.st_mode):
        pos = os.lseek(fd, 0, os.SEEK_CUR)
        return FileChannel(fd, name, pos)
    os.close(fd)
    raise UriError(f"{name}: not a socket or a regular file")


async def open_incoming_file(uri: MigrationUri) -> FileChannel:
    try:
        fd = os.open(uri.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ChannelError(f"cannot read {uri.path!r}: {strerror(exc)}") from None
    return FileChannel(fd, f"file {uri.path}", uri.offset)


class Listener:
    """The incoming end of a tcp: or unix: URI: every accepted connection goes
    to ``on_channel`` (the migration sorts main and multifd channels by their
    first bytes)."""

    def __init__(self, uri: MigrationUri,
                 on_channel: Callable[[SocketChannel], Awaitable[None]]) -> None:
        self.uri = uri
        self._on_channel = on_channel
        self._unix: Optional[UnixListener] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: set[asyncio.Task] = set()
        self.address = uri

    async def start(self) -> MigrationUri:
        """Listen; returns the address (with the port chosen for port 0)."""
        loop = asyncio.get_running_loop()
        try:
            if self.uri.kind == "tcp":
                host = self.uri.host if self.uri.host not in ("", "0") else "0.0.0.0"
                sock = tcp_listener(host, self.uri.port)
                port = sock.getsockname()[1]
                self.address = MigrationUri("tcp", host=self.uri.host, port=port)
            else:
                self._unix = UnixListener(self.uri.path)
                sock = self._unix.sock
        except EndpointError as exc:
            raise ChannelError(str(exc)) from None
        self._server = await loop.create_server(self._protocol, sock=sock)
        return self.address

    def _protocol(self) -> SocketChannel:
        ch = SocketChannel(f"incoming migration on {self.address}", BULK_STORE)
        task = asyncio.get_running_loop().create_task(self._on_channel(ch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ch

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._unix is not None:
            self._unix.unlink()
            self._unix = None
