"""Host character back-ends (aemu.hw.chardev): real sockets, a real pty,
files and injected stdio streams, under the stock asyncio loop and uvloop.

Every await is bounded; only loopback addresses are used.
"""
from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import stat
import tempfile
import threading

import pytest

from aemu.hw.chardev import BackendError, CharBackend, OUTPUT_LIMIT, open_backend

try:
    import uvloop
except ImportError:           # pragma: no cover - uvloop is a dependency, but be kind
    uvloop = None  # type: ignore[assignment]

T = 5.0                       # seconds for any single wait


# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def sockdir():
    """A short directory for socket files (sun_path holds only 107 bytes)."""
    d = tempfile.mkdtemp(prefix="aemu-cd-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


async def until(pred, timeout: float = T, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Rx:
    """A receiver that records what it got (and from which thread)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.calls = 0
        self.threads: set[int] = set()

    def __call__(self, data: bytes) -> None:
        assert isinstance(data, bytes) and data
        self.data += data
        self.calls += 1
        self.threads.add(threading.get_ident())

    async def wait_for(self, expected: bytes, timeout: float = T) -> None:
        await until(lambda: len(self.data) >= len(expected), timeout, f"input {expected!r}")
        assert bytes(self.data) == expected


async def read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), T)


async def read_fd(fd: int, n: int, timeout: float = T) -> bytes:
    """Read n bytes from a non-blocking fd, polling."""
    got = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < n:
        try:
            chunk = os.read(fd, n - len(got))
        except BlockingIOError:
            chunk = None
        if chunk:
            got += chunk
        elif loop.time() > deadline:
            raise AssertionError(f"timed out reading fd {fd}: got {bytes(got)!r}")
        else:
            await asyncio.sleep(0.005)
    return bytes(got)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), T)
    except (ConnectionError, OSError):
        pass


# -- parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["", "foo", "serial", "STDIO", "socket:/tmp/x", "udp:1234"])
def test_unknown_spec(spec):
    with pytest.raises(BackendError) as e:
        open_backend(spec)
    assert str(e.value) == (f"unknown UART back-end {spec!r}: use stdio, none, file:PATH, "
                            "unix:PATH, tcp:[HOST:]PORT or pty")


@pytest.mark.parametrize("spec, words", [
    ("stdio:x", "takes no argument"),
    ("none:", "takes no argument"),
    ("pty:/dev/pts/9", "takes no argument"),
    ("file", "needs a path"),
    ("file:", "needs a path"),
    ("unix", "needs a path"),
    ("unix:", "needs a path"),
    ("tcp", "needs a port"),
    ("tcp:", "needs a port"),
    ("tcp:http", "bad port 'http'"),
    ("tcp:65536", "bad port '65536'"),
    ("tcp:-1", "bad port '-1'"),
    ("tcp:127.0.0.1:", "bad port ''"),
    ("tcp:127.0.0.1:12x", "bad port '12x'"),
    ("tcp:[::1", "tcp:[ADDR]:PORT"),
    ("tcp:[::1]80", "tcp:[ADDR]:PORT"),
    ("tcp:[]:80", "empty address"),
    ("unix:/tmp/" + "x" * 120, "at most 107 bytes"),
])
def test_bad_spec(spec, words):
    with pytest.raises(BackendError) as e:
        open_backend(spec)
    assert words in str(e.value)
    assert repr(spec) in str(e.value)


def test_non_string_spec():
    with pytest.raises(BackendError, match="must be a string"):
        open_backend(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec, host, port, where", [
    ("tcp:0", "127.0.0.1", 0, "tcp:127.0.0.1:0"),
    ("tcp:4444", "127.0.0.1", 4444, "tcp:127.0.0.1:4444"),
    ("tcp::4444", "127.0.0.1", 4444, "tcp:127.0.0.1:4444"),
    ("tcp:localhost:80", "localhost", 80, "tcp:localhost:80"),
    ("tcp:0.0.0.0:1", "0.0.0.0", 1, "tcp:0.0.0.0:1"),
    ("tcp:[::1]:7", "::1", 7, "tcp:[::1]:7"),
    ("tcp:::1:7", "::1", 7, "tcp:[::1]:7"),
])
def test_tcp_spec(spec, host, port, where):
    b = open_backend(spec)
    assert isinstance(b, CharBackend)
    assert (b.kind, b.host, b.port) == ("tcp", host, port)
    assert b.address is None                      # not bound yet
    assert b.describe() == f"{where} (not open)"


def test_kinds_and_describe_before_open():
    assert open_backend("stdio").kind == "stdio"
    assert open_backend("stdout").kind == "stdio"
    assert open_backend("none").describe() == "none"
    assert open_backend("pty").describe() == "pty"
    assert open_backend("file:/tmp/out.log").describe() == "file:/tmp/out.log"
    u = open_backend("unix:/tmp/x.sock")
    assert u.describe() == "unix:/tmp/x.sock (not open)"
    assert u.address == "/tmp/x.sock"
    assert not u.is_open and not u.closed


# -- unix ------------------------------------------------------------------------------
def test_unix_both_directions(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            assert stat.S_ISSOCK(os.stat(path).st_mode)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert b.describe() == f"unix:{path} (waiting for a client)"
            assert b.input_possible and not b.connected
            b.set_receiver(rx)

            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="the client")
            assert b.describe() == f"unix:{path} (client connected)"

            b.write(b"hello, ")
            b.write(bytearray(b"guest "))
            b.write(memoryview(b"output\n"))
            assert await read_exactly(reader, 20) == b"hello, guest output\n"

            writer.write(b"typed input")
            await rx.wait_for(b"typed input")
            assert rx.threads == {threading.get_ident()}     # on the loop thread

            # bulk, both ways
            blob = bytes(range(256)) * 1024
            b.write(blob)
            assert await read_exactly(reader, len(blob)) == blob
            rx.data.clear()
            writer.write(blob)
            await rx.wait_for(blob)
            assert b.dropped == 0
            await close_writer(writer)
        finally:
            await b.close()
        assert not os.path.exists(path)
        assert b.closed and not b.input_possible
        assert b.describe() == f"unix:{path} (closed)"
        await b.close()                               # idempotent
        b.write(b"after close")                        # never raises

    run(main())


def test_unix_disconnect_reconnect_and_no_client(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            b.set_receiver(rx)
            b.write(b"nobody listens")                # no client: dropped, no error
            await asyncio.sleep(0.02)
            assert b.dropped == len(b"nobody listens")

            r1, w1 = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="client 1")
            b.write(b"one")
            assert await read_exactly(r1, 3) == b"one"
            w1.write(b"from 1;")
            await rx.wait_for(b"from 1;")
            await close_writer(w1)
            await until(lambda: not b.connected, what="client 1 to go")
            assert "waiting for a client" in b.describe()
            assert b.input_possible                    # another client may come

            before = b.dropped
            for _ in range(100):                      # writes into the void
                b.write(b"lost")
            await asyncio.sleep(0.02)
            assert b.dropped == before + 400

            r2, w2 = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="client 2")
            b.write(b"two")
            assert await read_exactly(r2, 3) == b"two"  # nothing stale before it
            w2.write(b"from 2")
            await rx.wait_for(b"from 1;from 2")

            # the client vanishes abruptly while output flows: nothing raises
            w2.transport.abort()
            for _ in range(50):
                b.write(b"x" * 1000)
                await asyncio.sleep(0)
            await until(lambda: not b.connected, what="client 2 to go")
            b.write(b"still fine")
        finally:
            await b.close()
        assert not os.path.exists(path)

    run(main())


def test_unix_second_client_is_refused(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            b.set_receiver(rx)
            r1, w1 = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="client 1")
            r2, w2 = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            assert await asyncio.wait_for(r2.read(), T) == b""     # closed at once
            await close_writer(w2)
            r3, w3 = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            w3.write(b"intruder")
            try:
                assert await asyncio.wait_for(r3.read(), T) == b""
            except ConnectionError:                     # reset: it had sent data
                pass
            await close_writer(w3)

            b.write(b"still 1")
            assert await read_exactly(r1, 7) == b"still 1"
            w1.write(b"ok")
            await rx.wait_for(b"ok")
            await close_writer(w1)
        finally:
            await b.close()

    run(main())


def test_unix_client_eof_ends_the_connection(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            b.set_receiver(rx)
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="the client")
            w.write(b"cmd\n")
            w.write_eof()
            await rx.wait_for(b"cmd\n")                 # what came before EOF is kept
            await until(lambda: not b.connected, what="the disconnect")
            assert await asyncio.wait_for(r.read(), T) == b""
            await close_writer(w)
            # and the next client is welcome
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="the next client")
            b.write(b"hi")
            assert await read_exactly(r, 2) == b"hi"
            await close_writer(w)
        finally:
            await b.close()

    run(main())


def test_unix_pause_resume(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="the client")
            # input before there is a receiver waits, and is delivered once there is one
            w.write(b"early ")
            await asyncio.sleep(0.05)
            b.set_receiver(rx)
            await rx.wait_for(b"early ")

            b.pause_reading()
            assert b.reading_paused
            w.write(b"while paused")
            await asyncio.sleep(0.1)
            assert bytes(rx.data) == b"early "          # nothing while paused
            assert b.input_possible
            b.resume_reading()
            b.resume_reading()                           # idempotent
            await rx.wait_for(b"early while paused")

            # the receiver pauses from inside the callback (as the machine does)
            got = bytearray()

            def pausing(data: bytes) -> None:
                got.extend(data)
                b.pause_reading()
            b.set_receiver(pausing)
            w.write(b"A")
            await until(lambda: got == b"A", what="A")
            w.write(b"B")
            await asyncio.sleep(0.1)
            assert got == b"A"
            b.resume_reading()
            await until(lambda: got == b"AB", what="B")
            await close_writer(w)
        finally:
            await b.close()

    run(main())


def test_unix_backpressure_reaches_the_client(run, sockdir):
    """While paused, nothing is read: the client's writes eventually block."""
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        b = open_backend(f"unix:{path}")
        rx = Rx()
        await b.open()
        try:
            b.set_receiver(rx)
            b.pause_reading()
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), T)
            await until(lambda: b.connected, what="the client")
            chunk = b"z" * 65536
            sent = 0
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                while sent < 64 << 20:
                    w.write(chunk)
                    sent += len(chunk)
                    await asyncio.wait_for(w.drain(), 0.3)
            assert len(rx.data) == 0
            assert sent < 64 << 20
            b.resume_reading()
            await until(lambda: len(rx.data) >= sent, timeout=10, what="the backlog")
            assert bytes(rx.data) == b"z" * sent
            await close_writer(w)
        finally:
            await b.close()

    run(main())


