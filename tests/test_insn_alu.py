"""Per-instruction tests: moves, 8/16/32-bit ALU, multiply/MAC, shifts, tbit, Scond.

Written from cr16c-isa.md sections 1.1/1.2, 3.2, 3.5, 4.1-4.7 and 5 (hardware
semantics: correct carry/borrow, no simulator bugs from section 8.1).
"""
from __future__ import annotations

import pytest

from insn_helpers import (
    compare_with_assembler, C, CODE, F, L, N, Z, Exit, add_model, addd_imm20, addd_reg, all_flag_combos, ashub_imm,
    ashud_imm, ashuw_imm, cmp_model, cmpd_reg, cond_true, exec_one, lshb_imm, lshd_imm,
    lshw_imm, mac, movd_imm20, movd_reg, movxb, movxw, movzb, movzw, mulsb, mulsw, muluw,
    new_cpu, op_dreg, op_imm, op_imm4, op_imm16, op_imm32, op_reg, p2b, pair_of, scond,
    shift_reg, sub_model, sx, tbit_imm, tbit_reg,
)

ALL_FLAGS = C | L | F | Z | N


@pytest.fixture
def cpu():
    return new_cpu()


def base_regs():
    """Distinct recognisable values in every register."""
    r = {i: 0x1100 * (i + 1) & 0xFFFF for i in range(12)}
    r.update({12: 0xC12C0C12, 13: 0xD13D0D13, 14: 0x0000E14E, 15: 0x00008000})
    return r


def check_regs(state, expect: dict):
    """All registers equal their initial values (set by step()) overridden by `expect`."""
    want = dict(state["_init"])
    want.update(expect)
    got = {i: state["r"][i] for i in range(16)}
    assert got == want, {i: (hex(got[i]), hex(want[i])) for i in range(16) if got[i] != want[i]}


def step(cpu, insn, regs=None, pairs=None, psr=0):
    r = base_regs()
    r.update(regs or {})
    st = exec_one(cpu, insn, regs=r, pairs=pairs, psr=psr)
    init = {i: (v & (0xFFFF if i < 12 else 0xFFFFFFFF)) for i, v in r.items()}
    for p, v in (pairs or {}).items():
        if p < 11:
            init[p], init[p + 1] = v & 0xFFFF, v >> 16
        elif p == 11:
            init[11], init[12] = v & 0xFFFF, (init[12] & 0xFFFF0000) | v >> 16
        else:
            init[p] = v
    st["_init"] = init
    return st


# =========================================================================== add / sub family
ADDSUB = {
    # op: (bits, kind, carry-in used, writes flags)
    "addb": (8, "add", False, True), "addw": (16, "add", False, True),
    "addcb": (8, "add", True, True), "addcw": (16, "add", True, True),
    "addub": (8, "add", False, False), "adduw": (16, "add", False, False),
    "subb": (8, "sub", False, True), "subw": (16, "sub", False, True),
    "subcb": (8, "sub", True, True), "subcw": (16, "sub", True, True),
}

EDGE16 = [
    (0, 0), (1, 1), (0x7FFF, 1), (1, 0x7FFF), (0xFFFF, 1), (0xFFFF, 0xFFFF), (0x8000, 0x8000),
    (0x8000, 0xFFFF), (0x7FFF, 0x7FFF), (0, 1), (1, 0), (0x8000, 1), (0x7FFF, 0xFFFF),
    (0x1234, 0xEDCC), (0xFFFF, 0), (0, 0xFFFF), (0x7FFF, 0x8000), (0x8000, 0x7FFF),
    (0x8000, 0), (0x7FFF, 0),
]
EDGE8 = [
    (0, 0), (1, 1), (0x7F, 1), (1, 0x7F), (0xFF, 1), (0xFF, 0xFF), (0x80, 0x80), (0x80, 0xFF),
    (0x7F, 0x7F), (0, 1), (1, 0), (0x80, 1), (0x7F, 0xFF), (0x12, 0xEE), (0xFF, 0), (0, 0xFF),
    (0x7F, 0x80), (0x80, 0x7F), (0x80, 0), (0x7F, 0),
]
PSR_INITS = [0, C, Z | N | L | F, ALL_FLAGS]


def expect_addsub(op, d, s, psr):
    bits, kind, usec, flags = ADDSUB[op]
    cin = (psr & C) if usec else 0
    model = add_model if kind == "add" else sub_model
    r, c, f = model(d, s, cin, bits)
    out_psr = psr
    if flags:
        out_psr = (psr & ~(C | F)) | (C if c else 0) | (F if f else 0)
    return r, out_psr


@pytest.mark.parametrize("op", list(ADDSUB))
@pytest.mark.parametrize("case", range(len(EDGE16)))
def test_addsub_reg(cpu, op, case):
    """rD = rD op rS (r1 op= r2) for every edge pair and carry-in, all flags checked."""
    bits = ADDSUB[op][0]
    d, s = (EDGE8 if bits == 8 else EDGE16)[case]
    for psr in PSR_INITS:
        dfull = (0xA500 | d) if bits == 8 else d
        sfull = (0x5A00 | s) if bits == 8 else s
        st = step(cpu, op_reg(op, 2, 1), regs={1: dfull, 2: sfull}, psr=psr)
        r, want_psr = expect_addsub(op, d, s, psr)
        if bits == 8:
            r |= 0xA500  # bits 15:8 preserved
        check_regs(st, {1: r, 2: sfull})
        assert st["psr"] == want_psr, (op, hex(d), hex(s), hex(psr), hex(st["psr"]), hex(want_psr))


@pytest.mark.parametrize("op", list(ADDSUB))
@pytest.mark.parametrize("d,imm", [(0x7FFF, 0x0001), (0xFFFF, 0x0001), (0x0000, 0x0001),
                                   (0x8000, 0x7FFF), (0x1234, 0x8765), (0x00FF, 0x1201)])
