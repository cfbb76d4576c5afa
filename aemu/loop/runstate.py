"""Run states, named as QEMU names them (qapi RunState)."""
from __future__ import annotations

import enum


class RunState(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    SUSPENDED = "suspended"          # waiting for an interrupt that nothing can raise
    SHUTDOWN = "shutdown"            # the program ended (exit, kill) or the host stopped it
    GUEST_PANICKED = "guest-panicked"  # an exception the guest could not take
    DEBUG = "debug"                  # stopped at a breakpoint (excp bpt without a handler)
    INTERNAL_ERROR = "internal-error"
    PRELAUNCH = "prelaunch"          # reset after it ended: ready, waiting for cont
    SAVE_VM = "save-vm"              # stopped while a snapshot is written
    RESTORE_VM = "restore-vm"        # stopped while a snapshot is loaded
    INMIGRATE = "inmigrate"          # waiting for an incoming migration
    FINISH_MIGRATE = "finish-migrate"  # stopped for a migration's switch-over
    POSTMIGRATE = "postmigrate"      # migrated away: the destination runs it now

    @property
    def is_live(self) -> bool:
        """QEMU's runstate_is_live: the guest runs, or sleeps until woken."""
        return self in (RunState.RUNNING, RunState.SUSPENDED)

    @property
    def needs_reset(self) -> bool:
        """cont is refused until a system_reset (QEMU's runstate_needs_reset)."""
        return self in (RunState.SHUTDOWN, RunState.GUEST_PANICKED, RunState.INTERNAL_ERROR,
                        RunState.DEBUG)

    def __str__(self) -> str:
        return self.value
