"""QMP on the wire (aemu.host.protocol, .commands, .server, .vm_commands, .hmp):
the stream splitter, argument checking, and a live VM socket driven with raw
asyncio streams (no QMP library), byte for byte as a client sees it.

Every await is bounded; sockets live in a short temporary directory.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from aemu.host.commands import CommandTable, Int
from aemu.host.protocol import (MAX_DEPTH, MAX_MESSAGE, JsonSplitter, ParseError, QmpError,
                                encode, event)

try:
    import uvloop
except ImportError:           # pragma: no cover - uvloop is a dependency, but be kind
    uvloop = None  # type: ignore[assignment]

T = 5.0                       # seconds for any single wait
TESTS = Path(__file__).resolve().parent
IDLE_ELF = TESTS / "firmware" / "irq" / "idle.elf"
#: an address in guest RAM that the idle guest does not use (its stack is near 0x24f000)
SCRATCH = 0x300000


# =====================================================================================
# JsonSplitter
# =====================================================================================
def split(chunks, **kw) -> list:
    s = JsonSplitter(**kw)
    out = []
    for chunk in chunks:
        out.extend(s.feed(chunk))
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def errors(items: list) -> list[str]:
    return [x.desc for x in items if isinstance(x, QmpError)]


MESSAGES = [
    b'{"execute": "query-status", "id": 1}',
    b'{"execute":"x","arguments":{"a":[1,2,{"b":null}],"c":"}{][\\"\\\\"},"id":{"k":[]}}',
    b'[1, "two", {"three": [3.5e2, -0, true, false, null]}]',
    '{"s": "\u00e9\u20ac\U0001f600 \\u00e9 \\ud83d\\ude00"}'.encode("utf-8"),
    b'{}',
    b'[]',
    b'{"a":{"b":{"c":{"d":[[[]]]}}}}',
]


@pytest.mark.parametrize("raw", MESSAGES)
def test_splitter_any_chunking_gives_the_same_single_value(raw: bytes) -> None:
    want = json.loads(raw)
    assert split([raw]) == [want]
    assert split(bytewise(raw)) == [want]
    for size in (2, 3, 5, 7, 64):
        assert split(chunked(raw, size)) == [want], size
    for cut in range(len(raw) + 1):            # every two-chunk split
        assert split([raw[:cut], raw[cut:]]) == [want], cut


def test_splitter_back_to_back_messages_without_separators() -> None:
    raw = b"".join(MESSAGES)
    want = [json.loads(m) for m in MESSAGES]
    assert split([raw]) == want
    assert split(bytewise(raw)) == want
    assert split(chunked(raw, 13)) == want
    # with white space (QEMU clients send CRLF, LF, or nothing) between and around
    spaced = b" \r\n\t" + b"\r\n  ".join(MESSAGES) + b"\n\n"
    assert split([spaced]) == want
    assert split(bytewise(spaced)) == want


def test_splitter_waits_for_the_end_of_a_message() -> None:
    s = JsonSplitter()
    assert list(s.feed(b'{"execute": "stop", "arguments": {"x": "}')) == []
    assert list(s.feed(b'"}')) == []
    assert list(s.feed(b'}')) == [{"execute": "stop", "arguments": {"x": "}"}}]
    assert s.buffered == 0


@pytest.mark.parametrize("body", [
    r'"}"', r'"{"', r'"]]]"', r'"[[["', r'"\""', r'"\\"', r'"\\\""', r'"\\\\"',
    r'"a\"}\"b"', r'"\/\b\f\n\r\t\u0022\u005c"', r'"}\\"', r'"{\\\"}"',
])
def test_splitter_strings_with_brackets_quotes_and_escapes(body: str) -> None:
    raw = ('{"k": ' + body + ', "k2": [' + body + ']}').encode()
    want = json.loads(raw)
    assert split([raw + b'{"next": 1}']) == [want, {"next": 1}]
    assert split(bytewise(raw) + [b'{"next": 1}']) == [want, {"next": 1}]


def test_splitter_backslash_at_a_chunk_end() -> None:
    # the escaped quote must not end the string even when the chunk ends at "\"
    assert split([b'{"a": "x\\', b'"}', b'"}']) == [{"a": 'x"}'}]
    assert split([b'{"a": "x\\', b'\\', b'"}']) == [{"a": "x\\"}]


def test_splitter_multibyte_utf8_split_across_chunks() -> None:
    text = "caf\u00e9 \u20ac \U0001f600 \u4e2d"
    raw = json.dumps({"t": text}, ensure_ascii=False).encode("utf-8")
    assert len(raw) > len(text) + 8        # really multi-byte
    for cut in range(len(raw) + 1):
        assert split([raw[:cut], raw[cut:]]) == [{"t": text}]
    assert split(bytewise(raw)) == [{"t": text}]


@pytest.mark.parametrize("bad", [
    b'{"a": "\xff"}',                  # not a UTF-8 byte
    b'{"a": "\xc3"}',                  # truncated sequence
    b'{"a": "\xe2\x82"}',
    b'{"a": "\xc0\xaf"}',              # overlong
    b'{"a": "\xed\xa0\x80"}',          # an encoded surrogate (CESU-8), not UTF-8
    b'{"\xf5\x80\x80\x80": 1}',        # beyond U+10FFFF
])
def test_splitter_invalid_utf8_is_one_parse_error(bad: bytes) -> None:
    for chunks in ([bad + b'{"ok": 1}'], bytewise(bad) + [b'{"ok": 1}']):
        items = split(chunks)
        assert len(items) == 2
        assert isinstance(items[0], ParseError)
        assert items[0].desc == "JSON parse error, input is not UTF-8"
        assert items[1] == {"ok": 1}


@pytest.mark.parametrize("raw, value", [
    (b"1 ", 1), (b"-12.5e3 ", -12500.0), (b"0\n", 0), (b"true ", True), (b"false\t", False),
    (b"null\r\n", None), (b'"str"', "str"), (b'"a\\"b{"', 'a"b{'), (b'"\\u00e9"', "\u00e9"),
    (b"[1, 2]", [1, 2]), (b"[]", []), (b'["}"]', ["}"]), (b"1" * 100 + b" ", int("1" * 100)),
])
def test_splitter_top_level_scalars_and_arrays_are_one_item_each(raw: bytes, value) -> None:
    for chunks in ([raw], bytewise(raw)):
        assert split(chunks + [b'{"ok": 1}']) == [value, {"ok": 1}]


def test_splitter_bare_token_waits_for_its_delimiter() -> None:
    s = JsonSplitter()
    assert list(s.feed(b"12")) == []           # "12" may go on: "123"
    assert list(s.feed(b"3")) == []
    assert list(s.feed(b"{}")) == [123, {}]    # a bracket ends the token


@pytest.mark.parametrize("raw, desc", [
    (b"nul ", "JSON parse error, invalid token 'nul'"),
    (b"True ", "JSON parse error, invalid token 'True'"),
    (b"NaN ", "JSON parse error, invalid token 'NaN'"),
    (b"-Infinity ", "JSON parse error, invalid token '-Infinity'"),
    (b"1e400 ", "JSON parse error, invalid token '1e400'"),
    (b"'single' ", "JSON parse error, invalid token \"'single'\""),
    (b"01 ", "JSON parse error, invalid token '01'"),
])
def test_splitter_bad_tokens(raw: bytes, desc: str) -> None:
    items = split([raw, b'{"ok": 1}'])
    assert errors(items) == [desc]
    assert items[1:] == [{"ok": 1}]


@pytest.mark.parametrize("raw", [
    b'{"id": NaN}', b'{"id": Infinity}', b'{"id": -Infinity}', b'[1e400]', b'{"x": -1E999}',
])
def test_splitter_rejects_non_finite_numbers(raw: bytes) -> None:
    """Python's json takes NaN/Infinity and overflows 1e400 to inf; echoed as an
    id they would make the server write invalid JSON ("Infinity")."""
    items = split([raw, b"{}"])
    assert len(items) == 2 and isinstance(items[0], ParseError), items
    assert items[1] == {}


@pytest.mark.parametrize("raw, want", [
    (b"}", ["unexpected '}'"]),
    (b"]", ["unexpected ']'"]),
    (b"]]", ["unexpected ']'", "unexpected ']'"]),
    (b'{"a": [1}', ["unexpected '}'"]),
    (b'[{"a": 1]', ["unexpected ']'"]),
    (b'{"a": 1,}', [""]),                  # (the wording depends on the Python version)
    (b'{"a" 1}', ["expecting ':' delimiter"]),
    (b'{,}', ["expecting property name enclosed in double quotes"]),
    (b'[1 2]', ["expecting ',' delimiter"]),
    (b'{"a": tru}', ["expecting value"]),
    (b'{"a": "\x01"}', ["invalid control character at"]),
])
def test_splitter_malformed_input(raw: bytes, want: list[str]) -> None:
    for chunks in ([raw + b'{"ok": 1}'], bytewise(raw) + [b'{"ok": 1}']):
        items = split(chunks)
        assert items[-1] == {"ok": 1}
        got = errors(items)
        assert all(isinstance(x, ParseError) for x in items[:-1])
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.startswith("JSON parse error, " + w), (g, w)


def test_splitter_nesting_limit() -> None:
    ok = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert split([ok]) == [json.loads(ok)]
    # one level deeper: one error, and nothing inside it is taken for a message
    inner = b'{"execute": "quit"}'
    deep = b"[" * (MAX_DEPTH + 1) + inner + b"]" * (MAX_DEPTH + 1)
    for chunks in ([deep + b'{"ok": 1}'], bytewise(deep) + [b'{"ok": 1}'],
                   chunked(deep, 7) + [b'{"ok": 1}']):
        items = split(chunks)
        assert errors(items) == [f"JSON parse error, nesting deeper than {MAX_DEPTH}"]
        assert items[1:] == [{"ok": 1}]
    # much deeper (objects), and a small limit
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    items = split([deep, b"[]"])
    assert len(errors(items)) == 1 and items[1:] == [[]]
    items = split([b'[[1]] [[[1]]] [[]]'], max_depth=2)
    assert items[0] == [[1]]
    assert errors(items) == ["JSON parse error, nesting deeper than 2"]
    assert items[2] == [[]]


def test_splitter_oversized_message_is_reported_once_then_skipped() -> None:
    limit = 1000
    big = b'{"execute": "stop", "arguments": {"pad": "' + b"x" * (3 * limit) + b'"}}'
    for chunks in ([big + b'{"ok": 1}'], chunked(big, 100) + [b'{"ok": 1}'],
                   chunked(big + b'{"ok": 1}', 333)):
        items = split(chunks, max_message=limit)
        assert errors(items) == [f"message too large: more than {limit} bytes"]
        assert not isinstance(items[0], ParseError)       # a QmpError, but not a parse error
        assert items[1:] == [{"ok": 1}]
    # exactly at the limit is fine
    exact = b'{"p": "' + b"y" * (limit - 9) + b'"}'
    assert len(exact) == limit
    assert split([exact], max_message=limit) == [{"p": "y" * (limit - 9)}]
    assert errors(split([exact[:-2] + b'y"}'], max_message=limit)) == [
        f"message too large: more than {limit} bytes"]


def test_splitter_oversized_message_structure_is_still_followed() -> None:
    """Brackets, quotes and escapes inside the skipped part (escapes split
    across chunks) must not end the message early or start a new one."""
    limit = 200
    tricky = ['}{"execute": "quit"}', "\\", "\\\"", ["]", "}"], {"k": '"'}, "[{"] * 20
    big = json.dumps({"pad": "z" * (2 * limit), "more": tricky}).encode()
    assert b'\\"' in big and b'\\\\' in big
    for size in (1, 2, 3, 50, 199):
        items = split(chunked(big, size) + [b'{"ok": 1}'], max_message=limit)
        assert errors(items) == [f"message too large: more than {limit} bytes"], size
        assert items[1:] == [{"ok": 1}], size


@pytest.mark.parametrize("kind", ["object", "string", "token"])
def test_splitter_memory_stays_bounded_for_a_10x_oversized_message(kind: str) -> None:
    limit, chunk = 4096, 1000
    if kind == "object":
        big = b'{"a": ["' + b"q" * (10 * limit) + b'", {"b": "\\"}"}]}'
    elif kind == "string":
        big = b'"' + b"\\\\" * (5 * limit) + b'"'
    else:
        big = b"7" * (10 * limit) + b" "
    s = JsonSplitter(max_message=limit)
    got = []
    for part in chunked(big, chunk):
        got.extend(s.feed(part))
        assert s.buffered <= limit + chunk, s.buffered
    got.extend(s.feed(b'{"ok": 1}'))
    assert errors(got) == [f"message too large: more than {limit} bytes"]
    assert got[1:] == [{"ok": 1}]
    assert s.buffered == 0


def test_splitter_default_limits() -> None:
    s = JsonSplitter()
    assert (s.max_message, s.max_depth) == (MAX_MESSAGE, MAX_DEPTH) == (1 << 20, 64)


# -- encode, event ---------------------------------------------------------------------
def test_encode_is_ascii_json_with_crlf() -> None:
    raw = encode({"return": {"s": "\u00e9\U0001f600\r\n\"", "n": [1, None, True]}, "id": "x"})
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == 1
    raw.decode("ascii")
    assert json.loads(raw) == {"return": {"s": "\u00e9\U0001f600\r\n\"", "n": [1, None, True]},
                               "id": "x"}


def test_event_shape() -> None:
    raw = event("STOP", when=1234.5678905)
    msg = json.loads(raw)
    assert msg == {"event": "STOP", "timestamp": {"seconds": 1234, "microseconds": 567890}}
    assert raw.endswith(b"\r\n")
    msg = json.loads(event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}))
    assert list(msg) == ["event", "data", "timestamp"]
    assert msg["data"] == {"guest": False, "reason": "host-qmp-quit"}
    ts = msg["timestamp"]
    assert set(ts) == {"seconds", "microseconds"}
    assert abs(ts["seconds"] - time.time()) < 60 and 0 <= ts["microseconds"] < 1_000_000


# =====================================================================================
# CommandTable / Command.check
# =====================================================================================
demo = CommandTable()


@demo.command("x-demo", {"addr": "int", "*size": Int(1, 4096), "*mode": ("read", "write"),
                         "*tags": ["str"], "*flag": "bool", "*num": "number", "*obj": "object",
                         "*any": "any", "*name": "str", "*cpu-index": Int(0, 0)})
def _demo(ctx, **kw):
    """A demo command."""
    return kw


@demo.command("x-async")
async def _demo_async(ctx):
    return {}


def check(args: dict) -> dict:
    cmd = demo.get("x-demo")
    assert cmd is not None
    return cmd.check(args)


def check_error(args: dict) -> str:
    with pytest.raises(QmpError) as e:
        check(args)
    assert e.value.cls == "GenericError"
    return e.value.desc


def test_command_table_basics() -> None:
    assert demo.names() == ["x-async", "x-demo"]
    assert demo.get("nope") is None
    assert not demo.get("x-demo").is_async and demo.get("x-async").is_async
    assert demo.get("x-demo").doc == "A demo command."
    derived = CommandTable(demo)
    assert derived.names() == demo.names()
    derived.command("x-more")(lambda ctx: None)
    assert "x-more" in derived.names() and "x-more" not in demo.names()


def test_check_accepts_good_arguments() -> None:
    assert check({"addr": 5}) == {"addr": 5}
    full = {"addr": -1, "size": 4096, "mode": "write", "tags": ["a", ""], "flag": False,
            "num": 1.5, "obj": {"k": [1]}, "any": None, "name": "", "cpu-index": 0}
    out = check(full)
    assert out.pop("cpu_index") == 0               # '-' becomes '_'
    full.pop("cpu-index")
    assert out == full
    assert check({"addr": 1 << 63, "num": 3})["num"] == 3
    assert check({"addr": 0, "tags": []})["tags"] == []


def test_check_unknown_and_missing() -> None:
    assert check_error({"addr": 1, "x": 1}) == "Parameter 'x' is unexpected"
    assert check_error({"x": 1}) == "Parameter 'x' is unexpected"   # unexpected first
    assert check_error({"addr": 1, "cpu_index": 0}) == "Parameter 'cpu_index' is unexpected"
    assert check_error({}) == "Parameter 'addr' is missing"
    assert check_error({"size": 3}) == "Parameter 'addr' is missing"


@pytest.mark.parametrize("args, desc", [
    ({"addr": "1"}, "Invalid parameter type for 'addr', expected: integer"),
    ({"addr": True}, "Invalid parameter type for 'addr', expected: integer"),
    ({"addr": 1.0}, "Invalid parameter type for 'addr', expected: integer"),
    ({"addr": None}, "Invalid parameter type for 'addr', expected: integer"),
    ({"addr": 1 << 64}, "Parameter 'addr' is out of range"),
    ({"addr": -(1 << 63) - 1}, "Parameter 'addr' is out of range"),
    ({"addr": 0, "size": False}, "Invalid parameter type for 'size', expected: integer"),
    ({"addr": 0, "size": "4"}, "Invalid parameter type for 'size', expected: integer"),
    ({"addr": 0, "size": 0}, "Parameter 'size' must be from 1 to 4096"),
    ({"addr": 0, "size": 4097}, "Parameter 'size' must be from 1 to 4096"),
    ({"addr": 0, "cpu-index": 1}, "Parameter 'cpu-index' must be from 0 to 0"),
    ({"addr": 0, "mode": "exec"}, "Parameter 'mode' does not accept value 'exec'"),
    ({"addr": 0, "mode": 1}, "Invalid parameter type for 'mode', expected: string"),
    ({"addr": 0, "mode": ["read"]}, "Invalid parameter type for 'mode', expected: string"),
    ({"addr": 0, "tags": "a"}, "Invalid parameter type for 'tags', expected: array"),
    ({"addr": 0, "tags": ["a", 1]}, "Invalid parameter type for 'tags', expected: string"),
    ({"addr": 0, "tags": [None]}, "Invalid parameter type for 'tags', expected: string"),
    ({"addr": 0, "flag": 1}, "Invalid parameter type for 'flag', expected: boolean"),
    ({"addr": 0, "flag": "true"}, "Invalid parameter type for 'flag', expected: boolean"),
    ({"addr": 0, "num": True}, "Invalid parameter type for 'num', expected: number"),
    ({"addr": 0, "num": "1"}, "Invalid parameter type for 'num', expected: number"),
    ({"addr": 0, "obj": []}, "Invalid parameter type for 'obj', expected: object"),
    ({"addr": 0, "name": 1}, "Invalid parameter type for 'name', expected: string"),
    ({"addr": 0, "name": None}, "Invalid parameter type for 'name', expected: string"),
])
def test_check_wrong_types_and_ranges(args: dict, desc: str) -> None:
    assert check_error(args) == desc


def test_int_bounds() -> None:
    cmd = CommandTable()
    cmd.command("x", {"u": Int(0), "s": Int()})(lambda ctx, u, s: None)
    c = cmd.get("x")
    assert c.check({"u": 0, "s": -(1 << 63)}) == {"u": 0, "s": -(1 << 63)}
    assert c.check({"u": (1 << 64) - 1, "s": (1 << 64) - 1})["u"] == (1 << 64) - 1
    with pytest.raises(QmpError, match=r"Parameter 'u' must be from 0 to 18446744073709551615"):
        c.check({"u": -1, "s": 0})
    with pytest.raises(QmpError, match="must be from"):
        c.check({"u": 0, "s": 1 << 64})


# =====================================================================================
# A live VM socket
# =====================================================================================


class Live:
    """A host with one VM "a" (tests/firmware/irq/idle.elf, 100 s at 10 Hz in real
    time: it stays running), in a short temporary directory."""

    def __init__(self, host, vm, tmp: Path) -> None:
        self.host, self.vm, self.tmp = host, vm, tmp
        assert vm.qmp_address.startswith("unix:")
        self.path = vm.qmp_address[len("unix:"):]

    async def connect(self, negotiate: bool = True) -> "Conn":
        conn = await Conn.open(self.path)
        if negotiate:
            assert await conn.cmd("qmp_capabilities") == {"return": {}}
        return conn


@contextlib.asynccontextmanager
async def live_vm(paused: bool = True, args=("100", "10")):
    from aemu.host.host import Host
    from aemu.host.vm import VmConfig

    tmp = Path(tempfile.mkdtemp(prefix="aemu-qmp-"))
    host = Host(tmp / "st", allow_dirs=[tmp, TESTS / "firmware"])
    try:
        await asyncio.wait_for(host.start(), T)
        vm = await asyncio.wait_for(host.create_vm(VmConfig(
            name="a", firmware=str(IDLE_ELF), args=list(args), paused=paused)), T)
        yield Live(host, vm, tmp)
    finally:
        try:
            await asyncio.wait_for(host.shutdown(), T)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class Conn:
    """A raw QMP client: every line the server sends is checked (ASCII, CRLF,
    one JSON object) and kept; events are set aside while waiting for replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict] = []
        self.lines: list[bytes] = []
        self.greeting: dict = {}

    @classmethod
    async def open(cls, path: str) -> "Conn":
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(path, limit=16 << 20), T)
        conn = cls(reader, writer)
        conn.greeting = await conn.recv()
        return conn

    async def line(self, timeout: float = T) -> bytes:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        assert raw, "the server closed the connection"
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == 1, raw[:200]
        raw.decode("ascii")                       # raises if not ASCII
        self.lines.append(raw)
        return raw

    async def recv(self, timeout: float = T) -> dict:
        msg = json.loads(await self.line(timeout))
        assert isinstance(msg, dict)
        return msg

    async def reply(self, timeout: float = T) -> dict:
        """The next reply (return or error); events before it go to .events."""
        while True:
            msg = await self.recv(timeout)
            if "event" in msg:
                assert set(msg) <= {"event", "data", "timestamp"}, msg
                self.events.append(msg)
                continue
            assert ("return" in msg) != ("error" in msg), msg
            assert set(msg) <= {"return", "error", "id"}, msg
            if "error" in msg:
                assert set(msg["error"]) == {"class", "desc"}, msg
            return msg

    async def event(self, name: str, timeout: float = T) -> dict:
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        while True:
            msg = await self.recv(timeout)
            assert "event" in msg, f"a reply while waiting for event {name}: {msg}"
            if msg["event"] == name:
                return msg
            self.events.append(msg)

    async def send(self, msg: Any) -> None:
        raw = msg if isinstance(msg, (bytes, bytearray)) else json.dumps(msg).encode()
        self.writer.write(raw)
        await asyncio.wait_for(self.writer.drain(), T)

    async def cmd(self, name: str, args: dict | None = None, timeout: float = T,
                  **extra: Any) -> dict:
        msg: dict[str, Any] = {"execute": name, **extra}
        if args is not None:
            msg["arguments"] = args
        await self.send(msg)
        return await self.reply(timeout)

    async def ok(self, name: str, args: dict | None = None, **extra: Any) -> Any:
        reply = await self.cmd(name, args, **extra)
        assert "return" in reply, reply
        return reply["return"]

    async def err(self, name: str, args: dict | None = None, **extra: Any) -> dict:
        reply = await self.cmd(name, args, **extra)
        assert "error" in reply, reply
        return reply["error"]

    async def quiet(self, wait: float = 0.2) -> None:
        """Nothing (but events) arrives within ``wait`` seconds."""
        try:
            msg = await self.recv(wait)
        except asyncio.TimeoutError:
            return
        assert "event" in msg, f"unexpected message {msg}"
        self.events.append(msg)
        await self.quiet(wait)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), T)


