"""The vmstate vocabulary: how a device *declares* its state.

This is the one module of ``aemu/savevm/`` that devices import.  A
description names the attributes of an object and their wire types; the
engine (``aemu/savevm/codec.py``) does all encoding, decoding, version checks
and the JSON description, as QEMU's vmstate does::

    TIMER_VMSD = VMStateDescription(
        "cr16-timer", version=1, minimum_version=1,
        fields=[u16("ctrl"), u16("prescale"), u32("reload"), u16("status"),
                u64("start_cycle"), u32("count_at_start"), u16("prescale_in_use")],
        post_load=lambda dev, version: dev.post_load())

Fields are big-endian on the wire, as in QEMU.  ``version=N`` on a field makes
it present only in sections of version N or later (QEMU's ``_V`` fields);
``test`` makes it present only when ``test(obj, version)`` is true on both
sides.  Subsections are descriptions whose name starts with the parent's
name and ``/``; they are sent when ``needed(obj)`` is true.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence


class Priority(enum.IntEnum):
    """Save (and so load) order: higher first; equal priorities keep
    registration order.  Values follow QEMU's MigrationPriority."""
    LOW = 1
    DEFAULT = 2
    #: interrupt controllers: before every device whose post_load consults
    #: interrupt state (QEMU's "APIC before PCI devices")
    ICU = 6


@dataclass(frozen=True)
class Scalar:
    """An integer or bool of ``size`` bytes (big-endian, two's complement if signed)."""
    name: str          # the vmdesc type name: uint8 ... int64, bool
    size: int
    signed: bool = False

    @property
    def lo(self) -> int:
        return -(1 << (8 * self.size - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        bits = 8 * self.size
        return (1 << (bits - 1)) - 1 if self.signed else (1 << bits) - 1


BOOL = Scalar("bool", 1)
UINT8, UINT16, UINT32, UINT64 = (Scalar(f"uint{8 * n}", n) for n in (1, 2, 4, 8))
INT8, INT16, INT32, INT64 = (Scalar(f"int{8 * n}", n, True) for n in (1, 2, 4, 8))


@dataclass(frozen=True)
class Field:
    """One declared piece of state.

    kind: a Scalar; "buffer" (raw bytes, ``size`` of them, or as many as the
    integer attribute ``size_field`` says); "struct" (a nested description);
    "unused" (``size`` zero bytes: a retired field).  ``count`` makes an
    array of ``count`` elements (a list attribute), ``count_field`` one whose
    length is another (earlier) integer field.  ``equal`` checks on load that
    the incoming value equals the local one (QEMU's ``_EQUAL``).
    """
    name: str
    kind: Any
    size: int = 0
    size_field: Optional[str] = None
    count: Optional[int] = None
    count_field: Optional[str] = None
    vmsd: Optional["VMStateDescription"] = None
    version: int = 0
    test: Optional[Callable[[Any, int], bool]] = None
    equal: bool = False

    def present(self, obj: Any, version: int) -> bool:
        if version < self.version:
            return False
        return self.test is None or bool(self.test(obj, version))


@dataclass
class VMStateDescription:
    name: str
    version: int = 1
    minimum_version: int = 1
    fields: Sequence[Field] = ()
    subsections: Sequence["VMStateDescription"] = ()
    priority: Priority = Priority.DEFAULT
    #: subsection: sent only if needed(obj); top level: section sent only if so
    needed: Optional[Callable[[Any], bool]] = None
    pre_save: Optional[Callable[[Any], None]] = None
    post_save: Optional[Callable[[Any], None]] = None
    #: before fields are applied (defaults for subsections that may be absent)
    pre_load: Optional[Callable[[Any, int], None]] = None
    #: after fields and subsections are applied: rebuild derived state
    post_load: Optional[Callable[[Any, int], None]] = None
    unmigratable: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum_version <= self.version:
            raise ValueError(f"{self.name}: minimum_version {self.minimum_version} must be "
                             f"1..version ({self.version})")
        seen = set()
        for f in self.fields:
            if f.name in seen and f.kind != "unused":
                raise ValueError(f"{self.name}: field {f.name!r} declared twice")
            seen.add(f.name)
            if f.version > self.version:
                raise ValueError(f"{self.name}: field {f.name!r} is newer ({f.version}) than "
                                 f"the description ({self.version})")
        for sub in self.subsections:
            if not sub.name.startswith(self.name + "/"):
                raise ValueError(f"subsection {sub.name!r} must be named {self.name}/...")


# -- field constructors (the names devices write) ------------------------------------------
def _scalar(kind: Scalar) -> Callable[..., Field]:
    def make(name: str, *, version: int = 0, test: Optional[Callable[[Any, int], bool]] = None,
             count: Optional[int] = None, count_field: Optional[str] = None,
             equal: bool = False) -> Field:
        return Field(name, kind, version=version, test=test, count=count,
                     count_field=count_field, equal=equal)
    make.__name__ = kind.name
    make.__doc__ = f"A {kind.name} field (an array with count= or count_field=)."
    return make


boolean = _scalar(BOOL)
u8, u16, u32, u64 = (_scalar(k) for k in (UINT8, UINT16, UINT32, UINT64))
i8, i16, i32, i64 = (_scalar(k) for k in (INT8, INT16, INT32, INT64))


def buffer(name: str, size: int = 0, *, size_field: Optional[str] = None, version: int = 0,
           test: Optional[Callable[[Any, int], bool]] = None) -> Field:
    """Raw bytes: exactly ``size`` of them, or as many as the earlier integer
    field ``size_field`` holds (no length prefix on the wire, as in QEMU)."""
    if (size > 0) == (size_field is not None):
        raise ValueError(f"buffer {name!r}: give size or size_field")
    return Field(name, "buffer", size=size, size_field=size_field, version=version, test=test)


def cstr(name: str, *, count: Optional[int] = None, count_field: Optional[str] = None,
         version: int = 0) -> Field:
    """A short ASCII string: u8 length, then the bytes (QEMU's "capability"
    type in the configuration section)."""
    return Field(name, "cstr", count=count, count_field=count_field, version=version)


def struct(name: str, vmsd: VMStateDescription, *, count: Optional[int] = None,
           version: int = 0, test: Optional[Callable[[Any, int], bool]] = None) -> Field:
    """A nested object (or a list of ``count`` of them) described by ``vmsd``."""
    return Field(name, "struct", vmsd=vmsd, count=count, version=version, test=test)


def unused(size: int, *, version: int = 0) -> Field:
    """``size`` zero bytes where a retired field was (skipped on load)."""
    return Field(f"unused{size}", "unused", size=size, version=version)