def test_addsub_imm16(cpu, op, d, imm):
    """Escaped immediate (imm4 field 11, P1 = imm16); byte forms use P1[7:0] only."""
    bits = ADDSUB[op][0]
    for psr in (0, C | Z):
        dfull = (0x3C00 | (d & 0xFF)) if bits == 8 else d
        st = step(cpu, op_imm16(op, imm, 3), regs={3: dfull}, psr=psr)
        r, want_psr = expect_addsub(op, d & (0xFF if bits == 8 else 0xFFFF), imm, psr)
        if bits == 8:
            r |= 0x3C00
        check_regs(st, {3: r})
        assert st["psr"] == want_psr


@pytest.mark.parametrize("op", list(ADDSUB))
@pytest.mark.parametrize("field", [0, 1, 2, 7, 8, 9, 10, 12, 15])
def test_addsub_imm4(cpu, op, field):
    """imm4 values: 9 means -1 (all ones in the operand size), others unsigned."""
    bits = ADDSUB[op][0]
    m = (1 << bits) - 1
    imm = m if field == 9 else field
    for d in (0x0000, 0x00FE, 0x7FF1, 0xFFFF):
        st = step(cpu, op_imm4(op, field, 4), regs={4: d}, psr=C)
        r, want_psr = expect_addsub(op, d & m, imm, C)
        if bits == 8:
            r |= d & 0xFF00
        check_regs(st, {4: r})
        assert st["psr"] == want_psr, (op, field, hex(d))


@pytest.mark.parametrize("op", ["addw", "subw", "addcw", "subcw", "adduw"])
def test_addsub_same_register(cpu, op):
    """addw r5, r5 uses the register for both operands."""
    st = step(cpu, op_reg(op, 5, 5), regs={5: 0x9001}, psr=C)
    r, want_psr = expect_addsub(op, 0x9001, 0x9001, C)
    check_regs(st, {5: r})
    assert st["psr"] == want_psr


def test_addcw_register_uses_source(cpu):
    """Simulator bug 8.1#2 (rD + rD + C) must not be reproduced."""
    st = step(cpu, op_reg("addcw", 2, 1), regs={1: 0x0010, 2: 0x0300}, psr=C)
    check_regs(st, {1: 0x0311, 2: 0x0300})


def test_subcb_preserves_high_byte(cpu):
    """Simulator bug 8.1#3: subcb writes all 16 bits; hardware preserves 15:8."""
    st = step(cpu, op_reg("subcb", 2, 1), regs={1: 0x7700, 2: 0x0001}, psr=C)
    check_regs(st, {1: 0x77FE, 2: 0x0001})
    assert st["psr"] & C


@pytest.mark.parametrize("op", ["addw", "subw", "addcw", "adduw", "andw", "orw", "xorw", "movw", "mulw"])
@pytest.mark.parametrize("d", [12, 13, 14, 15])
def test_word_op_on_32bit_register_preserves_high(cpu, op, d):
    """16-bit writes to r12..r15 change bits 15:0 only (carry from bit 15 is not propagated)."""
    high = 0xABCD0000
    st = step(cpu, op_reg(op, 2, d), regs={d: high | 0xFFFF, 2: 0x0003})
    low = {"addw": 0x0002, "subw": 0xFFFC, "addcw": 0x0002, "adduw": 0x0002, "andw": 0x0003,
           "orw": 0xFFFF, "xorw": 0xFFFC, "movw": 0x0003, "mulw": 0xFFFD}[op]
    check_regs(st, {d: high | low, 2: 0x0003})


@pytest.mark.parametrize("op", ["addb", "movb", "andb", "orb", "xorb", "subb"])
def test_byte_op_on_r12_preserves_bits_31_8(cpu, op):
    st = step(cpu, op_reg(op, 2, 12), regs={12: 0x123456F0, 2: 0x770F})
    low = {"addb": 0xFF, "movb": 0x0F, "andb": 0x00, "orb": 0xFF, "xorb": 0xFF, "subb": 0xE1}[op]
    check_regs(st, {12: 0x12345600 | low, 2: 0x770F})


def test_word_source_from_r12_uses_low_half(cpu):
    st = step(cpu, op_reg("addw", 12, 1), regs={1: 1, 12: 0x7FFF0005})
    check_regs(st, {1: 6})


def test_add_carry_out_of_bit15_only_sets_c(cpu):
    """0xFFFF + 1: result 0, C=1, F=0 and Z is NOT set by arithmetic."""
    st = step(cpu, op_imm("addw", 1, 0), regs={0: 0xFFFF}, psr=0)
    check_regs(st, {0: 0})
    assert st["psr"] == C


def test_add_clears_c_and_f_leaves_znl(cpu):
    st = step(cpu, op_imm("addw", 1, 0), regs={0: 0x0001}, psr=ALL_FLAGS)
    assert st["psr"] == Z | N | L


# =========================================================================== logic
LOGIC = {"andb": (8, lambda a, b: a & b), "andw": (16, lambda a, b: a & b),
         "orb": (8, lambda a, b: a | b), "orw": (16, lambda a, b: a | b),
         "xorb": (8, lambda a, b: a ^ b), "xorw": (16, lambda a, b: a ^ b)}


@pytest.mark.parametrize("op", list(LOGIC))
@pytest.mark.parametrize("d,s", [(0xF0F0, 0x0FF0), (0xFFFF, 0x0000), (0x0000, 0xFFFF), (0x5AA5, 0xA55A)])
@pytest.mark.parametrize("form", ["reg", "imm16", "imm4"])
def test_logic(cpu, op, d, s, form):
    bits, fn = LOGIC[op]
    m = (1 << bits) - 1
    if form == "reg":
        insn, regs, sv = op_reg(op, 7, 6), {6: d, 7: s}, s
    elif form == "imm16":
        insn, regs, sv = op_imm16(op, s, 6), {6: d}, s
    else:
        field = 9 if s == 0xFFFF else (s & 0xF if (s & 0xF) != 11 else 10)
        insn, regs, sv = op_imm4(op, field, 6), {6: d}, (0xFFFF if field == 9 else field)
    st = step(cpu, insn, regs=regs, psr=ALL_FLAGS)
    r = fn(d & m, sv & m)
    if bits == 8:
        r |= d & 0xFF00
    exp = {6: r}
    if form == "reg":
        exp[7] = s
    check_regs(st, exp)
    assert st["psr"] == ALL_FLAGS  # logical ops write no flags


