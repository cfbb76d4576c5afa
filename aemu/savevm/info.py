"""``aemu savevm-info``: what a migration stream or snapshot file holds, read
without a VM.

The decoder is generic, as QEMU's scripts/analyze-migration.py is: it knows
the stream's framing (header, configuration, sections, footers, the ram
section's records, mapped-ram's page bitmap) and decodes every device
section by the JSON VM description the file carries after its EOF, so it
reads streams of any board, device set or version this aemu has never seen.

    info = read_info("vm.snap")         # a dict, as ``--json`` prints it
    print(format_info(info))            # the text form
"""
from __future__ import annotations

import json
import mmap
import os
from typing import Any, Optional

from aemu.savevm.codec import Reader, StreamError
from aemu.savevm.stream import (CONFIGURATION, END, EOF, FOOTER, FULL, MAGIC, PART,
                                RAM_CONTINUE, RAM_EOS, RAM_FLAG_MASK, RAM_MEM_SIZE, RAM_PAGE,
                                RAM_ZERO, START, SUBSECTION, VMDESC, bitmap_bytes)

SECTION_TYPES = {START: "START", PART: "PART", END: "END", FULL: "FULL"}
_INT_TYPES = {f"{s}int{8 * n}": (n, s == "") for n in (1, 2, 4, 8) for s in ("u", "")}
BUFFER_SHOWN = 32           #: text output shows this many bytes of a buffer


class InfoError(StreamError):
    """The file is not a stream this decoder can read (says where)."""


class _Cursor(Reader):
    """codec's bounded reader, raising InfoError and handing out bytes."""

    __slots__ = ()

    def error(self, message: str, at: Optional[int] = None) -> InfoError:
        return InfoError(message, self.pos if at is None else at)

    def take(self, n: int, what: str = "data") -> bytes:
        return bytes(super().take(n, what))


# -- the VM description ----------------------------------------------------------------------
def find_vmdesc(data: Any) -> tuple[dict, int]:
    """The JSON VM description at the end of a stream, and the offset of its
    VMDESC byte (the stream proper ends just before it)."""
    size = len(data)
    at = size
    while True:
        at = data.rfind(bytes([VMDESC]), 0, at)
        if at < 0:
            raise InfoError("no JSON VM description at the end of the file")
        n = int.from_bytes(data[at + 1:at + 5], "big")
        if at + 5 + n == size and data[at + 5:at + 6] == b"{":
            try:
                return json.loads(bytes(data[at + 5:size])), at
            except ValueError:
                raise InfoError("the VM description is not JSON", at) from None


def _scalar(c: _Cursor, typ: str, size: int, what: str) -> Any:
    raw = c.take(size, what)
    if typ == "bool":
        return bool(raw[0])
    signed = typ.startswith("int")
    return int.from_bytes(raw, "big", signed=signed)


def decode_fields(c: _Cursor, desc: dict, where: str) -> dict[str, Any]:
    """One vmstate payload as its description says: fields, then the
    subsections it lists.  Returns {field: value} (subsections under
    ``"subsections"``: {name: {...}})."""
    out: dict[str, Any] = {}
    for f in desc.get("fields", []):
        name, typ, size = f.get("name", "?"), f.get("type", "?"), int(f.get("size", 0))
        what = f"{where}.{name}"
        count = f.get("array_len")
        if typ == "struct":
            value: Any = decode_fields(c, f.get("struct", {}), what)
            if "index" in f:
                out.setdefault(name, []).append(value)
                continue
        elif typ == "unused_buffer":
            c.take(size, what)
            continue
        elif typ == "capability":
            value = ([c.cstr(what) for _ in range(count)] if count is not None
                     else c.cstr(what))
            if "index" in f:                  # an array of strings of different lengths
                out.setdefault(name, []).append(value)
                continue
        elif typ == "bool" or typ in _INT_TYPES:
            if typ in _INT_TYPES and _INT_TYPES[typ][0] != size:
                raise InfoError(f"{what}: type {typ} with size {size}", c.pos)
            value = ([_scalar(c, typ, size, what) for _ in range(count)] if count is not None
                     else _scalar(c, typ, size, what))
        else:                                 # "buffer" and any type unknown here: raw bytes
            n = size * (count or 1)
            value = c.take(n, what)
        out[name] = value
    subs = desc.get("subsections") or []
    if subs:
        decoded = {}
        for sub in subs:
            at = c.pos
            if c.u8("subsection marker") != SUBSECTION:
                raise InfoError(f"{where}: subsection {sub.get('vmsd_name')!r} missing", at)
            name = c.cstr("subsection name")
            if name != sub.get("vmsd_name"):
                raise InfoError(f"{where}: subsection {name!r}, the description says "
                                f"{sub.get('vmsd_name')!r}", at)
            version = c.uint(4, "subsection version")
            body = decode_fields(c, sub, name)
            body["version"] = version
            decoded[name] = body
        out["subsections"] = decoded
    return out


