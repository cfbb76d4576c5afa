"""The host side of the reference simulator's syscall interface ("semihosting").

A newlib program built with ``-msim`` (or aemu's BSP) asks the host for
services with ``excp svc``; the core returns :attr:`~aemu.cpu.Exit.SYSCALL`
with the pc past the ``excp`` and :meth:`Semihost.handle` performs the call.

Calling convention (as ``cr16-elf-run`` implements it, cr16c-isa.md 7.8):
service code in r0 (16 bits); arguments in r2, r3, r4, r5; a 32-bit pointer
or offset is ``(high << 16) | low`` of two consecutive registers; a 16-bit
result goes to r0, a 32-bit one to (r1,r0); afterwards r4 holds the errno
(newlib numbering) if the 16-bit result is 0xFFFF, else 0.

=====  ==========  =================================================  ==================
code   service     arguments                                          result
=====  ==========  =================================================  ==================
0x410  exit        r2 = status                                        the run ends
0x401  open        path (r3:r2), flags r4 (newlib O_*), mode r5       (r1,r0) = fd / -1
0x402  close       fd r2                                              r0
0x403  read        fd r2, buffer (r4:r3), count r5                    r0 = bytes read
0x404  write       fd r2, buffer (r4:r3), count r5                    r0 = bytes written
0x405  lseek       fd r2, offset (r4:r3) signed, whence r5            (r1,r0) = offset
0x406  rename      old (r3:r2), new (r5:r4)                           r0
0x407  unlink      path (r3:r2)                                       r0
0x408  getenv      --                                                 (r1,r0) = 0
0x300  time        --                                                 (r1,r0) = seconds
0x430  gettime     (aemu) pointer (r3:r2) to 8 bytes: u64 LE ns       r0 = 0
20     getpid      --                                                 r0 = 1
60     kill        pid r2, sig r3                                     ends the run
=====  ==========  =================================================  ==================

Differences from the simulator, on purpose:

* **Time is virtual**: ``time`` returns ``EPOCH`` (2026-01-01T00:00:00Z) plus
  the virtual time, ``insn_count / cpu_hz`` seconds, so runs are deterministic.
* **Files** are reachable only below ``fs_root`` (None: open/rename/unlink fail
  with EACCES and never touch the host).  The guest sees ``fs_root`` as ``/``;
  paths (relative or absolute) that resolve outside it, through ``..`` or a
  symbolic link, fail with EACCES.  Guest fds 0/1/2 are the host's
  stdin/stdout/stderr; closing them is accepted but leaves the host streams open.
* **kill** never signals a host process: ``kill(pid, sig)`` for the guest's
  own pid (1, or 0, or the simulator's 47) ends the run "killed by signal sig";
  other pids fail with ESRCH.
* An **unknown service code** ends the run with status r2 (what the simulator
  does for ``excp svc``) and a warning that names the code.
* Guest buffers outside RAM give EFAULT instead of crashing the host.
"""
from __future__ import annotations

import errno as host_errno
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Callable

if TYPE_CHECKING:  # pragma: no cover
    from aemu.cpu import Cpu

__all__ = ["EPOCH", "GUEST_ERRNO", "HostStop", "Semihost", "SERVICES", "guest_errno"]

#: the virtual wall clock starts at 2026-01-01T00:00:00Z
EPOCH = 1767225600
DEFAULT_CPU_HZ = 100_000_000
#: the pid getpid reports (libgloss's own _getpid also says 1)
GUEST_PID = 1
MAX_OPEN_FILES = 32     #: guest fds 3 .. 3+MAX_OPEN_FILES-1
MAX_PATH = 1024         #: longest guest path, including the NUL

SYS_EXIT, SYS_OPEN, SYS_CLOSE, SYS_READ, SYS_WRITE = 0x410, 0x401, 0x402, 0x403, 0x404
SYS_LSEEK, SYS_RENAME, SYS_UNLINK, SYS_GETENV = 0x405, 0x406, 0x407, 0x408
SYS_TIME, SYS_GETTIME, SYS_GETPID, SYS_KILL = 0x300, 0x430, 20, 60

