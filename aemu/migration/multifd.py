"""multifd: RAM pages over N extra channels beside the main stream
(qemu-migration.md §4).

Sending: the main loop gathers up to 128 dirty pages at a time in C (zero
pages detected there, and sent as 8-byte offsets without data) into a packet
and queues it to the next channel.  Each channel has a task that compresses
its packets on a worker thread (with its own compressor) and writes them.
Receiving: each channel's task reads packets, decompresses them on a worker
thread and stores the pages in C, every offset checked first.

Order between channels: at the end of every pass (and before the device
state) the sender queues a SYNC packet on every channel and puts a
MULTIFD_FLUSH record in the main stream.  A receiving channel that reads its
SYNC stops until every channel has reached its own, and the main stream
waits at the FLUSH for the same.  So a page re-sent in pass N+1 never lands
before its copy from pass N, whichever channels the two took.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable, Optional

from aemu.migration.wire import (MULTIFD_FLAG_SYNC, MULTIFD_FLAG_ZSTD, PACKET_HEADER,
                                 PAGES_PER_PACKET, Packet, multifd_init, packet_header,
                                 parse_packet_header)
from aemu.savevm.codec import StreamError
from aemu.savevm.stream import PAGE_SIZE, RAM_BLOCK
from aemu.transport.channel import Channel, ChannelError

if TYPE_CHECKING:  # pragma: no cover
    from aemu.cpu.core import Cpu, PageHashes

BLOCK = RAM_BLOCK.encode()
_SYNC = object()
JOIN_TIMEOUT = 5.0            #: seconds for every multifd channel to be there at a FLUSH
POOL_PACKETS = 16             #: packet buffers (8 MiB) in flight before waiting for the channels


def _compressor(method: str, level: int) -> Optional[Callable[[bytes], bytes]]:
    if method == "none":
        return None
    import zstandard
    return zstandard.ZstdCompressor(level=level).compress


class _SendChannel:
    def __init__(self, ch: Channel, compress: Optional[Callable[[bytes], bytes]],
                 owner: "MultifdSender") -> None:
        self.ch = ch
        self.compress = compress
        self.owner = owner
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        self.synced = asyncio.Event()
        self.task: Optional[asyncio.Task] = None

    async def run(self) -> None:
        while True:
            item = await self.queue.get()
            try:
                if item is None:
                    return
                await self._one(item)
            finally:
                self.queue.task_done()

    async def _one(self, item: object) -> None:
        ch, owner = self.ch, self.owner
        if item is _SYNC:
            head = packet_header(MULTIFD_FLAG_SYNC | owner.flags, 0, 0, 0, owner.next_number(),
                                 BLOCK, b"")
            ch.write(head)
            owner.bytes += len(head)
            await ch.drain()
            self.synced.set()
            return
        normal, zeros, offsets, data = item      # type: ignore[misc]
        if self.compress is not None and normal:
            if owner.stopped:     # nothing else wants this thread: no hop to a worker
                data = self.compress(data)
            else:
                data = await asyncio.to_thread(self.compress, data)
        head = packet_header(owner.flags, normal, zeros, len(data), owner.next_number(),
                             BLOCK, offsets)
        ch.write(head)
        if data:
            ch.write(data)
        owner.bytes += len(head) + len(data)
        await ch.drain()


class MultifdSender:
    """The sending side of N channels (already connected)."""

    def __init__(self, cpu: "Cpu", channels: list[Channel], *, compression: str, level: int,
                 zero_detect: bool, hashes: "PageHashes | None") -> None:
        self.cpu = cpu
        self.flags = MULTIFD_FLAG_ZSTD if compression == "zstd" else 0
        self.zero_detect = zero_detect
        self.hashes = hashes
        self.number = 0
        self.bytes = 0
        self._next = 0
        self._finished = False
        #: the guest is stopped (switch-over): compress on the loop's thread
        self.stopped = False
        # packet buffers, touched once: fresh memory per packet would cost
        # 128 page faults each; a buffer is reused once the channels sent it
        self._pool = [bytearray(PAGES_PER_PACKET * PAGE_SIZE) for _ in range(POOL_PACKETS)]
        self._pool_next = 0
        self.chans = [_SendChannel(ch, _compressor(compression, level), self) for ch in channels]

    def next_number(self) -> int:
        self.number += 1
        return self.number - 1

    def start(self, uuid: bytes) -> None:
        for i, sc in enumerate(self.chans):
            init = multifd_init(uuid, i)
            sc.ch.write(init)
            self.bytes += len(init)
            sc.task = asyncio.get_running_loop().create_task(sc.run())

    def _check(self) -> None:
        for sc in self.chans:
            if sc.task is not None and sc.task.done() and not sc.task.cancelled():
                exc = sc.task.exception()
                if exc is not None:
                    raise exc
                if not self._finished:
                    raise ChannelError("a multifd channel stopped")

    async def send(self, pages: bytearray, pos: int,
                   most: int = PAGES_PER_PACKET) -> tuple[int, int, int]:
        """One packet of (up to ``most``) marked pages from ``pos``:
        (next pos, normal, zero)."""
        self._check()
        if self._pool_next == len(self._pool):
            await self._drain()                 # no channel holds a pool buffer any more
        offsets = bytearray(8 * PAGES_PER_PACKET)
        data = self._pool[self._pool_next]
        normal, zeros, pos = self.cpu.ram_gather(pages, pos, min(most, PAGES_PER_PACKET),
                                                 offsets, data,
                                                 self.zero_detect, self.hashes)
        if normal + zeros:
            self._pool_next += 1
            sc = self.chans[self._next]
            self._next = (self._next + 1) % len(self.chans)
            item = (normal, zeros, memoryview(offsets)[:8 * (normal + zeros)],
                    memoryview(data)[:normal * PAGE_SIZE])
            await self._put(sc, item)
        return pos, normal, zeros

    async def _drain(self) -> None:
        """Wait until every queued packet is written out of every channel."""
        for sc in self.chans:
            joined = asyncio.ensure_future(sc.queue.join())
            assert sc.task is not None
            done, _ = await asyncio.wait({joined, sc.task}, return_when=asyncio.FIRST_COMPLETED)
            if joined not in done:
                joined.cancel()
                self._check()
            await sc.ch.flush()
        self._pool_next = 0

    async def _put(self, sc: _SendChannel, item: object) -> None:
        if not sc.queue.full():
            sc.queue.put_nowait(item)
            return
        put = asyncio.ensure_future(sc.queue.put(item))
        assert sc.task is not None
        done, _ = await asyncio.wait({put, sc.task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self._check()

    async def sync(self) -> None:
        """A SYNC packet on every channel, written (the caller then puts the
        FLUSH record in the main stream)."""
        for sc in self.chans:
            sc.synced.clear()
            await self._put(sc, _SYNC)
        for sc in self.chans:
            assert sc.task is not None
            waiter = asyncio.ensure_future(sc.synced.wait())
            done, _ = await asyncio.wait({waiter, sc.task}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                self._check()

    async def finish(self) -> None:
        """Every queued packet written; the channels stay open."""
        self._finished = True
        for sc in self.chans:
            if sc.task is not None and not sc.task.done():
                await self._put(sc, None)
                await sc.task
            self._check()

    def abort(self) -> None:
        for sc in self.chans:
            if sc.task is not None:
                sc.task.cancel()
            sc.ch.abort()

    def close(self) -> None:
        for sc in self.chans:
            sc.ch.close()


class MultifdReceiver:
    """The receiving side: channels join as they connect (``add``); the main
    stream's loader calls ``sync`` at every FLUSH record."""

    def __init__(self, cpu: "Cpu", nchannels: int, *, compression: str,
                 hashes: "PageHashes | None") -> None:
        self.cpu = cpu
        self.nchannels = nchannels
        self.flags = MULTIFD_FLAG_ZSTD if compression == "zstd" else 0
        self.hashes = hashes
        self.channels: dict[int, Channel] = {}
        self.tasks: list[asyncio.Task] = []
        self._uuid: Optional[bytes] = None
        self._joined = asyncio.Event()
        self.bytes = 0
        self.pages = 0
        self.zero_pages = 0
        self._arrived = 0
        self._all_arrived = asyncio.Event()
        self._release = asyncio.Event()
        self._generation = 0
        self.failed: asyncio.Future = asyncio.get_running_loop().create_future()
        self._decompress: Optional[Callable[..., bytes]] = None
        if compression == "zstd":
            import zstandard
            self._zstd = zstandard
        self._closed = False

    def add(self, ch: Channel, channel_id: int, uuid: bytes = b"") -> Optional[str]:
        """Take a channel that sent its greeting; returns why it was refused."""
        why = None
        if channel_id >= self.nchannels:
            why = (f"multifd channel id {channel_id} is unexpected: multifd-channels is "
                   f"{self.nchannels} here (set it the same on both sides)")
        elif channel_id in self.channels:
            why = f"multifd channel id {channel_id} connected twice"
        elif self._uuid is not None and uuid != self._uuid:
            why = "a multifd channel of another migration (its UUID differs)"
        if why is not None:
            ch.abort()
            self._fail(StreamError(why))
            return why
        self._uuid = uuid
        self.channels[channel_id] = ch
        self._joined.set()
        task = asyncio.get_running_loop().create_task(self._run(ch, channel_id))
        self.tasks.append(task)
        return None

    def _fail(self, exc: BaseException) -> None:
        if not self.failed.done():
            self.failed.set_result(exc)

    async def _run(self, ch: Channel, cid: int) -> None:
        dctx = self._zstd.ZstdDecompressor() if self.flags else None
        try:
            while True:
                await ch.fill(PACKET_HEADER)
                pkt = parse_packet_header(bytes(ch.buf[:PACKET_HEADER]), self.flags)
                await ch.fill(PACKET_HEADER + pkt.size)
                total = PACKET_HEADER + pkt.size
                self.bytes += total
                if dctx is None:
                    # raw pages: stored from the channel's buffer where they
                    # lie (consumed after; nothing runs in between)
                    try:
                        self._store(pkt, ch.buf[PACKET_HEADER:total], cid)
                    finally:
                        ch.consume(total)
                    await self._sync_point(pkt)
                    continue
                data = bytes(ch.buf[PACKET_HEADER:total])
                ch.consume(total)
                if pkt.normal:
                    want = pkt.normal * PAGE_SIZE
                    try:
                        # on the loop's thread: the receiving VM does not run, and
                        # a hop to a worker costs more than a sparse page decompresses
                        data = dctx.decompress(data, max_output_size=want)
                    except self._zstd.ZstdError as exc:
                        raise StreamError(f"multifd channel {cid}: packet {pkt.number} does "
                                          f"not decompress: {exc}") from None
                    if len(data) != want:
                        raise StreamError(f"multifd channel {cid}: packet {pkt.number} holds "
                                          f"{len(data)} bytes, expected {want}")
                self._store(pkt, data, cid)
                await self._sync_point(pkt)
        except asyncio.CancelledError:
            raise
        except ChannelError as exc:
            if not self._closed:
                self._fail(exc)
        except Exception as exc:
            self._fail(exc)

    def _store(self, pkt: "Packet", data: "bytes | memoryview", cid: int) -> None:
        if pkt.normal + pkt.zeros:
            if pkt.block != RAM_BLOCK:
                raise StreamError(f"multifd packet for unknown ram block {pkt.block!r}")
            if not self.cpu.ram_scatter(pkt.offsets, pkt.normal, pkt.zeros, data, self.hashes):
                raise StreamError(f"multifd channel {cid}: packet {pkt.number} has a "
                                  "page outside RAM")
            self.pages += pkt.normal
            self.zero_pages += pkt.zeros

    async def _sync_point(self, pkt: "Packet") -> None:
        if pkt.flags & MULTIFD_FLAG_SYNC:       # wait for the other channels
            gen = self._generation
            self._arrived += 1
            if self._arrived == self.nchannels:
                self._all_arrived.set()
            while self._generation == gen:
                await self._release.wait()

    async def sync(self) -> None:
        """At a FLUSH record: wait until every channel reached its SYNC, then
        let them all go on."""
        # the source connects every channel before its first FLUSH: one that
        # is still missing then is a multifd-channels mismatch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + JOIN_TIMEOUT
        while len(self.channels) < self.nchannels and not self.failed.done():
            self._joined.clear()
            try:
                await asyncio.wait_for(self._joined.wait(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise StreamError(f"only {len(self.channels)} of {self.nchannels} multifd "
                                  "channels connected (set multifd-channels the same on "
                                  "both sides)") from None
        waiter = asyncio.ensure_future(self._all_arrived.wait())
        done, _ = await asyncio.wait({waiter, self.failed}, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise self.failed.result()
        self._all_arrived.clear()
        self._arrived = 0
        self._generation += 1
        self._release.set()
        self._release = asyncio.Event()

    def close(self) -> None:
        self._closed = True
        for t in self.tasks:
            t.cancel()
        for ch in self.channels.values():
            ch.close()
