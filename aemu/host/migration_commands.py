"""The migration commands of a VM's QMP socket (qapi/migration.json), merged
into the VM table:

    migrate {uri | channels, detach?, resume?}      start (the reply is immediate)
    migrate-incoming {uri | channels, exit-on-error?}
    migrate_cancel (also migrate-cancel), migrate-continue {state}
    migrate-set-capabilities {capabilities}, query-migrate-capabilities
    migrate-set-parameters {...}, query-migrate-parameters
    query-migrate
    getfd {fdname} (a descriptor sent with the command, SCM_RIGHTS), closefd {fdname}

The target is a ``HostedVm``; its ``migration`` is the VM's
``aemu.migration.MigrationManager``.  file: and unix: paths obey the host's
confinement (the state dir and --allow-dir directories).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

from aemu.host.commands import CommandContext, Int
from aemu.host.paths import PathError
from aemu.host.protocol import QmpError
from aemu.host.snapshot_commands import vm
from aemu.migration import MigrationError, OptionError
from aemu.migration.options import PARAMETERS
from aemu.transport.uri import UriError, parse_uri


def _mgr(ctx: CommandContext) -> Any:
    return ctx.target.migration


@contextlib.contextmanager
def _as_qmp_error() -> Iterator[None]:
    """A migration's or an option's error, as the QMP error of the command."""
    try:
        yield
    except (MigrationError, OptionError) as exc:
        raise QmpError(str(exc)) from None


def _confined(ctx: CommandContext, uri: str) -> str:
    """A file: or unix: URI's path must be where the host allows files."""
    try:
        parsed = parse_uri(uri)
    except UriError as exc:
        raise QmpError(str(exc)) from None
    if parsed.kind in ("file", "unix"):
        try:
            ctx.target.confinement.check(parsed.path, f"migration {parsed.kind}",
                                         must_exist=False)
        except PathError as exc:
            raise QmpError(str(exc)) from None
    return uri


def channel_uri(channels: list[dict]) -> str:
    """QEMU's ``channels`` form (one main channel) as a URI."""
    if len(channels) != 1:
        raise QmpError("Need exactly one migration channel (channel-type main)")
    ch = channels[0]
    if not isinstance(ch, dict) or ch.get("channel-type", "main") != "main":
        raise QmpError("Only the 'main' migration channel is supported")
    addr = ch.get("addr")
    if not isinstance(addr, dict):
        raise QmpError("Parameter 'addr' is missing")
    transport = addr.get("transport")
    if transport == "socket":
        kind = addr.get("type")
        if kind == "inet":
            return f"tcp:{addr.get('host', '')}:{addr.get('port', '')}"
        if kind == "unix":
            return f"unix:{addr.get('path', '')}"
        if kind == "fd":
            return f"fd:{addr.get('str', '')}"
        raise QmpError(f"socket address type {kind!r} is not supported")
    if transport == "file":
        off = addr.get("offset", 0)
        return f"file:{addr.get('filename', '')}" + (f",offset={off}" if off else "")
    raise QmpError(f"migration transport {transport!r} is not supported")


def _uri(uri: Optional[str], channels: Optional[list]) -> str:
    if (uri is None) == (channels is None):
        raise QmpError("need either 'uri' or 'channels' argument" if uri is None else
                       "need either 'uri' or 'channels' argument, not both")
    return uri if uri is not None else channel_uri(channels)  # type: ignore[arg-type]


@vm.command("migrate", {"*uri": "str", "*channels": ["object"], "*detach": "bool",
                        "*resume": "bool"})
def migrate(ctx: CommandContext, uri: Optional[str] = None,
            channels: Optional[list] = None, detach: bool = True, resume: bool = False) -> None:
    """Start migrating this VM to ``uri``; query-migrate and MIGRATION events
    tell how it goes.  ``resume`` (postcopy recovery) is not supported."""
    if resume:
        raise QmpError("resume is for postcopy recovery, which aemu does not have")
    target = _confined(ctx, _uri(uri, channels))
    if ctx.target.machine.held_state is not None:
        raise QmpError("a snapshot of this VM is being saved or loaded; try again when "
                       "it is done")
    with _as_qmp_error():
        _mgr(ctx).migrate(target)


