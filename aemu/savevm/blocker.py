"""Migration and snapshot blockers (QEMU's migration/blocker.h): any device
or condition can forbid saving the VM, per migration mode, with a reason.

    blockers = Blockers()
    handle = blockers.add("uart0: a character back-end with input in flight",
                          modes=(Mode.NORMAL,))
    blockers.check(Mode.NORMAL)      # raises Blocked with every active reason
    blockers.remove(handle)

Conditions that come and go (the guest holding host files open) are
registered as checks: ``add_check(fn)`` where ``fn()`` returns a reason or
None, asked at every check.
"""
from __future__ import annotations

import enum
import itertools
from typing import Callable, Iterable, Optional


class Mode(str, enum.Enum):
    """QEMU's MigMode names."""
    NORMAL = "normal"
    CPR_REBOOT = "cpr-reboot"
    CPR_TRANSFER = "cpr-transfer"


ALL_MODES = tuple(Mode)


class Blocked(Exception):
    """Saving or migrating is blocked; ``reasons`` says by what."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class Blockers:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._static: dict[int, tuple[str, tuple[Mode, ...]]] = {}
        self._checks: dict[int, tuple[Callable[[], Optional[str]], tuple[Mode, ...]]] = {}

    def add(self, reason: str, modes: Iterable[Mode] = ALL_MODES) -> int:
        """Block the given modes until ``remove(handle)``."""
        handle = next(self._ids)
        self._static[handle] = (reason, tuple(modes))
        return handle

    def add_check(self, check: Callable[[], Optional[str]],
                  modes: Iterable[Mode] = ALL_MODES) -> int:
        """A condition asked at each check: a reason while it blocks, else None."""
        handle = next(self._ids)
        self._checks[handle] = (check, tuple(modes))
        return handle

    def remove(self, handle: int) -> None:
        self._static.pop(handle, None)
        self._checks.pop(handle, None)

    def reasons(self, mode: Mode = Mode.NORMAL) -> list[str]:
        """Every reason that blocks ``mode`` now."""
        out = [reason for reason, modes in self._static.values() if mode in modes]
        for check, modes in self._checks.values():
            if mode in modes:
                reason = check()
                if reason:
                    out.append(reason)
        return out

    def check(self, mode: Mode = Mode.NORMAL) -> None:
        reasons = self.reasons(mode)
        if reasons:
            raise Blocked(reasons)


def machine_blockers(vm: object) -> Blockers:
    """The blockers every VM starts with: host files the guest holds open
    through the host services cannot travel in a snapshot or a migration."""
    blockers = Blockers()

    def open_files() -> Optional[str]:
        files = getattr(getattr(vm, "semihost", None), "files", None)
        if files:
            return (f"the guest has {len(files)} host file(s) open through the host "
                    "services; they cannot be saved")
        return None
    blockers.add_check(open_files, (Mode.NORMAL, Mode.CPR_TRANSFER))
    return blockers
