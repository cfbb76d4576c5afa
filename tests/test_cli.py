"""`aemu run` as a real subprocess: the demo, toolchain-built programs, exit statuses."""
from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import toolchain_tool

# direct host calls that return the real result and errno (like the toolchain's
# examples/cr16sim_sys.h; the stock libgloss stubs lose return values)
SYS_H = r"""
#include <stdio.h>
#define LO(p) ((unsigned)((unsigned long)(p) & 0xffff))
#define HI(p) ((unsigned)((unsigned long)(p) >> 16))
static long sys(long code, unsigned a2, unsigned a3, unsigned a4, unsigned a5, int *err)
{
    register long r0 __asm__("r0") = code;
    register unsigned r2 __asm__("r2") = a2;
    register unsigned r3 __asm__("r3") = a3;
    register unsigned r4 __asm__("r4") = a4;
    register unsigned r5 __asm__("r5") = a5;
    __asm__ volatile ("excp svc" : "+r"(r0), "+r"(r4) : "r"(r2), "r"(r3), "r"(r5) : "memory");
    *err = r4;
    return r0;
}
"""

PROGRAMS = {
    "hello": r"""
#include <stdio.h>
int main(void) { printf("hello, world\n"); return 0; }
""",
    "exit300": r"""
#include <stdlib.h>
int main(void) { exit(300); }
""",
    "return7": "int main(void) { return 7; }\n",
    "badload": r"""
int main(void) { return *(volatile short *)0x1800000L; }
""",
    # code pointers hold halved addresses: this calls 0x800000
    "badjump": r"""
int main(void) { void (*f)(void) = (void (*)(void))0x400000L; f(); return 0; }
""",
    "undef": r"""
int main(void) { __asm__ volatile (".short 0x8000"); return 0; }
""",
    "loop": "int main(void) { for (;;) ; }\n",
    "wait": "int main(void) { __asm__ volatile (\"wait\"); return 0; }\n",
    "bpt": "int main(void) { __asm__ volatile (\"excp bpt\"); return 0; }\n",
    "dvz": "int main(void) { __asm__ volatile (\"excp dvz\"); return 0; }\n",
    "kill": SYS_H + "int main(void) { int e; sys(60, 1, 9, 0, 0, &e); return 0; }\n",
    "upper": SYS_H + r"""
int main(void)
{
    static char buf[16];
    int err, n, i, total = 0;
    while ((n = (int)sys(0x403, 0, LO(buf), HI(buf), sizeof buf, &err)) > 0) {
        for (i = 0; i < n; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] -= 32;
        sys(0x404, 1, LO(buf), HI(buf), n, &err);
        total += n;
    }
    return total;
}
""",
    "files": SYS_H + r"""
int main(void)
{
    static const char msg[] = "written by the guest\n";
    static char buf[64];
    int err, n;
    long fd = sys(0x401, LO("out.txt"), HI("out.txt"), 0x601, 0644, &err);
    if (fd < 0) { printf("open failed: errno %d\n", err); return 3; }
    n = (int)sys(0x404, (unsigned)fd, LO(msg), HI(msg), sizeof msg - 1, &err);
    sys(0x402, (unsigned)fd, 0, 0, 0, &err);
    fd = sys(0x401, LO("in.txt"), HI("in.txt"), 0, 0, &err);
    if (fd < 0) { printf("open in.txt failed: errno %d\n", err); return 4; }
    n = (int)sys(0x403, (unsigned)fd, LO(buf), HI(buf), sizeof buf - 1, &err);
    buf[n > 0 ? n : 0] = 0;
    sys(0x402, (unsigned)fd, 0, 0, 0, &err);
    sys(0x406, LO("out.txt"), HI("out.txt"), LO("moved.txt"), HI("moved.txt"), &err);
    printf("read %d bytes: %s", n, buf);
    return 0;
}
""",
}


def aemu(*args, input: bytes | None = None, cwd: Path) -> subprocess.CompletedProcess:
    """Run `python -m aemu ARGS` (from a directory outside the source tree)."""
    return subprocess.run([sys.executable, "-m", "aemu", *map(str, args)], cwd=cwd,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    """The PROGRAMS, built once with cr16-elf-gcc -msim -O2."""
    gcc = toolchain_tool("gcc")
    out = tmp_path_factory.mktemp("progs")
    built = {}
    for name, source in PROGRAMS.items():
        src = out / f"{name}.c"
        src.write_text(source)
        elf = out / f"{name}.elf"
        subprocess.run([gcc, "-msim", "-O2", "-o", str(elf), str(src)], check=True,
                       capture_output=True)
        built[name] = elf
    return built


def minimal_elf(machine: int = 177) -> bytes:
    """exit(7) in a hand-made ELF32 (no toolchain needed)."""
    code = bytes.fromhex("b25a0700" "b05a1004" "c500")   # movw $7,r2; movw $0x410,r0; excp svc
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x100, 52, 0, 0, 52, 32, 1,
                                 40, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 84, 0x100, 0x100, len(code), len(code), 5, 2)
    return header + phdr + code


