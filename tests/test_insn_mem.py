"""Per-instruction tests: loads, stores, store-immediates, bit operations in memory,
loadm/storm, the abs20 remap, illegal-address faults at the edge of RAM, unaligned
accesses, self-modifying code and dirty-page tracking.

Written from cr16c-isa.md sections 1.2, 2, 3.3, 4.8-4.10 (hardware semantics:
index forms with the data register in P1[7:4], negative disp20 sign-extended,
abs20 remap for every abs20 form, loadm/storm use the encoded count).
"""
from __future__ import annotations

import pytest

from insn_helpers import (
    compare_with_assembler, jump, op_imm32, CODE, F, RAM, SVC, Z, C, N, L, Exit, bit_abs24, bit_idx14, bit_long, bitb_0, bitb_abs20,
    bitb_disp16, bitb_idx_abs20, bitw_0, bitw_abs20, bitw_disp16, bitw_idx_abs20, bcond16,
    exec_one, load, loadm, loadmp, ls_abs20, ls_abs24, ls_disp4, ls_disp16, ls_idx0,
    ls_idx14, ls_idx_abs20, ls_long, ls_neg, new_cpu, op_imm, op_imm16, p2b, pair_of,
    rd16, rd32, run_to_probe, set_regs, storm, stormp, storx_imm0, storx_imm_disp16, wr16,
    wr32,
)

SIZE = {"loadb": 1, "loadw": 2, "loadd": 4, "storb": 1, "storw": 2, "stord": 4,
        "storb_imm": 1, "storw_imm": 2}
EA = 0x1A230          # 4-aligned, above 64 KiB, inside the 1 MiB test RAM
EA_LOW = 0x7A30       # for modes based on a 16-bit register
IDX_PAIR = {0: (0, 1), 1: (2, 3), 2: (4, 5), 3: (6, 7), 4: (8, 9), 5: (10, 11), 6: (3, 4), 7: (5, 6)}


@pytest.fixture
def cpu():
    return new_cpu()


def idx_pair_regs(k, value):
    lo, hi = IDX_PAIR[k]
    return {lo: value & 0xFFFF, hi: value >> 16}


# ---------------------------------------------------------------------------- addressing modes
# Every builder: (op, r) -> (insn, regs, ea).  r is the data register / pair / imm4.
# Base registers used never overlap r7/r8 (the data register / pair used by the tests).
def m_disp4(op, r):
    disp = 13 if SIZE[op] == 1 else 26
    return ls_disp4(op, r, disp, 0), {0: (EA - disp) & 0xFFFF, 1: (EA - disp) >> 16}, EA


def m_disp4_zero_r12(op, r):
    return ls_disp4(op, r, 0, 12), {12: EA}, EA


def m_disp4_sp(op, r):
    disp = 6 if SIZE[op] == 1 else 12
    return ls_disp4(op, r, disp, 15), {15: EA - disp}, EA


def m_idx0_r13_k6(op, r):
    regs = {13: EA - 0x10100}
    regs.update(idx_pair_regs(6, 0x10100))
    return ls_idx0(op, r, 1, 6), regs, EA


def m_idx0_r12_k5(op, r):
    regs = {12: EA - 0x00202}
    regs.update(idx_pair_regs(5, 0x00202))
    return ls_idx0(op, r, 0, 5), regs, EA


def m_disp16(op, r):
    # 0xFFF0 must be zero-extended
    base = EA - 0xFFF0
    return ls_disp16(op, r, 0xFFF0, 2), {2: base & 0xFFFF, 3: base >> 16}, EA


def m_disp16_r13(op, r):
    return ls_disp16(op, r, 0x1234, 13), {13: EA - 0x1234}, EA


def m_abs20(op, r):
    return ls_abs20(op, r, EA), {}, EA


def m_idx_abs20_r12(op, r):
    return ls_idx_abs20(op, r, 0, 0x12000), {12: EA - 0x12000}, EA


def m_idx_abs20_r13(op, r):
    return ls_idx_abs20(op, r, 1, 0x0F234), {13: EA - 0x0F234}, EA


def m_idx14_r12_k7(op, r):
    disp = 0x2A7A
    regs = {12: EA - 0x100 - disp}
    regs.update(idx_pair_regs(7, 0x100))
    return ls_idx14(op, r, 0, 7, disp), regs, EA


def m_idx14_r13_k1(op, r):
    disp = 0x3FFF - 3
    regs = {13: EA - 0x10000 - disp}
    regs.update(idx_pair_regs(1, 0x10000))
    return ls_idx14(op, r, 1, 1, disp), regs, EA


def m_long_reg16(op, r):
    # zx(R[9]) + disp20: R[9] = 0xFFF0 must be zero-extended
    return ls_long(op, r, 0, 9, EA - 0xFFF0), {9: 0xFFF0}, EA


def m_long_pair(op, r):
    return ls_long(op, r, 1, 3, 0x13450), {3: (EA - 0x13450) & 0xFFFF, 4: (EA - 0x13450) >> 16}, EA


def m_long_idx(op, r):
    # RX + RP(k) + disp20, RX = r13 (x = 1), k = 6 = (r4,r3)
    regs = {13: EA - 0x20 - 0x12345}
    regs.update(idx_pair_regs(6, 0x20))
    return ls_long(op, r, 2, (1 << 3) | 6, 0x12345), regs, EA


def m_abs24(op, r):
    return ls_abs24(op, r, EA), {}, EA


def m_neg_reg16(op, r):
    return ls_neg(op, r, 0, 9, EA_LOW - 0xFFF0), {9: 0xFFF0}, EA_LOW


def m_neg_pair(op, r):
    base = EA + 0x12346
    return ls_neg(op, r, 1, 4, -0x12346), {4: base & 0xFFFF, 5: base >> 16}, EA


def m_neg_sp_small(op, r):
    return ls_neg(op, r, 1, 15, -4), {15: EA + 4}, EA