def test_unix_stale_and_foreign_files(run, sockdir):
    path = os.path.join(sockdir, "uart.sock")

    async def main():
        # a stale socket file (nobody listening) is replaced
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()
        assert os.path.exists(path)
        b = open_backend(f"unix:{path}")
        await b.open()
        try:
            # a live one is not
            b2 = open_backend(f"unix:{path}")
            with pytest.raises(BackendError, match="in use"):
                await b2.open()
            assert os.path.exists(path)
        finally:
            await b.close()
        assert not os.path.exists(path)

        # a regular file is not replaced
        with open(path, "w") as f:
            f.write("precious")
        with pytest.raises(BackendError, match="not a socket"):
            await open_backend(f"unix:{path}").open()
        with open(path) as f:
            assert f.read() == "precious"
        os.unlink(path)

        # a directory that does not exist
        with pytest.raises(BackendError, match="cannot listen"):
            await open_backend(f"unix:{sockdir}/no/such/dir.sock").open()

        # close() leaves a file alone that replaced our socket
        b = open_backend(f"unix:{path}")
        await b.open()
        os.unlink(path)
        with open(path, "w") as f:
            f.write("someone else's")
        await b.close()
        assert os.path.exists(path)

    run(main())


def test_unix_relative_path(run, sockdir, monkeypatch):
    monkeypatch.chdir(sockdir)

    async def main():
        b = open_backend("unix:rel.sock")
        await b.open()
        try:
            full = os.path.join(sockdir, "rel.sock")
            assert b.address == full
            assert b.describe().startswith(f"unix:{full} ")
            r, w = await asyncio.wait_for(asyncio.open_unix_connection(full), T)
            await until(lambda: b.connected, what="the client")
            await close_writer(w)
        finally:
            await b.close()
        assert not os.path.exists(os.path.join(sockdir, "rel.sock"))

    run(main())


