"""Per-instruction tests: Bcond (16/32/48-bit), BEQ0/BNE0, BAL, JAL, Jcond/jump, and
budget exactness of Cpu.run().

Written from cr16c-isa.md sections 2.4, 3.4, 4.12 and 5 (hardware semantics:
48-bit `bal pair` links (PC+6)>>1, beq0/bne0 n=15 branches +32).
"""
from __future__ import annotations

import pytest

from insn_helpers import (
    compare_with_assembler, popret, push, pop, excp, lpr, lprd, spr, sprd, scond, jusr, NOP, C, F, L, N, SVC, Z, Exit, all_flag_combos, bal32, bal48, bcond16, bcond32, bcond48, beq0,
    cond_true, exec_one, jal, jal2, jcond, jump, load, new_cpu, op_imm, pair_of, set_regs,
)

AT = 0x40000            # branch instructions live here (room for +-256 KiB)


@pytest.fixture
def cpu():
    return new_cpu()


def psr_for(c: int, want: bool) -> int:
    for psr in all_flag_combos():
        if cond_true(c, psr) == want:
            return psr
    raise AssertionError


# =========================================================================== Bcond
DISP9 = [2, 4, 0x22, 254, -2, -4, -254, 0]   # -256 would be e = 0x80, the escape
DISP17 = [4, 0x100, 0x1000, 0xFFFE, -2, -0x200, -0x10000, 0x8000, -0x8000]
DISP25 = [6, 0x12344, 0x80000, 0xBFFFE, -6, -0x12344, -0x40000]


@pytest.mark.parametrize("c", range(15))
@pytest.mark.parametrize("disp", DISP9)
def test_bcond16(cpu, c, disp):
    insn = bcond16(c, disp)
    assert len(insn) == 1
    for taken in (True, False) if c != 14 else (True,):
        psr = psr_for(c, taken)
        st = exec_one(cpu, insn, at=AT, psr=psr)
        assert st["pc"] == (AT + disp if taken else AT + 2), (c, disp, taken)
        assert st["psr"] == psr


@pytest.mark.parametrize("c", range(15))
@pytest.mark.parametrize("disp", DISP17)
def test_bcond32(cpu, c, disp):
    insn = bcond32(c, disp)
    for taken in (True, False) if c != 14 else (True,):
        psr = psr_for(c, taken)
        st = exec_one(cpu, insn, at=AT, psr=psr)
        assert st["pc"] == (AT + disp if taken else AT + 4), (c, hex(disp), taken)


@pytest.mark.parametrize("c", range(15))
@pytest.mark.parametrize("disp", DISP25)
def test_bcond48(cpu, c, disp):
    insn = bcond48(c, disp)
    for taken in (True, False) if c != 14 else (True,):
        psr = psr_for(c, taken)
        st = exec_one(cpu, insn, at=AT, psr=psr)
        assert st["pc"] == (AT + disp if taken else AT + 6), (c, hex(disp), taken)


@pytest.mark.parametrize("c", range(14))
def test_bcond_every_flag_combination(cpu, c):
    insn = bcond16(c, 0x40)
    for psr in all_flag_combos():
        st = exec_one(cpu, insn, at=AT, psr=psr)
        assert st["pc"] == (AT + 0x40 if cond_true(c, psr) else AT + 2), (c, hex(psr))


def test_bcond16_escape_only_with_low_nibble_zero(cpu):
    """P0[11:8]=8, P0[3:0]=1 is e=0x81 (-254), a 16-bit branch, not the escape."""
    st = exec_one(cpu, (0x18E1,), at=AT)
    assert st["pc"] == AT - 254
    st = exec_one(cpu, (0x18E0, 0x0010), at=AT)
    assert st["pc"] == AT + 0x10


def test_branch_example_encodings():
    assert bcond16(0, 0x22) == (0x1101,)
    assert bcond16(1, -4) == (0x1F1E,)
    assert bcond32(14, -0x200) == (0x18E0, 0xFE01)
    assert bcond48(0, 0xFF1F12) == (0x0010, 0x0F0F, 0x1F12)
    assert bal32(0x22) == (0xC000, 0x0022)
    assert bal32(-0x100) == (0xC0FF, 0xFF01)
    assert beq0(True, False, 2, 2) == (0x0E22,)
    assert jal(1) == (0x00D1,) and jump(14) == (0x0AEE,)
    assert jal2(5, 1) == (0x0014, 0x8015)