SHORT_MODES = [m_disp4, m_disp4_zero_r12, m_disp4_sp, m_idx0_r13_k6, m_idx0_r12_k5, m_disp16, m_disp16_r13]
ABS_MODES = [m_abs20, m_idx_abs20_r12, m_idx_abs20_r13]
IDX14_MODES = [m_idx14_r12_k7, m_idx14_r13_k1]
LONG_MODES = [m_long_reg16, m_long_pair, m_long_idx, m_abs24]
NEG_MODES = [m_neg_reg16, m_neg_pair, m_neg_sp_small]
ALL_MODES = SHORT_MODES + ABS_MODES + IDX14_MODES + LONG_MODES + NEG_MODES
IMM_STORE_MODES = ABS_MODES + IDX14_MODES + LONG_MODES


def _mode_id(m):
    return m.__name__[2:]


PATTERN = bytes(range(0x81, 0x81 + 16))


def _prepare_mem(cpu, ea):
    cpu.write(ea - 4, PATTERN)


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
@pytest.mark.parametrize("op", ["loadb", "loadw", "loadd"])
def test_load_modes(cpu, mode, op):
    data = 7   # r7, or the pair (r8,r7) for loadd
    insn, regs, ea = mode(op, data)
    _prepare_mem(cpu, ea)
    init = dict(regs)
    init.setdefault(7, 0xEEEE)
    init.setdefault(8, 0xDDDD)
    init.setdefault(9, 0xCCCC)
    st = exec_one(cpu, insn, regs=init)
    m = PATTERN[4:8]
    if op == "loadb":
        assert st["r"][7] == 0xEE00 | m[0]
    elif op == "loadw":
        assert st["r"][7] == int.from_bytes(m[:2], "little")
    else:
        assert pair_of(st["r"], 7) == int.from_bytes(m, "little")
    for i, v in regs.items():   # base registers are not modified
        assert st["r"][i] == v, i
    assert st["pc"] == CODE + 2 * len(insn)


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
@pytest.mark.parametrize("op", ["storb", "storw", "stord"])
def test_store_modes(cpu, mode, op):
    data = 7
    insn, regs, ea = mode(op, data)
    cpu.write(ea - 4, b"\x55" * 16)
    init = dict(regs)
    init.update({7: 0xA1B2, 8: 0xC3D4})
    st = exec_one(cpu, insn, regs=init, psr=Z | C)
    n = SIZE[op]
    val = {"storb": b"\xB2", "storw": b"\xB2\xA1", "stord": b"\xB2\xA1\xD4\xC3"}[op]
    assert cpu.read(ea - 4, 16) == b"\x55" * 4 + val + b"\x55" * (12 - n)
    assert st["psr"] == Z | C
    for i, v in regs.items():
        assert st["r"][i] == v, i


@pytest.mark.parametrize("mode", IMM_STORE_MODES + [None, "disp16"], ids=lambda m: "0(p)" if m is None else (m if isinstance(m, str) else _mode_id(m)))
@pytest.mark.parametrize("op", ["storb_imm", "storw_imm"])
@pytest.mark.parametrize("imm", [0, 9, 11, 15])
def test_store_immediate_modes(cpu, mode, op, imm):
    """$imm4 is plain unsigned 0..15 (no -1 / escape meaning), zero-extended."""
    if mode is None:
        insn, regs, ea = storx_imm0(op, imm, 2), {2: EA & 0xFFFF, 3: EA >> 16}, EA
    elif mode == "disp16":
        insn, regs, ea = storx_imm_disp16(op, imm, 0x8002, 12), {12: EA - 0x8002}, EA
    else:
        insn, regs, ea = mode(op, imm)
    cpu.write(ea - 2, b"\xAA" * 8)
    exec_one(cpu, insn, regs=regs)
    want = bytes([imm]) if op == "storb_imm" else bytes([imm, 0])
    assert cpu.read(ea - 2, 8) == b"\xAA\xAA" + want + b"\xAA" * (6 - len(want))


def test_loadb_preserves_high_byte(cpu):
    cpu.write(EA, b"\x80")
    st = exec_one(cpu, ls_abs20("loadb", 3, EA), regs={3: 0x1234})
    assert st["r"][3] == 0x1280


@pytest.mark.parametrize("op,insn_fn,want", [
    ("loadw", lambda: ls_abs20("loadw", 12, EA), 0xABCD8281),
    ("loadb", lambda: ls_abs20("loadb", 12, EA), 0xABCD1281),
])
def test_load_into_r12_preserves_high(cpu, op, insn_fn, want):
    cpu.write(EA, b"\x81\x82\x83\x84")
    st = exec_one(cpu, insn_fn(), regs={12: 0xABCD1234})
    assert st["r"][12] == want


def test_loadd_into_pair11_and_stord_from_pair11(cpu):
    cpu.write(EA, bytes.fromhex("11223344"))
    st = exec_one(cpu, ls_abs20("loadd", 11, EA), regs={11: 0, 12: 0x99990000})
    assert st["r"][11] == 0x2211 and st["r"][12] == 0x99994433
    exec_one(cpu, ls_abs20("stord", 11, EA + 8), regs={11: 0x5566, 12: 0x12347788})
    assert cpu.read(EA + 8, 4) == bytes.fromhex("66558877")


@pytest.mark.parametrize("q", [12, 13, 14, 15])
def test_loadd_stord_32bit_registers(cpu, q):
    cpu.write(EA, bytes.fromhex("01020304"))
    st = exec_one(cpu, ls_abs24("loadd", q, EA), regs={q: 0})
    assert st["r"][q] == 0x04030201
    exec_one(cpu, ls_abs24("stord", q, EA + 4), regs={q: 0xDEADBEEF})
    assert rd32(cpu, EA + 4) == 0xDEADBEEF


def test_storw_from_r12_stores_low_half(cpu):
    exec_one(cpu, ls_abs20("storw", 12, EA), regs={12: 0x12345678})
    assert cpu.read(EA, 4) == b"\x78\x56\x00\x00"


@pytest.mark.parametrize("disp", list(range(0, 14)))
def test_loadb_disp4_every_value(cpu, disp):
    cpu.write(0x3000, bytes(range(0x40, 0x50)))
    st = exec_one(cpu, ls_disp4("loadb", 5, disp, 0), regs={0: 0x3000, 1: 0, 5: 0})
    assert st["r"][5] == 0x40 + disp