@vm.command("migrate-incoming", {"*uri": "str", "*channels": ["object"],
                                 "*exit-on-error": "bool"})
async def migrate_incoming(ctx: CommandContext, uri: Optional[str] = None,
                           channels: Optional[list] = None,
                           exit_on_error: bool = True) -> None:
    """Wait for an incoming migration on ``uri`` (the VM was started with
    incoming "defer"); returns once listening."""
    from aemu.loop import RunState

    source = _confined(ctx, _uri(uri, channels))
    if ctx.target.machine.state is not RunState.INMIGRATE:
        raise QmpError("'-incoming' was not specified on the command line" if
                       not getattr(ctx.target, "incoming_deferred", False) else
                       "The incoming migration has already been started")
    if _mgr(ctx).busy:
        raise QmpError("The incoming migration has already been started")
    ctx.target.exit_on_error = exit_on_error
    with _as_qmp_error():
        await _mgr(ctx).incoming(source)


def _cancel(ctx: CommandContext) -> None:
    _mgr(ctx).cancel()


vm.command("migrate_cancel")(_cancel)
vm.command("migrate-cancel")(_cancel)


@vm.command("migrate-continue", {"state": "str"})
def migrate_continue(ctx: CommandContext, state: str) -> None:
    """Go on from pre-switchover (pause-before-switchover)."""
    with _as_qmp_error():
        _mgr(ctx).continue_(state)


@vm.command("migrate-set-capabilities", {"capabilities": ["object"]})
def migrate_set_capabilities(ctx: CommandContext, capabilities: list[dict]) -> None:
    items = []
    for item in capabilities:
        if set(item) - {"capability", "state"}:
            raise QmpError(f"Parameter '{sorted(set(item) - {'capability', 'state'})[0]}' "
                           "is unexpected")
        if not isinstance(item.get("capability"), str):
            raise QmpError("Parameter 'capability' is missing")
        if not isinstance(item.get("state"), bool):
            raise QmpError("Invalid parameter type for 'state', expected: boolean")
        items.append(item)
    with _as_qmp_error():
        _mgr(ctx).options.set_capabilities(items, running=_mgr(ctx).running)


@vm.command("query-migrate-capabilities")
def query_migrate_capabilities(ctx: CommandContext) -> list:
    return _mgr(ctx).options.query_capabilities()


def _set_parameters(ctx: CommandContext, **params: Any) -> None:
    changes = {k.replace("_", "-"): v for k, v in params.items()}
    with _as_qmp_error():
        _mgr(ctx).options.set_parameters(changes, running=_mgr(ctx).running)


_PARAM_TYPES = {name: ("bool" if p.kind is bool else "str" if p.kind is str else Int(0))
                for name, p in PARAMETERS.items()}
vm.command("migrate-set-parameters", {f"*{n}": t for n, t in _PARAM_TYPES.items()})(
    _set_parameters)


@vm.command("query-migrate-parameters")
def query_migrate_parameters(ctx: CommandContext) -> dict:
    return _mgr(ctx).options.query_parameters()


@vm.command("query-migrate")
def query_migrate(ctx: CommandContext) -> dict:
    """QEMU's MigrationInfo: status, times, ram statistics, error-desc,
    blocked-reasons (present while something blocks a migration)."""
    return _mgr(ctx).info()


@vm.command("getfd", {"fdname": "str"})
def getfd(ctx: CommandContext, fdname: str) -> None:
    """Take the descriptor sent with this command (SCM_RIGHTS on a Unix
    socket) under ``fdname``, for an ``fd:NAME`` migration URI."""
    fd = ctx.session.take_fd()
    if fd is None:
        raise QmpError("No file descriptor supplied via SCM_RIGHTS")
    if fdname[:1].isdigit():
        import os
        os.close(fd)
        raise QmpError("Parameter 'fdname' expects a name not starting with a digit")
    _mgr(ctx).add_fd(fdname, fd)


@vm.command("closefd", {"fdname": "str"})
def closefd(ctx: CommandContext, fdname: str) -> None:
    with _as_qmp_error():
        _mgr(ctx).close_fd(fdname)


__all__ = ["vm"]
