"""The core's hidden state: lazily computed compare flags must be visible
everywhere the PSR is observed, and survive everything that rewrites the PSR."""
from __future__ import annotations

from pathlib import Path

import pytest

from aemu.cpu import Cpu, Exit

from insn_helpers import CODE, L, N, SVC, U, Z, code, op_reg

CMPW_R1_R2 = op_reg("cmpw", 1, 2)     # compare r1 (first) with r2 (second)
JUSR_R4R3 = (0x0AF3,)                 # jusr (r4,r3)
SPR_PSR_R5 = (0x0014, 0x2095)         # spr psr, r5
SEQ_R6, SGT_R7, SHI_R8 = (0x0806,), (0x0867,), (0x0848,)


def run_code(cpu: Cpu, *insns, **regs) -> None:
    cpu.write(CODE, code(*insns, SVC))
    r = [0] * 16
    for name, v in regs.items():
        r[int(name[1:])] = v
    cpu.set_state({"r": r, "pc": CODE, "psr": 0})
    why, _ = cpu.run(100)
    assert why == Exit.SYSCALL


@pytest.mark.parametrize("a,b,flags", [
    (5, 5, Z), (0x8000, 1, L), (1, 0x8000, N), (2, 1, N | L), (1, 2, 0),
])
def test_compare_flags_visible_everywhere(a: int, b: int, flags: int) -> None:
    cpu = Cpu(1 << 20)
    run_code(cpu, CMPW_R1_R2, SPR_PSR_R5, SEQ_R6, SGT_R7, SHI_R8, r1=a, r2=b)
    st = cpu.get_state()
    assert st["psr"] & (Z | N | L) == flags           # get_state
    assert st["r"][5] & (Z | N | L) == flags          # spr psr
    assert st["r"][6] == bool(flags & Z)              # Scond
    assert st["r"][7] == bool(flags & N)
    assert st["r"][8] == bool(flags & L)


def test_compare_flags_survive_jusr() -> None:
    cpu = Cpu(1 << 20)
    target = CODE + 0x100
    cpu.write(target, code(SPR_PSR_R5, SVC))
    cpu.write(CODE, code(CMPW_R1_R2, JUSR_R4R3))
    cpu.set_state({"r": [0, 2, 1, target >> 1, 0] + [0] * 11, "pc": CODE, "psr": 0})
    why, _ = cpu.run(100)
    assert why == Exit.SYSCALL
    st = cpu.get_state()
    assert st["psr"] & U
    assert st["psr"] & (Z | N | L) == N | L
    assert st["r"][5] & (Z | N | L) == N | L


def test_set_state_replaces_pending_compare_flags() -> None:
    cpu = Cpu(1 << 20)
    run_code(cpu, CMPW_R1_R2, r1=5, r2=5)
    assert cpu.psr & Z
    cpu.psr = N
    assert cpu.psr & (Z | N | L) == N
    cpu.write(CODE, code(SGT_R7, SEQ_R6, SVC))
    cpu.pc = CODE
    assert cpu.run(10)[0] == Exit.SYSCALL
    assert cpu.reg(7) == 1 and cpu.reg(6) == 0


# -- the budget is exact ------------------------------------------------------

def _boot(elf: str) -> Cpu:
    from aemu.hw.loader import load_elf

    cpu = Cpu()
    load_elf(cpu, str(Path(__file__).resolve().parent / "firmware" / elf))
    return cpu


def _serve(cpu: Cpu) -> bool:
    """Minimal host calls: write succeeds, exit stops, anything else returns 0."""
    r = cpu.get_state()["r"]
    if r[0] == 0x410:
        return False
    cpu.set_reg(0, r[5] if r[0] in (0x403, 0x404) else 0)
    return True


def _trace_pcs(elf: str, n: int) -> list[int]:
    cpu, pcs = _boot(elf), []
    while len(pcs) < n:
        why, done = cpu.run(1)
        if done:
            pcs.append(cpu.pc)
        if why == Exit.SYSCALL and not _serve(cpu):
            break
    return pcs


REFERENCE_INSNS = 30_000


