"""Socket endpoints: ``unix:PATH`` and ``tcp:[HOST:]PORT`` specs, and
listening sockets made safely.

Used by the UART back-ends, the QMP servers and (later) migration channels,
so that every listener in aemu follows the same rules:

- a Unix socket gets mode 0600 *before* ``listen()`` (nobody can connect
  while the mode is still the umask's); a stale socket file left by a dead
  process is replaced, a live one or anything that is not a socket is an
  error; the file is removed on close only if it is still ours;
- TCP binds 127.0.0.1 unless the user names an address (``tcp::PORT`` too);
  a non-loopback address is allowed, with a warning from the caller.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import stat
from dataclasses import dataclass
from typing import Optional, Union

log = logging.getLogger(__name__)

DEFAULT_TCP_HOST = "127.0.0.1"
UNIX_PATH_MAX = 107           # sizeof(sun_path) - 1 on Linux


class EndpointError(Exception):
    """A bad endpoint spec, or a socket that cannot be made."""


def strerror(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass(frozen=True)
class UnixEndpoint:
    path: str

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpEndpoint:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


Endpoint = Union[UnixEndpoint, TcpEndpoint]


def parse_tcp(spec: str, rest: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[V6]:PORT`` for IPv6) -> (host, port)."""
    if not rest:
        raise EndpointError(f"{spec!r} needs a port: tcp:[HOST:]PORT")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0 or rest[end + 1:end + 2] != ":":
            raise EndpointError(f"bad {spec!r}: write an IPv6 address as tcp:[ADDR]:PORT")
        host, port_s = rest[1:end], rest[end + 2:]
        if not host:
            raise EndpointError(f"bad {spec!r}: empty address in []")
    else:
        host, _, port_s = rest.rpartition(":")
    host = host or DEFAULT_TCP_HOST
    if not (port_s.isascii() and port_s.isdigit()) or int(port_s) > 65535:
        raise EndpointError(f"bad port {port_s!r} in {spec!r}: "
                            "expected a number from 0 to 65535 (0 = any free port)")
    return host, int(port_s)


def check_unix_path(spec: str, path: str) -> str:
    if not path:
        raise EndpointError(f"{spec!r} needs a path: unix:PATH")
    if "\0" in path:
        raise EndpointError(f"bad {spec!r}: NUL in the path")
    path = os.path.expanduser(path)
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise EndpointError(f"bad {spec!r}: a Unix socket path may have at most "
                            f"{UNIX_PATH_MAX} bytes; use a shorter (or relative) path")
    return path


def parse_endpoint(spec: str) -> Endpoint:
    """``unix:PATH`` or ``tcp:[HOST:]PORT`` -> an endpoint."""
    if not isinstance(spec, str):
        raise EndpointError(f"an address must be a string, not {type(spec).__name__}")
    kind, colon, rest = spec.partition(":")
    if colon and kind == "unix":
        return UnixEndpoint(check_unix_path(spec, rest))
    if colon and kind == "tcp":
        return TcpEndpoint(*parse_tcp(spec, rest))
    raise EndpointError(f"bad address {spec!r}: use unix:PATH or tcp:[HOST:]PORT")


def remove_stale_unix(path: str) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise EndpointError(f"{path!r} exists and is not a socket; not replacing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        err = probe.connect_ex(path)
    finally:
        probe.close()
    if err in (errno.ECONNREFUSED, errno.ENOENT):
        log.info("removing stale socket %s", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    raise EndpointError(f"{path!r} is in use by another process"
                        + ("" if err in (0, errno.EAGAIN) else f" ({os.strerror(err)})"))


class UnixListener:
    """A bound, listening, non-blocking Unix socket with mode 0600."""

    def __init__(self, path: str, backlog: int = 8) -> None:
        self.path = os.path.abspath(path)
        # the absolute path, so a later chdir() does not matter -- unless only
        # the relative one fits into sun_path
        self._bind_path = self.path if len(os.fsencode(self.path)) <= UNIX_PATH_MAX else path
        remove_stale_unix(self._bind_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bound = False
        try:
            sock.bind(self._bind_path)
            bound = True
            os.chmod(self._bind_path, 0o600)
            st = os.stat(self._bind_path)
            self._ident: Optional[tuple[int, int]] = (st.st_dev, st.st_ino)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if bound:
                try:
                    os.unlink(self._bind_path)
                except OSError:
                    pass
            raise EndpointError(f"cannot listen on {self._bind_path!r}: {strerror(exc)}") \
                from exc
        self.sock = sock

    def unlink(self) -> None:
        """Remove the socket file if it is still the one we made."""
        try:
            st = os.lstat(self.path)
            if self._ident is None or (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", self.path, strerror(exc))
        self._ident = None


def tcp_listener(host: str, port: int, backlog: int = 8) -> socket.socket:
    """A bound, listening, non-blocking TCP socket (one address family, so port
    0 gives one port)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise EndpointError(f"cannot resolve {host!r}: {strerror(exc)}") from exc
    if not infos:
        raise EndpointError(f"{host!r} has no address")
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise EndpointError(f"cannot listen on {host}:{port}: {strerror(exc)}") from exc
    return sock


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