SERVICES = {
    SYS_EXIT: "exit", SYS_OPEN: "open", SYS_CLOSE: "close", SYS_READ: "read",
    SYS_WRITE: "write", SYS_LSEEK: "lseek", SYS_RENAME: "rename", SYS_UNLINK: "unlink",
    SYS_GETENV: "getenv", SYS_TIME: "time", SYS_GETTIME: "gettime", SYS_GETPID: "getpid",
    SYS_KILL: "kill",
}

#: newlib's errno numbers (cr16-elf/include/sys/errno.h), by name
GUEST_ERRNO = {
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7,
    "ENOEXEC": 8, "EBADF": 9, "ECHILD": 10, "EAGAIN": 11, "ENOMEM": 12, "EACCES": 13,
    "EFAULT": 14, "ENOTBLK": 15, "EBUSY": 16, "EEXIST": 17, "EXDEV": 18, "ENODEV": 19,
    "ENOTDIR": 20, "EISDIR": 21, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25,
    "ETXTBSY": 26, "EFBIG": 27, "ENOSPC": 28, "ESPIPE": 29, "EROFS": 30, "EMLINK": 31,
    "EPIPE": 32, "EDOM": 33, "ERANGE": 34, "EDEADLK": 45, "ENOLCK": 46, "ENOSYS": 88,
    "ENOTEMPTY": 90, "ENAMETOOLONG": 91, "ELOOP": 92, "EOPNOTSUPP": 95, "EDQUOT": 132,
    "ESTALE": 133, "ENOTSUP": 134, "EILSEQ": 138, "EOVERFLOW": 139, "ECANCELED": 140,
}
G = GUEST_ERRNO

# newlib open flags
O_ACCMODE, O_APPEND, O_CREAT, O_TRUNC, O_EXCL = 0x3, 0x8, 0x200, 0x400, 0x800


def guest_errno(exc: OSError) -> int:
    """The newlib errno for a host OSError (EIO if there is no equivalent)."""
    name = host_errno.errorcode.get(exc.errno or 0, "")
    if name == "EWOULDBLOCK":
        name = "EAGAIN"
    return GUEST_ERRNO.get(name, G["EIO"])