@pytest.fixture(scope="module")
def reference_pcs() -> list[int]:
    return _trace_pcs("sieve-O2.elf", REFERENCE_INSNS)


@pytest.mark.parametrize("budget", [2, 3, 7, 100, 1000, 4095, 4096, 4097, 10007])
def test_every_budget_stops_exactly(budget: int, reference_pcs: list[int]) -> None:
    """Slices of any size stop after exactly `budget` instructions, at the pc a
    single-stepped twin reached after the same count (fast and precise modes)."""
    cpu, total = _boot("sieve-O2.elf"), 0
    while total + budget <= len(reference_pcs):
        why, done = cpu.run(budget)
        total += done
        if why == Exit.BUDGET:
            assert done == budget
        elif why == Exit.SYSCALL:
            assert _serve(cpu)
        else:
            pytest.fail(f"unexpected {why!r}")
        assert cpu.pc == reference_pcs[total - 1], f"after {total} instructions"
        assert cpu.insn_count == total


def test_pc_wraps_at_16_mib() -> None:
    """With more than 16 MiB of RAM, stepping past 0xFFFFFE wraps the 24-bit pc
    to 0 (and never indexes the decode cache out of bounds)."""
    cpu = Cpu(20 << 20)
    cpu.write(0xFFFFFC, code(0x2C00, 0x2C00))   # nop; nop
    cpu.write(0, code(SVC))
    cpu.set_state({"pc": 0xFFFFFC})
    why, n = cpu.run(10)
    assert (why, n, cpu.pc) == (Exit.SYSCALL, 3, 2)
    cpu.write(0xFFFFFE, code(SVC))                # excp svc as the last parcel
    cpu.set_state({"pc": 0xFFFFFE})
    why, n = cpu.run(10)
    assert (why, n, cpu.pc) == (Exit.SYSCALL, 1, 0)


# -- shadowed MMIO registers ---------------------------------------------------

def _poll_once(cpu: Cpu) -> int:
    """movd $0x20000,(r1,r0); loadw 2(r1,r0),r2; excp svc -> r2."""
    cpu.set_state({"pc": CODE})
    why, _ = cpu.run(10)
    assert why == Exit.SYSCALL
    return cpu.reg(2)


def test_shadowed_register_reads_skip_the_handler() -> None:
    cpu = Cpu(1 << 16)
    calls: list[int] = []
    cpu.map_mmio(0x20000, 0x100, lambda off, size: calls.append(off) or 0x1234,
                 lambda off, size, value: False)
    cpu.write(CODE, code((0x0502, 0x0000), 0x9120, SVC))
    assert _poll_once(cpu) == 0x1234 and calls == [2]
    cpu.mmio_shadow(0x20000, 2, 2, 0xBEEF)
    assert _poll_once(cpu) == 0xBEEF and calls == [2]          # no call
    cpu.mmio_shadow(0x20000, 4, 2, 0x1111)                       # another offset: no effect
    assert _poll_once(cpu) == 0xBEEF
    cpu.mmio_shadow(0x20000, 2, 2, None)                         # removed: the handler again
    assert _poll_once(cpu) == 0x1234 and calls == [2, 2]


def test_shadow_value_changes_at_its_cycle() -> None:
    cpu = Cpu(1 << 16)
    cpu.map_mmio(0x20000, 0x100, lambda off, size: 0, lambda off, size, value: False)
    cpu.write(CODE, code((0x0502, 0x0000), 0x9120, SVC))
    start = cpu.insn_count
    # the loadw is the 2nd instruction of each 3-instruction probe: 1 completed before it
    cpu.mmio_shadow(0x20000, 2, 2, 1, before=0, at_cycle=start + 1 + 3)
    assert _poll_once(cpu) == 0          # read at cycle start+1 < at
    assert _poll_once(cpu) == 1          # read at cycle start+4 == at
    cpu.mmio_shadow(0x20000, 2, 2, 1, before=0, at_cycle=cpu.insn_count + 1 + 100)
    cpu.cycle_offset = 100               # idle time counts too
    assert _poll_once(cpu) == 1