# =========================================================================== compare
CMP16 = [(0x7FFF, 0x8000), (0x8000, 0x7FFF), (0xFFFF, 0), (0, 0xFFFF), (0, 0), (0x8000, 0x8000),
         (0xFFFF, 0xFFFF), (1, 2), (2, 1), (0x7FFF, 0xFFFF), (0xFFFF, 0x7FFF), (0x8000, 0xFFFF),
         (0xFFFF, 0x8000), (0x7FFF, 0x7FFF), (0x0000, 0x8000)]


@pytest.mark.parametrize("s,d", CMP16)
@pytest.mark.parametrize("form", ["reg", "imm16"])
def test_cmpw(cpu, s, d, form):
    for init in (0, C | F, ALL_FLAGS):
        if form == "reg":
            st = step(cpu, op_reg("cmpw", 2, 1), regs={1: d, 2: s}, psr=init)
            check_regs(st, {1: d, 2: s})
        else:
            st = step(cpu, op_imm16("cmpw", s, 1), regs={1: d}, psr=init)
            check_regs(st, {1: d})
        assert st["psr"] == (init & (C | F)) | cmp_model(s, d, 16), (hex(s), hex(d))


@pytest.mark.parametrize("s,d", [(0x7F, 0x80), (0x80, 0x7F), (0xFF, 0), (0, 0xFF), (0, 0), (0x80, 0xFF),
                                 (0xFF, 0x80), (0x01, 0x02), (0x7F, 0x7F)])
def test_cmpb_ignores_high_bytes(cpu, s, d):
    st = step(cpu, op_reg("cmpb", 2, 1), regs={1: 0x1200 | d, 2: 0x3400 | s}, psr=0)
    assert st["psr"] == cmp_model(s, d, 8)
    st = step(cpu, op_imm16("cmpb", 0x5600 | s, 1), regs={1: 0x1200 | d}, psr=0)
    assert st["psr"] == cmp_model(s, d, 8)


@pytest.mark.parametrize("field", [0, 1, 8, 9, 15])
@pytest.mark.parametrize("d", [0, 1, 0xF, 0xFFFF, 0x8000])
def test_cmpw_imm4(cpu, field, d):
    s = 0xFFFF if field == 9 else field
    st = step(cpu, op_imm4("cmpw", field, 0), regs={0: d}, psr=0)
    assert st["psr"] == cmp_model(s, d, 16)


CMP32 = [(0x7FFFFFFF, 0x80000000), (0x80000000, 0x7FFFFFFF), (0xFFFFFFFF, 0), (0, 0xFFFFFFFF),
         (0x12345678, 0x12345678), (0x00010000, 0x0000FFFF), (0x0000FFFF, 0x00010000),
         (0xFFFF8000, 0x00008000)]


@pytest.mark.parametrize("s,d", CMP32)
def test_cmpd_reg_and_imm32(cpu, s, d):
    st = step(cpu, cmpd_reg(2, 4), pairs={2: s, 4: d}, psr=C | F)
    assert st["psr"] == (C | F) | cmp_model(s, d, 32)
    assert pair_of(st["r"], 4) == d and pair_of(st["r"], 2) == s
    st = step(cpu, op_imm32("cmpd", s, 4), pairs={4: d}, psr=0)
    assert st["psr"] == cmp_model(s, d, 32)


@pytest.mark.parametrize("imm", [0x8000, 0xFFFF, 0x7FFF, 0x1234])
def test_cmpd_imm16_sign_extended(cpu, imm):
    sval = sx(imm, 16) & 0xFFFFFFFF
    st = step(cpu, op_imm16("cmpd", imm, 13), regs={13: sval}, psr=0)
    assert st["psr"] == Z, "escaped imm16 of cmpd must be sign-extended"
    st = step(cpu, op_imm16("cmpd", imm, 13), regs={13: imm}, psr=0)
    assert st["psr"] == cmp_model(sval, imm, 32)


@pytest.mark.parametrize("field", [9, 0, 5, 15])
def test_cmpd_imm4(cpu, field):
    s = 0xFFFFFFFF if field == 9 else field
    for d in (s, 0, 0x80000000, 0xFFFFFFFF):
        st = step(cpu, op_imm4("cmpd", field, 0), pairs={0: d}, psr=0)
        assert st["psr"] == cmp_model(s, d, 32), (field, hex(d))


def test_cmpb_imm4_minus_one(cpu):
    st = step(cpu, op_imm4("cmpb", 9, 0), regs={0: 0x12FF}, psr=0)
    assert st["psr"] == Z
    st = step(cpu, op_imm4("cmpw", 9, 0), regs={0: 0x12FF}, psr=0)
    assert st["psr"] == cmp_model(0xFFFF, 0x12FF, 16)


REL = {0: lambda a, b, m: a == b, 1: lambda a, b, m: a != b, 4: lambda a, b, m: a > b,
       5: lambda a, b, m: a <= b, 6: lambda a, b, m: sx(a, m) > sx(b, m), 7: lambda a, b, m: sx(a, m) <= sx(b, m),
       10: lambda a, b, m: a < b, 11: lambda a, b, m: a >= b, 12: lambda a, b, m: sx(a, m) < sx(b, m),
       13: lambda a, b, m: sx(a, m) >= sx(b, m)}


