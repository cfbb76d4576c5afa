"""Boards as data: what a machine is made of, loaded from TOML or built in Python.

A :class:`Board` names the CPU frequency, the RAM, how ``excp svc`` behaves
and the devices (kind, name, MMIO base, IRQ lines, parameters).  It holds no
behaviour: the machine (``aemu/loop/``) builds the devices from it, and the
devices themselves live in ``aemu/hw/devices/``.

    board = load_board("myboard.toml")          # or a TOML string
    board = default_board()                     # aemu/hw/boards/default.toml
    board = board.with_changes(cpu_hz="25M")    # command-line overrides
    board = board.with_device("uart0", backend="tcp", port=5555)

The file format is described at the top of ``aemu/hw/boards/default.toml`` and
in the "Board files" section of ``docs/board.md``.  Every problem found is
reported in one :class:`BoardError` that names the file, the device and the
key.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

__all__ = [
    "Board", "DeviceSpec", "BoardError", "load_board", "default_board", "parse_size",
    "parse_hz", "KNOWN_KINDS", "UART_BACKENDS",
]

#: the device kinds this module knows the keys of (``aemu.hw.devices.DEVICE_KINDS``
#: is asked first; this is the fallback while that package is not importable)
KNOWN_KINDS = ("icu", "timer", "uart", "watchdog")

#: UART host back-ends and the parameters each takes (beside ``backend`` and ``baud``)
UART_BACKENDS: dict[str, tuple[str, ...]] = {
    "stdio": (),
    "null": (),
    "file": ("path",),
    "unix": ("path", "listen"),
    "tcp": ("host", "port", "listen"),
    "pty": (),
}

#: UART parameters that configure the host side, not the device
_HOST_KEYS = ("backend", "path", "host", "port", "listen")

MAX_RAM = 64 << 20           # what the core can map (aemu.cpu.core.MAX_RAM)
MIN_RAM = 8
WINDOW = 0x100               # MMIO window size and alignment of every current device
MAX_WINDOWS = 32             # CR16_MAX_MMIO in the core
ADDR_LIMIT = 1 << 32         # data addresses are 32 bits
NUM_IRQS = 32
SVC_MODES = ("host", "guest")
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class BoardError(ValueError):
    """A board description that cannot be used.  ``problems`` lists each one;
    the message names the source (file) and every problem."""

    def __init__(self, problems: str | Iterable[str], source: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        where = f"{source}: " if source else ""
        if len(self.problems) == 1:
            msg = where + self.problems[0]
        else:
            msg = where + f"{len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems)
        super().__init__(msg)


# -- sizes and frequencies --------------------------------------------------

_SIZE_RE = re.compile(r"\s*(0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d+)?)\s*([kKmMgG]?)(?:i?[bB])?\s*\Z")
_HZ_RE = re.compile(r"\s*(\d[\d_]*(?:\.\d+)?)\s*([kKmMgG]?)(?:[hH][zZ])?\s*\Z")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30}
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def _number(text: str, unit: int) -> int | None:
    if "." in text:
        whole, frac = text.split(".")
        num = int(whole + frac) * unit
        den = 10 ** len(frac)
        return num // den if num % den == 0 else None
    return int(text, 0) * unit


def parse_size(value: int | str) -> int:
    """``"20M"``, ``"512K"``, ``"64KiB"``, ``"0x1000"``, ``4096`` -> bytes (binary units).

    Raises :class:`BoardError` (a ``ValueError``) for anything else or a
    negative or fractional number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BoardError(f"invalid size {value!r} (e.g. 20M, 512K, 0x100000)")
    if isinstance(value, int):
        if value < 0:
            raise BoardError(f"invalid size {value} (negative)")
        return value
    m = _SIZE_RE.match(value)
    if m and m.group(1)[:2].lower() == "0x" and "." in m.group(1):
        m = None
    result = _number(m.group(1).replace("_", ""), 1 << _SHIFT[m.group(2).lower()]) if m else None
    if result is None:
        raise BoardError(f"invalid size {value!r} (e.g. 20M, 512K, 0x100000)")
    return result