# -- the stream ------------------------------------------------------------------------------
def _footer(c: _Cursor, sid: int) -> None:
    if c.peek() == FOOTER:
        at = c.pos
        c.pos += 1
        got = c.uint(4, "footer section id")
        if got != sid:
            raise InfoError(f"section footer has id {got}, expected {sid}", at)


def _ram_setup(c: _Cursor, ram: dict, mapped: bool, data: Any) -> None:
    head = c.uint(8, "ram header")
    if not head & RAM_MEM_SIZE:
        raise InfoError("the ram section does not start with MEM_SIZE", c.pos - 8)
    total = head & ~RAM_FLAG_MASK
    ram["total"] = total
    blocks = ram.setdefault("blocks", [])
    covered = 0
    while covered < total:
        name = c.cstr("ram block name")
        length = c.uint(8, "ram block length")
        block: dict[str, Any] = {"name": name, "length": length}
        covered += -(-length // 4096) * 4096
        if mapped:
            version = c.uint(4, "mapped-ram header version")
            page_size = c.uint(8, "mapped-ram page size")
            bitmap_offset = c.uint(8, "bitmap offset")
            pages_offset = c.uint(8, "pages offset")
            npages = -(-length // page_size)
            nbytes = bitmap_bytes(npages)
            if bitmap_offset + nbytes > len(data) or pages_offset + length > len(data):
                raise InfoError("mapped-ram offsets beyond the end of the file", c.pos - 24)
            bitmap = bytes(data[bitmap_offset:bitmap_offset + nbytes])
            present = sum(bin(b).count("1") for b in bitmap)
            block.update({"header-version": version, "page-size": page_size,
                          "bitmap-offset": bitmap_offset, "pages-offset": pages_offset,
                          "pages": npages, "present": present})
            if pages_offset + length < c.pos:
                raise InfoError("mapped-ram page area before the ram header", c.pos - 24)
            c.pos = pages_offset + length       # the stream goes on after the page area
        blocks.append(block)
    if c.uint(8, "ram setup end") != RAM_EOS:
        raise InfoError("the ram setup does not end with EOS", c.pos - 8)


def _ram_pages(c: _Cursor, ram: dict, page_size: int) -> None:
    while True:
        at = c.pos
        head = c.uint(8, "ram record")
        flags = head & RAM_FLAG_MASK
        if flags & RAM_EOS:
            return
        if not flags & RAM_CONTINUE:
            ram["last-block"] = c.cstr("ram block name")
        if flags & RAM_PAGE:
            c.take(page_size, "ram page")
            ram["page-records"] = ram.get("page-records", 0) + 1
        elif flags & RAM_ZERO:
            c.take(1, "zero page fill")
            ram["zero-records"] = ram.get("zero-records", 0) + 1
        else:
            raise InfoError(f"unsupported ram record flags {flags:#x}", at)


def decode_stream(data: Any) -> dict[str, Any]:
    """Everything about a stream in ``data`` (bytes or a mapping), as a dict;
    InfoError (with the offset where known) if it cannot be read."""
    try:
        return _decode_stream(data)
    except InfoError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError,
            OverflowError) as exc:     # a description that does not describe this stream
        raise InfoError(f"malformed stream or VM description: {exc!r}") from None


def _decode_stream(data: Any) -> dict[str, Any]:
    vmdesc, desc_at = find_vmdesc(data)
    if not isinstance(vmdesc, dict):
        raise InfoError("the VM description is not a JSON object", desc_at)
    c = _Cursor(data, 0, desc_at)
    magic = c.uint(4, "magic")
    if magic != MAGIC:
        raise InfoError(f"not a migration stream: magic {magic:#010x}, expected QEVM", 0)
    version = c.uint(4, "version")
    info: dict[str, Any] = {"version": version, "file-size": len(data)}
    page_size = int(vmdesc.get("page_size", 4096))
    caps: list[str] = []
    if c.peek() == CONFIGURATION:
        c.pos += 1
        cfg = decode_fields(c, vmdesc.get("configuration", {}), "configuration")
        name = cfg.get("name", b"")
        config: dict[str, Any] = {"machine-type": name.decode("ascii", "replace")
                                  if isinstance(name, bytes) else str(name)}
        subs = cfg.get("subsections", {})
        if "configuration/target-page-bits" in subs:
            config["target-page-bits"] = subs["configuration/target-page-bits"].get(
                "target_page_bits")
        caps = list(subs.get("configuration/capabilities", {}).get("capabilities", []))
        config["capabilities"] = caps
        info["configuration"] = config
    mapped = "mapped-ram" in caps
    ram: dict[str, Any] = {"layout": "mapped-ram" if mapped else "inline"}
    devices_desc = {(d.get("name"), d.get("instance_id", 0)): d
                    for d in vmdesc.get("devices", [])}
    started: dict[int, str] = {}
    sections: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    while True:
        at = c.pos
        kind = c.u8("section type")
        if kind == EOF:
            break
        if kind in (START, FULL):
            sid = c.uint(4, "section id")
            idstr = c.cstr("section name")
            instance = c.uint(4, "instance id")
            sec_version = c.uint(4, "section version")
            body = c.pos
            if idstr == "ram":
                started[sid] = idstr
                _ram_setup(c, ram, mapped, data)
            else:
                desc = devices_desc.get((idstr, instance))
                if desc is None:
                    raise InfoError(f"section {idstr!r} instance {instance} is not in the VM "
                                    "description", at)
                fields = decode_fields(c, desc, idstr)
                devices.append({"name": idstr, "instance-id": instance,
                                "vmsd-name": desc.get("vmsd_name", idstr),
                                "version": sec_version, "fields": fields})
                if kind == START:
                    started[sid] = idstr
            size = c.pos - body
            _footer(c, sid)
            sections.append({"id": sid, "type": SECTION_TYPES[kind], "idstr": idstr,
                             "instance-id": instance, "version": sec_version,
                             "offset": at, "size": size})
        elif kind in (PART, END):
            sid = c.uint(4, "section id")
            idstr = started.get(sid)
            if idstr != "ram":
                raise InfoError(f"{SECTION_TYPES[kind]} for section id {sid}, which is not "
                                "a started ram section", at)
            body = c.pos
            _ram_pages(c, ram, page_size)
            size = c.pos - body
            _footer(c, sid)
            sections.append({"id": sid, "type": SECTION_TYPES[kind], "idstr": idstr,
                             "offset": at, "size": size})
        else:
            raise InfoError(f"unknown section type {kind:#04x}", at)
    if c.pos != desc_at:
        raise InfoError(f"{desc_at - c.pos} unexpected bytes after EOF", c.pos)
    if mapped:
        present = sum(b.get("present", 0) for b in ram.get("blocks", []))
    else:
        present = ram.get("page-records", 0) + ram.get("zero-records", 0)
    ram["pages-present"] = present
    ram["size"] = sum(b["length"] for b in ram.get("blocks", []))
    info.update({"ram": ram, "sections": sections, "devices": devices,
                 "page-size": page_size})
    gs = next((d for d in devices if d["name"] == "globalstate"), None)
    if gs is not None:
        buf = gs["fields"].get("buf", b"")
        if isinstance(buf, bytes):
            info["runstate"] = buf[:32].split(b"\0", 1)[0].decode("ascii", "replace")
            info["suspended"] = bool(len(buf) > 33 and buf[32] and buf[33])
    return info


def read_info(path: "str | os.PathLike") -> dict[str, Any]:
    """Decode the stream or snapshot file at ``path``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise InfoError("the file is empty")
        with mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
            info = decode_stream(m)
    info["file"] = os.fspath(path)
    return info


# -- output -----------------------------------------------------------------------------------
def to_json(value: Any) -> Any:
    """Bytes as hex strings, the rest as it is."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value} ({value:#x})" if value > 9 else str(value)
    if isinstance(value, bytes):
        if not any(value):
            return f"{len(value)} zero bytes"
        shown = value[:BUFFER_SHOWN].hex()
        return f"{len(value)} bytes: {shown}" + ("..." if len(value) > BUFFER_SHOWN else "")
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return "[" + ", ".join(f"{v:#x}" for v in value) + "]"
    return json.dumps(to_json(value))


def _fields_text(fields: dict[str, Any], indent: str) -> list[str]:
    rows = []
    for name, value in fields.items():
        if name == "subsections":
            for sub, body in value.items():
                rows.append(f"{indent}subsection {sub} (version {body.get('version')})")
                rows += _fields_text({k: v for k, v in body.items() if k != "version"},
                                     indent + "  ")
        elif isinstance(value, dict):
            rows.append(f"{indent}{name}:")
            rows += _fields_text(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                rows.append(f"{indent}{name}[{i}]:")
                rows += _fields_text(item, indent + "  ")
        else:
            rows.append(f"{indent}{name} = {_value_text(value)}")
    return rows


def format_info(info: dict[str, Any]) -> str:
    cfg = info.get("configuration", {})
    ram = info["ram"]
    rows = [f"file: {info.get('file', '-')} ({info['file-size']} bytes, QEVM version "
            f"{info['version']})"]
    if cfg:
        caps = ", ".join(cfg.get("capabilities") or []) or "none"
        rows.append(f"configuration: machine type {cfg['machine-type']!r}, target page bits "
                    f"{cfg.get('target-page-bits', '-')}, capabilities: {caps}")
    if "runstate" in info:
        rows.append(f"run state: {info['runstate']}"
                    + (" (suspended)" if info.get("suspended") else ""))
    npages = -(-ram["size"] // info["page-size"])
    line = (f"ram: {ram['layout']}, {ram['size']} bytes ({npages} pages of "
            f"{info['page-size']}), {ram['pages-present']} pages present")
    if ram["layout"] == "mapped-ram":
        for b in ram.get("blocks", []):
            line += (f"; block {b['name']}: bitmap at {b['bitmap-offset']:#x}, pages at "
                     f"{b['pages-offset']:#x}")
    elif ram.get("zero-records"):
        line += f" ({ram['zero-records']} as zero-page records)"
    rows.append(line)
    rows.append("sections:")
    rows.append(f"  {'id':>3}  {'type':<5}  {'idstr':<16} {'inst':>4} {'ver':>3} "
                f"{'offset':>10} {'size':>10}")
    for s in info["sections"]:
        inst = s.get("instance-id", "")
        ver = s.get("version", "")
        rows.append(f"  {s['id']:>3}  {s['type']:<5}  {s['idstr']:<16} {inst!s:>4} {ver!s:>3} "
                    f"{s['offset']:>10} {s['size']:>10}")
    rows.append("devices:")
    for d in info["devices"]:
        rows.append(f"  {d['name']} (instance {d['instance-id']}, {d['vmsd-name']} version "
                    f"{d['version']})")
        rows += _fields_text(d["fields"], "    ")
    return "\n".join(rows)


__all__ = ["InfoError", "decode_stream", "find_vmdesc", "format_info", "read_info", "to_json"]