@pytest.mark.parametrize("c", list(REL))
@pytest.mark.parametrize("bits", [8, 16, 32])
def test_compare_then_scond_reads_first_cond_second(cpu, c, bits):
    """`cmpX A, B ; sCOND` is true iff `A cond B` (section 5)."""
    vals = {8: [0, 1, 0x7F, 0x80, 0xFF], 16: [0, 1, 0x7FFF, 0x8000, 0xFFFF],
            32: [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]}[bits]
    from insn_helpers import load, set_regs
    for a in vals:
        for b in vals:
            if bits == 32:
                load(cpu, CODE, cmpd_reg(2, 4), scond(c, 0))
                set_regs(cpu, {0: 0x5555}, pairs={2: a, 4: b}, pc=CODE, psr=0)
            else:
                op = "cmpb" if bits == 8 else "cmpw"
                load(cpu, CODE, op_reg(op, 2, 4), scond(c, 0))
                set_regs(cpu, {0: 0x5555, 2: a, 4: b}, pc=CODE, psr=0)
            assert cpu.run(2) == (Exit.BUDGET, 2)
            assert cpu.reg(0) == int(REL[c](a, b, bits)), (c, hex(a), hex(b))


def test_mulsb_result_is_16_bits_for_addressing(cpu):
    """Simulator bug 8.1#15: after mulsb, disp20(rN) must add zx(16-bit rN)."""
    from insn_helpers import load, set_regs, ls_long
    cpu.write(0xFF80 + 0x100, b"\x5A")
    load(cpu, CODE, mulsb(1, 2), ls_long("loadb", 3, 0, 2, 0x100))
    set_regs(cpu, {1: 0x0080, 2: 0x0001, 3: 0}, pc=CODE, psr=0)  # -128 * 1
    assert cpu.run(2) == (Exit.BUDGET, 2)
    assert cpu.reg(2) == 0xFF80
    assert cpu.reg(3) == 0x5A


def test_cmpd_pair11_uses_r12_low(cpu):
    """pair code 11 = (r12_L : r11)."""
    st = step(cpu, op_imm32("cmpd", 0x56781234, 11), regs={11: 0x1234, 12: 0xFFFF5678}, psr=0)
    assert st["psr"] == Z


# =========================================================================== moves
@pytest.mark.parametrize("field,val", [(0, 0), (1, 1), (8, 8), (9, 0xFFFF), (10, 10), (12, 12), (15, 15)])
def test_movw_imm4(cpu, field, val):
    st = step(cpu, op_imm4("movw", field, 3), psr=ALL_FLAGS)
    check_regs(st, {3: val})
    assert st["psr"] == ALL_FLAGS


@pytest.mark.parametrize("field,val", [(0, 0), (9, 0xFF), (15, 15)])
def test_movb_imm4_preserves_high(cpu, field, val):
    st = step(cpu, op_imm4("movb", field, 3), regs={3: 0xABCD})
    check_regs(st, {3: 0xAB00 | val})


@pytest.mark.parametrize("imm", [0x0000, 0x8000, 0xFFFF, 0x1234])
def test_movw_imm16(cpu, imm):
    st = step(cpu, op_imm16("movw", imm, 11))
    check_regs(st, {11: imm})
    st = step(cpu, op_imm16("movb", imm, 11), regs={11: 0x9900})
    check_regs(st, {11: 0x9900 | (imm & 0xFF)})


def test_movw_reg_and_movb_reg(cpu):
    st = step(cpu, op_reg("movw", 0, 10), regs={0: 0xBEEF})
    check_regs(st, {0: 0xBEEF, 10: 0xBEEF})
    st = step(cpu, op_reg("movb", 0, 10), regs={0: 0xBEEF, 10: 0x1234})
    check_regs(st, {0: 0xBEEF, 10: 0x12EF})


@pytest.mark.parametrize("d", [12, 13, 14, 15])
def test_movw_imm_to_32bit_register_preserves_high(cpu, d):
    st = step(cpu, op_imm4("movw", 5, d), regs={d: 0xABCD1234})
    check_regs(st, {d: 0xABCD0005})
    st = step(cpu, op_imm16("movw", 0x8001, d), regs={d: 0xABCD1234})
    check_regs(st, {d: 0xABCD8001})


def test_movw_from_r12_reads_low(cpu):
    st = step(cpu, op_reg("movw", 12, 0), regs={12: 0x12345678})
    check_regs(st, {0: 0x5678})


@pytest.mark.parametrize("field,val", [(9, 0xFFFFFFFF), (0, 0), (7, 7), (15, 15)])
@pytest.mark.parametrize("q", [0, 5, 10, 11, 12, 15])
def test_movd_imm4(cpu, field, val, q):
    st = step(cpu, op_imm4("movd", field, q))
    assert pair_of(st["r"], q) == val
    if q == 11:
        assert st["r"][12] >> 16 == 0xC12C  # r12 high half untouched


@pytest.mark.parametrize("imm,val", [(0x8000, 0xFFFF8000), (0x7FFF, 0x7FFF), (0xFFFF, 0xFFFFFFFF), (0x0404, 0x404)])
def test_movd_imm16_sign_extended(cpu, imm, val):
    st = step(cpu, op_imm16("movd", imm, 1))
    check_regs(st, {1: val & 0xFFFF, 2: val >> 16})


@pytest.mark.parametrize("imm", [0xFFFFF, 0x8000, 0xFFFF, 0x12345, 0x80000])
def test_movd_imm20_zero_extended(cpu, imm):
    st = step(cpu, movd_imm20(imm, 2))
    check_regs(st, {2: imm & 0xFFFF, 3: imm >> 16})
    st = step(cpu, movd_imm20(imm, 14))
    check_regs(st, {14: imm})