# -- tcp -------------------------------------------------------------------------------
def test_tcp_ephemeral_both_directions(run):
    async def main():
        b = open_backend("tcp:0")
        rx = Rx()
        await b.open()
        try:
            host, port = b.address
            assert host == "127.0.0.1" and port != 0
            assert b.describe() == f"tcp:127.0.0.1:{port} (waiting for a client)"
            b.set_receiver(rx)

            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
            await until(lambda: b.connected, what="the client")
            assert b.describe() == f"tcp:127.0.0.1:{port} (client connected)"
            for ch in b"byte by byte\r\n":            # as a UART does
                b.write(bytes((ch,)))
            assert await read_exactly(r, 14) == b"byte by byte\r\n"
            w.write(b"\x00\xff\x1b[A")
            await rx.wait_for(b"\x00\xff\x1b[A")

            # disconnect, output dropped, reconnect
            await close_writer(w)
            await until(lambda: not b.connected, what="the client to go")
            b.write(b"dropped")
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
            await until(lambda: b.connected, what="the second client")
            b.write(b"again")
            assert await read_exactly(r, 5) == b"again"
            w.write(b"!")
            await rx.wait_for(b"\x00\xff\x1b[A!")
            assert b.dropped == len(b"dropped")
            await close_writer(w)
        finally:
            await b.close()
        assert not b.input_possible
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=T).close()

    run(main())