@pytest.mark.parametrize("field", list(range(0, 14)))
@pytest.mark.parametrize("op", ["loadw", "loadd"])
def test_load_disp4_scaled_by_two(cpu, field, op):
    cpu.write(0x3000, bytes(range(0x40, 0x80)))
    st = exec_one(cpu, ls_disp4(op, 5, 2 * field, 12), regs={12: 0x3000, 5: 0, 6: 0})
    a = 0x40 + 2 * field
    if op == "loadw":
        assert st["r"][5] == a | (a + 1) << 8
    else:
        assert pair_of(st["r"], 5) == int.from_bytes(bytes([a, a + 1, a + 2, a + 3]), "little")


def test_example_encodings():
    """Appendix A examples 8-12."""
    assert ls_disp4("loadw", 2, 4, 15) == (0x922F,)
    assert ls_disp16("loadb", 4, 0x1234, 0) == (0xBF40, 0x1234)
    assert ls_abs24("loadb", 0, 0x7A1234) == (0x0012, 0x7A07, 0x1234)
    assert ls_neg("loadb", 1, 1, 0, -4) == (0x0018, 0x5F10, 0xFFFC)
    assert ls_long("storw_imm", 3, 0, 2, 0x12345) == (0x0013, 0x0132, 0x2345)
    assert bit_idx14("cbit", 0, 3, 0, 0, 0xA7A) == (0x6AB0, 0x4A3A)


@pytest.mark.parametrize("mode", [m_disp16, m_abs20, m_long_pair, m_neg_pair, m_idx14_r12_k7], ids=_mode_id)
def test_index_and_long_forms_use_p1_data_register(cpu, mode):
    """Data register r10 in P1[7:4] (for the 4-byte index form) / P0[7:4]."""
    insn, regs, ea = mode("storw", 10)
    regs = dict(regs)
    regs[10] = 0x6789
    exec_one(cpu, insn, regs=regs)
    assert rd16(cpu, ea) == 0x6789


# ---------------------------------------------------------------------------- unaligned
@pytest.mark.parametrize("off", [1, 2, 3])
def test_unaligned_loads_and_stores(cpu, off):
    cpu.write(0x4000, bytes(range(0x10, 0x20)))
    a = 0x4000 + off
    st = exec_one(cpu, ls_abs20("loadw", 1, a), regs={1: 0})
    assert st["r"][1] == int.from_bytes(bytes([0x10 + off, 0x11 + off]), "little")
    st = exec_one(cpu, ls_abs20("loadd", 2, a), regs={2: 0, 3: 0})
    assert pair_of(st["r"], 2) == int.from_bytes(bytes(range(0x10 + off, 0x14 + off)), "little")
    exec_one(cpu, ls_abs20("stord", 2, 0x5000 + off), pairs={2: 0x44332211})
    assert cpu.read(0x5000, 8) == bytes(off) + b"\x11\x22\x33\x44" + bytes(4 - off)
    exec_one(cpu, ls_abs20("storw", 1, 0x6000 + off), regs={1: 0xBBAA})
    assert cpu.read(0x6000 + off, 2) == b"\xAA\xBB"


# ---------------------------------------------------------------------------- abs20 remap
REMAP_INSNS = {
    "loadb": lambda a: ls_abs20("loadb", 1, a), "loadw": lambda a: ls_abs20("loadw", 1, a),
    "loadd": lambda a: ls_abs20("loadd", 1, a), "storb": lambda a: ls_abs20("storb", 1, a),
    "storw": lambda a: ls_abs20("storw", 1, a), "stord": lambda a: ls_abs20("stord", 1, a),
    "storb_imm": lambda a: ls_abs20("storb_imm", 7, a), "storw_imm": lambda a: ls_abs20("storw_imm", 7, a),
    "sbitb": lambda a: bitb_abs20("sbit", 1, a), "cbitb": lambda a: bitb_abs20("cbit", 1, a),
    "tbitb": lambda a: bitb_abs20("tbit", 1, a), "sbitw": lambda a: bitw_abs20("sbit", 9, a),
    "cbitw": lambda a: bitw_abs20("cbit", 9, a), "tbitw": lambda a: bitw_abs20("tbit", 9, a),
}


@pytest.mark.parametrize("name", list(REMAP_INSNS))
@pytest.mark.parametrize("addr", [0xF0000, 0xF1234, 0xFFFFC])
def test_abs20_remap_faults_outside_small_ram(cpu, name, addr):
    """abs20 >= 0xF0000 means 0xF00000 | abs20: outside a 1 MiB RAM -> IAD fault."""
    insn = REMAP_INSNS[name](addr)
    load(cpu, CODE, insn)
    set_regs(cpu, {1: 0x1234, 2: 0x5678}, pc=CODE, psr=0)
    why, n = cpu.run(1)
    assert why == Exit.FAULT
    assert n == 0
    assert cpu.fault == (12, CODE, 0xF00000 | addr)
    assert cpu.pc == CODE
    assert cpu.reg(1) == 0x1234 and cpu.reg(2) == 0x5678
    # the unmapped 20-bit address (inside RAM) was not touched either
    assert cpu.read(addr, 4) == bytes(4)


@pytest.fixture(scope="module")
def big_cpu():
    """The default machine: 20 MiB, so 0xF00000..0xFFFFFF is RAM."""
    return new_cpu(20 << 20)


