"""The vmstate engine: one encoder and one decoder for every description.

Saving walks a description over an object and appends the QEMU payload
(fields in order, then subsections as ``0x05, cstr name, be32 version,
payload``) and returns the JSON description of what it wrote (the vmdesc
entry that QEMU's analyze-migration.py reads).

Loading is two-phase so that a bad stream changes nothing: ``decode`` reads
and checks a payload into plain values (every length bounded by what remains,
every version against the description), and only once the whole stream has
decoded does ``apply`` put the values into the objects and run the hooks.
"""
from __future__ import annotations

from typing import Any

from aemu.savevm.vmstate import Field, Scalar, VMStateDescription

SUBSECTION = 0x05


class StreamError(Exception):
    """A stream that cannot be loaded: says which section and at what byte."""

    def __init__(self, message: str, offset: int | None = None, section: str | None = None):
        where = []
        if section:
            where.append(f"section {section!r}")
        if offset is not None:
            where.append(f"byte {offset}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.reason = message
        self.offset = offset
        self.section = section


class Truncated(StreamError):
    """The data ended inside a record: an error for a whole stream, "wait for
    more" for one that is still arriving (Reader(partial=True))."""


class Reader:
    """Bounded big-endian reads over a buffer; every error names the offset.
    ``partial``: more data may follow the buffer (a stream being received),
    so even peeking at its end raises Truncated."""

    __slots__ = ("data", "pos", "end", "section", "partial")

    def __init__(self, data: "bytes | bytearray | memoryview", pos: int = 0,
                 end: int | None = None, section: str | None = None, *,
                 partial: bool = False) -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.section = section
        self.partial = partial

    def error(self, message: str, at: int | None = None) -> StreamError:
        if message.startswith("truncated"):
            return Truncated(message, self.pos if at is None else at, self.section)
        return StreamError(message, self.pos if at is None else at, self.section)

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str = "data") -> "bytes | memoryview":
        if n < 0 or n > self.end - self.pos:
            raise self.error(f"truncated: {what} needs {n} bytes, {self.end - self.pos} left")
        start = self.pos
        self.pos += n
        return self.data[start:self.pos]

    def uint(self, size: int, what: str = "integer") -> int:
        return int.from_bytes(self.take(size, what), "big")

    def u8(self, what: str = "byte") -> int:
        if self.pos >= self.end:
            raise self.error(f"truncated: {what} missing")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def peek(self) -> int | None:
        if self.pos < self.end:
            return self.data[self.pos]
        if self.partial:
            raise self.error("truncated: the stream goes on")
        return None

    def cstr(self, what: str = "name") -> str:
        n = self.u8(f"{what} length")
        raw = bytes(self.take(n, what))
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"{what} is not ASCII", self.pos - n) from None


# -- saving ------------------------------------------------------------------------------------
def _count(f: Field, obj: Any) -> int | None:
    if f.count is not None:
        return f.count
    if f.count_field is not None:
        return int(getattr(obj, f.count_field))
    return None


def _put_scalar(out: bytearray, kind: Scalar, value: Any, where: str) -> None:
    v = int(value)
    if not kind.lo <= v <= kind.hi:
        raise ValueError(f"{where}: {v} does not fit {kind.name}")
    out += v.to_bytes(kind.size, "big", signed=kind.signed)


def encode(vmsd: VMStateDescription, obj: Any, out: bytearray, version: int | None = None
           ) -> dict[str, Any]:
    """Append ``obj``'s payload to ``out``; returns its vmdesc JSON entry."""
    version = vmsd.version if version is None else version
    if vmsd.pre_save is not None:
        vmsd.pre_save(obj)
    fields_desc: list[dict[str, Any]] = []
    for f in vmsd.fields:
        if not f.present(obj, version):
            continue
        fields_desc.extend(_encode_field(f, obj, out, vmsd.name))
    desc: dict[str, Any] = {"vmsd_name": vmsd.name, "version": version, "fields": fields_desc}
    subs = []
    for sub in vmsd.subsections:
        if sub.needed is not None and not sub.needed(obj):
            continue
        out.append(SUBSECTION)
        name = sub.name.encode("ascii")
        out.append(len(name))
        out += name
        out += sub.version.to_bytes(4, "big")
        subs.append(encode(sub, obj, out))
    if subs:
        desc["subsections"] = subs
    if vmsd.post_save is not None:
        vmsd.post_save(obj)
    return desc