def test_tcp_pause_resume_and_refusal(run):
    async def main():
        b = open_backend("tcp:127.0.0.1:0")
        rx = Rx()
        await b.open()
        try:
            _, port = b.address
            b.set_receiver(rx)
            b.pause_reading()
            r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
            await until(lambda: b.connected, what="the client")
            w.write(b"held")
            await asyncio.sleep(0.1)
            assert rx.calls == 0
            b.resume_reading()
            await rx.wait_for(b"held")

            r2, w2 = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
            assert await asyncio.wait_for(r2.read(), T) == b""
            await close_writer(w2)
            assert b.connected
            await close_writer(w)
        finally:
            await b.close()

    run(main())


def test_tcp_port_in_use(run):
    async def main():
        b = open_backend("tcp:0")
        await b.open()
        try:
            _, port = b.address
            with pytest.raises(BackendError, match=f"cannot listen on 127.0.0.1:{port}"):
                await open_backend(f"tcp:127.0.0.1:{port}").open()
        finally:
            await b.close()
        # ... and free again after close()
        again = open_backend(f"tcp:{port}")
        await again.open()
        assert again.address == ("127.0.0.1", port)
        await again.close()

    run(main())


@pytest.mark.asyncio
async def test_tcp_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    b = open_backend("tcp:[::1]:0")
    try:
        await b.open()
    except BackendError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        host, port = b.address
        assert host == "::1"
        assert b.describe() == f"tcp:[::1]:{port} (waiting for a client)"
        r, w = await asyncio.wait_for(asyncio.open_connection("::1", port), T)
        await until(lambda: b.connected, what="the client")
        b.write(b"v6")
        assert await read_exactly(r, 2) == b"v6"
        await close_writer(w)
    finally:
        await b.close()


@pytest.mark.asyncio
async def test_tcp_close_flushes_queued_output():
    b = open_backend("tcp:0")
    await b.open()
    _, port = b.address
    r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    await until(lambda: b.connected, what="the client")
    b.write(b"last words")
    await b.close()                                   # written in the same loop turn
    assert await asyncio.wait_for(r.read(), T) == b"last words"
    await close_writer(w)


