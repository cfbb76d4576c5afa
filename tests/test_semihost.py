"""The host side of the syscall interface (aemu.hw.semihost), driven register by register."""
from __future__ import annotations

import errno
import io
import os

import pytest

from aemu.cpu import Cpu
from aemu.hw.semihost import EPOCH, GUEST_ERRNO, MAX_OPEN_FILES, HostStop, Semihost, guest_errno

RAM = 1 << 20
BUF = 0x4000      # scratch guest buffer
PATH = 0x5000     # guest path strings
PATH2 = 0x5400

O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_CREAT, O_TRUNC, O_EXCL = 0, 1, 2, 8, 0x200, 0x400, 0x800
EACCES, ENOENT, EBADF, EFAULT, EEXIST = 13, 2, 9, 14, 17


class Guest:
    """A CPU plus a Semihost, with helpers to make calls the way libgloss does."""

    def __init__(self, fs_root=None, stdin=b"", cpu_hz=100_000_000):
        self.cpu = Cpu(RAM)
        self.out, self.err = io.BytesIO(), io.BytesIO()
        self.warnings: list[str] = []
        self.host = Semihost(self.cpu, fs_root=fs_root, stdin=io.BufferedReader(io.BytesIO(stdin)),
                             stdout=self.out, stderr=self.err, cpu_hz=cpu_hz,
                             warn=self.warnings.append)

    def call(self, code, r2=0, r3=0, r4=0, r5=0, *, r1=0xBEEF):
        r = [0] * 16
        r[0], r[1], r[2], r[3], r[4], r[5] = code, r1, r2, r3, r4, r5
        self.cpu.set_state({"r": r})
        self.stop = self.host.handle()
        return self.cpu.get_state()["r"]

    def r0(self, *a, **kw):
        """16-bit result, errno."""
        r = self.call(*a, **kw)
        return r[0], r[4]

    def r32(self, *a, **kw):
        """32-bit (r1,r0) result as a signed value, errno."""
        r = self.call(*a, **kw)
        v = r[0] | r[1] << 16
        return (v - (1 << 32) if v & 0x80000000 else v), r[4]

    def put_str(self, addr, s: str):
        self.cpu.write(addr, s.encode() + b"\0")

    # services
    def open(self, path, flags, mode=0o644):
        self.put_str(PATH, path)
        return self.r32(0x401, PATH & 0xFFFF, PATH >> 16, flags, mode)

    def write(self, fd, data: bytes):
        self.cpu.write(BUF, data)
        return self.r0(0x404, fd, BUF & 0xFFFF, BUF >> 16, len(data))

    def read(self, fd, n):
        res, err = self.r0(0x403, fd, BUF & 0xFFFF, BUF >> 16, n)
        data = self.cpu.read(BUF, res) if res != 0xFFFF else None
        return res, err, data

    def close(self, fd):
        return self.r0(0x402, fd)

    def lseek(self, fd, off, whence):
        off &= 0xFFFFFFFF
        return self.r32(0x405, fd, off & 0xFFFF, off >> 16, whence)


def test_write_stdout_and_stderr():
    g = Guest()
    assert g.write(1, b"hello\n") == (6, 0)
    assert g.write(2, b"oops") == (4, 0)
    assert g.out.getvalue() == b"hello\n" and g.err.getvalue() == b"oops"
    assert g.stop is None


def test_16bit_result_leaves_r1_alone():
    g = Guest()
    g.cpu.write(BUF, b"x")
    r = g.call(0x404, 1, BUF, 0, 1, r1=0x1357)
    assert r[0] == 1 and r[1] == 0x1357 and r[4] == 0


def test_write_bad_buffer_is_efault():
    g = Guest()
    assert g.r0(0x404, 1, 0xFFF0, 0x00FF, 0x100) == (0xFFFF, EFAULT)     # 0xFFFFF0: outside RAM
    assert g.r0(0x404, 1, 0xFFF0, 0x000F, 0x20) == (0xFFFF, EFAULT)      # crosses the end of RAM
    assert g.out.getvalue() == b""


