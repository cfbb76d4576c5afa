"""The migration state machine's states and the statistics query-migrate
reports, with QEMU's names (qemu-migration.md §5.2, §5.3)."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Optional

PAGE_SIZE = 4096


class Status(str, enum.Enum):
    NONE = "none"
    SETUP = "setup"
    ACTIVE = "active"
    PRE_SWITCHOVER = "pre-switchover"
    DEVICE = "device"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def running(self) -> bool:
        """A migration is in progress (no new one, no capability changes)."""
        return self in (Status.SETUP, Status.ACTIVE, Status.PRE_SWITCHOVER, Status.DEVICE,
                        Status.CANCELLING)

    def __str__(self) -> str:
        return self.value


def now_ms() -> float:
    return time.monotonic() * 1000.0


@dataclass
class Stats:
    """Counters of one migration (either side)."""
    start_ms: float = field(default_factory=now_ms)
    setup_ms: Optional[float] = None       #: setup-time
    end_ms: Optional[float] = None
    downtime_start_ms: Optional[float] = None
    downtime_ms: Optional[float] = None
    expected_downtime_ms: float = 0.0
    transferred: int = 0                   #: bytes on every channel
    precopy_bytes: int = 0                 #: bytes before the stop
    downtime_bytes: int = 0                #: bytes after it
    multifd_bytes: int = 0
    normal: int = 0                        #: pages sent with their data
    duplicate: int = 0                     #: zero pages (sent as a record or skipped)
    dirty_sync_count: int = 0
    dirty_pages_rate: int = 0              #: pages/s dirtied during the last pass
    remaining_pages: int = 0
    total_pages: int = 0
    mbps: float = 0.0
    pages_per_second: int = 0
    throttle: int = 0                      #: cpu-throttle-percentage

    def ram(self) -> dict[str, Any]:
        return {
            "transferred": self.transferred,
            "remaining": self.remaining_pages * PAGE_SIZE,
            "total": self.total_pages * PAGE_SIZE,
            "duplicate": self.duplicate,
            "normal": self.normal,
            "normal-bytes": self.normal * PAGE_SIZE,
            "dirty-pages-rate": self.dirty_pages_rate,
            "mbps": round(self.mbps, 3),
            "dirty-sync-count": self.dirty_sync_count,
            "postcopy-requests": 0,
            "page-size": PAGE_SIZE,
            "multifd-bytes": self.multifd_bytes,
            "pages-per-second": self.pages_per_second,
            "precopy-bytes": self.precopy_bytes,
            "downtime-bytes": self.downtime_bytes,
            "postcopy-bytes": 0,
            "dirty-sync-missed-zero-copy": 0,
        }

    def total_ms(self) -> float:
        return (self.end_ms if self.end_ms is not None else now_ms()) - self.start_ms


def info(status: Status, stats: Optional[Stats], *, error: Optional[str] = None,
         socket_address: Optional[list] = None) -> dict[str, Any]:
    """query-migrate's MigrationInfo for one side."""
    out: dict[str, Any] = {"status": status.value}
    if stats is None or status is Status.NONE:
        return out
    # rounded alike, so that total-time >= downtime holds in whole ms too
    out["total-time"] = int(round(stats.total_ms()))
    if stats.setup_ms is not None:
        out["setup-time"] = int(round(stats.setup_ms))
    if status in (Status.ACTIVE, Status.PRE_SWITCHOVER, Status.DEVICE):
        out["expected-downtime"] = int(stats.expected_downtime_ms)
    if status is Status.COMPLETED and stats.downtime_ms is not None:
        out["downtime"] = int(round(stats.downtime_ms))
        # the exact figure, for benchmarks (QEMU reports whole milliseconds)
        out["x-aemu-downtime-us"] = int(round(stats.downtime_ms * 1000))
    if status not in (Status.SETUP,):
        out["ram"] = stats.ram()
    if stats.throttle:
        out["cpu-throttle-percentage"] = stats.throttle
    if error is not None and status is Status.FAILED:
        out["error-desc"] = error
    if socket_address:
        out["socket-address"] = socket_address
    return out