# -- pty -------------------------------------------------------------------------------
def test_pty_both_directions(run):
    async def main():
        b = open_backend("pty")
        rx = Rx()
        await b.open()
        slave = -1
        try:
            path = b.address
            assert path and os.path.exists(path)
            assert b.describe() == f"pty:{path}"
            assert b.input_possible and b.connected
            b.set_receiver(rx)
            slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

            b.write(b"guest says\r\nhi\n\x03")         # raw: no translation, no signals
            assert await read_fd(slave, 16) == b"guest says\r\nhi\n\x03"

            os.write(slave, b"typed\r\x7f\x04")        # raw: no echo, no line editing
            await rx.wait_for(b"typed\r\x7f\x04")
            await asyncio.sleep(0.05)
            assert await read_fd(slave, 0) == b""
            with pytest.raises(BlockingIOError):         # nothing echoed back
                os.read(slave, 100)

            b.pause_reading()
            os.write(slave, b"later")
            await asyncio.sleep(0.1)
            assert bytes(rx.data) == b"typed\r\x7f\x04"
            b.resume_reading()
            await rx.wait_for(b"typed\r\x7f\x04later")

            # the terminal program goes away and comes back
            os.close(slave)
            slave = -1
            b.write(b"while away")
            await asyncio.sleep(0.02)
            slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            b.write(b"+back")
            assert await read_fd(slave, 15) == b"while away+back"
            assert b.dropped == 0
        finally:
            if slave >= 0:
                os.close(slave)
            await b.close()
        assert b.closed and not b.input_possible

    run(main())


def test_pty_output_with_nobody_reading_is_bounded(run):
    async def main():
        b = open_backend("pty")
        b.output_limit = 64 * 1024
        await b.open()
        try:
            for _ in range(64):                           # 4 MiB at a pty nobody reads
                b.write(b"y" * 65536)
                await asyncio.sleep(0)
            await asyncio.sleep(0.05)
            assert 0 < b.dropped < 4 << 20
            assert b.input_possible
        finally:
            await asyncio.wait_for(b.close(), T)          # does not wait for a reader

    run(main())


# -- file: -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_file_appends(tmp_path):
    out = tmp_path / "uart.log"
    out.write_bytes(b"earlier run\n")
    b = open_backend(f"file:{out}")
    assert b.describe() == f"file:{out}"
    b.write(b"before open; ")                          # kept until open()
    await b.open()
    assert not b.input_possible
    b.set_receiver(Rx())
    b.write(b"guest ")
    b.write(b"output\n")
    await until(lambda: out.read_bytes().endswith(b"output\n"), what="the file")
    b.write(b"tail")
    await b.close()
    assert out.read_bytes() == b"earlier run\nbefore open; guest output\ntail"
    assert b.dropped == 0

    b = open_backend(f"file:{out}")                     # a second run appends
    await b.open()
    b.write(b"\nagain")
    await b.close()
    assert out.read_bytes().endswith(b"tail\nagain")


@pytest.mark.asyncio
async def test_file_created_and_errors(tmp_path):
    new = tmp_path / "new.log"
    b = open_backend(f"file:{new}")
    await b.open()
    b.write(b"x")
    await b.close()
    assert new.read_bytes() == b"x"

    with pytest.raises(BackendError, match="cannot open"):
        await open_backend(f"file:{tmp_path}/missing/dir/out.log").open()
    with pytest.raises(BackendError, match="cannot open"):
        await open_backend(f"file:{tmp_path}").open()   # a directory


@pytest.mark.asyncio
async def test_output_limit_drops_newest(tmp_path):
    out = tmp_path / "limited.log"
    b = open_backend(f"file:{out}")
    assert b.output_limit == OUTPUT_LIMIT == 1 << 20
    b.output_limit = 100
    await b.open()
    b.write(b"a" * 60)
    b.write(b"b" * 60)                                 # 40 of these fit
    b.write(b"c" * 10)                                 # none of these
    assert b.dropped == 30
    await asyncio.sleep(0.01)                           # flushed: room again
    b.write(b"d" * 5)
    await b.close()
    assert out.read_bytes() == b"a" * 60 + b"b" * 40 + b"d" * 5
    assert b.dropped == 30