@pytest.mark.parametrize("imm", [0xFFFFFFFF, 0x80000000, 0x0FFFFFFF, 0x12345678, 0])
@pytest.mark.parametrize("q", [2, 11, 13])
def test_movd_imm32(cpu, imm, q):
    st = step(cpu, op_imm32("movd", imm, q))
    assert pair_of(st["r"], q) == imm
    if q == 2:
        check_regs(st, {2: imm & 0xFFFF, 3: imm >> 16})
    if q == 11:
        check_regs(st, {11: imm & 0xFFFF, 12: 0xC12C0000 | imm >> 16})


@pytest.mark.parametrize("p,q", [(0, 2), (12, 0), (11, 13), (15, 14), (1, 11), (10, 12)])
def test_movd_reg(cpu, p, q):
    src = pair_of([base_regs()[i] for i in range(16)], p)
    st = step(cpu, movd_reg(p, q))
    assert pair_of(st["r"], q) == src
    assert pair_of(st["r"], p) == src or p in (q, q + 1, q - 1)


def test_movd_pair_code_11_writes_r11_and_r12_low(cpu):
    st = step(cpu, movd_reg(0, 11), regs={0: 0x1111, 1: 0x2222})
    check_regs(st, {0: 0x1111, 1: 0x2222, 11: 0x1111, 12: 0xC12C2222})


@pytest.mark.parametrize("v", [0x0000, 0x007F, 0x0080, 0x12FF, 0xFF01])
def test_movxb_movzb(cpu, v):
    st = step(cpu, movxb(1, 2), regs={1: v})
    check_regs(st, {1: v, 2: sx(v & 0xFF, 8) & 0xFFFF})
    st = step(cpu, movzb(1, 2), regs={1: v})
    check_regs(st, {1: v, 2: v & 0xFF})


def test_movxb_to_r12_preserves_high(cpu):
    st = step(cpu, movxb(1, 12), regs={1: 0x0080, 12: 0x55550000})
    check_regs(st, {1: 0x80, 12: 0x5555FF80})


@pytest.mark.parametrize("v", [0x0000, 0x7FFF, 0x8000, 0xFFFF, 0x1234])
@pytest.mark.parametrize("q", [2, 11, 12])
def test_movxw_movzw(cpu, v, q):
    st = step(cpu, movxw(1, q), regs={1: v})
    assert pair_of(st["r"], q) == sx(v, 16) & 0xFFFFFFFF
    st = step(cpu, movzw(1, q), regs={1: v})
    assert pair_of(st["r"], q) == v


# =========================================================================== 32-bit ALU
ADD32 = [(0xFFFFFFFF, 1), (0x7FFFFFFF, 1), (0x80000000, 0x80000000), (0x80000000, 0xFFFFFFFF),
         (0x0000FFFF, 1), (0, 0), (0x12345678, 0x0FEDCBA8), (0xFFFFFFFF, 0xFFFFFFFF)]


def exp_flags32(kind, d, s, psr):
    r, c, f = (add_model if kind == "add" else sub_model)(d, s, 0, 32)
    return r, (psr & ~(C | F)) | (C if c else 0) | (F if f else 0)


@pytest.mark.parametrize("d,s", ADD32 + [(b, a) for a, b in ADD32])
@pytest.mark.parametrize("form", ["reg", "imm32"])
def test_addd(cpu, d, s, form):
    for psr in (0, ALL_FLAGS):
        insn = addd_reg(2, 4) if form == "reg" else op_imm32("addd", s, 4)
        st = step(cpu, insn, pairs={2: s, 4: d}, psr=psr)
        r, want = exp_flags32("add", d, s, psr)
        assert pair_of(st["r"], 4) == r
        assert st["psr"] == want, (hex(d), hex(s), hex(st["psr"]), hex(want))


@pytest.mark.parametrize("d,s", ADD32 + [(b, a) for a, b in ADD32] + [(0, 1), (0x80000000, 1), (5, 5)])
@pytest.mark.parametrize("form", ["reg", "imm32"])
def test_subd(cpu, d, s, form):
    for psr in (0, ALL_FLAGS):
        insn = op_dreg("subd", 2, 4) if form == "reg" else op_imm32("subd", s, 4)
        st = step(cpu, insn, pairs={2: s, 4: d}, psr=psr)
        r, want = exp_flags32("sub", d, s, psr)
        assert pair_of(st["r"], 4) == r
        assert st["psr"] == want, (hex(d), hex(s), hex(st["psr"]), hex(want))


@pytest.mark.parametrize("imm", [0x8000, 0xFFF8, 0x7FFF, 0xFFFF])
def test_addd_imm16_sign_extended(cpu, imm):
    """Example 7: addd $-8, (sp) is P0 0x60BF P1 0xFFF8."""
    st = step(cpu, op_imm16("addd", imm, 15), regs={15: 0x00010000})
    r, want = exp_flags32("add", 0x00010000, sx(imm, 16) & 0xFFFFFFFF, 0)
    assert st["r"][15] == r
    assert st["psr"] == want


@pytest.mark.parametrize("field", [9, 1, 8, 15])
def test_addd_imm4(cpu, field):
    s = 0xFFFFFFFF if field == 9 else field
    st = step(cpu, op_imm4("addd", field, 0), pairs={0: 0x0000FFFF})
    r, want = exp_flags32("add", 0xFFFF, s, 0)
    check_regs(st, {0: r & 0xFFFF, 1: r >> 16})
    assert st["psr"] == want


@pytest.mark.parametrize("imm", [0xFFFFF, 0x80000, 0x00001])
def test_addd_imm20_zero_extended(cpu, imm):
    st = step(cpu, addd_imm20(imm, 13), regs={13: 0xFFF00000})
    r, want = exp_flags32("add", 0xFFF00000, imm, 0)
    assert st["r"][13] == r
    assert st["psr"] == want


def test_addd_pair11(cpu):
    st = step(cpu, op_imm32("addd", 0x00010001, 11), regs={11: 0xFFFF, 12: 0x99990001})
    check_regs(st, {11: 0x0000, 12: 0x99990003})


