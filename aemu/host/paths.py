"""The host's state directory and the rule that confines file access.

Layout of a state directory (mode 0700)::

    host.qmp            the host control socket (default --listen)
    host.lock           held (flock) while a host serves this directory
    vms/NAME.qmp        each VM's QMP socket (0600)
    vms/NAME.uart0      each VM's console socket, unless the VM says otherwise
    vms/NAME.log        what the guest writes through host services, and warnings
    snapshots/          the snapshot store: catalogue.sqlite, VM/TAG.snap

No command makes the host read or write a file outside the state directory
and the directories the operator allowed (``aemu serve --allow-dir``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")


class PathError(ValueError):
    """A path outside what the operator allowed, or an unusable state dir."""


def default_state_dir() -> Path:
    """``$AEMU_STATE_DIR``, else ``$XDG_STATE_HOME/aemu``, else ``~/.local/state/aemu``."""
    env = os.environ.get("AEMU_STATE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "aemu"


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700; refuse another user's."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PathError(f"{path} belongs to another user")
    if st.st_mode & 0o777 != 0o700:
        os.chmod(path, 0o700)
    return path


def check_name(name: str) -> str:
    """A VM or snapshot name: a letter, then letters, digits, '.', '_', '-'."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise PathError(f"invalid name {name!r}: use a letter followed by up to 63 letters, "
                        "digits, '.', '_' or '-'")
    return name


class Confinement:
    """The directories file arguments may name (after resolving symlinks)."""

    def __init__(self, dirs: list[str | os.PathLike]) -> None:
        self.dirs = [os.path.realpath(d) for d in dirs]

    def check(self, path: str | os.PathLike, what: str = "path", *,
              must_exist: bool = True) -> str:
        """The resolved ``path`` if it lies in an allowed directory."""
        text = os.fspath(path)
        if "\0" in text:
            raise PathError(f"{what} {text!r} contains NUL")
        if not os.path.isabs(text):
            raise PathError(f"{what} {text!r} must be an absolute path")
        real = os.path.realpath(text)
        if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in self.dirs):
            raise PathError(f"{what} {text!r} is outside the directories this host may use "
                            f"({', '.join(self.dirs)}); start the host with --allow-dir")
        if must_exist and not os.path.exists(real):
            raise PathError(f"{what} {text!r} does not exist")
        return real