@pytest.mark.asyncio
async def test_write_from_another_thread(tmp_path):
    out = tmp_path / "threads.log"
    b = open_backend(f"file:{out}")
    await b.open()
    t = threading.Thread(target=lambda: [b.write(b"%d," % i) for i in range(100)])
    t.start()
    t.join(T)
    expected = b"".join(b"%d," % i for i in range(100))
    await until(lambda: out.read_bytes() == expected, what="the thread's output")
    await b.close()


# -- none --------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_none():
    b = open_backend("none")
    await b.open()
    rx = Rx()
    b.set_receiver(rx)
    b.write(b"into the void" * 100000)
    b.pause_reading()
    b.resume_reading()
    assert not b.input_possible
    assert b.describe() == "none"
    assert b.dropped == 0
    await b.close()
    assert rx.calls == 0


@pytest.mark.asyncio
async def test_open_twice_and_after_close():
    b = open_backend("none")
    await b.open()
    with pytest.raises(BackendError, match="already open"):
        await b.open()
    await b.close()
    with pytest.raises(BackendError, match="closed"):
        await b.open()
    never = open_backend("tcp:0")
    await never.close()                                # closing an unopened back-end is fine
    assert not never.input_possible


# -- stdio -------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_stdio_injected_bytesio():
    stdin = io.BytesIO(b"hello from stdin")
    stdout = io.BytesIO()
    b = open_backend("stdio", stdin=stdin, stdout=stdout)
    rx = Rx()
    await b.open()
    assert b.describe() == "stdio"
    assert b.input_possible
    b.write(b"guest ")
    b.set_receiver(rx)
    await rx.wait_for(b"hello from stdin")
    await until(lambda: not b.input_possible, what="stdin EOF")
    assert b.describe() == "stdio (stdin at EOF)"
    b.write(b"output")
    await until(lambda: stdout.getvalue() == b"guest output", what="stdout")
    await b.close()
    assert stdout.getvalue() == b"guest output"
    assert not stdout.closed and not stdin.closed      # not ours to close


@pytest.mark.asyncio
async def test_stdout_only():
    stdout = io.BytesIO()
    b = open_backend("stdout", stdout=stdout)
    await b.open()
    assert not b.input_possible
    b.set_receiver(Rx())
    b.write(b"just output")
    await b.close()
    assert stdout.getvalue() == b"just output"


@pytest.mark.asyncio
async def test_stdio_receiver_exception_is_reported_not_fatal():
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda _loop, ctx: reported.append(ctx))
    stdin_r, stdin_w = os.pipe()
    try:
        with open(stdin_r, "rb", buffering=0) as stdin:
            b = open_backend("stdio", stdin=stdin, stdout=io.BytesIO())
            await b.open()
            got = []

            def bad(data: bytes) -> None:
                got.append(data)
                if len(got) == 1:
                    raise RuntimeError("receiver bug")
            b.set_receiver(bad)
            os.write(stdin_w, b"1")
            await until(lambda: reported, what="the report")
            os.write(stdin_w, b"2")
            await until(lambda: len(got) == 2, what="more input")
            assert isinstance(reported[0]["exception"], RuntimeError)
            await b.close()
    finally:
        os.close(stdin_w)
        loop.set_exception_handler(None)


def test_stdio_pipes(run):
    """Real file descriptors: input through a pipe, output into a pipe."""
    async def main():
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        os.set_blocking(out_r, False)
        stdin = open(in_r, "rb", buffering=0)
        stdout = open(out_w, "wb", buffering=0)
        try:
            b = open_backend("stdio", stdin=stdin, stdout=stdout)
            rx = Rx()
            await b.open()
            assert os.get_blocking(in_r) and os.get_blocking(out_w)   # flags untouched
            b.set_receiver(rx)
            os.write(in_w, b"line 1\n")
            await rx.wait_for(b"line 1\n")
            assert rx.threads == {threading.get_ident()}

            b.write(b"to stdout\n")
            assert await read_fd(out_r, 10) == b"to stdout\n"

            b.pause_reading()
            await asyncio.sleep(0.05)                  # a read may be in flight: held
            os.write(in_w, b"held")
            await asyncio.sleep(0.1)
            assert bytes(rx.data) == b"line 1\n"
            b.resume_reading()
            await rx.wait_for(b"line 1\nheld")

            # output larger than the pipe buffer: the writer thread waits, the loop doesn't
            blob = os.urandom(300_000)
            b.write(blob)
            await asyncio.sleep(0.05)
            assert await read_fd(out_r, len(blob)) == blob

            os.close(in_w)
            in_w = -1
            await until(lambda: not b.input_possible, what="stdin EOF")
            await b.close()
            assert b.dropped == 0
        finally:
            if in_w >= 0:
                os.close(in_w)
            stdin.close()
            stdout.close()
            os.close(out_r)

    run(main())


