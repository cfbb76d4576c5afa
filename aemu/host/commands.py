"""QMP command tables: each command declares its arguments (a small QAPI-like
schema) and the dispatcher checks a request against it before the handler
runs, so a bad request never has a side effect.

    vm_commands = CommandTable()

    @vm_commands.command("x-demo", {"addr": "int", "*size": Int(1, 4096)})
    def demo(ctx, addr, size=16): ...

Types: ``"str"``, ``"int"``, ``"bool"``, ``"number"``, ``"object"``,
``"any"``, ``["str"]`` (a list of), a tuple of strings (an enum), or an
``Int(lo, hi)`` range.  A leading ``*`` marks an optional argument.
Handlers get a ``CommandContext`` and the arguments as keyword arguments
(``-`` becomes ``_``); they may be coroutines.  Errors are ``QmpError``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

from aemu.host.protocol import QmpError

if TYPE_CHECKING:  # pragma: no cover
    from aemu.host.server import QmpSession


@dataclass(frozen=True)
class Int:
    lo: int = -(1 << 63)
    hi: int = (1 << 64) - 1


ArgType = Union[str, list, tuple, Int]
_JSON_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "number": "number",
               "object": "object"}


@dataclass
class Command:
    name: str
    handler: Callable[..., Any]
    args: dict[str, tuple[ArgType, bool]]      # name -> (type, required)
    doc: str = ""
    is_async: bool = False

    def check(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate ``arguments``; the keyword arguments for the handler."""
        for key in arguments:
            if key not in self.args:
                raise QmpError(f"Parameter '{key}' is unexpected")
        out = {}
        for key, (kind, required) in self.args.items():
            if key not in arguments:
                if required:
                    raise QmpError(f"Parameter '{key}' is missing")
                continue
            out[key.replace("-", "_")] = _check(key, kind, arguments[key])
        return out


def _check(key: str, kind: ArgType, value: Any) -> Any:
    if isinstance(kind, Int):
        kind_ok = isinstance(value, int) and not isinstance(value, bool)
        if not kind_ok:
            raise QmpError(f"Invalid parameter type for '{key}', expected: integer")
        if not kind.lo <= value <= kind.hi:
            raise QmpError(f"Parameter '{key}' must be from {kind.lo} to {kind.hi}")
        return value
    if isinstance(kind, tuple):
        if not isinstance(value, str):
            raise QmpError(f"Invalid parameter type for '{key}', expected: string")
        if value not in kind:
            raise QmpError(f"Parameter '{key}' does not accept value '{value}'")
        return value
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise QmpError(f"Invalid parameter type for '{key}', expected: array")
        return [_check(key, kind[0], item) for item in value]
    if kind == "any":
        return value
    ok = {"str": lambda v: isinstance(v, str),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "object": lambda v: isinstance(v, dict)}[kind]
    if not ok(value):
        raise QmpError(f"Invalid parameter type for '{key}', expected: {_JSON_NAMES[kind]}")
    if kind == "int" and not -(1 << 63) <= value < (1 << 64):
        raise QmpError(f"Parameter '{key}' is out of range")
    return value


@dataclass
class CommandContext:
    """What a handler may use: the object the socket controls and the session."""
    target: Any
    session: "QmpSession"


class CommandTable:
    def __init__(self, *bases: "CommandTable") -> None:
        self.commands: dict[str, Command] = {}
        for base in bases:
            self.commands.update(base.commands)

    def command(self, name: str, args: dict[str, ArgType] | None = None
                ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        spec = {}
        for key, kind in (args or {}).items():
            required = not key.startswith("*")
            spec[key.lstrip("*")] = (kind, required)

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.commands[name] = Command(name, fn, spec, inspect.getdoc(fn) or "",
                                          inspect.iscoroutinefunction(fn))
            return fn
        return register

    def get(self, name: str) -> Command | None:
        return self.commands.get(name)

    def names(self) -> list[str]:
        return sorted(self.commands)