def _encode_field(f: Field, obj: Any, out: bytearray, owner: str) -> list[dict[str, Any]]:
    where = f"{owner}.{f.name}"
    if f.kind == "unused":
        out += bytes(f.size)
        return [{"name": "unused", "type": "unused_buffer", "size": f.size}]
    value = getattr(obj, f.name)
    n = _count(f, obj)
    if isinstance(f.kind, Scalar):
        if n is None:
            _put_scalar(out, f.kind, value, where)
            return [{"name": f.name, "type": f.kind.name, "size": f.kind.size}]
        if len(value) != n:
            raise ValueError(f"{where}: {len(value)} elements, declared {n}")
        for item in value:
            _put_scalar(out, f.kind, item, where)
        entry = {"name": f.name, "type": f.kind.name, "size": f.kind.size}
        return [dict(entry, array_len=n)] if n else []
    if f.kind == "cstr":
        items = [value] if n is None else list(value)
        sizes = []
        for item in items:
            raw = item.encode("ascii")
            if len(raw) > 255:
                raise ValueError(f"{where}: {item!r} is longer than 255 bytes")
            out.append(len(raw))
            out += raw
            sizes.append(1 + len(raw))
        # "size" is what one element took on the wire (its length byte
        # included), as QEMU writes it: an array is one entry with array_len
        # when every element has the same size, else one entry per element
        if n is None:
            return [{"name": f.name, "type": "capability", "size": sizes[0]}]
        if len(set(sizes)) <= 1:
            return [{"name": f.name, "type": "capability", "size": sizes[0], "array_len": n}
                    ] if n else []
        return [{"name": f.name, "type": "capability", "size": size, "index": i}
                for i, size in enumerate(sizes)]
    if f.kind == "buffer":
        size = f.size if f.size_field is None else int(getattr(obj, f.size_field))
        data = bytes(value)
        if len(data) != size:
            raise ValueError(f"{where}: {len(data)} bytes, declared {size}")
        out += data
        return [{"name": f.name, "type": "buffer", "size": size}]
    if f.kind == "struct":
        assert f.vmsd is not None
        items = [value] if n is None else list(value)
        entries = []
        for i, item in enumerate(items):
            start = len(out)
            sub = encode(f.vmsd, item, out)
            entry = {"name": f.name, "type": "struct", "struct": sub, "size": len(out) - start}
            if n is not None:
                entry["index"] = i
            entries.append(entry)
        return entries
    raise TypeError(f"{where}: unknown field kind {f.kind!r}")


# -- loading ---------------------------------------------------------------------------------------
class Values(dict):
    """Decoded values of one description: field name -> value, and
    ``subsections``: name -> Values."""

    def __init__(self, version: int) -> None:
        super().__init__()
        self.version = version
        self.subsections: dict[str, "Values"] = {}


class _Peek:
    """What field tests see while decoding: values read so far, else the
    local object's (a test must agree on both sides, as in QEMU)."""

    def __init__(self, values: dict, obj: Any) -> None:
        self._values, self._obj = values, obj

    def __getattr__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        return getattr(self._obj, name)