# -- without the toolchain ----------------------------------------------------------

def test_version(tmp_path):
    r = aemu("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.decode().startswith("aemu ")


def test_help_lists_exit_statuses(tmp_path):
    r = aemu("run", "--help", cwd=tmp_path)
    text = r.stdout.decode()
    assert r.returncode == 0
    for status in ("124", "126", "132", "133", "134", "136", "139"):
        assert status in text
    assert "--fs-root" in text and "examples:" in text


def test_usage_error(tmp_path):
    r = aemu("run", "--ram-size", "lots", cwd=tmp_path)
    assert r.returncode == 2 and b"--ram-size" in r.stderr


def test_demo_runs(tmp_path):
    r = aemu("run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout


def test_minimal_elf_exit_status(tmp_path):
    (tmp_path / "m.elf").write_bytes(minimal_elf())
    r = aemu("run", "--stats", "m.elf", cwd=tmp_path)
    assert r.returncode == 7
    assert re.search(rb"aemu: stats: 3 instructions in [0-9.]+ m?s \([0-9.]+ MIPS\); exit\(7\)",
                     r.stderr), r.stderr


def test_wrong_machine_elf(tmp_path):
    (tmp_path / "arm.elf").write_bytes(minimal_elf(machine=40))
    r = aemu("run", "arm.elf", cwd=tmp_path)
    assert r.returncode == 126
    assert b"arm.elf: wrong machine: e_machine is 40" in r.stderr


def test_truncated_elf(tmp_path):
    (tmp_path / "cut.elf").write_bytes(minimal_elf()[:-4])
    r = aemu("run", "cut.elf", cwd=tmp_path)
    assert r.returncode == 126 and b"cut.elf: truncated ELF file" in r.stderr


def test_missing_and_not_elf(tmp_path):
    r = aemu("run", "missing.elf", cwd=tmp_path)
    assert r.returncode == 126 and b"missing.elf: cannot read" in r.stderr
    (tmp_path / "text.elf").write_text("hello")
    r = aemu("run", "text.elf", cwd=tmp_path)
    assert r.returncode == 126 and b"not an ELF file" in r.stderr


def test_max_insns_without_toolchain(tmp_path):
    (tmp_path / "m.elf").write_bytes(minimal_elf())
    r = aemu("run", "--max-insns", "2", "m.elf", cwd=tmp_path)
    assert r.returncode == 124
    assert b"instruction limit reached: 2 instructions" in r.stderr


def test_binary_image(tmp_path):
    (tmp_path / "m.bin").write_bytes(bytes.fromhex("b25a0900" "b05a1004" "c500"))
    r = aemu("run", "--binary", "0x200", "m.bin", cwd=tmp_path)
    assert r.returncode == 9, r.stderr


def test_args_without_bsp_warn(tmp_path):
    (tmp_path / "m.elf").write_bytes(minimal_elf())
    r = aemu("run", "m.elf", "one", "--two", cwd=tmp_path)
    assert r.returncode == 7
    assert b"not built with the aemu BSP; arguments ignored" in r.stderr


# -- with programs built by the toolchain ----------------------------------------

@pytest.mark.toolchain
def test_hello(programs, tmp_path):
    r = aemu("run", programs["hello"], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"hello, world\n", b"")


@pytest.mark.toolchain
def test_exit_statuses(programs, tmp_path):
    assert aemu("run", programs["return7"], cwd=tmp_path).returncode == 7
    assert aemu("run", programs["exit300"], cwd=tmp_path).returncode == 300 & 0xFF


@pytest.mark.toolchain
def test_illegal_address(programs, tmp_path):
    r = aemu("run", programs["badload"], cwd=tmp_path)
    assert r.returncode == 139
    assert re.search(rb"aemu: guest fault: illegal address 0x1800000 at pc 0x[0-9a-f]+ "
                     rb"\(vector 12\)", r.stderr), r.stderr


@pytest.mark.toolchain
def test_jump_to_unmapped_memory(programs, tmp_path):
    # with 1 MiB of RAM, 0x800000 is not memory
    r = aemu("run", "--ram-size", "1M", programs["badjump"], cwd=tmp_path)
    assert r.returncode == 139, r.stderr
    assert b"aemu: guest fault: illegal address" in r.stderr and b"(vector 12)" in r.stderr


@pytest.mark.toolchain
def test_undefined_instruction(programs, tmp_path):
    r = aemu("run", programs["undef"], cwd=tmp_path)
    assert r.returncode == 132
    assert re.search(rb"aemu: guest fault: undefined instruction at pc 0x[0-9a-f]+ "
                     rb"\(vector 10\)", r.stderr), r.stderr


@pytest.mark.toolchain
@pytest.mark.parametrize("name, status, message", [
    ("wait", 134, rb"aemu: guest is waiting for an interrupt but no interrupt source exists"),
    ("bpt", 133, rb"aemu: guest breakpoint \(excp bpt\) at pc 0x[0-9a-f]+ \(vector 8\)"),
    ("dvz", 136, rb"aemu: guest fault: divide by zero at pc 0x[0-9a-f]+ \(vector 6\)"),
    ("kill", 137, rb"aemu: guest killed by signal 9"),
])
def test_other_endings(programs, tmp_path, name, status, message):
    r = aemu("run", programs[name], cwd=tmp_path)
    assert r.returncode == status, r.stderr
    assert re.search(message, r.stderr), r.stderr


@pytest.mark.toolchain
def test_max_insns(programs, tmp_path):
    r = aemu("run", "--max-insns", "5000", "--stats", programs["loop"], cwd=tmp_path)
    assert r.returncode == 124
    assert b"instruction limit reached: 5000 instructions executed" in r.stderr
    assert b"stats: 5000 instructions" in r.stderr


@pytest.mark.toolchain
def test_stdin_pipe(programs, tmp_path):
    r = aemu("run", programs["upper"], input=b"hello, stdin\n", cwd=tmp_path)
    assert r.stdout == b"HELLO, STDIN\n"
    assert r.returncode == 13


@pytest.mark.toolchain
def test_files_need_fs_root(programs, tmp_path):
    r = aemu("run", programs["files"], cwd=tmp_path)
    assert r.returncode == 3 and r.stdout == b"open failed: errno 13\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.toolchain
def test_files_with_fs_root(programs, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "in.txt").write_text("from the host\n")
    r = aemu("run", "--fs-root", root, programs["files"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == b"read 14 bytes: from the host\n"
    assert (root / "moved.txt").read_text() == "written by the guest\n"
    assert not (root / "out.txt").exists()


TRACE_LINE = re.compile(r"^ {0,9}(\d+) ([0-9a-f]{6})  ((?:[0-9a-f]{4} ?){1,3}) +(\S.*)$")


@pytest.mark.toolchain
def test_trace(programs, tmp_path):
    r = aemu("run", "--trace", "--stats", programs["return7"], cwd=tmp_path)
    assert r.returncode == 7
    lines = r.stderr.decode().splitlines()
    insn_lines = [ln for ln in lines if TRACE_LINE.match(ln)]
    first = TRACE_LINE.match(insn_lines[0])
    assert first.group(1) == "1" and first.group(2) == "000018"     # _start
    assert "sp=0x" in insn_lines[0]                                 # movd $__STACK_START,(sp)
    counts = [int(TRACE_LINE.match(ln).group(1)) for ln in insn_lines]
    assert counts == list(range(1, len(counts) + 1))
    stats = re.search(r"stats: (\d+) instructions", r.stderr.decode())
    assert int(stats.group(1)) == len(insn_lines)
    assert any(re.match(r"^ +host exit", ln) for ln in lines)
    assert "; syscall" in insn_lines[-1]


@pytest.mark.toolchain
def test_trace_file(programs, tmp_path):
    r = aemu("run", "--trace-file", tmp_path / "t.txt", programs["hello"], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == b"hello, world\n" and r.stderr == b""
    text = (tmp_path / "t.txt").read_text()
    assert "host write -> r0=0x000d" in text


@pytest.mark.toolchain
def test_binary_from_objcopy(programs, tmp_path):
    objcopy = toolchain_tool("objcopy")
    image = tmp_path / "hello.bin"
    subprocess.run([objcopy, "-O", "binary", str(programs["hello"]), str(image)], check=True)
    r = aemu("run", "--binary", "0x2", "--entry", "0x18", image, cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, b"hello, world\n")


@pytest.mark.toolchain
def test_bsp_program_gets_argv(tmp_path):
    """A program linked with aemu's BSP receives ARGS through the host block."""
    from importlib.resources import files

    bsp = Path(str(files("aemu.bsp")))
    sources = sorted(bsp.glob("*.S")) + sorted(bsp.glob("*.c"))
    if not (bsp / "aemu.ld").exists() or not sources:
        pytest.skip("the BSP is not installed")
    src = tmp_path / "argv.c"
    src.write_text('#include <stdio.h>\n'
                   'int main(int argc, char **argv)\n'
                   '{ for (int i = 0; i < argc; i++) printf("[%s]\\n", argv[i]); return argc; }\n')
    elf = tmp_path / "argv.elf"
    subprocess.run([toolchain_tool("gcc"), "-O2", "-I", str(bsp), "-T", str(bsp / "aemu.ld"),
                    "-nostartfiles", *map(str, sources), str(src), "-o", str(elf)],
                   check=True, capture_output=True)
    r = aemu("run", "argv.elf", "one", "two three", "--x", cwd=tmp_path)
    assert r.returncode == 4, r.stderr
    assert r.stdout == b"[argv.elf]\n[one]\n[two three]\n[--x]\n"
    assert r.stderr == b""
