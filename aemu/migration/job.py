"""What a migration of either direction has: its VM, options, URI, state
machine, statistics, task and end."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from aemu.migration.options import Options
from aemu.migration.status import Stats, Status
from aemu.transport.channel import Channel
from aemu.transport.uri import MigrationUri

if TYPE_CHECKING:  # pragma: no cover
    from aemu.hw.machine import Machine
    from aemu.migration.manager import MigrationManager


class MigrationJob:
    def __init__(self, mgr: "MigrationManager", uri: MigrationUri,
                 fds: dict[str, int]) -> None:
        self.mgr = mgr
        self.vm: "Machine" = mgr.vm
        self.opts: Options = mgr.options
        self.uri = uri
        self.fds = fds              #: the manager's getfd descriptors (fd: takes one)
        self.stats = Stats()
        self.status = Status.NONE
        self.error: Optional[str] = None
        self.main: Optional[Channel] = None
        self.task: Optional[asyncio.Task] = None
        self.done = asyncio.Event()  #: set when it completed, failed or was cancelled

    def _set(self, status: Status) -> None:
        """A new state (a MIGRATION event with the events capability)."""
        if status is not self.status:
            self.status = status
            self.mgr.emit_status(status)
