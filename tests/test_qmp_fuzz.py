"""Fuzzing the QMP input side with hypothesis: the stream splitter
(aemu.host.protocol.JsonSplitter) on arbitrary bytes and on valid JSON in
arbitrary chunkings, and a live VM socket fed random requests.

The live tests run ONE host with one VM per test, in a background thread with
its own event loop; hypothesis drives plain blocking sockets against it (one
fresh connection per example, so a failing example shrinks cleanly).  Every
socket operation has a timeout.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import re
import shlex
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aemu.host.protocol import MAX_DEPTH, MAX_MESSAGE, JsonSplitter, ParseError, QmpError

T = 10.0                      # seconds for any single socket operation
TESTS = Path(__file__).resolve().parent
IDLE_ELF = TESTS / "firmware" / "irq" / "idle.elf"


# =====================================================================================
# (a), (b) the splitter
# =====================================================================================
def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split data at the given offsets (taken modulo len+1, sorted)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def feed_all(splitter: JsonSplitter, chunks: list[bytes]) -> list:
    items = []
    for chunk in chunks:
        items.extend(splitter.feed(chunk))
        assert splitter.buffered <= splitter.max_message + len(chunk)
        # (in fact nothing incomplete beyond the limit stays buffered at all)
        assert splitter.buffered <= splitter.max_message
    return items


def normal(items: list) -> list:
    """Items comparable across runs: errors by their text."""
    return [("error", x.desc) if isinstance(x, QmpError) else ("value", x) for x in items]


STRUCTURAL = st.sampled_from([b"{", b"}", b"[", b"]", b'"', b"\\", b" ", b"\r\n", b":", b",",
                              b"1", b"-", b"e", b"a", b"null", b"true", b'"k"', b'{"a":',
                              b"\xff", b"\xc3", b"\xa9", b"\xe2\x82\xac", b"\x00", b"NaN"])
GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.lists(STRUCTURAL, max_size=120).map(b"".join),
    st.lists(st.one_of(STRUCTURAL, st.binary(max_size=8)), max_size=60).map(b"".join),
)


@settings(max_examples=400, deadline=None)
@given(data=GARBAGE, cuts=st.lists(st.integers(0, 10_000), max_size=12),
       max_message=st.sampled_from([1, 2, 8, 40, 1 << 20]), max_depth=st.integers(1, 6))
def test_splitter_never_raises_and_stays_bounded(data, cuts, max_message, max_depth) -> None:
    s = JsonSplitter(max_message=max_message, max_depth=max_depth)
    items = feed_all(s, chunks_of(data, cuts))
    for item in items:
        if isinstance(item, QmpError):
            assert item.desc and (isinstance(item, ParseError) or "too large" in item.desc)
        else:
            json.dumps(item, allow_nan=False)        # a JSON value, nothing exotic


@settings(max_examples=300, deadline=None)
@given(data=GARBAGE, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_splitter_result_does_not_depend_on_chunking(data, cuts) -> None:
    """With no message near the size limit, what comes out is the same
    however the input is cut."""
    whole = normal(list(JsonSplitter().feed(data)))
    assert normal(feed_all(JsonSplitter(), chunks_of(data, cuts))) == whole
    assert normal(feed_all(JsonSplitter(), [data[i:i + 1] for i in range(len(data))])) == whole


JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(1 << 80), 1 << 80)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                   max_size=4),
    max_leaves=25)


@st.composite
def serialized(draw, values=JSON_VALUES) -> tuple[Any, bytes]:
    value = draw(values)
    ensure_ascii = draw(st.booleans())
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (",\n", " :\t")]))
    indent = draw(st.sampled_from([None, None, 0, 2, "\t"]))
    text = json.dumps(value, ensure_ascii=ensure_ascii, separators=seps, indent=indent)
    return value, text.encode("utf-8")


def is_bare(value: Any) -> bool:
    return not isinstance(value, (dict, list, str))


@settings(max_examples=300, deadline=None)
@given(item=serialized(), cuts=st.lists(st.integers(0, 10_000), max_size=16),
       tail=st.sampled_from([b" ", b"\r\n", b"\n", b"\t"]))
def test_any_json_value_round_trips(item, cuts, tail) -> None:
    value, raw = item
    raw += tail                         # a bare token (1, true, null) needs a delimiter
    items = feed_all(JsonSplitter(), chunks_of(raw, cuts))
    assert items == [json.loads(raw)] == [value]


@settings(max_examples=200, deadline=None)
@given(items=st.lists(serialized(), min_size=1, max_size=8),
       seps=st.lists(st.sampled_from([b"", b" ", b"\r\n", b"\n\n"]), min_size=8, max_size=8),
       cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_json_values_back_to_back_round_trip(items, seps, cuts) -> None:
    raw = b""
    for (value, text), sep in zip(items, seps):
        raw += text + (sep or b" " if is_bare(value) else sep)
    if is_bare(items[-1][0]):
        raw += b" "
    got = feed_all(JsonSplitter(), chunks_of(raw, cuts))
    assert got == [value for value, _ in items]


# =====================================================================================
# (c) a live VM socket
# =====================================================================================
class LiveServer:
    """A host with one VM (idle.elf, running 100 s in real time) on an event loop
    in a background thread: ``with LiveServer() as srv: srv.connect()``."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="aemu-fz-"))
        self.path = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="qmp-fuzz-host", daemon=True)

    def _main(self) -> None:
        try:
            import uvloop
            factory = uvloop.new_event_loop
        except ImportError:              # pragma: no cover
            factory = asyncio.new_event_loop
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._serve())
        except BaseException as exc:     # reported by __enter__/__exit__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from aemu.host.host import Host
        from aemu.host.vm import VmConfig

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # only the temporary directory is allowed: random pmemsave names cannot
        # reach anything else
        firmware = self.tmp / "idle.elf"
        shutil.copyfile(IDLE_ELF, firmware)
        host = Host(self.tmp / "st", allow_dirs=[self.tmp])
        try:
            await asyncio.wait_for(host.start(), T)
            vm = await asyncio.wait_for(host.create_vm(VmConfig(
                name="fz", firmware=str(firmware), args=["100", "10"])), T)
            self.vm = vm
            self.path = vm.qmp_address[len("unix:"):]
            self._ready.set()
            await self._stop.wait()
        finally:
            await asyncio.wait_for(host.shutdown(), T)

    def __enter__(self) -> "LiveServer":
        self._thread.start()
        if not self._ready.wait(T) or self._error is not None:
            self.__exit__()
            raise RuntimeError(f"the host did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(T)
        shutil.rmtree(self.tmp, ignore_errors=True)
        assert not self._thread.is_alive(), "the host thread did not end"
        if self._error is not None and (not exc or exc[0] is None):
            raise self._error

    def connect(self, negotiate: bool = True) -> "SyncConn":
        conn = SyncConn(self.path)
        if negotiate:
            conn.sendall(b'{"execute":"qmp_capabilities"}')
            assert conn.reply() == {"return": {}}
        return conn


class SyncConn:
    """A blocking QMP client; every line is checked (ASCII, CRLF, JSON object)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(T)
        self.sock.connect(path)
        self.buf = bytearray()
        self.events: list[dict] = []
        greeting = self.recv()
        assert set(greeting) == {"QMP"}

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                raw = bytes(self.buf[:end + 1])
                del self.buf[:end + 1]
                assert raw.endswith(b"\r\n") and b"\r" not in raw[:-2], raw[:200]
                raw.decode("ascii")
                return raw
            data = self.sock.recv(1 << 20)
            assert data, "the server closed the connection"
            self.buf += data

    def recv(self) -> dict:
        msg = json.loads(self.line())
        assert isinstance(msg, dict), msg
        return msg

    def reply(self) -> dict:
        while True:
            msg = self.recv()
            if "event" in msg:
                assert set(msg) <= {"event", "data", "timestamp"}, msg
                self.events.append(msg)
                continue
            assert ("return" in msg) != ("error" in msg), msg
            assert set(msg) <= {"return", "error", "id"}, msg
            return msg

    def close(self) -> None:
        self.sock.close()


# -- what is sent --------------------------------------------------------------------------
#: Not sent at random: quit ends the VM (and its socket), system_reset restarts
#: the guest, and __org.aemu_run-until holds the session until a random (maybe
#: years away) virtual time; each has its own deterministic tests.
EXCLUDED = {"quit", "system_reset", "__org.aemu_run-until"}
#: HMP command lines are filtered the same way (their first word)
HMP_EXCLUDED = {"quit", "q", "system_reset"}

HMP_WORDS = st.sampled_from(["info", "status", "registers", "name", "version", "x", "xp", "help",
                             "?", "stop", "cont", "c", "/4xw", "/1xb", "/8dh", "/2ug", "/3c",
                             "/", "/0xw", "/99999xw", "0x0", "0x300000", "-1", "0xffffffff", "'",
                             '"', "x/2xw", "xp/1ub", "bogus"])
HMP_LINES = st.lists(st.one_of(HMP_WORDS, st.text(max_size=6)), max_size=4).map(" ".join)


def hmp_allowed(line: str) -> bool:
    try:
        words = shlex.split(line)
    except ValueError:
        return True
    return not words or words[0] not in HMP_EXCLUDED


INTS = st.one_of(st.integers(0, 64), st.integers(0x300000, 0x300100), st.integers(0, 1 << 24),
                 st.integers(-5, 5),
                 st.sampled_from([0x300000, (20 << 20) - 1, 20 << 20, 1 << 20, (1 << 20) + 1,
                                  (1 << 64) - 1, 1 << 64, -(1 << 63)]),
                 st.integers())
#: mostly valid guest addresses (0x300000: RAM the idle guest does not use) and sizes
ADDRS = st.one_of(st.integers(0x300000, 0x300100), st.integers(0x300000, 0x300100),
                  st.integers(0, 64), INTS)
SIZES = st.one_of(st.integers(0, 64), st.integers(0, 64), INTS)
B64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
REGISTERS = st.dictionaries(
    st.one_of(st.sampled_from([f"r{i}" for i in range(16)] + ["pc", "psr", "cfg", "isp", "usp",
                                                               "ssp", "intbase", "r16", "R0"]),
              st.text(max_size=4)),
    st.one_of(st.integers(0, 0xFFFF), st.integers(-2, 1 << 33), JSON_LEAVES),
    max_size=3)
#: plausible values per argument name (mixed with arbitrary JSON below)
ARG_VALUES = {
    "addr": ADDRS, "size": SIZES, "val": ADDRS, "cycles": INTS,
    "ns": INTS, "cpu-index": st.integers(-1, 2), "data": B64 | st.text(max_size=8),
    # (nothing that would matter if confinement failed: the valid names are
    # added per server, in its temporary directory)
    "filename": st.sampled_from(["/nonexistent-aemu-fuzz/x", "relative", "", "/\x00", "/"]),
    "command-line": HMP_LINES.filter(hmp_allowed), "registers": REGISTERS,
    "device": st.sampled_from(["uart0", "uart1", "", "timer0"]),
    "enable": st.lists(st.sampled_from(["oob", ""]), max_size=2),
}
ARG_NAMES = st.sampled_from(sorted(ARG_VALUES) + ["x", "id", "execute", "Addr", "cpu_index"])


@st.composite
def arguments(draw, name: str | None = None, files: tuple[str, ...] = ()) -> dict:
    """Arguments for ``name``: usually shaped by its schema (each required key,
    some optional ones, plausible values, now and then a wrong one or an extra
    key), else a random dict."""
    from aemu.host.vm_commands import vm as vm_table

    command = vm_table.get(name) if name is not None else None
    out: dict[str, Any] = {}
    if command is not None and draw(st.integers(0, 7)):
        for key, (_, required) in command.args.items():
            if (required and draw(st.integers(0, 9))) or (not required and draw(st.booleans())):
                plausible = ARG_VALUES.get(key, JSON_VALUES)
                if key == "filename" and files:
                    plausible = st.sampled_from(files) | plausible
                out[key] = draw(plausible if draw(st.integers(0, 5)) else JSON_VALUES)
        if draw(st.integers(0, 5)) == 0:
            out[draw(ARG_NAMES | st.text(max_size=6))] = draw(JSON_LEAVES)
        return out
    for key in draw(st.lists(ARG_NAMES | st.text(max_size=6), max_size=4, unique=True)):
        plausible = ARG_VALUES.get(key)
        if plausible is not None and draw(st.integers(0, 3)):
            out[key] = draw(plausible)
        else:
            out[key] = draw(JSON_VALUES)
    return out


@st.composite
def request(draw, names: list[str], files: tuple[str, ...] = ()) -> dict:
    """A request object: a real or random command, random arguments and id,
    sometimes a malformed shape (bad member, non-string execute, ...)."""
    if draw(st.integers(0, 4)):
        name = draw(st.sampled_from(names))
    else:
        name = draw(st.text(max_size=24) | st.sampled_from(
            ["", "QUERY-STATUS", "query_status", "__org.aemu_", "x-", "help"]))
    msg: dict[str, Any] = {"execute": name}
    shape = draw(st.integers(0, 19))
    if shape == 0:
        msg["execute"] = draw(JSON_VALUES)
    elif shape == 1:
        msg["arguments"] = draw(JSON_VALUES)
    elif shape == 2:
        msg[draw(st.sampled_from(["exec-oob", "control", "Execute", "arg"]))] = draw(JSON_LEAVES)
    elif shape == 3:
        del msg["execute"]
    if shape > 3 or draw(st.booleans()):
        args = draw(arguments(name, files))
        if args or draw(st.booleans()):
            msg.setdefault("arguments", args)
    if draw(st.booleans()):
        msg["id"] = draw(JSON_VALUES)
    keys = draw(st.permutations(list(msg)))
    return {k: msg[k] for k in keys}


def safe(msg: Any) -> bool:
    """Not a request for an excluded command or HMP line."""
    if not isinstance(msg, dict) or not isinstance(msg.get("execute"), str):
        return True
    name, args = msg["execute"], msg.get("arguments")
    if name in EXCLUDED:
        return False
    if not isinstance(args, dict):
        return True
    line = args.get("command-line")
    if name == "human-monitor-command" and isinstance(line, str) and not hmp_allowed(line):
        return False
    return True


MALFORMED = [
    # balanced, closed strings: each one is one complete (bad) message
    b'{"execute": "query-status",}', b'{"execute" "query-status"}', b'{"execute": }',
    b'{"execute": NaN}', b'{"id": Infinity, "execute": "query-name"}', b'{"id": 1e400}',
    b'{"id": -1E999, "execute": "query-name"}', b'{"execute": tru}', b"{'execute': 'stop'}",
    b'{"execute": "stop",, "id": 1}', b'{"a": 01}', b'{"a": +1}', b'{"a": .5}', b'{"a": 0x10}',
    b'{"execute": "query-\xff"}', b'{"execute": "\xc3"}', b'{"id": "\xed\xa0\x80"}',
    b'{"id": "\xc0\xaf"}', b'{"id": "\x01"}', b'{"id": "a\nb"}', b'{"id": "\\x"}',
    b'{"id": "\\u12"}', b'{"id": 1 /* c */}', b"}", b"]",
    b'{"a": [1}', b'[{]', b"[" * 65 + b"]" * 65, b'{"x":' * 70 + b"1" + b"}" * 70,
    b"nul ", b"True ", b"undefined ",
]


def expected(raw: bytes) -> tuple[str, Any]:
    """What one message must get back: ("parse", None) a parse error (no id),
    ("large", None) a too-large error (no id), ("noid", None) a reply without
    id, or ("id", value) a reply echoing value."""
    if len(raw.strip()) > MAX_MESSAGE:
        return ("large", None)

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:
        v = float(text)
        if math.isinf(v):
            raise ValueError(text)
        return v

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=no_constants, parse_float=finite)
        depth_ok = _depth(raw) <= MAX_DEPTH
    except (ValueError, RecursionError):
        return ("parse", None)
    if not depth_ok:
        return ("parse", None)
    if isinstance(value, dict) and "id" in value:
        return ("id", value["id"])
    return ("noid", None)


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth(raw: bytes) -> int:
    """Bracket depth of valid JSON text (brackets in strings do not count)."""
    if raw.count(b"[") + raw.count(b"{") <= 64:
        return 0                        # (shallow enough: no need to look)
    depth = best = 0
    for b in _BRACKETS.findall(_STRING.sub(b"", raw)):
        depth += 1 if b in (b"[", b"{") else -1
        best = max(best, depth)
    return best


@st.composite
def message(draw, names: list[str], files: tuple[str, ...] = ()) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        msg = draw(request(names, files).filter(safe))
        return json.dumps(msg, separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
                          ensure_ascii=draw(st.booleans())).encode("utf-8")
    if kind <= 8:
        return draw(st.sampled_from(MALFORMED))
    value, raw = draw(serialized())           # any JSON value: scalars, arrays, objects
    assume(safe(value))
    return raw + b" " if is_bare(value) else raw


HUGE_SIZES = [10_000, 200_000, MAX_MESSAGE - 100, MAX_MESSAGE + 1, (MAX_MESSAGE * 3) // 2]


@st.composite
def huge(draw) -> bytes:
    size = draw(st.sampled_from(HUGE_SIZES))
    where = draw(st.integers(0, 2))
    if where == 0:                # a huge argument
        msg = {"execute": "query-name", "arguments": {"pad": "x" * size}, "id": size}
    elif where == 1:              # a huge command name
        msg = {"execute": "y" * size, "id": "huge"}
    else:                         # a huge id: echoed back
        msg = {"execute": "query-status", "id": "z" * size}
    return json.dumps(msg).encode()


def check_batch(conn: SyncConn, raws: list[bytes], seps: list[bytes], marker: int) -> None:
    """Send the messages in one go, with a query-status marker after them; each
    message must get exactly one reply, in order, with its id if it had one."""
    stream = bytearray()
    for raw, sep in zip(raws, seps):
        stream += raw + sep
    stream += b'{"execute": "query-status", "id": "marker-%d"}' % marker
    conn.sendall(bytes(stream))
    for raw in raws:
        want, ident = expected(raw)
        r = conn.reply()
        assert r.get("id") != f"marker-{marker}", f"no reply for {raw[:200]!r}"
        if want == "id":
            assert "id" in r and r["id"] == ident and type(r["id"]) is type(ident), (raw[:200], r)
        else:
            assert "id" not in r, (raw[:200], r)
        if want == "parse":
            assert r["error"]["desc"].startswith("JSON parse error, "), (raw[:200], r)
        elif want == "large":
            assert r["error"]["desc"] == f"message too large: more than {MAX_MESSAGE} bytes"
        else:
            assert "error" not in r or not r["error"]["desc"].startswith("JSON parse error"), \
                (raw[:200], r)
        if "error" in r:
            assert r["error"]["class"] in ("GenericError", "CommandNotFound", "DeviceNotFound")
            assert "internal error" not in r["error"]["desc"], (raw[:300], r)
    r = conn.reply()
    assert r["id"] == f"marker-{marker}" and set(r["return"]) == {"running", "status"}, r


def query_commands(srv: LiveServer) -> list[str]:
    conn = srv.connect()
    conn.sendall(b'{"execute": "query-commands"}')
    names = [c["name"] for c in conn.reply()["return"]]
    conn.close()
    assert "query-status" in names and "quit" in names
    return [n for n in names if n not in EXCLUDED]


def test_live_server_random_requests() -> None:
    with LiveServer() as srv:
        names = query_commands(srv)
        files = (str(srv.tmp / "dump.bin"), str(srv.tmp / "st" / "dump2.bin"),
                 str(srv.tmp / ".." / f"{srv.tmp.name}-escape.bin"))
        counter = iter(range(1 << 30))

        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @given(raws=st.lists(message(names, files), min_size=1, max_size=12),
               big=st.one_of(st.none(), st.none(), st.none(), huge()),
               where=st.integers(0, 100),
               seps=st.lists(st.sampled_from([b"", b" ", b"\r\n", b"\n"]), min_size=13,
                             max_size=13))
        def check(raws, big, where, seps):
            if big is not None:
                raws = list(raws)
                raws.insert(where % (len(raws) + 1), big)
            conn = srv.connect()
            try:
                check_batch(conn, raws, seps, next(counter))
            finally:
                conn.close()

        check()
        # confinement held for the name outside the allowed directory
        assert not (srv.tmp.parent / f"{srv.tmp.name}-escape.bin").exists()
        # still up: a new client gets answers
        conn = srv.connect()
        conn.sendall(b'{"execute": "query-status", "id": "end"}{"execute": "query-name"}')
        r = conn.reply()
        assert r["id"] == "end" and r["return"]["status"] in (
            "running", "paused", "guest-panicked", "shutdown", "debug", "suspended")
        assert conn.reply() == {"return": {"name": "fz"}}
        conn.close()


def test_live_server_garbage_bytes() -> None:
    """Arbitrary bytes (which may leave a message open forever) on a
    connection: whatever the server writes is well formed, it never replies
    more than once per byte sent, and other clients are unaffected."""
    with LiveServer() as srv:
        watcher = srv.connect()

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(data=GARBAGE, negotiate=st.booleans(),
               cuts=st.lists(st.integers(0, 10_000), max_size=6))
        def check(data, negotiate, cuts):
            conn = srv.connect(negotiate=negotiate)
            try:
                for part in chunks_of(data, cuts):
                    conn.sendall(part)
                # a marker that ends any bare token; replies stop at the
                # marker's if the splitter is between messages again
                conn.sendall(b" \r\n")
                conn.sock.settimeout(0.02)
                replies = 0
                with contextlib.suppress(socket.timeout, TimeoutError):
                    while True:
                        conn.reply()
                        replies += 1
                assert replies <= len(data) + 3
            finally:
                conn.close()
            watcher.sendall(b'{"execute": "query-name", "id": 1}')
            assert watcher.reply() == {"return": {"name": "fz"}, "id": 1}

        check()
        conn = srv.connect()
        conn.sendall(b'{"execute": "query-status"}')
        assert set(conn.reply()["return"]) == {"running", "status"}
        conn.close()
        watcher.close()


@pytest.mark.parametrize("name", ["query-status", "query-name", "query-version",
                                  "query-commands", "__org.aemu_query-run",
                                  "__org.aemu_query-registers"])
def test_argumentless_commands_reject_any_argument(name) -> None:
    """Every command without arguments refuses each unknown key, whatever its
    value (a few examples against one server)."""
    with LiveServer() as srv:
        conn = srv.connect()

        @settings(max_examples=25, deadline=None, database=None)
        @given(key=st.text(min_size=1, max_size=10), value=JSON_VALUES)
        def check(key, value):
            conn.sendall(json.dumps({"execute": name, "arguments": {key: value},
                                     "id": key}).encode())
            r = conn.reply()
            assert r == {"error": {"class": "GenericError",
                                   "desc": f"Parameter '{key}' is unexpected"}, "id": key}

        check()
        conn.close()
