"""``aemu qmp``: a QMP client for scripts (one command, JSON out) and for
people (an interactive shell that prints events as they come).  The protocol
side is QEMU's own client library, ``qemu.qmp``.

Arguments are one JSON object or ``key=value`` words (a value that parses as
JSON is taken as JSON, anything else as a string), as in QEMU's qmp-shell.
A command name that the server does not know is retried with aemu's prefix,
so ``vm-list`` reaches ``__org.aemu_vm-list``.
"""
from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

PREFIX = "__org.aemu_"


class ClientError(Exception):
    """Cannot connect, or bad arguments (the message says which)."""


def resolve_socket(target: str, state_dir: "str | os.PathLike | None" = None
                   ) -> "str | tuple[str, int]":
    """``unix:PATH``, ``tcp:HOST:PORT``, a socket path, ``host`` (the host's
    socket) or a VM name (its socket in the state dir) -> an address."""
    from aemu.host.paths import default_state_dir
    from aemu.transport import sockets

    if target.startswith(("unix:", "tcp:")):
        try:
            ep = sockets.parse_endpoint(target)
        except sockets.EndpointError as exc:
            raise ClientError(str(exc)) from None
        return ep.path if isinstance(ep, sockets.UnixEndpoint) else (ep.host, ep.port)
    if os.sep in target or os.path.exists(target):
        return target
    base = Path(state_dir) if state_dir else default_state_dir()
    if target == "host":
        return os.fspath(base / "host.qmp")
    return os.fspath(base / "vms" / f"{target}.qmp")


def parse_arguments(words: Sequence[str]) -> dict[str, Any]:
    if not words:
        return {}
    if len(words) == 1 and words[0].lstrip().startswith("{"):
        try:
            value = json.loads(words[0])
        except ValueError as exc:
            raise ClientError(f"arguments are not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ClientError("arguments must be a JSON object")
        return value
    out: dict[str, Any] = {}
    for word in words:
        key, eq, text = word.partition("=")
        if not eq or not key:
            raise ClientError(f"expected key=value or one JSON object, got {word!r}")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


class Client:
    """A connected QMP client with aemu's name shortcut."""

    def __init__(self, name: str = "aemu") -> None:
        from qemu.qmp import QMPClient

        self.qmp = QMPClient(name)
        self._names: set[str] = set()

    async def connect(self, address: "str | tuple[str, int]", timeout: float = 5.0) -> None:
        from qemu.qmp import ConnectError

        try:
            await asyncio.wait_for(self.qmp.connect(address), timeout)
        except (ConnectError, OSError, asyncio.TimeoutError) as exc:
            where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
            cause = getattr(exc, "exc", None) or exc
            raise ClientError(f"cannot connect to {where}: {cause}") from None
        self._names = {c["name"] for c in await self.qmp.execute("query-commands")}

    def command_name(self, name: str) -> str:
        if name not in self._names and PREFIX + name in self._names:
            return PREFIX + name
        return name

    async def execute(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        return await self.qmp.execute(self.command_name(name), arguments or None)

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    async def close(self) -> None:
        try:
            await self.qmp.disconnect()
        except (EOFError, OSError):
            # the server closed first (after quit, or a VM that ended): qemu.qmp
            # re-raises its reader's EOF here; there is nothing left to close
            pass


def _dump(value: Any) -> str:
    if isinstance(value, str):
        return value.rstrip("\r\n").replace("\r\n", "\n")
    return json.dumps(value, indent=2, sort_keys=True)


def _event_text(event: Any) -> str:
    ts = event.get("timestamp", {})
    when = f"{ts.get('seconds', 0)}.{ts.get('microseconds', 0):06d}"
    data = event.get("data")
    return f"event {event['event']} at {when}" + (f" {json.dumps(data)}" if data else "")


async def one_shot(address: "str | tuple[str, int]", command: str, words: Sequence[str], *,
                   wait_event: str | None = None, timeout: float | None = None) -> int:
    """Run one command, print its result as JSON; 0, or 1 on a QMP error."""
    from qemu.qmp import ExecuteError

    arguments = parse_arguments(words)
    client = Client()
    await client.connect(address)
    try:
        listener = None
        if wait_event:
            from qemu.qmp import EventListener
            listener = EventListener(wait_event)
            client.qmp.register_listener(listener)
        try:
            result = await client.execute(command, arguments)
        except ExecuteError as exc:
            print(f"aemu qmp: {exc.error_class}: {exc.error.error.desc}", file=sys.stderr)
            return 1
        if command not in ("quit",):
            print(_dump(result))
        if listener is not None:
            try:
                ev = await asyncio.wait_for(listener.get(), timeout)
            except asyncio.TimeoutError:
                print(f"aemu qmp: no {wait_event} event within {timeout} s", file=sys.stderr)
                return 1
            print(json.dumps(dict(ev)))
        return 0
    finally:
        await client.close()


async def shell(address: "str | tuple[str, int]", prompt_name: str) -> int:
    """An interactive shell: 'command [json | key=value ...]', 'help', 'quit'
    ends the VM (or host), EOF (^D) leaves."""
    from qemu.qmp import ExecuteError

    try:
        import readline  # noqa: F401 - line editing and history for input()
    except ImportError:  # pragma: no cover
        pass
    client = Client("aemu-shell")
    await client.connect(address)
    greeting = client.qmp.greeting
    # qemu.qmp models the greeting's "QMP" member; its "version" stays a dict
    version = greeting.QMP.version if greeting else {}
    print(f"connected to {prompt_name} ({version.get('package') or 'QMP'}); "
          "'help' lists commands, ^D leaves", flush=True)

    async def show_events() -> None:
        async for ev in client.qmp.events:
            print(f"\r{_event_text(ev)}", flush=True)

    events = asyncio.create_task(show_events())
    loop = asyncio.get_running_loop()
    try:
        while True:
            try:
                line = await loop.run_in_executor(None, input, f"({prompt_name}) ")
            except EOFError:
                print()
                return 0
            try:
                words = shlex.split(line)
            except ValueError as exc:
                print(f"error: {exc}")
                continue
            if not words:
                continue
            if words[0] in ("help", "?"):
                for name in client.names:
                    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
                    print(f"  {short}" + (f"  ({name})" if short != name else ""))
                continue
            try:
                arguments = parse_arguments(words[1:])
                result = await client.execute(words[0], arguments)
            except ClientError as exc:
                print(f"error: {exc}")
                continue
            except ExecuteError as exc:
                print(f"error: {exc.error_class}: {exc.error.error.desc}")
                continue
            except Exception as exc:  # the connection went away (e.g. after quit)
                print(f"disconnected: {exc or type(exc).__name__}")
                return 0
            print(_dump(result))
            if words[0] == "quit":
                return 0
    finally:
        events.cancel()
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - leaving anyway
            pass