def error(desc: str, cls: str = "GenericError") -> dict:
    return {"class": cls, "desc": desc}


async def status(conn: Conn) -> str:
    return (await conn.ok("query-status"))["status"]


async def read_mem(conn: Conn, addr: int, size: int) -> bytes:
    ret = await conn.ok("__org.aemu_read-memory", {"addr": addr, "size": size})
    return base64.b64decode(ret["data"])


# -- greeting, negotiation --------------------------------------------------------------
def test_greeting_exact_shape_and_crlf_ascii_lines(run) -> None:
    async def main():
        async with live_vm() as live:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(live.path), T)
            try:
                raw = await asyncio.wait_for(reader.readline(), T)
                assert raw.endswith(b"\r\n")
                raw.decode("ascii")
                g = json.loads(raw)
                assert list(g) == ["QMP"] and set(g["QMP"]) == {"version", "capabilities"}
                assert g["QMP"]["capabilities"] == []
                version = g["QMP"]["version"]
                assert set(version) == {"qemu", "package"}
                assert set(version["qemu"]) == {"major", "minor", "micro"}
                assert all(type(v) is int and v >= 0 for v in version["qemu"].values())
                assert isinstance(version["package"], str) and version["package"]
            finally:
                writer.close()
            conn = await live.connect()
            assert conn.greeting == g
            assert await conn.ok("query-version") == version
            # non-ASCII in a reply (an unknown command's name) is escaped
            e = await conn.err("caf\u00e9-\U0001f600")
            assert e == error("The command caf\u00e9-\U0001f600 has not been found",
                              "CommandNotFound")
            assert b"\\u00e9" in conn.lines[-1] and b"\\ud83d\\ude00" in conn.lines[-1]
            assert all(line.endswith(b"\r\n") for line in conn.lines)
            await conn.close()
    run(main())


