"""--aemu-snapshot-on-fail: a failing test's machines are saved as snapshots
(in a snapshot store, the layout ``aemu run --loadvm`` and ``aemu serve``
read: ``DIR/snapshots/VM/TAG.snap``), named after the test, with the
commands that load them."""
from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from aemu.testing.pooled import PooledMachine

#: run states `aemu run --loadvm` can continue from; others load into `aemu serve`
RUNNABLE = ("running", "paused", "prelaunch")


def safe_name(text: str, prefix: str = "t") -> str:
    """``text`` as a store name: a letter, then up to 63 of [A-Za-z0-9._-]
    (long names keep a hash of the whole, so they stay apart)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.-")
    if not name or not name[0].isalpha():
        name = f"{prefix}-{name}" if name else prefix
    if len(name) > 64:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = f"{name[:55].rstrip('_.-')}-{digest}"
    return name


def snapshot_tag(module: str, test: str, index: int = 0) -> str:
    """The snapshot name of a test's ``index``-th machine: MODULE.TEST[-N]."""
    tag = safe_name(f"{module}.{test}")
    if index:
        suffix = f"-{index + 1}"
        tag = safe_name(tag[:64 - len(suffix)] + suffix)
    return tag


@dataclass
class SavedSnapshot:
    vm: str
    tag: str
    file: Path
    state_dir: Path
    runstate: str
    virtual_ns: int
    commands: list[list[str]]

    def describe(self, nodeid: str) -> str:
        lines = [f"{nodeid}: machine {self.vm} ({self.runstate} at "
                 f"{self.virtual_ns / 1e6:.6f} ms of virtual time) saved to {self.file}"]
        # the serve host stays up while the next commands talk to it
        lines += ["    " + shlex.join(cmd) + (" &" if cmd[1] == "serve" else "")
                  for cmd in self.commands]
        return "\n".join(lines)


async def save_failure(vm: "PooledMachine", directory: Path, tag: str) -> SavedSnapshot:
    """Save ``vm`` (paused first) into the store under ``directory`` as
    ``tag``, and say how to load it."""
    from aemu.host.paths import make_private_dir
    from aemu.savevm.machine import runstate_of
    from aemu.savevm.store import SnapshotStore

    spec = vm.spec
    assert spec is not None
    state = directory.resolve()
    make_private_dir(state)
    name = safe_name(vm.label, "vm")
    vm.pause()
    store = SnapshotStore(state / "snapshots")
    try:
        info = await store.save(name, vm, tag, overwrite=True)
        file = store.file_of(info)
    finally:
        store.close()
    board: Path | None = None
    if not spec.is_default_board:
        board = spec.board_file
        if board is None:       # a board built in Python, or with RAM/clock changes
            board = file.with_suffix(".board.toml")
            board.write_text(spec.board.to_toml(), encoding="utf-8")
    runstate = runstate_of(vm).value
    return SavedSnapshot(name, tag, file, state, runstate, vm.clock.ns(),
                         load_commands(name, tag, state, spec.firmware, board, spec.args,
                                       spec.pace, runstate, file))


def load_commands(name: str, tag: str, state: Path, firmware: Path, board: Path | None,
                  args: tuple[str, ...], pace: str, runstate: str,
                  file: Path) -> list[list[str]]:
    """The commands that load the snapshot (and one that describes it)."""
    if runstate in RUNNABLE:
        run = ["aemu", "run", "--state-dir", str(state), "--name", name, "--loadvm", tag]
        if board is not None:
            run += ["--board", str(board)]
        if pace != "fast":
            run += ["--pace", pace]
        cmds = [run + [str(firmware), *args]]
    else:
        # `aemu run --loadvm` refuses a guest that cannot run; a served VM
        # takes it, and QMP shows registers and memory
        allow = sorted({str(firmware.parent), *([str(board.parent)] if board else [])})
        serve = ["aemu", "serve", "--state-dir", str(state)]
        for d in allow:
            serve += ["--allow-dir", d]
        create = ["aemu", "qmp", "--state-dir", str(state), "host", "vm-create", f"name={name}",
                  f"firmware={firmware}", "paused=true"]
        if board is not None:
            create.append(f"board={board}")
        cmds = [serve, create,
                ["aemu", "snapshot", "load", name, tag, "--state-dir", str(state)]]
    cmds.append(["aemu", "savevm-info", str(file)])
    return cmds


__all__ = ["SavedSnapshot", "load_commands", "safe_name", "save_failure", "snapshot_tag"]
