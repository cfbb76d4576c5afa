"""The parts of QEMU's migration wire format that only live migration uses
(qemu-migration.md §2.2, §2.6, §4.1, §4.2): stream commands, the return
path's messages, and multifd's channel header and page packets."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from aemu.savevm.codec import StreamError

# QEMU_VM_COMMAND sub-commands (be16 cmd, be16 len, payload)
CMD_OPEN_RETURN_PATH = 1
CMD_PING = 2
CMD_NAMES = {0: "INVALID", 1: "OPEN_RETURN_PATH", 2: "PING", 3: "POSTCOPY_ADVISE",
             4: "POSTCOPY_LISTEN", 5: "POSTCOPY_RUN", 6: "POSTCOPY_RAM_DISCARD", 7: "PACKAGED",
             8: "ENABLE_COLO", 9: "POSTCOPY_RESUME", 10: "RECV_BITMAP", 11: "SWITCHOVER_START"}

# return path messages (be16 type, be16 len, payload)
RP_SHUT = 1
RP_PONG = 2
RP_NAMES = {1: "SHUT", 2: "PONG", 3: "REQ_PAGES_ID", 4: "REQ_PAGES", 5: "RECV_BITMAP",
            6: "RESUME_ACK", 7: "SWITCHOVER_ACK"}

#: aemu's commit: after the destination's SHUT 0 the source sends these bytes
#: on the main channel (after the stream's end, where QEMU sends nothing) and
#: only then closes; the destination starts the guest only when it read them.
#: A FIN alone is not enough: a relay that dies or a half-closed connection
#: looks the same as a source that finished.
COMMIT = b"aemu-go\n"

# RAM record flag: "every multifd channel syncs here" (a record of the main stream)
RAM_MULTIFD_FLUSH = 0x200


def command(cmd: int, payload: bytes = b"") -> bytes:
    return bytes([0x08]) + struct.pack(">HH", cmd, len(payload)) + payload


def rp_message(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HH", kind, len(payload)) + payload


# -- multifd -------------------------------------------------------------------------------
MULTIFD_MAGIC = 0x11223344
MULTIFD_VERSION = 1
MULTIFD_FLAG_SYNC = 1 << 0
MULTIFD_FLAG_ZSTD = 2 << 1
MULTIFD_COMPRESSION_MASK = 0x1F << 1
PAGES_PER_PACKET = 128                     #: 512 KiB of 4 KiB pages, as QEMU's
INIT_FORMAT = ">II16sB7x32x"               #: MultiFDInit_t, 64 bytes
INIT_SIZE = struct.calcsize(INIT_FORMAT)
# MultiFDPacket_t up to the offsets: hdr (magic, version, flags), pages_alloc,
# normal_pages, next_packet_size, packet_num, zero_pages, reserved u32 + 3 u64, ramblock
PACKET_FORMAT = ">IIIIIIQI4x24x256s"
PACKET_FIXED = struct.calcsize(PACKET_FORMAT)
PACKET_HEADER = PACKET_FIXED + 8 * PAGES_PER_PACKET
MAX_PACKET_DATA = PAGES_PER_PACKET * 4096 + (PAGES_PER_PACKET * 4096) // 64 + 1024


def multifd_init(uuid: bytes, channel: int) -> bytes:
    return struct.pack(INIT_FORMAT, MULTIFD_MAGIC, MULTIFD_VERSION, uuid, channel)


def parse_multifd_init(raw: bytes) -> tuple[bytes, int]:
    magic, version, uuid, channel = struct.unpack(INIT_FORMAT, raw)
    if magic != MULTIFD_MAGIC:
        raise StreamError(f"multifd channel: bad magic {magic:#x}")
    if version != MULTIFD_VERSION:
        raise StreamError(f"multifd channel: version {version}, expected {MULTIFD_VERSION}")
    return uuid, channel


@dataclass
class Packet:
    flags: int
    normal: int
    zeros: int
    size: int            #: bytes of data that follow the header
    number: int
    block: str
    offsets: bytes       #: (normal + zeros) be64 offsets


def packet_header(flags: int, normal: int, zeros: int, size: int, number: int, block: bytes,
                  offsets: "bytes | bytearray | memoryview") -> bytes:
    head = struct.pack(PACKET_FORMAT, MULTIFD_MAGIC, MULTIFD_VERSION, flags, PAGES_PER_PACKET,
                       normal, size, number, zeros, block)
    pad = 8 * PAGES_PER_PACKET - len(offsets)
    return head + bytes(offsets) + bytes(pad)


def parse_packet_header(raw: "bytes | bytearray | memoryview", compression: int) -> Packet:
    """Check a packet header as QEMU's receiver does (counts, sizes, block)."""
    (magic, version, flags, alloc, normal, size, number, zeros,
     block) = struct.unpack_from(PACKET_FORMAT, raw)
    if magic != MULTIFD_MAGIC:
        raise StreamError(f"multifd packet: bad magic {magic:#x}")
    if version != MULTIFD_VERSION:
        raise StreamError(f"multifd packet: version {version}, expected {MULTIFD_VERSION}")
    if alloc != PAGES_PER_PACKET:
        raise StreamError(f"multifd packet: {alloc} page slots, expected {PAGES_PER_PACKET}")
    if normal + zeros > alloc:
        raise StreamError(f"multifd packet: {normal} + {zeros} pages in {alloc} slots")
    method = flags & MULTIFD_COMPRESSION_MASK
    if method != compression:
        raise StreamError(f"multifd packet: compression flags {method:#x}, this side "
                          f"expects {compression:#x} (set multifd-compression on both sides)")
    limit = normal * 4096 if not method else MAX_PACKET_DATA
    if size > limit or (not method and size != normal * 4096):
        raise StreamError(f"multifd packet: {size} bytes of data for {normal} pages")
    name = block.split(b"\0", 1)[0].decode("ascii", "replace")
    offsets = bytes(raw[PACKET_FIXED:PACKET_FIXED + 8 * (normal + zeros)])
    return Packet(flags, normal, zeros, size, number, name, offsets)