def test_negotiation_mode(run) -> None:
    async def main():
        async with live_vm() as live:
            a = await live.connect(negotiate=False)
            b = await live.connect()
            need = error("Expecting capabilities negotiation with 'qmp_capabilities'",
                         "CommandNotFound")
            for name in ("query-status", "cont", "quit", "no-such-command", "query-commands"):
                assert await a.cmd(name, id=name) == {"error": need, "id": name}
            # arguments are checked only after the command is allowed: the same error
            assert await a.cmd("stop", {"x": 1}) == {"error": need}
            assert await status(b) == "paused"
            # an event while a is negotiating reaches b only
            await b.ok("cont")
            assert (await b.event("RESUME"))["event"] == "RESUME"
            assert await a.cmd("qmp_capabilities", {"x": 1}) == {
                "error": error("Parameter 'x' is unexpected")}
            assert await a.cmd("qmp_capabilities", {"enable": ["oob"]}) == {
                "error": error("Capability 'oob' not available")}
            assert await a.cmd("qmp_capabilities", {"enable": "oob"}) == {
                "error": error("Invalid parameter type for 'enable', expected: array")}
            assert await a.cmd("query-status") == {"error": need}     # still negotiating
            assert await a.cmd("qmp_capabilities", {"enable": []}, id=7) == {"return": {},
                                                                            "id": 7}
            assert a.events == []                  # no RESUME before negotiation
            await a.quiet(0.1)
            assert a.events == []
            # negotiated: events arrive, and negotiating again is refused
            await b.ok("stop")
            assert (await a.event("STOP"))["event"] == "STOP"
            assert await a.cmd("qmp_capabilities") == {"error": error(
                "Capabilities negotiation is already complete, command ignored",
                "CommandNotFound")}
            assert await status(a) == "paused"
            await a.close()
            await b.close()
    run(main())