def decode(vmsd: VMStateDescription, obj: Any, r: Reader, version: int) -> Values:
    """Read one payload of ``vmsd`` at ``version`` (already checked); no side effects."""
    values = Values(version)
    peek = _Peek(values, obj)
    for f in vmsd.fields:
        if not f.present(peek, version):
            continue
        values[f.name] = _decode_field(f, peek, obj, r, vmsd.name)
    known = {sub.name: sub for sub in vmsd.subsections}
    while r.peek() == SUBSECTION:
        start = r.pos
        # peek, as QEMU does: a 0x05 that is not followed by a whole name of
        # ours is not our subsection -- it belongs to an enclosing description
        # (its subsection, or the field after a struct that happens to be 5)
        n = r.data[start + 1] if start + 1 < r.end else -1
        if n < 0 or start + 2 + n > r.end:
            break
        try:
            name = bytes(r.data[start + 2:start + 2 + n]).decode("ascii")
        except UnicodeDecodeError:
            break
        if not name.startswith(vmsd.name + "/"):
            break
        r.pos = start + 2 + n
        sub = known.get(name)
        if sub is None:
            raise r.error(f"unknown subsection {name!r} of {vmsd.name!r}", start)
        if name in values.subsections:
            raise r.error(f"subsection {name!r} sent twice", start)
        sub_version = r.uint(4, "subsection version")
        check_version(sub, sub_version, r, start)
        values.subsections[name] = decode(sub, obj, r, sub_version)
    return values


def check_version(vmsd: VMStateDescription, version: int, r: Reader, at: int) -> None:
    if version > vmsd.version:
        raise r.error(f"{vmsd.name!r} version {version} is newer than this aemu supports "
                      f"({vmsd.version})", at)
    if version < vmsd.minimum_version:
        raise r.error(f"{vmsd.name!r} version {version} is older than this aemu accepts "
                      f"(at least {vmsd.minimum_version})", at)


def _decode_field(f: Field, peek: Any, obj: Any, r: Reader, owner: str) -> Any:
    what = f"{owner}.{f.name}"
    if f.kind == "unused":
        r.take(f.size, what)
        return None
    n = _count(f, peek)
    if n is not None and (n < 0 or n > r.remaining()):
        raise r.error(f"{what}: element count {n} exceeds the stream")
    if isinstance(f.kind, Scalar):
        k = f.kind

        def one() -> int:
            v = int.from_bytes(r.take(k.size, what), "big", signed=k.signed)
            return bool(v) if k is not None and k.name == "bool" else v
        value: Any = one() if n is None else [one() for _ in range(n)]
        if f.equal and value != getattr(obj, f.name):
            raise r.error(f"{what}: the stream has {value!r}, this VM {getattr(obj, f.name)!r}; "
                          "they must be equal", r.pos - k.size * (n or 1))
        return value
    if f.kind == "cstr":
        return r.cstr(what) if n is None else [r.cstr(what) for _ in range(n)]
    if f.kind == "buffer":
        size = f.size if f.size_field is None else int(getattr(peek, f.size_field))
        return bytes(r.take(size, what))
    if f.kind == "struct":
        assert f.vmsd is not None
        if n is None:
            return decode(f.vmsd, getattr(obj, f.name, None), r, f.vmsd.version)
        items = getattr(obj, f.name, None) or [None] * n
        return [decode(f.vmsd, items[i] if i < len(items) else None, r, f.vmsd.version)
                for i in range(n)]
    raise TypeError(f"{what}: unknown field kind {f.kind!r}")


def apply(vmsd: VMStateDescription, obj: Any, values: Values) -> None:
    """Put decoded values into ``obj``: pre_load, fields, subsections, post_load."""
    version = values.version
    if vmsd.pre_load is not None:
        vmsd.pre_load(obj, version)
    for f in vmsd.fields:
        if f.name not in values or f.kind == "unused":
            continue
        value = values[f.name]
        if f.kind == "struct":
            assert f.vmsd is not None
            if isinstance(value, list):
                for item, v in zip(getattr(obj, f.name), value):
                    apply(f.vmsd, item, v)
            else:
                apply(f.vmsd, getattr(obj, f.name), value)
        elif isinstance(value, (list, tuple)):
            setattr(obj, f.name, list(value))      # a fresh list: never alias the values
        else:
            setattr(obj, f.name, value)
    for sub in vmsd.subsections:
        if sub.name in values.subsections:
            apply(sub, obj, values.subsections[sub.name])
    if vmsd.post_load is not None:
        vmsd.post_load(obj, version)