@pytest.mark.parametrize("name", list(REMAP_INSNS))
def test_abs20_remap_in_16mib_ram(big_cpu, name):
    cpu = big_cpu
    addr = 0xF1230
    hi = 0xF00000 | addr
    cpu.write(addr, b"\x00" * 8)
    cpu.write(hi, bytes.fromhex("f00f0ff0a5a5a5a5"))
    st = exec_one(cpu, REMAP_INSNS[name](addr), regs={1: 0x8642, 2: 0x9753}, psr=0)
    low_untouched = cpu.read(addr, 8) == b"\x00" * 8
    assert low_untouched
    mem = cpu.read(hi, 4)
    if name == "loadb":
        assert st["r"][1] == 0x86F0
    elif name == "loadw":
        assert st["r"][1] == 0x0FF0
    elif name == "loadd":
        assert pair_of(st["r"], 1) == 0xF00F0FF0
    elif name == "storb":
        assert mem == bytes.fromhex("420f0ff0")
    elif name == "storw":
        assert mem == bytes.fromhex("42860ff0")
    elif name == "stord":
        assert mem == bytes.fromhex("42865397")
    elif name == "storb_imm":
        assert mem == bytes.fromhex("070f0ff0")
    elif name == "storw_imm":
        assert mem == bytes.fromhex("07000ff0")
    elif name in ("sbitb", "cbitb", "tbitb"):  # bit 1 of 0xF0 is 0
        assert st["psr"] == 0
        assert mem[0] == {"sbitb": 0xF2, "cbitb": 0xF0, "tbitb": 0xF0}[name]
    else:  # bit 9 of 0x0FF0 is 1
        assert st["psr"] == F
        want = {"sbitw": 0x0FF0, "cbitw": 0x0DF0, "tbitw": 0x0FF0}[name]
        assert int.from_bytes(mem[:2], "little") == want


@pytest.mark.parametrize("name", ["loadw", "storw", "sbitw"])
def test_abs20_below_remap_threshold_is_plain(cpu, name):
    addr = 0xEFFFE
    cpu.write(addr, b"\x34\x10")
    st = exec_one(cpu, REMAP_INSNS[name](addr), regs={1: 0xBEEF})
    if name == "loadw":
        assert st["r"][1] == 0x1034
    elif name == "storw":
        assert rd16(cpu, addr) == 0xBEEF
    else:
        assert rd16(cpu, addr) == 0x1034 | 0x200


def test_index_abs20_is_not_remapped(cpu):
    """[rX]abs20: EA = RX + zx(abs20), no remap (0xF0010 + 0x20 is plain RAM)."""
    cpu.write(0xF0030, b"\x99\x88")
    st = exec_one(cpu, ls_idx_abs20("loadw", 1, 0, 0xF0010), regs={12: 0x20, 1: 0})
    assert st["r"][1] == 0x8899


def test_abs24_is_not_remapped(cpu):
    cpu.write(0xF4000, b"\x21\x43")
    st = exec_one(cpu, ls_abs24("loadw", 1, 0xF4000), regs={1: 0})
    assert st["r"][1] == 0x4321


# ---------------------------------------------------------------------------- bit operations
BIT_FORMS_B = {
    "idx_abs20_r12": lambda op, b: (bitb_idx_abs20(op, b, 0, 0x10000), {12: EA - 0x10000}),
    "idx_abs20_r13": lambda op, b: (bitb_idx_abs20(op, b, 1, 0xA230), {13: EA - 0xA230}),
    "zero_pair": lambda op, b: (bitb_0(op, b, 2), {2: EA & 0xFFFF, 3: EA >> 16}),
    "zero_sp": lambda op, b: (bitb_0(op, b, 15), {15: EA}),
    "idx14": lambda op, b: (bit_idx14(op, 0, b, 1, 6, 0x1A7), {13: EA - 0x1A7 - 0x10002, 3: 0x0002, 4: 0x0001}),
    "disp16": lambda op, b: (bitb_disp16(op, b, 0xF000, 12), {12: EA - 0xF000}),
    "abs20": lambda op, b: (bitb_abs20(op, b, EA), {}),
    "long_reg16": lambda op, b: (bit_long(op, 0, b, 0, 9, EA - 0xFFFE), {9: 0xFFFE}),
    "long_pair": lambda op, b: (bit_long(op, 0, b, 1, 0, 0x12344), {0: (EA - 0x12344) & 0xFFFF, 1: (EA - 0x12344) >> 16}),
    "long_idx": lambda op, b: (bit_long(op, 0, b, 2, 0x5, 0x30), {12: EA - 0x30 - 0x10000, 10: 0, 11: 1}),
    "abs24": lambda op, b: (bit_abs24(op, 0, b, EA), {}),
}
BIT_FORMS_W = {
    "disp16": lambda op, b: (bitw_disp16(op, b, 0xFFFE, 2), {2: (EA - 0xFFFE) & 0xFFFF, 3: (EA - 0xFFFE) >> 16}),
    "idx14": lambda op, b: (bit_idx14(op, 1, b, 0, 7, 0x3FFE), {12: EA - 0x3FFE - 0x10, 5: 0x10, 6: 0}),
    "idx_abs20_r12": lambda op, b: (bitw_idx_abs20(op, b, 0, 0x10000), {12: EA - 0x10000}),
    "idx_abs20_r13": lambda op, b: (bitw_idx_abs20(op, b, 1, 0x230), {13: EA - 0x230}),
    "zero_pair": lambda op, b: (bitw_0(op, b, 13), {13: EA}),
    "abs20": lambda op, b: (bitw_abs20(op, b, EA), {}),
    "long_reg16": lambda op, b: (bit_long(op, 1, b, 0, 9, EA - 0xFFFE), {9: 0xFFFE}),
    "long_pair": lambda op, b: (bit_long(op, 1, b, 1, 0, 0x12344), {0: (EA - 0x12344) & 0xFFFF, 1: (EA - 0x12344) >> 16}),
    "long_idx": lambda op, b: (bit_long(op, 1, b, 2, 0x8 | 0x1, 0x30), {13: EA - 0x30 - 0x10100, 2: 0x0100, 3: 1}),
    "abs24": lambda op, b: (bit_abs24(op, 1, b, EA), {}),
}


@pytest.mark.parametrize("form", list(BIT_FORMS_B))
@pytest.mark.parametrize("op", ["cbit", "sbit", "tbit"])
@pytest.mark.parametrize("b", [0, 3, 7])
def test_bit_byte_forms(cpu, form, op, b):
    for old in (0, 1):
        val = 0x5A ^ (1 << b) if ((0x5A >> b) & 1) != old else 0x5A
        cpu.write(EA - 1, bytes([0x77, val, 0x66]))
        insn, regs = BIT_FORMS_B[form](op, b)
        psr = Z | N | (0 if old else F) | C
        st = exec_one(cpu, insn, regs=regs, psr=psr)
        assert st["psr"] == (psr & ~F) | (F if old else 0)
        new = {"cbit": val & ~(1 << b), "sbit": val | (1 << b), "tbit": val}[op]
        assert cpu.read(EA - 1, 3) == bytes([0x77, new, 0x66]), (form, op, b, old)
        for i, v in regs.items():
            assert st["r"][i] == v