def test_read_stdin():
    g = Guest(stdin=b"abc\nrest")
    res, err, data = g.read(0, 100)
    assert (res, err) == (8, 0) and data == b"abc\nrest"
    assert g.read(0, 100)[:2] == (0, 0)                                     # EOF
    assert g.r0(0x403, 0, 0xFFF0, 0x00FF, 4) == (0xFFFF, EFAULT)


def test_read_write_wrong_std_fds():
    g = Guest()
    assert g.read(1, 4)[:2] == (0xFFFF, EBADF)
    assert g.write(0, b"x") == (0xFFFF, EBADF)
    assert g.write(7, b"x") == (0xFFFF, EBADF)


def test_files_refused_without_fs_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = Guest()
    assert g.open("f.txt", O_WRONLY | O_CREAT) == (-1, EACCES)
    assert g.open("/etc/passwd", O_RDONLY) == (-1, EACCES)
    g.put_str(PATH, "f.txt")
    assert g.r0(0x407, PATH, 0) == (0xFFFF, EACCES)
    g.put_str(PATH2, "g.txt")
    assert g.r0(0x406, PATH, 0, PATH2, 0) == (0xFFFF, EACCES)
    assert list(tmp_path.iterdir()) == []


def test_file_round_trip(tmp_path):
    g = Guest(fs_root=tmp_path)
    fd, err = g.open("data.txt", O_WRONLY | O_CREAT | O_TRUNC)
    assert fd == 3 and err == 0
    assert g.write(fd, b"0123456789") == (10, 0)
    assert g.close(fd) == (0, 0)
    assert (tmp_path / "data.txt").read_bytes() == b"0123456789"
    fd, _ = g.open("/data.txt", O_RDWR)             # guest "/" is the fs root
    assert g.lseek(fd, 4, 0) == (4, 0)
    assert g.read(fd, 3) == (3, 0, b"456")
    assert g.lseek(fd, -2, 2) == (8, 0)
    assert g.read(fd, 100) == (2, 0, b"89")
    assert g.read(fd, 100)[:2] == (0, 0)
    assert g.lseek(fd, -100, 1) == (-1, 22)          # EINVAL
    assert g.close(fd) == (0, 0)
    assert g.close(fd) == (0xFFFF, EBADF)
    fd, _ = g.open("data.txt", O_WRONLY | O_APPEND)
    g.write(fd, b"AB")
    g.close(fd)
    assert (tmp_path / "data.txt").read_bytes() == b"0123456789AB"


def test_open_errors(tmp_path):
    (tmp_path / "exists").write_text("x")
    (tmp_path / "sub").mkdir()
    g = Guest(fs_root=tmp_path)
    assert g.open("missing", O_RDONLY) == (-1, ENOENT)
    assert g.open("exists", O_WRONLY | O_CREAT | O_EXCL) == (-1, EEXIST)
    assert g.open("sub", O_WRONLY) == (-1, 21)                  # EISDIR
    assert g.open("exists/x", O_RDONLY) == (-1, 20)             # ENOTDIR
    assert g.r32(0x401, 0xFFF0, 0x00FF, 0, 0) == (-1, EFAULT)   # path outside RAM
    g.cpu.write(PATH, b"a" * 2000)
    assert g.r32(0x401, PATH, 0, 0, 0) == (-1, 91)              # ENAMETOOLONG


def test_path_escapes_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("secret")
    (root / "inside").write_text("ok")
    os.symlink(tmp_path / "secret", root / "link-out")
    os.symlink("inside", root / "link-in")
    os.symlink(tmp_path, root / "dir-out")
    g = Guest(fs_root=root)
    for path in ("../secret", "a/../../secret", "link-out", "dir-out/secret", "/../secret"):
        assert g.open(path, O_RDONLY) == (-1, EACCES), path
    assert g.open("/etc/passwd", O_RDONLY) == (-1, ENOENT)        # i.e. root/etc/passwd
    assert g.open("link-out", O_WRONLY | O_CREAT | O_TRUNC) == (-1, EACCES)
    assert (tmp_path / "secret").read_text() == "secret"
    fd, err = g.open("link-in", O_RDONLY)                         # symlinks inside are fine
    assert err == 0 and g.read(fd, 10)[2] == b"ok"
    fd, err = g.open("sub/../inside", O_RDONLY)
    assert err == ENOENT or err == 0


