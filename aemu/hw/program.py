"""Run one guest program to completion, synchronously (what ``aemu run`` does).

A :class:`Runner` drives a loaded :class:`~aemu.cpu.Cpu` slice by slice,
services host calls through :class:`~aemu.hw.semihost.Semihost`, and turns
the way the run ended into a :class:`RunResult` with a process exit status
(:data:`EXIT_STATUS_TABLE`).  An asyncio scheduler replaces this loop later;
the exit-reason mapping stays.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Sequence, TextIO

from .loader import LoadedImage, load_binary, load_elf, write_host_block
from .semihost import DEFAULT_CPU_HZ, SERVICES, Semihost

if TYPE_CHECKING:  # pragma: no cover
    from aemu.cpu import Cpu

# (this module imports the core lazily, so that `aemu --help` works without it)

__all__ = [
    "DEFAULT_RAM_SIZE", "EXIT_STATUS_TABLE", "RunResult", "Runner", "STATUS_FAULT", "run_program",
]

DEFAULT_RAM_SIZE = 20 << 20       #: like the reference simulator
DEFAULT_SLICE = 1_000_000         #: instructions per cpu.run() call

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


class Runner:
    """Runs ``cpu`` until the program ends; see :meth:`run`."""

    def __init__(self, cpu: Cpu, semihost: Semihost, *, max_insns: int | None = None,
                 tracer=None, slice_insns: int = DEFAULT_SLICE) -> None:
        if max_insns is not None and max_insns < 0:
            raise ValueError("max_insns must be >= 0")
        self.cpu = cpu
        self.semihost = semihost
        self.max_insns = max_insns
        self.tracer = tracer
        self.slice_insns = slice_insns
        self.executed = 0

    def run(self) -> RunResult:
        from aemu.cpu import Exit, Vector

        cpu, host, tracer = self.cpu, self.semihost, self.tracer
        start = time.perf_counter()
        try:
            while True:
                budget = self.slice_insns
                if self.max_insns is not None:
                    left = self.max_insns - self.executed
                    if left <= 0:
                        return self._result("max-insns", STATUS_MAX_INSNS, start, message=(
                            f"instruction limit reached: {self.max_insns} instructions "
                            f"executed, stopped at pc {cpu.pc:#x}"))
                    budget = min(budget, left)
                why, n = tracer.run(budget) if tracer else cpu.run(budget)
                self.executed += n
                if why == Exit.BUDGET or why == Exit.STOP:
                    continue
                if why == Exit.SYSCALL:
                    before = cpu.get_state() if tracer else None
                    stop = host.handle()
                    if tracer:
                        code = before["r"][0] & 0xFFFF  # type: ignore[index]
                        tracer.host_call(SERVICES.get(code, f"service {code:#x}"), before)
                    if stop is None:
                        continue
                    if stop.kind == "exit":
                        return self._result("exit", stop.value & 0xFF, start,
                                            exit_value=stop.value)
                    if stop.kind == "signal":
                        return self._result("signal", (128 + stop.value) & 0xFF, start,
                                            message=f"guest killed by signal {stop.value}")
                    return self._result("unknown-service", stop.value & 0xFF, start,
                                        exit_value=stop.value,
                                        message=f"unknown host service {stop.code:#x}")
                if why == Exit.HALT:
                    return self._result("halt", STATUS_ABORT, start, message=(
                        "guest is waiting for an interrupt but no interrupt source exists "
                        f"(pc {cpu.pc:#x})"))
                if why == Exit.BREAKPOINT:
                    vector, pc, addr = cpu.fault
                    return self._result("breakpoint", STATUS_FAULT[VEC_BPT][0], start,
                                        fault=(vector, pc, addr), message=(
                                            f"guest breakpoint (excp bpt) at pc {pc:#x} "
                                            f"(vector {VEC_BPT})"))
                if why == Exit.FAULT:
                    vector, pc, addr = cpu.fault
                    status, what = STATUS_FAULT.get(vector, (STATUS_ABORT, None))
                    if what is None:
                        try:
                            name = Vector(vector).name
                        except ValueError:
                            name = "unknown"
                        what = f"unhandled exception {name}"
                    if vector == VEC_IAD:
                        what = f"{what} {addr:#x}"
                    return self._result("fault", status, start, fault=(vector, pc, addr),
                                        message=f"guest fault: {what} at pc {pc:#x} "
                                                f"(vector {vector})")
                raise RuntimeError(f"unexpected exit reason {why!r} from the core")
        except KeyboardInterrupt:
            return self._result("interrupted", STATUS_INTERRUPTED, start,
                                message=f"interrupted at pc {cpu.pc:#x}")
        finally:
            host.close()
            if tracer:
                tracer.flush()

    def _result(self, reason: str, status: int, start: float, **kw) -> RunResult:
        return RunResult(reason=reason, status=status, insns=self.executed,
                         wall=time.perf_counter() - start, pc=self.cpu.pc, **kw)


def run_program(program: str | os.PathLike | bytes, args: Sequence[str] = (), *,
                name: str | None = None, binary_addr: int | None = None,
                entry: int | None = None, ram_size: int = DEFAULT_RAM_SIZE,
                cpu: "Cpu | None" = None,
                max_insns: int | None = None, trace: TextIO | None = None,
                fs_root: str | os.PathLike | None = None, cpu_hz: int = DEFAULT_CPU_HZ,
                svc_host: bool = True, stdin: BinaryIO | None = None,
                stdout: BinaryIO | None = None, stderr: BinaryIO | None = None,
                warn=None) -> RunResult:
    """Load ``program`` (an ELF, or raw binary at ``binary_addr``) and run it.

    ``args`` are the guest's arguments after argv[0] (``name``, default: the
    program path as given).  ``cpu`` is a fresh CPU to use instead of
    ``Cpu(ram_size, svc_host=svc_host)``.  Raises :class:`~aemu.hw.loader.LoadError`
    if the program cannot be loaded; warnings go to ``warn`` (default: stderr).
    """
    from aemu.cpu import Cpu
    from aemu.cpu.trace import Tracer

    if cpu is None:
        cpu = Cpu(ram_size, svc_host=svc_host)
    if name is None:
        name = "program" if isinstance(program, (bytes, bytearray)) else os.fspath(program)
    image: LoadedImage
    if binary_addr is not None:
        image = load_binary(cpu, program, binary_addr, entry, name=name)
    else:
        image = load_elf(cpu, program, name=name)
        if entry is not None:
            cpu.pc = entry
    warning = write_host_block(cpu, image, [name, *args])
    warn = warn or (lambda text: print(f"aemu: warning: {text}", file=sys.stderr, flush=True))
    if warning:
        warn(warning)
    host = Semihost(cpu, fs_root=fs_root, stdin=stdin, stdout=stdout, stderr=stderr,
                    cpu_hz=cpu_hz, warn=warn)
    tracer = Tracer(cpu, trace) if trace is not None else None
    return Runner(cpu, host, max_insns=max_insns, tracer=tracer).run()