@pytest.mark.parametrize("form", list(BIT_FORMS_W))
@pytest.mark.parametrize("op", ["cbit", "sbit", "tbit"])
@pytest.mark.parametrize("b", [0, 8, 15])
def test_bit_word_forms(cpu, form, op, b):
    for old in (0, 1):
        base = 0x5AA5
        val = base ^ (1 << b) if ((base >> b) & 1) != old else base
        cpu.write(EA - 2, b"\x77\x77" + val.to_bytes(2, "little") + b"\x66\x66")
        insn, regs = BIT_FORMS_W[form](op, b)
        psr = L | (0 if old else F)
        st = exec_one(cpu, insn, regs=regs, psr=psr)
        assert st["psr"] == (psr & ~F) | (F if old else 0)
        new = {"cbit": val & ~(1 << b), "sbit": val | (1 << b), "tbit": val}[op]
        assert cpu.read(EA - 2, 6) == b"\x77\x77" + new.to_bytes(2, "little") + b"\x66\x66", (form, op, b, old)


# ---------------------------------------------------------------------------- loadm / storm
MLIST = [2, 3, 4, 5, 8, 9, 10, 11]


@pytest.mark.parametrize("cnt", range(1, 9))
def test_loadm(cpu, cnt):
    cpu.write(0x3000, b"".join((0x1000 * (i + 1) + i).to_bytes(2, "little") for i in range(9)))
    regs = {i: 0xEEEE for i in range(12)}
    regs[0] = 0x3000
    st = exec_one(cpu, loadm(cnt), regs=regs)
    for j, reg in enumerate(MLIST):
        want = 0x1000 * (j + 1) + j if j < cnt else 0xEEEE
        assert st["r"][reg] == want, (cnt, reg)
    assert st["r"][0] == 0x3000 + 2 * cnt
    assert st["r"][1] == 0xEEEE and st["r"][6] == 0xEEEE and st["r"][7] == 0xEEEE


@pytest.mark.parametrize("cnt", [1, 2, 3, 8])
def test_loadmp(cpu, cnt):
    cpu.write(EA, b"".join((0xA0 + i).to_bytes(2, "little") for i in range(9)))
    regs = {i: 0xEEEE for i in range(12)}
    st = exec_one(cpu, loadmp(cnt), regs=regs, pairs={0: EA})
    for j, reg in enumerate(MLIST):
        assert st["r"][reg] == (0xA0 + j if j < cnt else 0xEEEE)
    assert pair_of(st["r"], 0) == EA + 2 * cnt


@pytest.mark.parametrize("cnt", range(1, 9))
def test_storm(cpu, cnt):
    cpu.write(0x3000, b"\x55" * 20)
    regs = {r: 0x0101 * (r + 1) for r in range(12)}
    regs[1] = 0x3000
    st = exec_one(cpu, storm(cnt), regs=regs)
    want = b"".join((0x0101 * (r + 1)).to_bytes(2, "little") for r in MLIST[:cnt])
    assert cpu.read(0x3000, 20) == want + b"\x55" * (20 - 2 * cnt)
    assert st["r"][1] == 0x3000 + 2 * cnt
    assert st["r"][0] == 0x0101


@pytest.mark.parametrize("cnt", [1, 3, 4, 8])
def test_stormp(cpu, cnt):
    cpu.write(EA, b"\x55" * 20)
    regs = {r: 0x0101 * (r + 1) for r in range(12)}
    st = exec_one(cpu, stormp(cnt), regs=regs, pairs={6: EA})
    want = b"".join((0x0101 * (r + 1)).to_bytes(2, "little") for r in MLIST[:cnt])
    assert cpu.read(EA, 20) == want + b"\x55" * (20 - 2 * cnt)
    assert pair_of(st["r"], 6) == EA + 2 * cnt


# ---------------------------------------------------------------------------- RAM edge faults
R = RAM


def _fault_run(cpu, insn, regs=None, pairs=None):
    load(cpu, CODE, insn)
    set_regs(cpu, regs, pairs, pc=CODE, psr=0)
    before = cpu.get_state()
    why, n = cpu.run(5)
    return why, n, before


@pytest.mark.parametrize("op,addr,ok", [
    ("loadb", R - 1, True), ("loadb", R, False), ("loadw", R - 2, True), ("loadw", R - 1, False),
    ("loadd", R - 4, True), ("loadd", R - 3, False), ("loadd", R - 2, False), ("loadd", R - 1, False),
    ("loadw", R, False), ("loadb", 0xFFFFFF, False), ("loadw", 0xFFFFFE, False),
])
@pytest.mark.parametrize("form", ["abs24", "pair"])
def test_load_at_end_of_ram(cpu, op, addr, ok, form):
    cpu.write(R - 4, b"\x01\x02\x03\x04")
    insn = ls_abs24(op, 4, addr) if form == "abs24" else ls_disp4(op, 4, 0, 12)
    why, n, before = _fault_run(cpu, insn, regs={12: addr, 4: 0xEEEE, 5: 0xDDDD})
    if ok:
        assert n >= 1
        st = cpu.get_state()
        want = int.from_bytes(cpu.read(addr, SIZE[op]), "little")
        if op == "loadb":
            assert st["r"][4] == 0xEE00 | want
        elif op == "loadw":
            assert st["r"][4] == want
        else:
            assert pair_of(st["r"], 4) == want
    else:
        assert why == Exit.FAULT
        assert n == 0
        vec, pc, fa = cpu.fault
        assert (vec, pc) == (12, CODE)
        assert addr <= fa < addr + SIZE[op]
        st = cpu.get_state()
        assert st == before, "a faulting load must not change any register"