# -- ids, malformed input -----------------------------------------------------------------
IDS = ["s", "", "\u00e9", 0, -7, 1 << 70, 2.5, True, False, None, {"a": [1, {"b": None}]}, [],
       [1, "x", None], {}]


def test_ids_are_echoed_verbatim(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            for ident in IDS:
                r = await conn.cmd("query-name", id=ident)
                assert r == {"return": {"name": "a"}, "id": ident}
                assert type(r["id"]) is type(ident)
                r = await conn.cmd("no-such", id=ident)
                assert r == {"error": error("The command no-such has not been found",
                                            "CommandNotFound"), "id": ident}
                r = await conn.cmd("query-name", {"bogus": 1}, id=ident)
                assert r == {"error": error("Parameter 'bogus' is unexpected"), "id": ident}
            # no id: none in the reply
            assert await conn.cmd("query-name") == {"return": {"name": "a"}}
            # the id may come first, and the raw text of a float id is kept as a value
            await conn.send(b'{"id": 1.0e2, "execute": "query-name"}')
            assert await conn.reply() == {"return": {"name": "a"}, "id": 100.0}
            await conn.close()
    run(main())


MALFORMED = [
    # (raw, expected reply): the id is echoed whenever the message is a JSON object
    (b"[1, 2]", {"error": error("QMP input must be a JSON object")}),
    (b'"query-status"', {"error": error("QMP input must be a JSON object")}),
    (b"42 ", {"error": error("QMP input must be a JSON object")}),
    (b"null ", {"error": error("QMP input must be a JSON object")}),
    (b'{"id": 5}', {"error": error("QMP input lacks member 'execute'"), "id": 5}),
    (b"{}", {"error": error("QMP input lacks member 'execute'")}),
    (b'{"execute": 1, "id": "x"}',
     {"error": error("QMP input member 'execute' must be a string"), "id": "x"}),
    (b'{"execute": null, "id": null}',
     {"error": error("QMP input member 'execute' must be a string"), "id": None}),
    (b'{"execute": "query-status", "arguments": [], "id": 2}',
     {"error": error("QMP input member 'arguments' must be an object"), "id": 2}),
    (b'{"execute": "query-status", "arguments": null, "id": 2}',
     {"error": error("QMP input member 'arguments' must be an object"), "id": 2}),
    (b'{"execute": "query-status", "foo": 1, "id": [3]}',
     {"error": error("QMP input member 'foo' is unexpected"), "id": [3]}),
    (b'{"exec-oob": "query-status", "id": 4}',
     {"error": error("QMP input member 'exec-oob' is unexpected: out-of-band execution is "
                     "not enabled"), "id": 4}),
    (b'{"exec-oob": "query-status", "execute": "query-status", "id": 4}',
     {"error": error("QMP input must not contain both 'execute' and 'exec-oob'"), "id": 4}),
]
PARSE_ERRORS = [
    # parse errors carry no id, even when one is written before the error
    b'{"id": 9, "execute": }',
    b'{"id": 9, "execute": "query-status",}',
    b'{"id": 9, "execute": "query-\xff"}',
    b'{"id": NaN, "execute": "query-status"}',
    b'{"id": 1e400, "execute": "query-status"}',
    b'{"id": 9 "execute": "query-status"}',
    b"nul ",
    b"}",
]


def test_malformed_messages(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            for raw, want in MALFORMED:
                await conn.send(raw)
                assert await conn.reply() == want, raw
            for raw in PARSE_ERRORS:
                await conn.send(raw)
                r = await conn.reply()
                assert list(r) == ["error"], (raw, r)
                assert r["error"]["class"] == "GenericError"
                assert r["error"]["desc"].startswith("JSON parse error, "), r
            # the session is fine afterwards
            assert await conn.cmd("query-status", id="after") == {
                "return": {"running": False, "status": "paused"}, "id": "after"}
            await conn.close()
    run(main())


def test_commands_back_to_back_in_one_write(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            await conn.send(b'{"execute":"query-name","id":1}{"execute":"query-status","id":2}')
            assert await conn.reply() == {"return": {"name": "a"}, "id": 1}
            assert await conn.reply() == {"return": {"running": False, "status": "paused"},
                                          "id": 2}
            # many, mixed with errors, in one write; then the same one byte at a time
            batch = b"".join(
                json.dumps({"execute": ("query-name" if i % 3 else "nope"), "id": i},
                           separators=(",", ":")).encode() for i in range(40))
            for writes in ([batch], bytewise(batch[:400]) + [batch[400:]]):
                for part in writes:
                    conn.writer.write(part)
                    if len(writes) > 1:
                        await asyncio.wait_for(conn.writer.drain(), T)
                await asyncio.wait_for(conn.writer.drain(), T)
                for i in range(40):
                    r = await conn.reply()
                    assert r["id"] == i
                    assert ("error" in r) == (i % 3 == 0)
            await conn.quiet(0.1)
            await conn.close()
    run(main())


# -- side effects -------------------------------------------------------------------------
def test_bad_arguments_have_no_side_effect(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            # paused: cont with an extra key does not resume
            assert await conn.err("cont", {"now": True}) == error("Parameter 'now' is unexpected")
            assert await status(conn) == "paused"
            await conn.ok("cont")
            await conn.event("RESUME")
            # running: stop with an extra key does not stop
            assert await conn.err("stop", {"now": True}) == error("Parameter 'now' is unexpected")
            await conn.quiet(0.2)
            assert await status(conn) == "running"
            assert [e for e in conn.events if e["event"] == "STOP"] == []
            # write-memory with an extra key (or a bad value) writes nothing
            before = await read_mem(conn, SCRATCH, 4)
            data = base64.b64encode(b"\xde\xad\xbe\xef").decode()
            for args, desc in [
                ({"addr": SCRATCH, "data": data, "size": 4}, "Parameter 'size' is unexpected"),
                ({"addr": SCRATCH, "data": data, "Addr": 1}, "Parameter 'Addr' is unexpected"),
                ({"data": data}, "Parameter 'addr' is missing"),
                ({"addr": str(SCRATCH), "data": data},
                 "Invalid parameter type for 'addr', expected: integer"),
                ({"addr": SCRATCH, "data": "!!"}, "data must be base64"),
            ]:
                assert await conn.err("__org.aemu_write-memory", args) == error(desc)
            assert await read_mem(conn, SCRATCH, 4) == before
            # set-registers with one bad register sets none
            await conn.ok("stop")
            regs = await conn.ok("__org.aemu_query-registers")
            assert await conn.err("__org.aemu_set-registers",
                                  {"registers": {"r0": 0x1234, "r1": 1 << 16}}) == error(
                "register r1: 0x10000 does not fit in 16 bits")
            assert await conn.err("__org.aemu_set-registers",
                                  {"registers": {"r0": 0x1234, "nope": 1}}) == error(
                "unknown register 'nope'")
            assert await conn.ok("__org.aemu_query-registers") == regs
            await conn.ok("__org.aemu_set-registers", {"registers": {"r0": 0x1234}})
            assert (await conn.ok("__org.aemu_query-registers"))["r0"] == 0x1234
            await conn.close()
    run(main())


def test_stop_cont_events(run) -> None:
    async def main():
        async with live_vm() as live:
            a = await live.connect()
            b = await live.connect()
            t0 = time.time()
            assert await a.cmd("cont", id="c") == {"return": {}, "id": "c"}
            for conn in (a, b):
                ev = await conn.event("RESUME")
                assert list(ev) == ["event", "timestamp"]
                ts = ev["timestamp"]
                assert list(ts) == ["seconds", "microseconds"]
                assert type(ts["seconds"]) is int and type(ts["microseconds"]) is int
                assert 0 <= ts["microseconds"] < 1_000_000
                assert t0 - 1 <= ts["seconds"] + ts["microseconds"] / 1e6 <= time.time() + 1
            assert await status(a) == "running"
            # cont while running: nothing happens, no event
            assert await a.ok("cont") == {}
            await b.ok("stop")
            for conn in (a, b):
                ev = await conn.event("STOP")
                assert list(ev) == ["event", "timestamp"]
            assert await status(b) == "paused"
            await b.ok("stop")                 # stop while paused: no event
            await a.quiet(0.1)
            await b.quiet(0.1)
            assert a.events == b.events == []
            # HMP stop/cont give the same events
            hmp = await a.ok("human-monitor-command", {"command-line": "cont"})
            assert hmp == ""
            await b.event("RESUME")
            assert await a.ok("human-monitor-command", {"command-line": "stop"}) == ""
            await b.event("STOP")
            await a.close()
            await b.close()
    run(main())


def test_oversized_message_then_the_session_goes_on(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            big = json.dumps({"execute": "stop", "arguments": {"pad": "x" * (2 << 20)},
                              "id": 1}).encode()
            # the next command in the same write as the end of the big one
            await conn.send(big + b'{"execute": "query-status", "id": 2}')
            r = await conn.reply()
            assert r == {"error": error(f"message too large: more than {MAX_MESSAGE} bytes")}
            assert await conn.reply() == {"return": {"running": False, "status": "paused"},
                                          "id": 2}
            # again, the big message trickling in, with a command afterwards
            for part in chunked(big, 256 << 10):
                await conn.send(part)
            assert await conn.reply() == r
            assert await conn.cmd("query-status", id=3) == {
                "return": {"running": False, "status": "paused"}, "id": 3}
            await conn.quiet(0.1)
            await conn.close()
    run(main())


def test_client_leaving_during_an_async_command(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            await conn.ok("cont")
            # far away: about 10^7 s of virtual time
            await conn.send({"execute": "__org.aemu_run-until", "arguments": {"cycles": 10 ** 15},
                             "id": "far"})
            await conn.send({"execute": "query-status", "id": "queued"})   # behind it
            await conn.quiet(0.2)                       # no reply: it is still running
            await conn.close()
            await asyncio.sleep(0.2)
            other = await live.connect()
            assert await status(other) == "running"
            c1 = (await other.ok("__org.aemu_query-run"))["cycles"]
            await asyncio.sleep(0.3)                    # (the guest ticks at 10 Hz)
            c2 = (await other.ok("__org.aemu_query-run"))["cycles"]
            assert c2 > c1
            # the socket keeps accepting clients
            for _ in range(3):
                extra = await live.connect()
                assert await extra.ok("query-name") == {"name": "a"}
                await extra.close()
            # a near target: the reply comes when the VM stops there, and the
            # commands queued behind it are answered after it, in order
            await other.ok("stop")
            run_state = await other.ok("__org.aemu_query-run")
            target = run_state["cycles"] + 5_000_000          # 50 ms
            await other.send(b"".join(
                [json.dumps({"execute": "__org.aemu_run-until",
                             "arguments": {"cycles": target}, "id": "near"}).encode()]
                + [json.dumps({"execute": "query-name", "id": i}).encode() for i in range(20)]))
            r = await other.reply()
            assert r == {"return": {"status": "paused", "cycles": target}, "id": "near"}
            for i in range(20):
                assert await other.reply() == {"return": {"name": "a"}, "id": i}
            names = [e["event"] for e in other.events]
            assert "RESUME" in names and names[-1] == "STOP"
            assert await status(other) == "paused"
            # argument errors of the async command come back at once
            assert await other.err("__org.aemu_run-until", {}) == error(
                "give exactly one of 'cycles' and 'ns'")
            assert await other.err("__org.aemu_run-until", {"cycles": 1, "ns": 1}) == error(
                "give exactly one of 'cycles' and 'ns'")
            # a target in the past: at once, still paused
            assert await other.ok("__org.aemu_run-until", {"cycles": 1}) == {
                "status": "paused", "cycles": target}
            await other.close()
    run(main())


def test_read_write_memory(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            ram = (await conn.ok("__org.aemu_query-run"))["ram-size"]
            assert ram == live.vm.machine.cpu.ram_size
            payload = bytes(range(256)) * 3
            await conn.ok("__org.aemu_write-memory",
                          {"addr": SCRATCH + 1, "data": base64.b64encode(payload).decode()})
            assert await read_mem(conn, SCRATCH + 1, len(payload)) == payload
            assert await read_mem(conn, SCRATCH + 2, 3) == payload[1:4]
            assert await read_mem(conn, 0, 0) == b""
            # the last bytes of RAM are reachable, one more is not
            await conn.ok("__org.aemu_write-memory",
                          {"addr": ram - 2, "data": base64.b64encode(b"\x01\x02").decode()})
            assert await read_mem(conn, ram - 2, 2) == b"\x01\x02"
            assert await read_mem(conn, ram, 0) == b""
            assert await conn.err("__org.aemu_read-memory", {"addr": ram - 2, "size": 4}) == error(
                f"range {ram - 2:#x}+0x4 is outside guest RAM (0..{ram:#x})")
            assert await conn.err("__org.aemu_write-memory", {
                "addr": ram - 1, "data": base64.b64encode(b"ab").decode()}) == error(
                f"range {ram - 1:#x}+0x2 is outside guest RAM (0..{ram:#x})")
            assert await conn.err("__org.aemu_read-memory", {"addr": 1 << 40, "size": 1}) == \
                error(f"range {1 << 40:#x}+0x1 is outside guest RAM (0..{ram:#x})")
            assert await conn.err("__org.aemu_read-memory", {"addr": 0, "size": (1 << 20) + 1}) \
                == error(f"at most {1 << 20} bytes at a time")
            assert await conn.err("__org.aemu_read-memory", {"addr": -1, "size": 1}) == error(
                "Parameter 'addr' must be from 0 to 18446744073709551615")
            assert await conn.err("__org.aemu_read-memory", {"addr": 0, "size": True}) == error(
                "Invalid parameter type for 'size', expected: integer")
            assert await read_mem(conn, ram - 2, 2) == b"\x01\x02"
            # the largest transfer
            big = await read_mem(conn, 0, 1 << 20)
            assert len(big) == 1 << 20
            # pmemsave/memsave write the same bytes to a file in an allowed directory
            out = live.tmp / "dump.bin"
            await conn.ok("pmemsave", {"val": SCRATCH + 1, "size": 768, "filename": str(out)})
            assert out.read_bytes() == payload
            await conn.ok("memsave", {"val": SCRATCH + 2, "size": 3, "filename": str(out),
                                      "cpu-index": 0})
            assert out.read_bytes() == payload[1:4]
            e = await conn.err("pmemsave", {"val": 0, "size": 1, "filename": "/nonexistent/x"})
            assert "outside the directories this host may use" in e["desc"]
            assert await conn.err("memsave", {"val": 0, "size": 1, "filename": str(out),
                                              "cpu-index": 1}) == error(
                "Parameter 'cpu-index' must be from 0 to 0")
            await conn.close()
    run(main())


def test_human_monitor_command(run) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()

            async def hmp(line: str) -> str:
                out = await conn.ok("human-monitor-command", {"command-line": line})
                assert isinstance(out, str)
                return out

            assert await hmp("info status") == "VM status: paused\r\n"
            assert await hmp("info name") == "a\r\n"
            regs = await conn.ok("__org.aemu_query-registers")
            text = await hmp("info registers")
            rows = text.split("\r\n")
            assert rows[-1] == "" and len(rows) == 7, text
            assert rows[0].startswith("R0 =") and f"R1 ={regs['r1']:04x}" in rows[0]
            assert f"R12={regs['r12']:08x}" in rows[3]
            assert rows[4].startswith(f"PC ={regs['pc']:06x} PSR={regs['psr']:04x}")
            assert rows[5].startswith(f"ISP={regs['isp']:08x}")
            data = base64.b64encode(bytes(range(16, 32))).decode()
            await conn.ok("__org.aemu_write-memory", {"addr": SCRATCH, "data": data})
            words = [int.from_bytes(bytes(range(16 + 4 * i, 20 + 4 * i)), "little")
                     for i in range(4)]
            want = f"{SCRATCH:08x}: " + " ".join(f"0x{w:08x}" for w in words) + "\r\n"
            assert await hmp(f"x /4xw {SCRATCH:#x}") == want
            assert await hmp(f"x/4xw {SCRATCH}") == want
            assert await hmp(f"xp /2ub {SCRATCH}") == f"{SCRATCH:08x}: 16 17\r\n"
            first = await read_mem(conn, 0, 16)
            zero = " ".join(f"0x{int.from_bytes(first[i:i + 4], 'little'):08x}"
                            for i in range(0, 16, 4))
            assert await hmp("x /4xw 0x0") == f"00000000: {zero}\r\n"
            assert await hmp("nosuch arg") == "unknown command: 'nosuch'\r\n"
            assert await hmp("") == ""
            assert await hmp("x /4xw 0xffffffff") == \
                "Error: range is outside guest RAM (or more than 64 KiB)\r\n"
            assert await hmp("x") == "Error: usage: x /fmt addr (e.g. x /4xw 0x1000)\r\n"
            assert await hmp("x /4xw zz") == "Error: bad address 'zz'\r\n"
            assert (await hmp("info bogus")).startswith("Error: info bogus: unknown")
            assert (await hmp("info 'unterminated")).startswith("Error: cannot parse")
            assert "info status" in await hmp("help")
            assert await conn.err("human-monitor-command", {}) == error(
                "Parameter 'command-line' is missing")
            assert await conn.err("human-monitor-command", {"command-line": "info status",
                                                            "cpu-index": 2}) == error(
                "Parameter 'cpu-index' must be from 0 to 0")
            # a command with an effect: no output, the same event as over QMP
            assert await hmp("system_reset") == ""
            ev = await conn.event("RESET")
            assert ev["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
            assert await hmp("info status") == "VM status: paused\r\n"
            await conn.close()
    run(main())


def test_flood_behind_an_async_command_is_pushed_back(run) -> None:
    """While a command runs, at most a few requests are queued: reading from the
    client pauses (so its writes block), and resumes once the command ends."""
    from aemu.host.server import MAX_QUEUED

    async def main():
        async with live_vm(paused=False) as live:
            conn = await live.connect()
            other = await live.connect()
            await conn.send({"execute": "__org.aemu_run-until", "arguments": {"cycles": 10 ** 15},
                             "id": "far"})
            one = b'{"execute":"query-name","id":%d}'
            n = 30_000                                    # about 1 MB
            flood = b"".join(one % i for i in range(n))
            conn.writer.write(flood)
            with pytest.raises(asyncio.TimeoutError):    # the kernel buffers fill up
                await asyncio.wait_for(asyncio.shield(conn.writer.drain()), 0.5)
            (session,) = [s for s in live.vm.server.sessions if s._busy]
            assert session._reading_paused
            assert MAX_QUEUED <= len(session._queue) < 20_000
            assert await other.ok("query-name") == {"name": "a"}   # others are served
            await other.ok("stop")               # ends the run-until: the flood is answered
            r = await conn.reply()
            assert r["id"] == "far" and r["return"]["status"] == "paused"
            await asyncio.wait_for(conn.writer.drain(), T)
            for i in range(n):
                raw = await conn.reader.readline()
                if raw.startswith(b'{"event"'):
                    raw = await conn.reader.readline()
                assert raw == b'{"return": {"name": "a"}, "id": %d}\r\n' % i
            await conn.close()
            await other.close()
    run(main())


def test_a_client_that_does_not_read_is_dropped(run) -> None:
    from aemu.host.server import MAX_OUTPUT

    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            other = await live.connect()
            req = b'{"execute":"__org.aemu_read-memory","arguments":{"addr":0,"size":1048576}}'
            count = MAX_OUTPUT // (1 << 20) + 4               # replies of 1.4 MB each
            before = await read_mem(other, SCRATCH, 4)
            # after it is dropped, what it had queued is not executed
            late = json.dumps({"execute": "__org.aemu_write-memory", "arguments": {
                "addr": SCRATCH, "data": base64.b64encode(b"LATE").decode()}}).encode()
            conn.writer.write(req * count + late)
            await asyncio.wait_for(conn.writer.drain(), T)
            # the server gives up on it: reading ends before all replies came
            got = 0
            with contextlib.suppress(ConnectionError):
                while True:
                    raw = await asyncio.wait_for(conn.reader.readline(), T)
                    if not raw or not raw.endswith(b"\r\n"):
                        break
                    got += 1
            assert got < count
            assert await other.ok("query-name") == {"name": "a"}
            assert await read_mem(other, SCRATCH, 4) == before != b"LATE"
            await conn.close()
            await other.close()
    run(main())


def test_a_client_that_sends_nothing_does_not_block_others(run) -> None:
    async def main():
        async with live_vm() as live:
            idle = [await live.connect(negotiate=False) for _ in range(5)]
            half = await Conn.open(live.path)
            await half.send(b'{"execute": "qmp_capabil')          # half a message
            conn = await live.connect()
            assert await conn.ok("query-name") == {"name": "a"}
            await half.send(b'ities"}')
            assert await half.reply() == {"return": {}}
            for c in (*idle, half, conn):
                await c.close()
    run(main())


# -- edge cases of the VM commands -------------------------------------------------------
def test_hmp_huge_count_is_an_hmp_error() -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            out = await conn.ok("human-monitor-command",
                                {"command-line": "x /" + "9" * 5000 + "xw 0"})
            await conn.close()
            return out
    out = asyncio.run(asyncio.wait_for(main(), 30))
    assert out.startswith("Error: ")


def test_set_registers_with_a_unicode_digit_name() -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            e = await conn.err("__org.aemu_set-registers", {"registers": {"r\u00b2": 1}})
            await conn.close()
            return e
    e = asyncio.run(asyncio.wait_for(main(), 30))
    assert e == error("unknown register 'r\u00b2'")


@pytest.mark.parametrize("reg", ["psr", "cfg", "dbs", "dsr"])
def test_set_registers_16_bit_register_too_wide(reg: str) -> None:
    async def main():
        async with live_vm() as live:
            conn = await live.connect()
            e = await conn.err("__org.aemu_set-registers", {"registers": {reg: 0x10000}})
            await conn.close()
            return e
    e = asyncio.run(asyncio.wait_for(main(), 30))
    assert e == error(f"register {reg}: 0x10000 does not fit in 16 bits")


def test_socket_path_is_private() -> None:
    async def main():
        async with live_vm() as live:
            st = os.stat(live.path)
            assert st.st_mode & 0o777 == 0o600
    asyncio.run(asyncio.wait_for(main(), 30))