class _GuestError(Exception):
    """A service failed with a guest errno."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = err


@dataclass(frozen=True)
class HostStop:
    """A service ended the run."""

    kind: str          #: "exit", "signal" (kill) or "unknown-service"
    value: int         #: exit status (full 16-bit r2) or signal number
    code: int = 0      #: the service code (for "unknown-service")


class Semihost:
    """Services host calls for one CPU.

    ``stdin`` is a binary reader (``read1`` is used when present, so a read
    returns what is available), ``stdout``/``stderr`` binary writers; they
    default to the process's own streams.  ``warn`` receives warning texts
    (default: printed to ``sys.stderr`` prefixed with ``aemu: warning:``).
    """

    def __init__(self, cpu: "Cpu", *, fs_root: str | os.PathLike | None = None,
                 stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
                 stderr: BinaryIO | None = None, cpu_hz: int = DEFAULT_CPU_HZ,
                 warn: Callable[[str], None] | None = None,
                 cycles: Callable[[], int] | None = None) -> None:
        if cpu_hz <= 0:
            raise ValueError("cpu_hz must be positive")
        self.cpu = cpu
        self.cpu_hz = int(cpu_hz)
        #: virtual cycles since boot (a machine adds the time the CPU slept)
        self.cycles = cycles or (lambda: cpu.insn_count)
        self.fs_root = None if fs_root is None else os.path.realpath(os.fspath(fs_root))
        if self.fs_root is not None and not os.path.isdir(self.fs_root):
            raise ValueError(f"fs_root {fs_root} is not a directory")
        self.stdin = stdin if stdin is not None else _std("stdin")
        self.stdout = stdout if stdout is not None else _std("stdout")
        self.stderr = stderr if stderr is not None else _std("stderr")
        self.warn = warn or _default_warn
        self.files: dict[int, int] = {}     # guest fd (>= 3) -> host fd
        self.calls = 0                      # services performed
        self._handlers: dict[int, Callable[[list[int]], HostStop | None]] = {
            SYS_EXIT: self._exit, SYS_OPEN: self._open, SYS_CLOSE: self._close,
            SYS_READ: self._read, SYS_WRITE: self._write, SYS_LSEEK: self._lseek,
            SYS_RENAME: self._rename, SYS_UNLINK: self._unlink, SYS_GETENV: self._getenv,
            SYS_TIME: self._time, SYS_GETTIME: self._gettime, SYS_GETPID: self._getpid,
            SYS_KILL: self._kill,
        }

    # -- the clock -------------------------------------------------------------
    def virtual_ns(self) -> int:
        """Virtual nanoseconds since boot: cycles / cpu_hz."""
        return self.cycles() * 1_000_000_000 // self.cpu_hz

    def virtual_time(self) -> int:
        """Virtual seconds since the Unix epoch."""
        return EPOCH + self.virtual_ns() // 1_000_000_000

    # -- dispatch --------------------------------------------------------------
    def handle(self) -> HostStop | None:
        """Perform the service the guest asked for; a HostStop if the run ends."""
        state = self.cpu.get_state()
        r = list(state["r"])  # type: ignore[arg-type]
        code = r[0] & 0xFFFF
        handler = self._handlers.get(code)
        self.calls += 1
        if handler is None:
            status = r[2] & 0xFFFF
            self.warn(f"unknown host service code {code:#x} (r0) at pc {self.cpu.pc - 2:#x}; "
                      f"exiting with status r2 = {status}, as the simulator does")
            return HostStop("unknown-service", status, code)
        return handler(r)

    def close(self) -> None:
        """Close every file the guest left open."""
        for host_fd in self.files.values():
            try:
                os.close(host_fd)
            except OSError:
                pass
        self.files.clear()

    # -- result helpers ---------------------------------------------------------
    def _ret16(self, r: list[int], value: int, err: int = 0) -> None:
        r[0] = value & 0xFFFF
        r[4] = err if r[0] == 0xFFFF else 0
        self.cpu.set_state({"r": r})

    def _ret32(self, r: list[int], value: int, err: int = 0) -> None:
        value &= 0xFFFFFFFF
        r[0], r[1] = value & 0xFFFF, value >> 16
        r[4] = err if r[0] == 0xFFFF else 0
        self.cpu.set_state({"r": r})

    def _fail16(self, r: list[int], err: int) -> None:
        self._ret16(r, -1, err)

    def _fail32(self, r: list[int], err: int) -> None:
        self._ret32(r, -1, err)

    # -- guest memory ----------------------------------------------------------
    def _mem_read(self, addr: int, n: int) -> bytes:
        try:
            return self.cpu.read(addr, n)
        except IndexError:
            raise _GuestError(G["EFAULT"]) from None

    def _mem_write(self, addr: int, data: bytes) -> None:
        try:
            self.cpu.write(addr, data)
        except IndexError:
            raise _GuestError(G["EFAULT"]) from None

    def _string(self, addr: int) -> bytes:
        """A NUL-terminated guest string (EFAULT, ENAMETOOLONG)."""
        ram = self.cpu.ram
        if not 0 <= addr < self.cpu.ram_size:
            raise _GuestError(G["EFAULT"])
        end = min(addr + MAX_PATH, self.cpu.ram_size)
        chunk = bytes(ram[addr:end])
        nul = chunk.find(b"\0")
        if nul < 0:
            raise _GuestError(G["ENAMETOOLONG"] if end - addr == MAX_PATH else G["EFAULT"])
        return chunk[:nul]

    # -- paths -----------------------------------------------------------------
    def host_path(self, guest_path: bytes) -> str:
        """Map a guest path below fs_root (guest "/" is fs_root); EACCES outside."""
        if self.fs_root is None:
            raise _GuestError(G["EACCES"])
        if not guest_path:
            raise _GuestError(G["ENOENT"])
        rel = os.fsdecode(guest_path).lstrip("/")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        depth = 0
        for p in parts:                      # lexical ".." escapes
            depth += -1 if p == ".." else 1
            if depth < 0:
                raise _GuestError(G["EACCES"])
        candidate = os.path.join(self.fs_root, *parts) if parts else self.fs_root
        resolved = os.path.realpath(candidate)   # follows symlinks, even dangling ones
        inside = self.fs_root.rstrip(os.sep) + os.sep
        if resolved != self.fs_root and not resolved.startswith(inside):
            raise _GuestError(G["EACCES"])
        return resolved

    # -- services ------------------------------------------------------------
    def _exit(self, r: list[int]) -> HostStop:
        return HostStop("exit", r[2] & 0xFFFF)

    def _write(self, r: list[int]) -> None:
        fd, buf, n = r[2], r[3] | r[4] << 16, r[5]
        try:
            data = self._mem_read(buf, n)
            if fd in (1, 2):
                stream = self.stdout if fd == 1 else self.stderr
                if stream is None:
                    raise _GuestError(G["EBADF"])
                try:
                    stream.write(data)
                    stream.flush()
                except BrokenPipeError:
                    raise _GuestError(G["EPIPE"]) from None
                except (OSError, ValueError) as exc:
                    raise _GuestError(_err(exc)) from None
                written = len(data)
            elif fd == 0:
                raise _GuestError(G["EBADF"])
            else:
                written = os.write(self._host_fd(fd), data)
        except _GuestError as e:
            return self._fail16(r, e.err)
        except OSError as exc:
            return self._fail16(r, guest_errno(exc))
        self._ret16(r, written)

    def _read(self, r: list[int]) -> None:
        fd, buf, n = r[2], r[3] | r[4] << 16, r[5]
        try:
            if n and not (0 <= buf and buf + n <= self.cpu.ram_size):
                raise _GuestError(G["EFAULT"])
            if fd == 0:
                if self.stdin is None:
                    raise _GuestError(G["EBADF"])
                try:
                    reader = getattr(self.stdin, "read1", None) or self.stdin.read
                    data = reader(n) if n else b""
                except (OSError, ValueError) as exc:
                    raise _GuestError(_err(exc)) from None
                data = data or b""
            elif fd in (1, 2):
                raise _GuestError(G["EBADF"])
            else:
                data = os.read(self._host_fd(fd), n)
            self._mem_write(buf, data)
        except _GuestError as e:
            return self._fail16(r, e.err)
        except OSError as exc:
            return self._fail16(r, guest_errno(exc))
        self._ret16(r, len(data))

    def _open(self, r: list[int]) -> None:
        path_addr, flags, mode = r[2] | r[3] << 16, r[4], r[5]
        try:
            guest_path = self._string(path_addr)
            host = self.host_path(guest_path)
            acc = flags & O_ACCMODE
            if acc == 3:
                raise _GuestError(G["EINVAL"])
            hflags = (os.O_RDONLY, os.O_WRONLY, os.O_RDWR)[acc]
            if flags & O_APPEND:
                hflags |= os.O_APPEND
            if flags & O_CREAT:
                hflags |= os.O_CREAT
            if flags & O_TRUNC:
                hflags |= os.O_TRUNC
            if flags & O_EXCL:
                hflags |= os.O_EXCL
            hflags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            guest_fd = self._free_fd()
            # the owner can always read and write what the guest creates
            host_fd = os.open(host, hflags, (mode & 0o777) | 0o600)
        except _GuestError as e:
            return self._fail32(r, e.err)
        except OSError as exc:
            return self._fail32(r, guest_errno(exc))
        self.files[guest_fd] = host_fd
        self._ret32(r, guest_fd)

    def _close(self, r: list[int]) -> None:
        fd = r[2]
        if fd in (0, 1, 2):
            # accepted, but the host's own streams stay open (newlib's exit
            # closes stdio, and aemu may still have things to print)
            return self._ret16(r, 0)
        host_fd = self.files.pop(fd, None)
        if host_fd is None:
            return self._fail16(r, G["EBADF"])
        try:
            os.close(host_fd)
        except OSError as exc:
            return self._fail16(r, guest_errno(exc))
        self._ret16(r, 0)

    def _lseek(self, r: list[int]) -> None:
        fd, off, whence = r[2], r[3] | r[4] << 16, r[5]
        if off & 0x80000000:
            off -= 1 << 32
        try:
            if whence not in (0, 1, 2):
                raise _GuestError(G["EINVAL"])
            if fd in (0, 1, 2):
                raise _GuestError(G["ESPIPE"])
            pos = os.lseek(self._host_fd(fd), off, whence)
            if pos > 0x7FFFFFFF:
                raise _GuestError(G["EOVERFLOW"])
        except _GuestError as e:
            return self._fail32(r, e.err)
        except OSError as exc:
            return self._fail32(r, guest_errno(exc))
        self._ret32(r, pos)

    def _rename(self, r: list[int]) -> None:
        try:
            old = self.host_path(self._string(r[2] | r[3] << 16))
            new = self.host_path(self._string(r[4] | r[5] << 16))
            os.rename(old, new)
        except _GuestError as e:
            return self._fail16(r, e.err)
        except OSError as exc:
            return self._fail16(r, guest_errno(exc))
        self._ret16(r, 0)

    def _unlink(self, r: list[int]) -> None:
        try:
            path = self.host_path(self._string(r[2] | r[3] << 16))
            if os.path.isdir(path):
                raise _GuestError(G["EISDIR"])
            os.unlink(path)
        except _GuestError as e:
            return self._fail16(r, e.err)
        except OSError as exc:
            return self._fail16(r, guest_errno(exc))
        self._ret16(r, 0)

    def _getenv(self, r: list[int]) -> None:
        self._ret32(r, 0)

    def _time(self, r: list[int]) -> None:
        self._ret32(r, self.virtual_time())

    def _gettime(self, r: list[int]) -> None:
        try:
            self._mem_write(r[2] | r[3] << 16, self.virtual_ns().to_bytes(8, "little"))
        except _GuestError as e:
            return self._fail16(r, e.err)
        self._ret16(r, 0)

    def _getpid(self, r: list[int]) -> None:
        self._ret16(r, GUEST_PID)

    def _kill(self, r: list[int]) -> HostStop | None:
        pid, sig = r[2], r[3]
        if pid not in (0, GUEST_PID, 47):
            self._fail16(r, G["ESRCH"])
            return None
        if sig == 0:
            self._ret16(r, 0)
            return None
        return HostStop("signal", sig)

    # -- fd table ----------------------------------------------------------------
    def _host_fd(self, fd: int) -> int:
        host_fd = self.files.get(fd)
        if host_fd is None:
            raise _GuestError(G["EBADF"])
        return host_fd

    def _free_fd(self) -> int:
        for fd in range(3, 3 + MAX_OPEN_FILES):
            if fd not in self.files:
                return fd
        raise _GuestError(G["EMFILE"])


def _err(exc: BaseException) -> int:
    return guest_errno(exc) if isinstance(exc, OSError) else G["EBADF"]


def _std(name: str) -> BinaryIO | None:
    stream = getattr(sys, name, None)
    if stream is None:
        return None
    return getattr(stream, "buffer", stream)


def _default_warn(message: str) -> None:
    print(f"aemu: warning: {message}", file=sys.stderr, flush=True)