@pytest.mark.parametrize("op,addr,ok", [
    ("storb", R - 1, True), ("storb", R, False), ("storw", R - 2, True), ("storw", R - 1, False),
    ("stord", R - 4, True), ("stord", R - 2, False), ("stord", R - 3, False), ("stord", R - 1, False),
])
def test_store_at_end_of_ram(cpu, op, addr, ok):
    cpu.write(R - 4, b"\x01\x02\x03\x04")
    why, n, before = _fault_run(cpu, ls_disp4(op, 4, 0, 12), regs={12: addr, 4: 0xAAAA, 5: 0xBBBB})
    if ok:
        assert n >= 1
        assert cpu.read(addr, SIZE[op]) == bytes.fromhex("aaaabbbb")[:SIZE[op]]
    else:
        assert why == Exit.FAULT and n == 0
        vec, pc, fa = cpu.fault
        assert (vec, pc) == (12, CODE)
        assert addr <= fa < addr + SIZE[op]
        assert cpu.read(R - 4, 4) == b"\x01\x02\x03\x04", "no partial store"
        assert cpu.get_state() == before


@pytest.mark.parametrize("op", ["sbit", "cbit"])
def test_bit_op_at_end_of_ram(cpu, op):
    cpu.write(R - 1, b"\x0F")
    why, n, _ = _fault_run(cpu, bitb_0(op, 7, 12), regs={12: R - 1})
    assert n >= 1
    assert cpu.read(R - 1, 1) == (b"\x8F" if op == "sbit" else b"\x0F")
    why, n, before = _fault_run(cpu, bitb_0(op, 7, 12), regs={12: R})
    assert why == Exit.FAULT and n == 0 and cpu.fault == (12, CODE, R)
    why, n, before = _fault_run(cpu, bitw_0(op, 15, 12), regs={12: R - 1})
    assert why == Exit.FAULT and n == 0 and cpu.fault[:2] == (12, CODE)
    assert cpu.read(R - 1, 1) == (b"\x8F" if op == "sbit" else b"\x0F")


def test_loadm_crossing_end_of_ram_faults_without_effect(cpu):
    cpu.write(R - 4, b"\x01\x02\x03\x04")
    regs = {i: 0xEEEE for i in range(12)}
    why, n, before = _fault_run(cpu, loadmp(4), regs=regs, pairs={0: R - 4})
    assert why == Exit.FAULT and n == 0 and cpu.fault[:2] == (12, CODE)
    assert cpu.get_state() == before


def test_stormp_crossing_end_of_ram_faults(cpu):
    regs = {i: 0x1111 for i in range(12)}
    why, n, before = _fault_run(cpu, stormp(3), regs=regs, pairs={6: R - 4})
    assert why == Exit.FAULT and n == 0 and cpu.fault[:2] == (12, CODE)
    assert cpu.get_state() == before


# ---------------------------------------------------------------------------- fetch faults
def test_fetch_at_end_of_ram(cpu):
    load(cpu, R - 2, op_imm("movw", 1, 0))
    set_regs(cpu, {0: 0}, pc=R - 2, psr=0)
    why, n = cpu.run(10)
    assert cpu.reg(0) == 1
    assert n == 1
    assert why == Exit.FAULT
    assert cpu.fault[:2] == (12, R)
    assert cpu.fault[2] == R
    assert cpu.pc == R