def test_stdio_close_while_stdin_is_idle(run):
    """close() does not hang on a stdin that never says anything."""
    async def main():
        in_r, in_w = os.pipe()
        stdin = open(in_r, "rb", buffering=0)
        try:
            b = open_backend("stdio", stdin=stdin, stdout=io.BytesIO())
            await b.open()
            b.set_receiver(Rx())
            await asyncio.sleep(0.05)
            await asyncio.wait_for(b.close(), T)
            assert not b.input_possible
        finally:
            os.close(in_w)
            stdin.close()

    run(main())


def test_stdio_regular_file_stdin(run, tmp_path):
    """A regular file as stdin (``aemu run < input.txt``): read in full, then EOF."""
    data = os.urandom(200_000)
    src = tmp_path / "input.bin"
    src.write_bytes(data)

    async def main():
        with open(src, "rb") as stdin:
            out = io.BytesIO()
            b = open_backend("stdio", stdin=stdin, stdout=out)
            rx = Rx()
            await b.open()
            b.set_receiver(rx)
            await rx.wait_for(data)
            await until(lambda: not b.input_possible, what="EOF")
            await b.close()

    run(main())


def test_stdio_stdout_gone(run):
    """stdout's reader went away (``aemu run | head``): output dropped, no error."""
    async def main():
        out_r, out_w = os.pipe()
        os.close(out_r)
        stdout = open(out_w, "wb", buffering=0)
        try:
            b = open_backend("stdout", stdout=stdout)
            await b.open()
            b.write(b"into a broken pipe")
            await until(lambda: b.dropped == 18, what="the drop")
            b.write(b"more")
            assert not b.connected
            await b.close()
            assert b.dropped == 22
        finally:
            stdout.close()

    run(main())


@pytest.mark.asyncio
async def test_stdio_text_streams():
    """Text streams (e.g. a replaced sys.stdout) get UTF-8, split sequences intact."""
    stdin = io.StringIO("naïve")
    stdout = io.StringIO()
    b = open_backend("stdio", stdin=stdin, stdout=stdout)
    rx = Rx()
    await b.open()
    b.set_receiver(rx)
    await rx.wait_for("naïve".encode())
    euro = "€".encode()
    b.write(euro[:1])
    await asyncio.sleep(0.01)
    b.write(euro[1:] + b"!")
    await b.close()
    assert stdout.getvalue() == "€!"


def test_stdio_default_streams_in_a_subprocess(tmp_path):
    """The real stdin/stdout of a process, under uvloop when available: output
    arrives in order after what Python printed, input is read, the terminal's
    flags are left alone, close() returns at stdin EOF."""
    import subprocess
    import sys
    script = tmp_path / "echo.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from aemu.hw.chardev import open_backend\n"
        "try:\n"
        "    import uvloop; factory = uvloop.new_event_loop\n"
        "except ImportError:\n"
        "    factory = asyncio.new_event_loop\n"
        "async def main():\n"
        "    print('banner')\n"
        "    b = open_backend('stdio')\n"
        "    await b.open()\n"
        "    b.set_receiver(lambda d: b.write(d.upper()))\n"
        "    while b.input_possible:\n"
        "        await asyncio.sleep(0.01)\n"
        "    b.write(b'|bye')\n"
        "    await b.close()\n"
        "    assert os.get_blocking(0) and os.get_blocking(1)\n"
        "with asyncio.Runner(loop_factory=factory) as r:\n"
        "    r.run(asyncio.wait_for(main(), 10))\n")
    out = subprocess.run([sys.executable, str(script)], input=b"hello\nworld\n",
                         capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"banner\nHELLO\nWORLD\n|bye"