def test_rename_and_unlink(tmp_path):
    (tmp_path / "a").write_text("A")
    g = Guest(fs_root=tmp_path)
    g.put_str(PATH, "a")
    g.put_str(PATH2, "b")
    assert g.r0(0x406, PATH, 0, PATH2, 0) == (0, 0)
    assert not (tmp_path / "a").exists() and (tmp_path / "b").read_text() == "A"
    assert g.r0(0x407, PATH2, 0) == (0, 0)
    assert not (tmp_path / "b").exists()
    assert g.r0(0x407, PATH2, 0) == (0xFFFF, ENOENT)
    g.put_str(PATH2, "../escape")
    (tmp_path / "c").write_text("C")
    g.put_str(PATH, "c")
    assert g.r0(0x406, PATH, 0, PATH2, 0) == (0xFFFF, EACCES)
    assert (tmp_path / "c").exists()


def test_too_many_open_files(tmp_path):
    (tmp_path / "f").write_text("")
    g = Guest(fs_root=tmp_path)
    fds = [g.open("f", O_RDONLY)[0] for _ in range(MAX_OPEN_FILES)]
    assert fds == list(range(3, 3 + MAX_OPEN_FILES))
    assert g.open("f", O_RDONLY) == (-1, 24)                      # EMFILE
    g.close(10)
    assert g.open("f", O_RDONLY) == (10, 0)                       # lowest free fd again
    g.host.close()
    assert g.host.files == {}


def test_lseek_on_console_is_espipe():
    assert Guest().lseek(1, 0, 1) == (-1, 29)


def test_close_std_fd_keeps_host_stream():
    g = Guest()
    assert g.close(1) == (0, 0)
    assert g.write(1, b"still") == (5, 0)
    assert g.out.getvalue() == b"still"


def test_virtual_time():
    g = Guest()
    assert g.r32(0x300) == (EPOCH, 0)
    g.cpu.insn_count = 250_000_000                  # 2.5 s at 100 MHz
    assert g.r32(0x300) == (EPOCH + 2, 0)
    g2 = Guest(cpu_hz=1_000_000)
    g2.cpu.insn_count = 250_000_000                 # 250 s at 1 MHz
    assert g2.r32(0x300) == (EPOCH + 250, 0)


def test_gettime_ns():
    g = Guest()
    g.cpu.insn_count = 123_456
    assert g.r0(0x430, BUF, 0) == (0, 0)
    assert int.from_bytes(g.cpu.read(BUF, 8), "little") == 1_234_560
    assert g.r0(0x430, 0xFFFC, 0x00FF) == (0xFFFF, EFAULT)


def test_getenv_getpid():
    g = Guest()
    assert g.r32(0x408) == (0, 0)
    assert g.r0(20) == (1, 0)


def test_kill():
    g = Guest()
    assert g.r0(60, 5, 9) == (0xFFFF, 3)            # ESRCH: no such process
    assert g.stop is None
    assert g.r0(60, 1, 0) == (0, 0)                 # signal 0: just a check
    g.call(60, 1, 9)
    assert g.stop == HostStop("signal", 9)


def test_exit_keeps_16_bits():
    g = Guest()
    g.call(0x410, 300)
    assert g.stop == HostStop("exit", 300)


def test_unknown_service():
    g = Guest()
    g.call(0x505, 42)
    assert g.stop == HostStop("unknown-service", 42, 0x505)
    assert "0x505" in g.warnings[0]


def test_guest_errno_mapping():
    assert guest_errno(OSError(errno.ENOENT, "x")) == 2
    assert guest_errno(OSError(errno.ENAMETOOLONG, "x")) == 91
    assert guest_errno(OSError(errno.ENOTEMPTY, "x")) == 90
    assert guest_errno(OSError(errno.ELOOP, "x")) == 92
    assert guest_errno(OSError(errno.EAGAIN, "x")) == 11
    assert guest_errno(OSError(None, "x")) == 5
    assert GUEST_ERRNO["ENOSPC"] == 28 and GUEST_ERRNO["ESPIPE"] == 29


def test_fs_root_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError):
        Semihost(Cpu(RAM), fs_root=tmp_path / "missing")