LOG32 = {"andd": lambda a, b: a & b, "ord": lambda a, b: a | b, "xord": lambda a, b: a ^ b}


@pytest.mark.parametrize("op", list(LOG32))
@pytest.mark.parametrize("d,s", [(0xF0F0F0F0, 0x0FF00FF0), (0xFFFFFFFF, 0x80000001), (0x12345678, 0)])
def test_logic32(cpu, op, d, s):
    st = step(cpu, op_dreg(op, 6, 8), pairs={6: s, 8: d}, psr=ALL_FLAGS)
    assert pair_of(st["r"], 8) == LOG32[op](d, s)
    assert pair_of(st["r"], 6) == s
    assert st["psr"] == ALL_FLAGS
    st = step(cpu, op_imm32(op, s, 12), regs={12: d}, psr=0)
    assert st["r"][12] == LOG32[op](d, s)
    assert st["psr"] == 0


# =========================================================================== multiply
@pytest.mark.parametrize("d,s", [(3, 5), (0xFFFF, 0xFFFF), (0x8000, 2), (0x0100, 0x0100), (0x1234, 0x5678)])
def test_mulw(cpu, d, s):
    st = step(cpu, op_reg("mulw", 2, 1), regs={1: d, 2: s}, psr=ALL_FLAGS)
    check_regs(st, {1: (d * s) & 0xFFFF, 2: s})
    assert st["psr"] == ALL_FLAGS
    st = step(cpu, op_imm16("mulw", s, 1), regs={1: d})
    check_regs(st, {1: (d * s) & 0xFFFF})


@pytest.mark.parametrize("d,s", [(3, 5), (0xFF, 0xFF), (0x80, 2), (0x10, 0x10)])
def test_mulb(cpu, d, s):
    st = step(cpu, op_reg("mulb", 2, 1), regs={1: 0x4400 | d, 2: 0x3300 | s})
    check_regs(st, {1: 0x4400 | ((d * s) & 0xFF), 2: 0x3300 | s})
    st = step(cpu, op_imm4("mulb", 9, 1), regs={1: 0x4400 | d})  # imm4 field 9 = -1 -> 0xFF
    check_regs(st, {1: 0x4400 | ((d * 0xFF) & 0xFF)})


@pytest.mark.parametrize("a,b", [(0x80, 0x80), (0x7F, 0x80), (0xFF, 0xFF), (0x02, 0xFE), (0x7F, 0x7F), (0x10, 0x03)])
def test_mulsb(cpu, a, b):
    """rD(16) = sx(rS[7:0]) * sx(rD[7:0]); high bytes of the inputs ignored."""
    st = step(cpu, mulsb(2, 1), regs={1: 0x5500 | b, 2: 0x6600 | a})
    check_regs(st, {1: (sx(a, 8) * sx(b, 8)) & 0xFFFF, 2: 0x6600 | a})


@pytest.mark.parametrize("a,b", [(0x8000, 0x8000), (0x7FFF, 0x8000), (0xFFFF, 0xFFFF), (0xFFFF, 0x0002), (0x7FFF, 0x7FFF)])
@pytest.mark.parametrize("q", [3, 11, 13])
def test_mulsw_muluw(cpu, a, b, q):
    """RP(q) = rS * low16(RP(q)), 32-bit product; signed and unsigned."""
    regs = {2: a}
    if q == 11:
        regs.update({11: b, 12: 0x77770000})
    elif q == 13:
        regs[13] = 0x55550000 | b
    else:
        regs.update({3: b, 4: 0x9999})
    st = step(cpu, mulsw(2, q), regs=regs)
    assert pair_of(st["r"], q) == (sx(a, 16) * sx(b, 16)) & 0xFFFFFFFF
    if q == 11:
        assert st["r"][12] >> 16 == 0x7777
    st = step(cpu, muluw(2, q), regs=regs)
    assert pair_of(st["r"], q) == (a * b) & 0xFFFFFFFF


@pytest.mark.parametrize("acc,a,b", [(0, 3, 4), (0x10000000, 0xFFFF, 0xFFFF), (0xFFFFFFFF, 1, 1),
                                     (0xF0000000, 0x8000, 0x8000), (100, 0xFFFF, 2)])
def test_macuw_macsw_accumulate(cpu, acc, a, b):
    """Hardware accumulates (simulator bug 8.1#10), 32-bit wraparound."""
    st = step(cpu, mac("macuw", 1, 2, 4), regs={1: a, 2: b}, pairs={4: acc})
    assert pair_of(st["r"], 4) == (acc + a * b) & 0xFFFFFFFF
    assert st["r"][1] == a and st["r"][2] == b
    st = step(cpu, mac("macsw", 1, 2, 12), regs={1: a, 2: b, 12: acc})
    assert st["r"][12] == (acc + sx(a, 16) * sx(b, 16)) & 0xFFFFFFFF


def _sat32(v):
    return max(-(1 << 31), min((1 << 31) - 1, v)) & 0xFFFFFFFF


@pytest.mark.parametrize("acc,a,b", [(0, 0x4000, 0x4000), (0, 0x8000, 0x8000), (0x7FFFFFF0, 0x100, 0x100),
                                     (0x80000010, 0x8000, 0x0100), (5, 0xFFFF, 0x0003), (0, 0x8000, 0x7FFF)])
def test_macqw_saturating(cpu, acc, a, b):
    st = step(cpu, mac("macqw", 5, 6, 2), regs={5: a, 6: b}, pairs={2: acc})
    want = _sat32(sx(acc, 32) + sx(a, 16) * sx(b, 16) * 2)
    assert pair_of(st["r"], 2) == want, (hex(pair_of(st["r"], 2)), hex(want))


# =========================================================================== shifts
def ashr(v, n, bits):
    return (sx(v, bits) >> n) & ((1 << bits) - 1)


