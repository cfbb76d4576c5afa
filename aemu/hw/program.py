"""How a run ends: :class:`RunResult` and the process exit statuses
(:data:`EXIT_STATUS_TABLE`), plus :func:`run_program`, which runs one program
to completion on a board without devices (the reference simulator's setting).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO, Sequence, TextIO

from .semihost import DEFAULT_CPU_HZ


__all__ = [
    "DEFAULT_RAM_SIZE", "EXIT_STATUS_TABLE", "RunResult", "STATUS_FAULT", "run_program",
]

DEFAULT_RAM_SIZE = 20 << 20       #: like the reference simulator

STATUS_MAX_INSNS = 124            #: like timeout(1)
STATUS_LOAD_ERROR = 126
STATUS_INTERRUPTED = 130          #: Ctrl-C (128 + SIGINT)
STATUS_ABORT = 134                #: 128 + SIGABRT
#: fault vector -> (exit status, description); the status is 128 + the POSIX
#: signal a native program would die of (SIGSEGV, SIGILL, SIGTRAP, SIGFPE)
VEC_DVZ, VEC_BPT, VEC_UND, VEC_IAD = 6, 8, 10, 12   # aemu.cpu.Vector
STATUS_FAULT = {
    VEC_IAD: (139, "illegal address"),
    VEC_UND: (132, "undefined instruction"),
    VEC_BPT: (133, "breakpoint"),
    VEC_DVZ: (136, "divide by zero"),
}

#: (outcome, exit status) for --help and the README
EXIT_STATUS_TABLE = (
    ("the program exited (exit service / return from main)", "its status & 0xFF"),
    ("unknown host service code (as the simulator: status = r2)", "r2 & 0xFF"),
    ("killed by signal N (kill service)", "128 + N"),
    ("--max-insns limit reached", "124"),
    ("cannot load the program (missing file, not a CR16 ELF, ...)", "126"),
    ("interrupted (Ctrl-C)", "130"),
    ("guest fault: undefined instruction (vector 10)", "132"),
    ("guest breakpoint: excp bpt (vector 8)", "133"),
    ("guest fault: other exception; WAIT with no interrupt source", "134"),
    ("guest fault: divide by zero (vector 6)", "136"),
    ("guest fault: illegal address (vector 12)", "139"),
    ("usage error", "2"),
)


@dataclass
class RunResult:
    """How a run ended."""

    #: exit, signal, unknown-service, max-insns, fault, breakpoint, halt, interrupted
    reason: str
    status: int            #: the process exit status aemu uses (0..255)
    insns: int             #: instructions executed
    wall: float            #: seconds of host time spent running
    #: the guest's full 16-bit exit value (reasons "exit" and "unknown-service")
    exit_value: int | None = None
    message: str | None = None      #: for stderr, without the "aemu: " prefix
    fault: tuple[int, int, int] | None = None  #: (vector, pc, addr) for fault/breakpoint
    pc: int = 0

    @property
    def mips(self) -> float:
        return self.insns / self.wall / 1e6 if self.wall > 0 else 0.0

    def describe(self) -> str:
        """The exit reason in words (for --stats)."""
        if self.reason == "exit":
            return f"exit({self.exit_value}), status {self.status}"
        return f"{self.message or self.reason}, status {self.status}"


def run_program(program: str | os.PathLike | bytes, args: Sequence[str] = (), *,
                name: str | None = None, binary_addr: int | None = None,
                entry: int | None = None, ram_size: int = DEFAULT_RAM_SIZE,
                max_insns: int | None = None, trace: TextIO | None = None,
                fs_root: str | os.PathLike | None = None, cpu_hz: int = DEFAULT_CPU_HZ,
                svc_host: bool = True, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                warn=None) -> RunResult:
    """Load ``program`` (an ELF, or raw binary at ``binary_addr``) and run it.

    ``args`` are the guest's arguments after argv[0] (``name``, default: the
    program path as given).  Raises :class:`~aemu.hw.loader.LoadError`
    if the program cannot be loaded; warnings go to ``warn`` (default: stderr).
    """
    from .board import Board
    from .machine import run_sync

    board = Board(name="program", ram_size=ram_size, cpu_hz=cpu_hz,
                  svc="host" if svc_host else "guest")
    return run_sync(board, program, loop="asyncio", args=args, name=name,
                    binary_addr=binary_addr, entry=entry, max_insns=max_insns, trace=trace,
                    fs_root=fs_root, stdin=stdin, stdout=stdout, stderr=stderr, warn=warn)