def test_far_branch_target_outside_ram_faults_at_fetch(cpu):
    """br +0xF00000 (48-bit form) lands outside 1 MiB RAM: IAD when fetching there."""
    load(cpu, AT, bcond48(14, 0xF00000))
    set_regs(cpu, pc=AT, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert n == 1
    assert cpu.fault[:2] == (12, AT + 0xF00000)
    assert cpu.pc == AT + 0xF00000


# =========================================================================== beq0 / bne0
@pytest.mark.parametrize("word", [False, True])
@pytest.mark.parametrize("neq", [False, True])
@pytest.mark.parametrize("n", [0, 1, 7, 15])
@pytest.mark.parametrize("val", [0x0000, 0x0001, 0x0100, 0x8000, 0xFF00, 0x00FF])
def test_beq0_bne0(cpu, word, neq, n, val):
    zero = (val & (0xFFFF if word else 0xFF)) == 0
    taken = zero != neq
    st = exec_one(cpu, beq0(word, neq, n, 5), regs={5: val}, at=AT, psr=Z | C)
    assert st["pc"] == (AT + 2 * n + 2 if taken else AT + 2), (word, neq, n, hex(val))
    assert st["psr"] == Z | C
    assert st["r"][5] == val


@pytest.mark.parametrize("word", [False, True])
def test_beq0_on_r12_uses_low_bits(cpu, word):
    st = exec_one(cpu, beq0(word, False, 15, 12), regs={12: 0x12340000}, at=AT)
    assert st["pc"] == AT + 32


# =========================================================================== BAL / JAL
@pytest.mark.parametrize("disp", [0x22, -0x100, 0x7FFFE, -0x3FFFE, 4])
def test_bal_ra_32bit(cpu, disp):
    st = exec_one(cpu, bal32(disp), regs={14: 0xFFFFFFFF}, at=AT, psr=Z)
    assert st["pc"] == AT + disp
    assert st["r"][14] == (AT + 4) >> 1
    assert st["psr"] == Z


@pytest.mark.parametrize("q", [0, 5, 11, 13, 14, 15])
@pytest.mark.parametrize("disp", [0x1234, -0x1234])
def test_bal_pair_48bit_links_pc_plus_6(cpu, q, disp):
    st = exec_one(cpu, bal48(q, disp), regs={12: 0xABCD0000}, at=AT)
    assert st["pc"] == AT + disp
    assert pair_of(st["r"], q) == (AT + 6) >> 1
    if q == 11:
        assert st["r"][12] >> 16 == 0xABCD


@pytest.mark.parametrize("p", [0, 3, 11, 12, 13])
def test_jal_ra(cpu, p):
    target = 0x2468A
    pairs = {p: target >> 1}
    regs = {12: 0x55550000} if p == 11 else {}
    st = exec_one(cpu, jal(p), regs=regs, pairs=pairs, at=AT)
    assert st["pc"] == target
    assert st["r"][14] == (AT + 2) >> 1


@pytest.mark.parametrize("q,p", [(5, 1), (0, 2), (13, 12), (11, 0), (14, 4)])
def test_jal_link_pair(cpu, q, p):
    target = 0x13570
    st = exec_one(cpu, jal2(q, p), pairs={p: target >> 1}, at=AT)
    assert st["pc"] == target
    assert pair_of(st["r"], q) == (AT + 4) >> 1


def test_jal_ra_through_ra(cpu):
    """jal (ra): the target is the old ra, then ra gets the link."""
    st = exec_one(cpu, jal(14), regs={14: 0x3000 >> 1}, at=AT)
    assert st["pc"] == 0x3000
    assert st["r"][14] == (AT + 2) >> 1


@pytest.mark.parametrize("c", range(14))
def test_jcond(cpu, c):
    target = 0x2220
    for taken in (True, False):
        psr = psr_for(c, taken)
        st = exec_one(cpu, jcond(c, 2), pairs={2: target >> 1}, at=AT, psr=psr)
        assert st["pc"] == (target if taken else AT + 2)
        assert st["psr"] == psr


@pytest.mark.parametrize("p", [0, 11, 12, 14, 15])
def test_jump(cpu, p):
    target = 0x9876
    regs = {12: 0x77770000} if p == 11 else {}
    st = exec_one(cpu, jump(p), regs=regs, pairs={p: target >> 1}, at=AT, psr=Z | N)
    assert st["pc"] == target
    assert st["psr"] == Z | N


def test_jump_masks_target_to_24_bits(cpu):
    st = exec_one(cpu, jump(2), pairs={2: 0x80000900}, at=AT)
    assert st["pc"] == 0x1200


def test_call_return_round_trip(cpu):
    """bal (ra) to a function that does `jump (ra)`; the halved link returns right."""
    # AT: bal (ra), +0x100 ; AT+4: excp svc      AT+0x100: movw $7, r0 ; jump (ra)
    load(cpu, AT, bal32(0x100), SVC)
    load(cpu, AT + 0x100, op_imm("movw", 7, 0), jump(14))
    set_regs(cpu, {0: 0}, pc=AT, psr=0)
    why, n = cpu.run(100)
    assert why == Exit.SYSCALL
    assert n == 4
    assert cpu.reg(0) == 7
    assert cpu.pc == AT + 6


# =========================================================================== budget
def test_budget_exact_on_infinite_loop(cpu):
    load(cpu, AT, bcond16(14, 0))
    set_regs(cpu, pc=AT, psr=0)
    start = cpu.insn_count
    assert cpu.run(1000) == (Exit.BUDGET, 1000)
    assert cpu.run(1) == (Exit.BUDGET, 1)
    assert cpu.insn_count - start == 1001
    assert cpu.pc == AT


@pytest.mark.parametrize("budget", [1, 2, 3, 7, 100, 1001])
def test_budget_exact_counting_loop(cpu, budget):
    # AT: addw $1, r0 ; AT+2: br AT
    load(cpu, AT, op_imm("addw", 1, 0), bcond16(14, -2))
    set_regs(cpu, {0: 0}, pc=AT, psr=0)
    why, n = cpu.run(budget)
    assert (why, n) == (Exit.BUDGET, budget)
    assert cpu.reg(0) == (budget + 1) // 2
    assert cpu.pc == (AT + 2 if budget % 2 else AT)


def test_budget_stops_before_exit_instruction(cpu):
    load(cpu, AT, op_imm("movw", 1, 0), op_imm("movw", 2, 0), SVC)
    set_regs(cpu, {0: 0}, pc=AT, psr=0)
    assert cpu.run(2) == (Exit.BUDGET, 2)
    assert cpu.pc == AT + 4 and cpu.reg(0) == 2
    assert cpu.run(5) == (Exit.SYSCALL, 1)
    assert cpu.pc == AT + 6


def test_insn_count_setter(cpu):
    cpu.insn_count = 12345
    load(cpu, AT, bcond16(14, 0))
    set_regs(cpu, pc=AT, psr=0)
    cpu.run(5)
    assert cpu.insn_count == 12350


def test_flags_unchanged_by_branches(cpu):
    for insn in (bcond16(14, 8), bcond32(14, 8), bcond48(14, 8), bal32(8), jump(0)):
        st = exec_one(cpu, insn, pairs={0: 0x100}, at=AT, psr=C | L | F | Z | N)
        assert st["psr"] == C | L | F | Z | N


@pytest.mark.toolchain
def test_branch_encodings_match_linked_assembler(tmp_path):
    """Assemble with labels, link at 0x1000, compare with the encoders."""
    # addresses: 0x1000 beq L1 ; nop ; L1=0x1004: bne _start ; br L2 (32-bit) ; .space ; ...
    cases = [
        ("  beq L1", bcond16(0, 4)), ("  nop", (NOP,)),
        ("L1: bne _start", bcond16(1, -4)),
        ("  br L2", bcond32(14, 0x304)), ("  .space 0x300", (0,) * 0x180),
        ("L2: bcs L3", bcond48(2, 0x20006)), ("  .space 0x20000", (0,) * 0x10000),
        ("L3: bal (ra), _start", bal32(0x1000 - 0x21310)),
        ("  bal (r1,r0), _start", bal48(0, 0x1000 - 0x21314)),
        ("  beq0b r2, L4", beq0(False, False, 2, 2)), ("  nop", (NOP,)), ("  nop", (NOP,)),
        ("L4: bne0w r3, L5", beq0(True, True, 15, 3)),
    ] + [("  nop", (NOP,))] * 15 + [
        ("L5: bgt L4", bcond16(6, -32)),
        ("  ble L5", bcond16(7, -2)),
        ("  bhs L6", bcond32(11, 0x204)), ("  .space 0x200", (0,) * 0x100),
        ("L6: blo L5", bcond32(10, -(2 + 2 + 4 + 0x200))), ("  bls L6", bcond16(5, -4)),
        ("  jal (r2,r1)", jal(1)), ("  jal (r6,r5), (r2,r1)", jal2(5, 1)), ("  jusr (r1,r0)", jusr(0)),
        ("  jump (ra)", jump(14)), ("  jlt (r3,r2)", jcond(12, 2)), ("  jfs (r12)", jcond(8, 12)),
        ("  push $3, r11", push(3, 11)), ("  pop $7, r7", pop(7, 7)), ("  popret $2, r6, ra", popret(2, 6, True)),
        ("  push ra", push(2, 14)), ("  popret ra", popret(2, 14)),
        ("  lprd (r1,r0), intbase", lprd(0, 10)), ("  sprd isp, (r3,r2)", sprd(12, 2)),
        ("  spr usph, r4", spr(15, 4)), ("  lpr r5, car1l", lpr(5, 6)), ("  lpr r1, psr", lpr(1, 9)),
        ("  excp bpt", excp(8)), ("  excp svc", excp(5)), ("  excp dvz", excp(6)), ("  excp und", excp(10)),
        ("  retx", (0x0003,)), ("  di", (0x0004,)), ("  ei", (0x0005,)), ("  wait", (0x0006,)),
        ("  eiwait", (0x0007,)), ("  sge r3", scond(13, 3)), ("  seq r11", scond(0, 11)),
    ]
    compare_with_assembler(tmp_path, cases, link_at=0x1000)