def shl(v, n, bits):
    return (v << n) & ((1 << bits) - 1)


def shr(v, n, bits):
    return (v & ((1 << bits) - 1)) >> n


def shift_ref(kind, v, n, bits):
    if n >= 0:
        return shl(v, n, bits)
    n = -n
    if n >= bits:
        return ((1 << bits) - 1) if (kind == "ashu" and v >> (bits - 1) & 1) else 0
    return ashr(v, n, bits) if kind == "ashu" else shr(v, n, bits)


@pytest.mark.parametrize("n", list(range(-8, 8)))
@pytest.mark.parametrize("v", [0x81, 0x7E, 0xFF])
def test_ashub_imm(cpu, n, v):
    st = step(cpu, ashub_imm(n, 4), regs={4: 0xC300 | v}, psr=ALL_FLAGS)
    check_regs(st, {4: 0xC300 | shift_ref("ashu", v, n, 8)})
    assert st["psr"] == ALL_FLAGS


@pytest.mark.parametrize("n", list(range(-8, 0)))
def test_lshb_imm(cpu, n):
    st = step(cpu, lshb_imm(n, 4), regs={4: 0xC381})
    check_regs(st, {4: 0xC300 | shift_ref("lsh", 0x81, n, 8)})


@pytest.mark.parametrize("n", list(range(-16, 16)))
def test_ashuw_imm(cpu, n):
    for v in (0x8001, 0x7FFE):
        st = step(cpu, ashuw_imm(n, 2), regs={2: v})
        check_regs(st, {2: shift_ref("ashu", v, n, 16)})


@pytest.mark.parametrize("n", list(range(-16, 0)))
def test_lshw_imm(cpu, n):
    st = step(cpu, lshw_imm(n, 2), regs={2: 0x8001})
    check_regs(st, {2: shift_ref("lsh", 0x8001, n, 16)})


@pytest.mark.parametrize("n", [-32, -31, -17, -16, -15, -1, 0, 1, 15, 16, 17, 31])
def test_ashud_imm(cpu, n):
    for v in (0x80000001, 0x7FFFFFFE):
        st = step(cpu, ashud_imm(n, 2), pairs={2: v})
        assert pair_of(st["r"], 2) == shift_ref("ashu", v, n, 32), (n, hex(v))


@pytest.mark.parametrize("n", [-32, -31, -17, -16, -12, -1])
def test_lshd_imm(cpu, n):
    st = step(cpu, lshd_imm(n, 12), regs={12: 0x80000001})
    assert st["r"][12] == shift_ref("lsh", 0x80000001, n, 32)


def test_lshd_example_encoding():
    assert lshd_imm(-12, 2) == (0x4B42,)
    assert ashuw_imm(-3, 1) == (0x43D1,)


def test_shift_word_on_r12_preserves_high(cpu):
    st = step(cpu, ashuw_imm(4, 12), regs={12: 0x1234ABCD})
    check_regs(st, {12: 0x1234BCD0})


# register counts: count register value -> effective signed count
REG_SHIFTS = {"ashub": ("ashu", 8, 4), "lshb": ("lsh", 8, 4), "ashuw": ("ashu", 16, 5),
              "lshw": ("lsh", 16, 5), "ashud": ("ashu", 32, 6), "lshd": ("lsh", 32, 6)}


@pytest.mark.parametrize("op", list(REG_SHIFTS))
@pytest.mark.parametrize("count_sel", ["zero", "one", "max", "minus1", "minus_max", "most_negative", "upper_bits"])
def test_shift_by_register(cpu, op, count_sel):
    kind, bits, cbits = REG_SHIFTS[op]
    most_neg = -(1 << (cbits - 1))
    cnt = {"zero": 0, "one": 1, "max": (1 << (cbits - 1)) - 1, "minus1": -1, "minus_max": most_neg + 1,
           "most_negative": most_neg}.get(count_sel)
    creg = cnt & 0xFFFF if cnt is not None else 0
    if count_sel == "upper_bits":  # bits above the count field are ignored
        cnt = 3
        creg = (0xABC0 & ~((1 << cbits) - 1)) | 3
    v = {8: 0x81, 16: 0x8001, 32: 0x80000001}[bits]
    want = shift_ref(kind, v, cnt, bits)
    if bits == 8:
        st = step(cpu, shift_reg(op, 5, 3), regs={3: 0x9900 | v, 5: creg})
        check_regs(st, {3: 0x9900 | want, 5: creg})
    elif bits == 16:
        st = step(cpu, shift_reg(op, 5, 3), regs={3: v, 5: creg})
        check_regs(st, {3: want, 5: creg})
    else:
        st = step(cpu, shift_reg(op, 5, 2), regs={5: creg}, pairs={2: v})
        assert pair_of(st["r"], 2) == want, (op, cnt, hex(pair_of(st["r"], 2)), hex(want))
        assert st["r"][5] == creg


@pytest.mark.parametrize("op", ["ashud", "lshd"])
def test_shift_dword_most_negative_positive_value(cpu, op):
    """-32 on a positive value: 0 for both kinds (full-width right shift)."""
    st = step(cpu, shift_reg(op, 0, 12), regs={0: 0xFFE0, 12: 0x7FFFFFFF})
    assert st["r"][12] == 0


# =========================================================================== tbit / Scond
@pytest.mark.parametrize("b", range(16))
def test_tbit_imm(cpu, b):
    v = 0xA5C3
    for init in (0, ALL_FLAGS):
        st = step(cpu, tbit_imm(b, 7), regs={7: v}, psr=init)
        want = (init & ~F) | (F if v >> b & 1 else 0)
        assert st["psr"] == want
        check_regs(st, {7: v})


@pytest.mark.parametrize("rb", [0, 3, 15, 16, 19, 0xFFFF, 0x8001])
def test_tbit_reg_mod16(cpu, rb):
    v = 0x800A
    st = step(cpu, tbit_reg(2, 7), regs={7: v, 2: rb}, psr=0)
    assert st["psr"] == (F if v >> (rb % 16) & 1 else 0)


