"""Byte channels for migration streams: a socket (TCP, Unix, an inherited
fd) or a file, behind one small interface.

A channel keeps what it has received in ``buf`` (a bytearray) so that a
parser can look at everything that arrived, hand complete records to C in
one call, and ``consume`` them -- no copy per record, and no await per record
as ``StreamReader.readexactly`` would need.  Writes are queued with
``write`` and flow-controlled by ``drain``.

Errors are ``ChannelError`` with the peer and what happened: a peer that
vanishes mid-transfer ends a ``fill`` or ``drain`` with one, never with a
hang (``close``/``abort`` from another task wake every waiter).
"""
from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Optional

from aemu.transport.sockets import strerror

HIGH_WATER = 4 << 20          #: stop reading the socket past this many buffered bytes
READ_CHUNK = 1 << 20          #: file reads
SOCKET_BUFFER = 4 << 20       #: SO_SNDBUF/SO_RCVBUF asked for (the kernel caps it)
SMALL_STORE = 64 << 10        #: receive store of a channel that mostly sends
BULK_STORE = 4 << 20          #: receive store of a channel that takes a stream


class ChannelError(ConnectionError):
    """The channel broke: closed by the peer, reset, or cancelled here."""


class Channel:
    """The interface (see the module text); ``name`` says what it is."""

    name = "channel"

    def __init__(self) -> None:
        self.buf = bytearray()
        self.received = 0          #: bytes received so far
        self.sent = 0              #: bytes written so far

    async def fill(self, n: int) -> None:
        """Wait until ``buf`` holds at least ``n`` bytes; ChannelError at EOF."""
        raise NotImplementedError

    async def fill_some(self) -> None:
        """Wait until more bytes arrive (at least one); ChannelError at EOF."""
        await self.fill(len(self.buf) + 1)

    def spin(self, seconds: float) -> None:
        """A hint that data is due very soon (see SocketChannel.spin)."""

    def consume(self, n: int) -> None:
        del self.buf[:n]

    async def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        if len(self.buf) < n:
            await self.fill(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def write(self, data: "bytes | bytearray | memoryview") -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait until the queued writes are below the high-water mark."""

    async def flush(self) -> None:
        """Wait until everything written has left (sockets: to the kernel)."""
        await self.drain()

    def close(self) -> None:
        """Close after the queued writes; waiters get ChannelError."""

    def abort(self) -> None:
        """Close now, dropping queued writes; waiters get ChannelError."""
        self.close()

    @property
    def closed(self) -> bool:
        return False


class SocketChannel(Channel, asyncio.BufferedProtocol):
    """A connected stream socket (asyncio transport, either loop).

    The kernel copies received bytes straight into a fixed store that was
    touched when the channel was made (``capacity``): no bytes object per
    read, no growing buffer -- at 1 GB/s, fresh memory for either costs more
    in page faults than the copy itself.  ``buf`` is a view of the bytes
    received and not consumed yet."""

    def __init__(self, name: str = "socket", capacity: int = SMALL_STORE) -> None:
        Channel.__init__(self)
        self.name = name
        self._store = bytearray(capacity)       # zero-filled: every page touched now
        self._start = self._end = 0
        self.transport: Optional[asyncio.Transport] = None
        self._eof = False
        self._error: Optional[BaseException] = None
        self._want = 0
        self._reader: Optional[asyncio.Future] = None
        self._paused_reading = False
        self._paused_writing = False
        self._writable: Optional[asyncio.Future] = None
        self._lost: Optional[asyncio.Future] = None
        #: until this loop time, waiting for data polls instead of sleeping
        self.spin_until = 0.0

    # -- protocol callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._lost = asyncio.get_running_loop().create_future()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # bulk transfer: deep kernel buffers mean fewer wake-ups per MiB
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
        # a deep kernel queue halves the wake-ups of a bulk transfer
        transport.set_write_buffer_limits(high=HIGH_WATER, low=HIGH_WATER // 4)  # type: ignore[attr-defined]

    @property
    def buf(self) -> memoryview:          # type: ignore[override]
        return memoryview(self._store)[self._start:self._end]

    @buf.setter
    def buf(self, value: object) -> None:   # Channel.__init__'s bytearray: ignored
        pass

    def get_buffer(self, sizehint: int) -> memoryview:
        cap = len(self._store)
        if cap - self._end < max(cap // 4, 1):
            # move what is left to the front (little: the reader keeps up, and
            # reading pauses once half the store is full)
            n = self._end - self._start
            self._store[:n] = self._store[self._start:self._end]
            self._start, self._end = 0, n
            if self._end == cap:          # full: the reader must consume first
                self._store.extend(bytes(cap))
                cap *= 2
        return memoryview(self._store)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes
        self.received += nbytes
        used = self._end - self._start
        if used > len(self._store) // 2 and not self._paused_reading and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        if self._reader is not None and used >= self._want:
            self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._eof = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake_reader()
        self._wake_writer()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._wake_writer()

    # -- the interface -----------------------------------------------------------------
    def _wake_reader(self) -> None:
        fut, self._reader = self._reader, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_writer(self) -> None:
        fut, self._writable = self._writable, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _broken(self, doing: str) -> ChannelError:
        if self._error is not None:
            return ChannelError(f"{self.name}: {doing}: {strerror(self._error)}")
        return ChannelError(f"{self.name}: {doing}: the peer closed the connection")

    def spin(self, seconds: float) -> None:
        """Poll for data for the next ``seconds`` instead of sleeping in the
        kernel: a switch-over is latency-bound, and waking a sleeping process
        costs a scheduler round trip (hundreds of microseconds on a VM)."""
        loop = asyncio.get_running_loop()
        self.spin_until = max(self.spin_until, loop.time() + seconds)

    async def fill(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        while self._end - self._start < n:
            if self._eof:
                raise self._broken(f"connection closed with {n - (self._end - self._start)} "
                                   "bytes still expected")
            if self._paused_reading and self.transport is not None:
                self._paused_reading = False
                self.transport.resume_reading()
            if self.spin_until and loop.time() < self.spin_until:
                await asyncio.sleep(0)          # one pass of the loop: a poll with no wait
                continue
            self._want = n
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader

    def consume(self, n: int) -> None:
        self._start += n
        if self._start >= self._end:
            self._start = self._end = 0
        if self._paused_reading and self._end - self._start < len(self._store) // 4 \
                and self.transport:
            self._paused_reading = False
            self.transport.resume_reading()

    async def read(self, n: int) -> bytes:
        if self._end - self._start < n:
            await self.fill(n)
        data = bytes(self._store[self._start:self._start + n])
        self.consume(n)
        return data

    def write(self, data: "bytes | bytearray | memoryview") -> None:
        if self.transport is None or self.transport.is_closing():
            raise self._broken("write")
        self.transport.write(data)
        self.sent += len(data)

    async def drain(self) -> None:
        while self._paused_writing:
            if self.transport is None or self.transport.is_closing():
                raise self._broken("write")
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable
        if self._eof and self._error is not None:
            raise self._broken("write")

    async def flush(self) -> None:
        # the transport's buffer to the kernel; the kernel's own queue is the
        # peer's business (it answers on the return path when it has it all)
        while self.transport is not None and self.transport.get_write_buffer_size():
            if self.transport.is_closing():
                raise self._broken("write")
            await asyncio.sleep(0.0002)
        await self.drain()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._eof = True
        self._wake_reader()
        self._wake_writer()

    def abort(self) -> None:
        if self.transport is not None:
            # a reset, not a FIN: the peer must be able to tell "aborted"
            # from "finished and closed" (the destination's commit rule)
            sock = self.transport.get_extra_info("socket")
            if sock is not None and not self.transport.is_closing():
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                except OSError:
                    pass
            self.transport.abort()
        self._eof = True
        self._error = self._error or ConnectionAbortedError("aborted here")
        self._wake_reader()
        self._wake_writer()

    async def wait_closed(self) -> None:
        if self._lost is not None:
            await self._lost

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def peer(self) -> str:
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return str(addr) if addr else self.name


class FileChannel(Channel):
    """A file read or written sequentially from ``offset`` (``file:PATH,offset=N``):
    reads and writes run on a worker thread in large chunks."""

    def __init__(self, fd: int, name: str, offset: int = 0, *, owns: bool = True) -> None:
        super().__init__()
        self.fd = fd
        self.name = name
        self.pos = offset
        self._owns = owns
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._closed = False

    async def fill(self, n: int) -> None:
        while len(self.buf) < n:
            if self._closed:
                raise ChannelError(f"{self.name}: closed")
            want = max(READ_CHUNK, n - len(self.buf))
            chunk = await asyncio.to_thread(os.pread, self.fd, want, self.pos)
            if not chunk:
                raise ChannelError(f"{self.name}: the file ends {n - len(self.buf)} bytes "
                                   "before the stream does")
            self.pos += len(chunk)
            self.buf += chunk
            self.received += len(chunk)

    def write(self, data: "bytes | bytearray | memoryview") -> None:
        if self._closed:
            raise ChannelError(f"{self.name}: closed")
        self._pending.append(bytes(data))
        self._pending_len += len(data)
        self.sent += len(data)

    async def drain(self) -> None:
        if self._pending_len >= READ_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_len = 0
        pos = self.pos
        self.pos += len(data)
        await asyncio.to_thread(_pwrite_all, self.fd, data, pos)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns:
                os.close(self.fd)

    @property
    def closed(self) -> bool:
        return self._closed


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n


async def open_socket(sock: socket.socket, name: str) -> SocketChannel:
    """A channel over a connected socket (taken over: the channel closes it)."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    _, proto = await loop.connect_accepted_socket(lambda: SocketChannel(name), sock)
    return proto  # type: ignore[return-value]