def parse_hz(value: int | str) -> int:
    """``"100M"``, ``"25MHz"``, ``"1.5G"``, ``100_000_000`` -> Hz (decimal units)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BoardError(f"invalid frequency {value!r} (e.g. 100M, 25000000)")
    if isinstance(value, int):
        return value
    m = _HZ_RE.match(value)
    result = _number(m.group(1).replace("_", ""), _SCALE[m.group(2).lower()]) if m else None
    if result is None:
        raise BoardError(f"invalid frequency {value!r} (e.g. 100M, 25000000)")
    return result


# -- per-kind schema ----------------------------------------------------------

@dataclass(frozen=True)
class _Param:
    types: tuple[type, ...]
    what: str


_STR = _Param((str,), "a string")
_INT = _Param((int,), "an integer")
_BOOL = _Param((bool,), "a boolean")

#: kind -> (required IRQ line names, accepted parameters)
_SCHEMA: dict[str, tuple[tuple[str, ...], dict[str, _Param]]] = {
    "icu": ((), {}),
    "timer": (("irq",), {}),
    "uart": (("irq_rx", "irq_tx"), {
        "backend": _STR, "baud": _INT, "path": _STR, "host": _STR, "port": _INT,
        "listen": _BOOL,
    }),
    "watchdog": ((), {}),
}

_DEVICE_COMMON = ("kind", "name", "base", "size")


def _device_classes() -> dict[str, Any] | None:
    try:
        from aemu.hw.devices import DEVICE_KINDS  # noqa: PLC0415 (lazy: devices import us)
    except ImportError:
        return None
    return dict(DEVICE_KINDS)


def _known_kinds() -> tuple[list[str], dict[str, Any]]:
    classes = _device_classes()
    if classes is None:
        return list(KNOWN_KINDS), {}
    return sorted(classes), classes


def _is_irq_key(key: str) -> bool:
    return key == "irq" or key.startswith("irq_")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _hexrange(base: int, size: int) -> str:
    return f"{base:#x}..{base + size - 1:#x}"


# -- the data -----------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class DeviceSpec:
    """One device of a board: what to build and where."""

    kind: str
    name: str
    base: int
    size: int = WINDOW
    irqs: dict[str, int] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # own copies, so a caller's dict cannot change a board behind its back
        object.__setattr__(self, "irqs", dict(self.irqs))
        object.__setattr__(self, "params", dict(self.params))

    @property
    def end(self) -> int:
        """First address after the window."""
        return self.base + self.size

    def kwargs(self) -> dict[str, object]:
        """IRQ lines and device parameters as keyword arguments for the device
        class: ``cls(spec.name, spec.base, ctx, **spec.kwargs())``.  A UART's
        host back-end keys are left out (see :meth:`Board.uart_backends`)."""
        host = _HOST_KEYS if self.kind == "uart" else ()
        return {**self.irqs, **{k: v for k, v in self.params.items() if k not in host}}

    def describe(self) -> str:
        return f"device {self.name!r} ({self.kind})"

    def __repr__(self) -> str:
        size = "" if self.size == WINDOW else f", size={_hex(self.size)}"
        irqs = f", irqs={self.irqs!r}" if self.irqs else ""
        params = f", params={self.params!r}" if self.params else ""
        return (f"DeviceSpec(kind={self.kind!r}, name={self.name!r}, base={_hex(self.base)}"
                f"{size}{irqs}{params})")


@dataclass(frozen=True)
class Board:
    """A machine description.  Build one in Python or with :func:`load_board`;
    :meth:`validate` checks it (the machine calls it too)."""

    name: str
    cpu_hz: int = 100_000_000
    ram_base: int = 0
    ram_size: int = 20 << 20
    svc: str = "host"
    devices: tuple[DeviceSpec, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.devices, tuple):
            object.__setattr__(self, "devices", tuple(self.devices))

    # -- queries ---------------------------------------------------------
    @property
    def svc_host(self) -> bool:
        """``Cpu(svc_host=...)``: whether ``excp svc`` is a host call."""
        return self.svc == "host"

    @property
    def ram_end(self) -> int:
        return self.ram_base + self.ram_size

    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        names = [d.name for d in self.devices]
        raise KeyError(f"board {self.name!r} has no device {name!r} "
                       f"(it has: {', '.join(names) or 'none'}){_did_you_mean(name, names)}")

    def devices_of(self, kind: str) -> tuple[DeviceSpec, ...]:
        return tuple(d for d in self.devices if d.kind == kind)

    def uart_backends(self) -> dict[str, dict[str, object]]:
        """UART name -> its host back-end with defaults filled in, e.g.
        ``{"uart0": {"backend": "stdio"}, "uart1": {"backend": "tcp",
        "host": "127.0.0.1", "port": 5555, "listen": True}}``."""
        out: dict[str, dict[str, object]] = {}
        for d in self.devices_of("uart"):
            backend = d.params.get("backend", "null")
            spec: dict[str, object] = {"backend": backend}
            for key in UART_BACKENDS.get(str(backend), ()):
                if key in d.params:
                    spec[key] = d.params[key]
                elif key == "host":
                    spec[key] = "127.0.0.1"
                elif key == "listen":
                    spec[key] = True
            out[d.name] = spec
        return out

    # -- changes ---------------------------------------------------------
    def with_changes(self, **changes: Any) -> Board:
        """A validated copy with some fields replaced; ``ram_size`` and
        ``cpu_hz`` may be given as strings (``"32M"``, ``"25MHz"``)."""
        try:
            if isinstance(changes.get("ram_size"), str):
                changes["ram_size"] = parse_size(changes["ram_size"])
            if isinstance(changes.get("cpu_hz"), str):
                changes["cpu_hz"] = parse_hz(changes["cpu_hz"])
            board = dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise BoardError(str(exc), f"board {self.name!r}") from None
        board.validate()
        return board

    def with_device(self, name: str, **changes: Any) -> Board:
        """A validated copy with device ``name`` changed: ``kind``, ``base``,
        ``size``, ``irqs``, ``params`` replace those fields; any other keyword
        is an IRQ line (``irq``, ``irq_*``) or a parameter to set (``None``
        removes it), e.g. ``with_device("uart0", backend="tcp", port=5555)``."""
        old = self.device(name)
        fields = {k: changes.pop(k) for k in ("kind", "base", "size", "irqs", "params")
                  if k in changes}
        irqs = dict(fields.pop("irqs", old.irqs))
        params = dict(fields.pop("params", old.params))
        for key, value in changes.items():
            target = irqs if _is_irq_key(key) else params
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        new = dataclasses.replace(old, irqs=irqs, params=params, **fields)
        return self.with_changes(devices=tuple(new if d is old else d for d in self.devices))

    # -- validation ------------------------------------------------------
    def validate(self, source: str | None = None) -> None:
        """Raise :class:`BoardError` listing every problem (``source`` names
        the file in the message; default: the board's name)."""
        problems = self.problems()
        if problems:
            raise BoardError(problems, source or f"board {self.name!r}")

    def problems(self) -> list[str]:
        """Every problem of this board, as sentences (empty: it is usable)."""
        p: list[str] = []
        if not isinstance(self.name, str) or not self.name:
            p.append(f"the board name must be a non-empty string, not {self.name!r}")
        if isinstance(self.cpu_hz, bool) or not isinstance(self.cpu_hz, int):
            p.append(f"cpu_hz must be an integer number of Hz, not {self.cpu_hz!r}")
        elif self.cpu_hz <= 0:
            p.append(f"cpu_hz must be positive, not {self.cpu_hz}")
        if self.svc not in SVC_MODES:
            p.append(f"svc must be 'host' (excp svc is a host call) or 'guest' (a trap "
                     f"into the guest's SVC vector), not {self.svc!r}")
        ram_ok = _is_int(self.ram_base) and _is_int(self.ram_size)
        if not _is_int(self.ram_base):
            p.append(f"ram base must be an integer, not {self.ram_base!r}")
        elif self.ram_base != 0:
            p.append(f"ram base must be 0 (the core maps RAM at address 0), not "
                     f"{self.ram_base:#x}")
            ram_ok = False
        if not _is_int(self.ram_size):
            p.append(f"ram size must be an integer, not {self.ram_size!r}")
        elif not MIN_RAM <= self.ram_size <= MAX_RAM or self.ram_size % 2:
            why = ("is zero" if self.ram_size == 0
                   else f"{_size_text(self.ram_size)} is " + (
                       "odd" if self.ram_size % 2 else "over 64 MiB" if self.ram_size > MAX_RAM
                       else "too small" if self.ram_size > 0 else "negative"))
            p.append(f"ram size {why}: it must be even and between {MIN_RAM} bytes and 64 MiB")
            ram_ok = False
        p += self._device_problems(ram_ok)
        return p

    def _device_problems(self, ram_ok: bool) -> list[str]:
        p: list[str] = []
        kinds, classes = _known_kinds()
        good: list[DeviceSpec] = []           # devices with a usable window
        seen: dict[str, DeviceSpec] = {}
        lines: dict[int, tuple[DeviceSpec, str]] = {}
        for d in self.devices:
            if not isinstance(d, DeviceSpec):
                p.append(f"devices must be DeviceSpec objects, not {type(d).__name__}")
                continue
            what = d.describe()
            if not isinstance(d.name, str) or not _NAME_RE.match(d.name):
                p.append(f"{what}: the name must be a letter followed by letters, digits, "
                         f"'_' or '-'")
            elif d.name in seen:
                p.append(f"duplicate device name {d.name!r} ({seen[d.name].kind} at "
                         f"{_hex(seen[d.name].base)} and {d.kind} at {_hex(d.base)})")
            else:
                seen[d.name] = d
            if d.kind not in kinds:
                p.append(f"{what}: unknown device kind {d.kind!r} (known kinds: "
                         f"{', '.join(kinds)}){_did_you_mean(str(d.kind), kinds)}")
            # window
            window_ok = True
            if not _is_int(d.base) or d.base < 0:
                p.append(f"{what}: base must be a non-negative integer, not {d.base!r}")
                window_ok = False
            elif d.base % WINDOW:
                p.append(f"{what}: base {d.base:#x} is misaligned: it must be a multiple "
                         f"of {WINDOW:#x}")
            expected = getattr(classes.get(d.kind), "WINDOW", None)
            if not _is_int(d.size) or d.size <= 0 or d.size % WINDOW:
                p.append(f"{what}: window size must be a positive multiple of {WINDOW:#x}, "
                         f"not {d.size!r}")
                window_ok = False
            elif _is_int(expected) and d.size != expected:
                p.append(f"{what}: window size {d.size:#x} does not match the {d.kind} "
                         f"device's {expected:#x}")
            if window_ok:
                if d.end > ADDR_LIMIT:
                    p.append(f"{what}: window {_hexrange(d.base, d.size)} runs past the "
                             f"32-bit address space")
                elif ram_ok and d.base < self.ram_end and self.ram_base < d.end:
                    p.append(f"{what}: window {_hexrange(d.base, d.size)} overlaps RAM "
                             f"{_hexrange(self.ram_base, self.ram_size)}")
                else:
                    for o in good:
                        if d.base < o.end and o.base < d.end:
                            p.append(f"{what}: window {_hexrange(d.base, d.size)} overlaps "
                                     f"{o.describe()} window {_hexrange(o.base, o.size)}")
                    good.append(d)
            # IRQ lines and parameters
            p += _kind_problems(d)
            for line_name, line in d.irqs.items():
                if not _is_int(line) or not 0 <= line < NUM_IRQS:
                    p.append(f"{what}: {line_name} = {line!r} is out of range: IRQ lines are "
                             f"0..{NUM_IRQS - 1}")
                elif line in lines:
                    other, other_name = lines[line]
                    owner = "it" if other is d else other.describe()
                    p.append(f"{what}: {line_name} = {line} is already claimed by {owner} "
                             f"({other_name}): two sources on IRQ line {line}")
                else:
                    lines[line] = (d, line_name)
        if len(self.devices) > MAX_WINDOWS:
            p.append(f"too many devices ({len(self.devices)}): the core maps at most "
                     f"{MAX_WINDOWS} MMIO windows")
        icus = [d for d in self.devices if isinstance(d, DeviceSpec) and d.kind == "icu"]
        if len(icus) > 1:
            p.append("more than one interrupt controller: "
                     + ", ".join(f"{d.name!r} at {_hex(d.base)}" for d in icus))
        users = [d.name for d in self.devices if isinstance(d, DeviceSpec) and d.irqs]
        if not icus and users:
            p.append(f"no interrupt controller (kind 'icu'), but {', '.join(map(repr, users))} "
                     f"{'needs' if len(users) == 1 else 'need'} IRQ lines")
        stdio = [d.name for d in self.devices if isinstance(d, DeviceSpec) and d.kind == "uart"
                 and d.params.get("backend") == "stdio"]
        if len(stdio) > 1:
            p.append(f"more than one UART on the stdio back-end: {', '.join(map(repr, stdio))}")
        return p

    # -- output ----------------------------------------------------------
    def to_toml(self) -> str:
        """The board as a board file; ``load_board(b.to_toml()) == b``."""
        out = [f"name = {_toml_str(self.name)}",
               f"cpu_hz = {self.cpu_hz:_d}",
               f"svc = {_toml_str(self.svc)}",
               "",
               "[ram]"]
        if self.ram_base:
            out.append(f"base = {self.ram_base:#x}")
        out.append(f"size = {_toml_size(self.ram_size)}")
        for d in self.devices:
            out += ["", "[[device]]",
                    f"kind = {_toml_str(d.kind)}",
                    f"name = {_toml_str(d.name)}",
                    f"base = {d.base:#x}"]
            if d.size != WINDOW:
                out.append(f"size = {d.size:#x}")
            out += [f"{_toml_key(k)} = {v}" for k, v in d.irqs.items()]
            out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.params.items()]
        return "\n".join(out) + "\n"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _size_text(n: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n:#x} ({n / (1 << shift):g} {unit})"
    return f"{n} bytes" if n != 1 else "1 byte"


def _hex(v: object) -> str:
    return f"{v:#x}" if _is_int(v) else repr(v)


def _kind_problems(d: DeviceSpec) -> list[str]:
    """IRQ names and parameters against the kind's schema."""
    p = _key_problems(d.describe(), d.kind, d.irqs, d.params)
    if d.kind in _SCHEMA:
        required = _SCHEMA[d.kind][0]
        for key in required:
            if key not in d.irqs:
                p.append(f"{d.describe()}: missing IRQ line {key!r} (a {d.kind} needs "
                         f"{', '.join(required)})")
        params = _SCHEMA[d.kind][1]
        for key, value in d.params.items():
            spec = params.get(key)
            if spec is not None and (not isinstance(value, spec.types)
                                     or (spec is _INT and isinstance(value, bool))):
                p.append(f"{d.describe()}: {key} must be {spec.what}, not {value!r}")
    if d.kind == "uart":
        p += _uart_problems(d)
    return p


def _key_problems(what: str, kind: object, irqs: Mapping[str, object],
                  params: Mapping[str, object]) -> list[str]:
    """IRQ line names and parameter names that ``kind`` does not have."""
    if kind not in _SCHEMA:
        return [f"{what}: unknown IRQ line {key!r} (lines are named irq or irq_*)"
                for key in irqs if not isinstance(key, str) or not _is_irq_key(key)]
    required, known_params = _SCHEMA[kind]
    p = []
    for key in irqs:
        if key not in required:
            p.append(f"{what}: unknown IRQ line {key!r} ({kind} lines: "
                     f"{', '.join(required) or 'none'}){_did_you_mean(str(key), required)}")
    for key in params:
        if key not in known_params:
            known = [*_DEVICE_COMMON, *required, *known_params]
            p.append(f"{what}: unknown key {key!r} ({kind} keys: {', '.join(known)})"
                     f"{_did_you_mean(str(key), known)}")
    return p


def _uart_problems(d: DeviceSpec) -> list[str]:
    p: list[str] = []
    what = d.describe()
    baud = d.params.get("baud")
    if _is_int(baud) and (baud < 0 or baud % 100 or baud // 100 > 0xFFFF):
        p.append(f"{what}: baud {baud} must be a multiple of 100 from 0 (infinitely fast) to "
                 f"6553500 (the BAUD register holds baud / 100)")
    backend = d.params.get("backend", "null")
    if not isinstance(backend, str):
        return p
    if backend not in UART_BACKENDS:
        p.append(f"{what}: unknown backend {backend!r} (known: {', '.join(UART_BACKENDS)})"
                 f"{_did_you_mean(backend, UART_BACKENDS)}")
        return p
    allowed = UART_BACKENDS[backend]
    for key in ("path", "host", "port", "listen"):
        if key in d.params and key not in allowed:
            p.append(f"{what}: {key!r} does not apply to the {backend} backend")
    if "path" in allowed and "path" not in d.params:
        p.append(f"{what}: the {backend} backend needs a path")
    if backend == "tcp":
        port = d.params.get("port")
        if port is None:
            p.append(f"{what}: the tcp backend needs a port")
        elif _is_int(port) and not 0 <= port <= 0xFFFF:
            p.append(f"{what}: port {port} is out of range 0..65535")
    return p


# -- TOML output helpers ------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else _toml_str(k)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # nan, inf, 1e+20: all valid TOML
    if isinstance(v, str):
        return _toml_str(v)
    raise BoardError(f"cannot write {v!r} ({type(v).__name__}) to a board file")


def _toml_size(n: int) -> str:
    for suffix, shift in (("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f'"{n >> shift}{suffix}"'
    return f"{n:#x}"


# -- loading ------------------------------------------------------------------

_TOP_KEYS = ("name", "cpu_hz", "svc", "ram", "device")
_RAM_KEYS = ("base", "size")


def load_board(path_or_text: str | os.PathLike[str], *, source: str | None = None) -> Board:
    """Load and validate a board: a path to a TOML file, or TOML text (a
    string with a newline or an ``=`` that is not an existing file).
    ``source`` overrides the name used in error messages."""
    text, where, stem = _read(path_or_text)
    where = source or where
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"invalid TOML: {exc}", where) from None
    board = _from_dict(data, where, stem)
    board.validate(where)
    return board


def _read(path_or_text: str | os.PathLike[str]) -> tuple[str, str, str | None]:
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
    elif isinstance(path_or_text, str):
        if "\n" in path_or_text or ("=" in path_or_text and not os.path.isfile(path_or_text)):
            return path_or_text, "<board text>", None
        if not path_or_text.strip():
            return path_or_text, "<board text>", None
        path = Path(path_or_text)
    else:
        raise TypeError(f"load_board wants a path or TOML text, not {type(path_or_text).__name__}")
    try:
        return path.read_text(encoding="utf-8"), str(path), path.stem
    except FileNotFoundError:
        raise BoardError("no such board file", str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoardError(f"cannot read the board file: {exc}", str(path)) from None


def _from_dict(data: dict[str, Any], where: str, stem: str | None) -> Board:
    """The board a parsed TOML document describes; the shape (keys, types)
    is checked here, the meaning by :meth:`Board.validate`."""
    p: list[str] = []
    for key in data:
        if key not in _TOP_KEYS:
            p.append(f"unknown top-level key {key!r} (known: {', '.join(_TOP_KEYS)})"
                     f"{_did_you_mean(key, _TOP_KEYS)}")
    kw: dict[str, Any] = {}
    name = data.get("name", stem or "board")
    if not isinstance(name, str) or not name:
        p.append(f"name must be a non-empty string, not {name!r}")
    kw["name"] = name
    if "cpu_hz" in data:
        try:
            kw["cpu_hz"] = parse_hz(data["cpu_hz"])
        except BoardError as exc:
            p.append(f"cpu_hz: {exc}")
    if "svc" in data:
        kw["svc"] = data["svc"]
    ram = data.get("ram", {})
    if not isinstance(ram, dict):
        p.append("ram must be a table ([ram] with size = ...)")
        ram = {}
    for key in ram:
        if key not in _RAM_KEYS:
            p.append(f"[ram]: unknown key {key!r} (known: {', '.join(_RAM_KEYS)})"
                     f"{_did_you_mean(key, _RAM_KEYS)}")
    for key, attr in (("base", "ram_base"), ("size", "ram_size")):
        if key in ram:
            try:
                kw[attr] = parse_size(ram[key])
            except BoardError as exc:
                p.append(f"[ram] {key}: {exc}")
    devices = data.get("device", [])
    if not isinstance(devices, list):
        p.append("device must be an array of tables: write each device as [[device]]")
        devices = []
    specs = []
    for i, raw in enumerate(devices, 1):
        spec = _device_from_dict(raw, i, p)
        if spec is not None:
            specs.append(spec)
    kw["devices"] = tuple(specs)
    if p:
        raise BoardError(p, where)
    return Board(**kw)


def _device_from_dict(raw: object, index: int, p: list[str]) -> DeviceSpec | None:
    label = f"device #{index}"
    if not isinstance(raw, dict):
        p.append(f"{label} must be a table ([[device]])")
        return None
    ok = True
    name = raw.get("name")
    if name is None:
        p.append(f"{label}: missing name")
        ok = False
    elif not isinstance(name, str):
        p.append(f"{label}: name must be a string, not {name!r}")
        ok = False
    else:
        label = f"device {name!r}"
    kind = raw.get("kind")
    if kind is None:
        p.append(f"{label}: missing kind")
        ok = False
    elif not isinstance(kind, str):
        p.append(f"{label}: kind must be a string, not {kind!r}")
        ok = False
    else:
        label += f" ({kind})"
    base = raw.get("base")
    if base is None:
        p.append(f"{label}: missing base (its MMIO address)")
        ok = False
    else:
        try:
            base = parse_size(base)
        except BoardError:
            p.append(f"{label}: base must be an address (e.g. 0x1400000), not {base!r}")
            ok = False
    size = raw.get("size", WINDOW)
    try:
        size = parse_size(size)
    except BoardError:
        p.append(f"{label}: size must be a size (e.g. 0x100), not {size!r}")
        ok = False
    irqs = {k: v for k, v in raw.items() if _is_irq_key(k)}
    params = {k: v for k, v in raw.items() if k not in _DEVICE_COMMON and not _is_irq_key(k)}
    if not ok:
        # still name misspelt keys: a typo'd "bse" is why base is missing
        p += _key_problems(label, kind, irqs, params)
        return None
    return DeviceSpec(kind=kind, name=name, base=base, size=size, irqs=irqs, params=params)


def default_board() -> Board:
    """The default board (package data ``aemu/hw/boards/default.toml``):
    the reference simulator's 20 MiB of RAM plus the devices of docs/board.md."""
    from importlib.resources import files  # noqa: PLC0415

    resource = files("aemu.hw.boards") / "default.toml"
    return load_board(resource.read_text(encoding="utf-8"), source="aemu/hw/boards/default.toml")