@pytest.mark.parametrize("c", range(14))
def test_scond_all_conditions(cpu, c):
    for psr in all_flag_combos():
        st = step(cpu, scond(c, 9), regs={9: 0xFF00}, psr=psr)
        check_regs(st, {9: 1 if cond_true(c, psr) else 0})
        assert st["psr"] == psr


def test_scond_r12_preserves_high(cpu):
    st = step(cpu, scond(0, 12), regs={12: 0xABCD0000}, psr=Z)
    check_regs(st, {12: 0xABCD0001})


# =========================================================================== nop
def test_nop_changes_nothing(cpu):
    st = step(cpu, (0x2C00,), psr=ALL_FLAGS)
    check_regs(st, {})
    assert st["pc"] == CODE + 2 and st["psr"] == ALL_FLAGS


@pytest.mark.parametrize("insn,length", [((0x32B1, 0x0FFF), 4), ((0x30F1,), 2), ((0x0071, 0x0FFF, 0xFFFF), 6),
                                         ((0x0510, 0xFFFF), 4), ((0x60BF, 0xFFF8), 4)])
def test_instruction_lengths(cpu, insn, length):
    st = step(cpu, insn)
    assert st["pc"] == CODE + length


# =========================================================================== assembler cross-check
ASM_CASES = [
    ("addb $0xf, r1", (0x30F1,)), ("addw $0xfff, r1", op_imm16("addw", 0xFFF, 1)),
    ("movd $-1, (r2,r1)", op_imm4("movd", 9, 1)), ("movd $0xffff, (r2,r1)", movd_imm20(0xFFFF, 1)),
    ("movd $0x12345678, (r3,r2)", op_imm32("movd", 0x12345678, 2)), ("addd $-8, (sp)", op_imm16("addd", 0xFFF8, 15)),
    ("subw r2, r1", op_reg("subw", 2, 1)), ("addcw r3, r4", op_reg("addcw", 3, 4)),
    ("subcb $3, r5", op_imm4("subcb", 3, 5)), ("cmpw $-1, r0", op_imm4("cmpw", 9, 0)),
    ("cmpd $0x12345678, (r5,r4)", op_imm32("cmpd", 0x12345678, 4)), ("cmpd (r1,r0), (r3,r2)", cmpd_reg(0, 2)),
    ("andd (r1,r0), (r3,r2)", op_dreg("andd", 0, 2)), ("ord (r1,r0), (r3,r2)", op_dreg("ord", 0, 2)),
    ("xord (r1,r0), (r3,r2)", op_dreg("xord", 0, 2)), ("subd (r1,r0), (r3,r2)", op_dreg("subd", 0, 2)),
    ("andd $0x12345678, (r13)", op_imm32("andd", 0x12345678, 13)),
    ("subd $0x12345678, (r12)", op_imm32("subd", 0x12345678, 12)),
    ("addd $0x12345678, (r12)", op_imm32("addd", 0x12345678, 12)),
    ("addd $0x12345, (r1,r0)", addd_imm20(0x12345, 0)), ("addd (r1,r0), (r12)", addd_reg(0, 12)),
    ("movxb r1, r2", movxb(1, 2)), ("movzb r1, r2", movzb(1, 2)), ("movxw r1, (r3,r2)", movxw(1, 2)),
    ("movzw r1, (r3,r2)", movzw(1, 2)), ("mulsb r1, r2", mulsb(1, 2)), ("mulsw r1, (r3,r2)", mulsw(1, 2)),
    ("muluw r1, (r3,r2)", muluw(1, 2)), ("macqw r1, r2, (r4,r3)", mac("macqw", 1, 2, 3)),
    ("macuw r1, r2, (r4,r3)", mac("macuw", 1, 2, 3)), ("macsw r1, r2, (r4,r3)", mac("macsw", 1, 2, 3)),
    ("ashub $-3, r1", ashub_imm(-3, 1)), ("ashuw $-3, r1", ashuw_imm(-3, 1)), ("ashud $-20, (r3,r2)", ashud_imm(-20, 2)),
    ("ashud $20, (r3,r2)", ashud_imm(20, 2)), ("lshb $-3, r1", lshb_imm(-3, 1)), ("lshw $-9, r1", lshw_imm(-9, 1)),
    ("lshd $-12, (r3,r2)", lshd_imm(-12, 2)), ("ashub r2, r1", shift_reg("ashub", 2, 1)),
    ("lshb r2, r1", shift_reg("lshb", 2, 1)), ("ashuw r2, r1", shift_reg("ashuw", 2, 1)),
    ("lshw r2, r1", shift_reg("lshw", 2, 1)), ("lshd r2, (r4,r3)", shift_reg("lshd", 2, 3)),
    ("ashud r2, (r4,r3)", shift_reg("ashud", 2, 3)), ("tbit $5, r2", tbit_imm(5, 2)), ("tbit r5, r2", tbit_reg(5, 2)),
    ("sge r3", scond(13, 3)), ("slo r3", scond(10, 3)), ("mulb $0x12, r1", op_imm16("mulb", 0x12, 1)),
    ("movw $0x1234, r12", op_imm16("movw", 0x1234, 12)), ("movb r1, r2", op_reg("movb", 1, 2)),
    ("movd (r1,r0), (r12)", movd_reg(0, 12)), ("xorw $0x5555, r4", op_imm16("xorw", 0x5555, 4)),
]


@pytest.mark.toolchain
def test_encodings_match_assembler(tmp_path):
    compare_with_assembler(tmp_path, [(f"  {a}", i) for a, i in ASM_CASES])


def test_exit_reason_is_budget(cpu):
    exec_one(cpu, op_imm("movw", 3, 0), expect_exit=Exit.BUDGET)