def test_fetch_instruction_straddling_end_of_ram(cpu):
    cpu.write(R - 2, p2b(op_imm16("movw", 0x1234, 0)[0]))
    set_regs(cpu, {0: 0}, pc=R - 2, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT and n == 0
    assert cpu.fault[:2] == (12, R - 2)
    assert cpu.fault[2] in (R, R - 2)
    assert cpu.reg(0) == 0


def test_fetch_far_outside_ram(cpu):
    set_regs(cpu, pc=0xFFFFFE, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT and n == 0
    assert cpu.fault[:2] == (12, 0xFFFFFE)


# ---------------------------------------------------------------------------- self-modifying code
MOVW1 = op_imm("movw", 1, 0)      # 0x5A10
MOVW2 = op_imm("movw", 2, 0)      # 0x5A20


def test_host_write_invalidates_executed_code(cpu):
    load(cpu, CODE, MOVW1, SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 1
    cpu.write(CODE, p2b(*MOVW2))
    cpu.pc = CODE
    run_to_probe(cpu)
    assert cpu.reg(0) == 2


def test_host_ram_view_plus_invalidate(cpu):
    load(cpu, CODE, MOVW1, SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    run_to_probe(cpu)
    cpu.ram[CODE:CODE + 2] = p2b(*MOVW2)
    cpu.invalidate(CODE, 2)
    cpu.pc = CODE
    run_to_probe(cpu)
    assert cpu.reg(0) == 2


def test_guest_store_into_previously_executed_code(cpu):
    # 0x1000: movw $1,r0 ; excp svc      0x1010: storw r2, 0x1000 ; br 0x1000
    load(cpu, CODE, MOVW1, SVC)
    load(cpu, CODE + 0x10, ls_abs20("storw", 2, CODE), bcond16(14, -0x14))
    set_regs(cpu, {0: 0, 2: MOVW2[0]}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 1
    cpu.pc = CODE + 0x10
    n = run_to_probe(cpu)
    assert n == 4
    assert cpu.reg(0) == 2


def test_guest_store_into_next_instruction_same_block(cpu):
    """The store modifies the instruction right after it (already predecoded)."""
    # 0x1000: storw r2, 0x1004 ; 0x1004: movw $1, r0 ; 0x1006: excp svc
    load(cpu, CODE, ls_abs20("storw", 2, CODE + 4), MOVW1, SVC)
    set_regs(cpu, {0: 0, 2: MOVW1[0]}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 1
    set_regs(cpu, {0: 0, 2: MOVW2[0]}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 2
    assert rd16(cpu, CODE + 4) == MOVW2[0]


def test_guest_store_into_immediate_parcel(cpu):
    """Change P1 (the imm16) of an already-executed 32-bit instruction with storb."""
    # 0x1000: movw $0x1234, r0 ; excp svc ; 0x1010: storb r2, 0x1002 ; br 0x1000
    load(cpu, CODE, op_imm16("movw", 0x1234, 0), SVC)
    load(cpu, CODE + 0x10, ls_abs20("storb", 2, CODE + 2), bcond16(14, -0x14))
    set_regs(cpu, {0: 0, 2: 0x0099}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 0x1234
    cpu.pc = CODE + 0x10
    run_to_probe(cpu)
    assert cpu.reg(0) == 0x1299


def test_guest_loop_rewrites_its_own_body(cpu):
    """A loop whose body instruction is rewritten by the loop itself each pass."""
    # 0x1000: addw $1, r0          (rewritten to addw $2, r0 on the first pass)
    # 0x1002: storw r2, 0x1000
    # 0x1006: addw $-1, r5 ; 0x1008: cmpw $0, r5 ; 0x100A: bne 0x1000 ; 0x100C: excp svc
    prog = [op_imm("addw", 1, 0), ls_abs20("storw", 2, CODE), op_imm("addw", -1, 5),
            op_imm("cmpw", 0, 5), bcond16(1, -0xA), SVC]
    load(cpu, CODE, *prog)
    set_regs(cpu, {0: 0, 5: 3, 2: op_imm("addw", 2, 0)[0]}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 1 + 2 + 2


def test_code_straddling_page_boundary_host_write(cpu):
    """A 4-byte instruction at 0x1FFE has its P1 on the next page."""
    load(cpu, 0x1FFE, op_imm16("movw", 0x1234, 0), SVC)
    set_regs(cpu, {0: 0}, pc=0x1FFE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 0x1234
    cpu.write(0x2000, b"\x78\x56")
    cpu.pc = 0x1FFE
    run_to_probe(cpu)
    assert cpu.reg(0) == 0x5678


def test_code_straddling_page_boundary_guest_store(cpu):
    load(cpu, 0x1FFC, op_imm32("movd", 0x11223344, 0), SVC)   # P1 at 0x1FFE, P2 at 0x2000
    load(cpu, 0x3000, ls_abs20("storw", 5, 0x2000), jump(2))
    set_regs(cpu, {5: 0xAABB}, pairs={2: 0x1FFC >> 1}, pc=0x1FFC, psr=0)
    run_to_probe(cpu)
    assert pair_of(cpu.get_state()["r"], 0) == 0x11223344
    cpu.pc = 0x3000
    run_to_probe(cpu)
    assert pair_of(cpu.get_state()["r"], 0) == 0x1122AABB


def test_store_of_undefined_encoding_over_executed_code(cpu):
    load(cpu, CODE, MOVW1, SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    run_to_probe(cpu)
    load(cpu, 0x1100, ls_abs20("storw", 4, CODE), jump(6))
    set_regs(cpu, {4: 0x0000}, pairs={6: CODE >> 1}, pc=0x1100, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT and n == 2
    assert cpu.fault == (10, CODE, 0)


def test_jump_into_middle_of_decoded_instruction(cpu):
    """P1 of `movw $0x5A30, r0` is itself `movw $3, r0`."""
    load(cpu, CODE, op_imm16("movw", 0x5A30, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 0x5A30
    cpu.pc = CODE + 2
    assert run_to_probe(cpu) == 2
    assert cpu.reg(0) == 3


def test_loadd_into_its_own_base_pair(cpu):
    cpu.write(EA, bytes.fromhex("78563412"))
    st = exec_one(cpu, ls_disp4("loadd", 0, 0, 0), pairs={0: EA})
    assert pair_of(st["r"], 0) == 0x12345678


def test_bit_word_op_unaligned(cpu):
    cpu.write(EA + 1, b"\x00\x00")
    exec_one(cpu, bitw_abs20("sbit", 15, EA + 1))
    assert cpu.read(EA, 4) == b"\x00\x00\x80\x00"


# ---------------------------------------------------------------------------- dirty pages
def test_dirty_page_from_guest_stores(cpu):
    log = cpu.dirty_consumer()
    load(cpu, CODE, ls_abs20("storb", 1, 0x5123), ls_abs20("stord", 1, 0x7FFE), ls_abs20("storw", 1, 0x9FFF), SVC)
    log.clear()
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert log.dirty_pages() == [5, 7, 8, 9, 10]
    assert log.dirty_pages() == []


def test_dirty_pages_two_consumers_and_host_write(cpu):
    a = cpu.dirty_consumer()
    b = cpu.dirty_consumer()
    a.clear()
    b.clear()
    cpu.write(0x3FFF, b"\x01\x02")
    assert a.dirty_pages() == [3, 4]
    load(cpu, CODE, ls_abs20("storw", 1, 0x20000), SVC)
    a.clear()
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert a.dirty_pages() == [0x20]
    assert b.dirty_pages() == [1, 3, 4, 0x20]  # page 1 = the code written by load()


def test_dirty_pages_from_push_and_bit_ops(cpu):
    from insn_helpers import push
    log = cpu.dirty_consumer()
    load(cpu, CODE, push(2, 0), bitb_0("sbit", 0, 2), SVC)
    log.clear()
    # push $2, r0 with sp = 0x9002 writes 0x8FFE..0x9001: pages 8 and 9
    set_regs(cpu, {2: 0x4000, 3: 0, 4: 0x6000, 5: 0, 15: 0x9002}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert log.dirty_pages() == [4, 8, 9]


def test_dirty_pages_from_storm(cpu):
    log = cpu.dirty_consumer()
    load(cpu, CODE, storm(4), SVC)
    log.clear()
    set_regs(cpu, {1: 0x2FFC}, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert log.dirty_pages() == [2, 3]


def test_faulting_store_marks_nothing(cpu):
    log = cpu.dirty_consumer()
    load(cpu, CODE, ls_disp4("stord", 4, 0, 12))
    log.clear()
    set_regs(cpu, {12: R - 2}, pc=CODE, psr=0)
    why, n = cpu.run(1)
    assert why == Exit.FAULT
    assert log.dirty_pages() == []


@pytest.mark.toolchain
def test_mem_encodings_match_assembler(tmp_path):
    cases = [
        ("loadw 4(sp), r2", ls_disp4("loadw", 2, 4, 15)), ("loadb 0x1234(r1,r0), r4", ls_disp16("loadb", 4, 0x1234, 0)),
        ("loadb 0x7a1234, r0", ls_abs24("loadb", 0, 0x7A1234)), ("loadb -4(r1,r0), r1", ls_neg("loadb", 1, 1, 0, -4)),
        ("storw $3, 0x12345(r2)", ls_long("storw_imm", 3, 0, 2, 0x12345)),
        ("loadd 0x12344, (r3,r2)", ls_abs20("loadd", 2, 0x12344)), ("stord (r3,r2), 0x12344", ls_abs20("stord", 2, 0x12344)),
        ("storb r3, 0x12345", ls_abs20("storb", 3, 0x12345)), ("loadw [r13]0x12345, r3", ls_idx_abs20("loadw", 3, 1, 0x12345)),
        ("storb $5, [r12]0x12345", ls_idx_abs20("storb_imm", 5, 0, 0x12345)),
        ("loadw [r12]0(r1,r0), r3", ls_idx0("loadw", 3, 0, 0)), ("stord (r3,r2), [r13]0(r5,r4)", ls_idx0("stord", 2, 1, 2)),
        ("loadd 0x12345(r4,r3), (r6,r5)", ls_long("loadd", 5, 1, 3, 0x12345)),
        ("storw $4, [r12]0x1234(r1,r0)", ls_idx14("storw_imm", 4, 0, 0, 0x1234)),
        ("sbitw $8, 0x12344", bitw_abs20("sbit", 8, 0x12344)), ("cbitb $3, 0x12345", bitb_abs20("cbit", 3, 0x12345)),
        ("tbitw $2, 0(r1,r0)", bitw_0("tbit", 2, 0)), ("sbitb $6, 0(r3,r2)", bitb_0("sbit", 6, 2)),
        ("tbitw $9, 0x1234(r3,r2)", bitw_disp16("tbit", 9, 0x1234, 2)),
        ("cbitb $3, [r12]0xa7a(r1,r0)", bit_idx14("cbit", 0, 3, 0, 0, 0xA7A)),
        ("sbitw $3, 0x12345(r1,r0)", bit_long("sbit", 1, 3, 1, 0, 0x12345)),
        ("loadm $3", loadm(3)), ("loadmp $8", loadmp(8)), ("storm $2", storm(2)), ("stormp $5", stormp(5)),
        ("storb $7, 0(r1,r0)", storx_imm0("storb_imm", 7, 0)), ("storw $7, 0x1234(r1,r0)", storx_imm_disp16("storw_imm", 7, 0x1234, 0)),
    ]
    compare_with_assembler(tmp_path, [(f"  {a}", i) for a, i in cases])


# ---------------------------------------------------------------------------- MMIO windows
MMIO = 0x200000


class _Dev:
    def __init__(self):
        self.log = []
        self.regs = {}
        self.stop_on_write = False
        self.bus_error = False

    def read(self, off, size):
        self.log.append(("r", off, size))
        if self.bus_error:
            from aemu.cpu import MmioBusError
            raise MmioBusError()
        return self.regs.get(off, 0xA1B2C3D4) & ((1 << (8 * size)) - 1)

    def write(self, off, size, value):
        self.log.append(("w", off, size, value))
        if self.bus_error:
            from aemu.cpu import MmioBusError
            raise MmioBusError()
        self.regs[off] = value
        return self.stop_on_write


@pytest.fixture
def mmio_cpu():
    cpu = new_cpu()
    dev = _Dev()
    cpu.map_mmio(MMIO, 0x100, dev.read, dev.write)
    return cpu, dev


@pytest.mark.parametrize("op,size", [("loadb", 1), ("loadw", 2), ("loadd", 4)])
def test_mmio_load_sizes(mmio_cpu, op, size):
    cpu, dev = mmio_cpu
    st = exec_one(cpu, ls_abs24(op, 2, MMIO + 0x10), regs={2: 0xEEEE, 3: 0xEEEE})
    assert dev.log == [("r", 0x10, size)]
    if op == "loadb":
        assert st["r"][2] == 0xEED4
    elif op == "loadw":
        assert st["r"][2] == 0xC3D4
    else:
        assert pair_of(st["r"], 2) == 0xA1B2C3D4


@pytest.mark.parametrize("op,size,val", [("storb", 1, 0x34), ("storw", 2, 0x1234), ("stord", 4, 0x56781234)])
def test_mmio_store_sizes(mmio_cpu, op, size, val):
    cpu, dev = mmio_cpu
    exec_one(cpu, ls_disp16(op, 2, 0x20, 12), regs={12: MMIO, 2: 0x1234, 3: 0x5678})
    assert dev.log == [("w", 0x20, size, val)]


def test_mmio_bit_op_read_modify_write(mmio_cpu):
    cpu, dev = mmio_cpu
    dev.regs[4] = 0x0F
    st = exec_one(cpu, bit_abs24("sbit", 0, 7, MMIO + 4), psr=0)
    assert dev.log == [("r", 4, 1), ("w", 4, 1, 0x8F)]
    assert st["psr"] == 0


def test_mmio_bus_error_is_iad(mmio_cpu):
    cpu, dev = mmio_cpu
    dev.bus_error = True
    load(cpu, CODE, ls_abs24("loadw", 2, MMIO + 8))
    set_regs(cpu, {2: 0x7777}, pc=CODE, psr=0)
    why, n = cpu.run(5)
    assert why == Exit.FAULT and n == 0
    assert cpu.fault == (12, CODE, MMIO + 8)
    assert cpu.reg(2) == 0x7777


def test_mmio_write_can_end_the_slice(mmio_cpu):
    cpu, dev = mmio_cpu
    dev.stop_on_write = True
    load(cpu, CODE, ls_abs24("storw", 2, MMIO), op_imm("movw", 1, 0), op_imm("movw", 2, 0))
    set_regs(cpu, {0: 0, 2: 5}, pc=CODE, psr=0)
    why, n = cpu.run(100)
    assert why == Exit.STOP
    assert n == 1
    assert cpu.pc == CODE + 6 and cpu.reg(0) == 0


def test_access_next_to_mmio_window_faults(mmio_cpu):
    cpu, dev = mmio_cpu
    load(cpu, CODE, ls_abs24("loadb", 2, MMIO + 0x100))
    set_regs(cpu, pc=CODE, psr=0)
    why, n = cpu.run(5)
    assert why == Exit.FAULT and cpu.fault == (12, CODE, MMIO + 0x100)
    assert dev.log == []
