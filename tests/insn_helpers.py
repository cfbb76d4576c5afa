"""Helpers for the per-instruction tests (test_insn_*.py).

Everything here is written from /work/shared/docs/cr16c-isa.md, independently
of the C core: instruction encoders (parcels -> little-endian bytes), a tiny
machine wrapper, and reference models for the flag computations.

Conventions:
* an instruction is a tuple of 16-bit parcels, P0 first (section 2.3);
* code is placed at CODE (0x1000) unless a test says otherwise;
* ``RAM`` (1 MiB) is the default guest RAM size: small enough that the
  abs20 remap area (0xF00000..0xFFFFFF) is outside RAM.
"""
from __future__ import annotations

import struct
from typing import Iterable, Sequence

from aemu.cpu import Cpu, Exit, Psr, Vector  # noqa: F401  (re-exported)

CODE = 0x1000
RAM = 1 << 20

# PSR bits (section 1.4)
C, T, L, U, F, Z, N, E, P, I = 0x1, 0x2, 0x4, 0x8, 0x20, 0x40, 0x80, 0x200, 0x400, 0x800
PSR_MASK = 0x0EEF
CFG_ED = 0x100

NOP = 0x2C00
SVC = 0x00C5          # excp svc: the "probe" used to stop a run (Exit.SYSCALL)
BPT = 0x00C8
RETX = 0x0003
WAIT = 0x0006
EIWAIT = 0x0007
DI = 0x0004
EI = 0x0005


# --------------------------------------------------------------------------- bytes
def p2b(*parcels: int) -> bytes:
    """Parcels -> bytes in memory order (each parcel little-endian)."""
    flat: list[int] = []
    for p in parcels:
        if isinstance(p, (tuple, list)):
            flat.extend(p)
        else:
            flat.append(p)
    for p in flat:
        assert 0 <= p <= 0xFFFF, hex(p)
    return b"".join(struct.pack("<H", p) for p in flat)


def code(*insns: Sequence[int] | int) -> bytes:
    """Concatenate instructions (each a parcel tuple or a single parcel)."""
    out = b""
    for i in insns:
        out += p2b(*(i if isinstance(i, (tuple, list)) else (i,)))
    return out


def u16(v: int) -> int:
    return v & 0xFFFF


def u32(v: int) -> int:
    return v & 0xFFFFFFFF


def sx(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# --------------------------------------------------------------------------- encoders
# 8/16-bit ALU (section 4.2): OP_imm byte values
OPS = {
    "andb": 0x20, "andw": 0x22, "orb": 0x24, "orw": 0x26, "xorb": 0x28, "xorw": 0x2A,
    "addub": 0x2C, "adduw": 0x2E, "addb": 0x30, "addw": 0x32, "addcb": 0x34, "addcw": 0x36,
    "subb": 0x38, "subw": 0x3A, "subcb": 0x3C, "subcw": 0x3E,
    "cmpb": 0x50, "cmpw": 0x52, "movb": 0x58, "movw": 0x5A, "mulb": 0x64, "mulw": 0x66,
    "movd": 0x54, "cmpd": 0x56, "addd": 0x60,
}


def op_imm4(op: str, field: int, d: int) -> tuple[int, ...]:
    """Short immediate form with the raw 4-bit field (9 = -1, must not be 11)."""
    assert 0 <= field <= 15 and field != 11
    return ((OPS[op] << 8) | (field << 4) | d,)


def op_imm16(op: str, imm: int, d: int) -> tuple[int, ...]:
    """Escaped immediate form: imm field 0xB, P1 = imm16."""
    return ((OPS[op] << 8) | 0xB0 | d, imm & 0xFFFF)


def op_imm(op: str, imm: int, d: int) -> tuple[int, ...]:
    """The form the assembler would pick for a small value."""
    if imm == -1:
        return op_imm4(op, 9, d)
    if 0 <= imm <= 15 and imm not in (9, 11):
        return op_imm4(op, imm, d)
    return op_imm16(op, imm, d)


def op_reg(op: str, s: int, d: int) -> tuple[int, ...]:
    return (((OPS[op] + 1) << 8) | (s << 4) | d,)


def movd_imm20(imm: int, q: int) -> tuple[int, ...]:
    return (0x0500 | (q << 4) | ((imm >> 16) & 0xF), imm & 0xFFFF)


def addd_imm20(imm: int, q: int) -> tuple[int, ...]:
    return (0x0400 | (q << 4) | ((imm >> 16) & 0xF), imm & 0xFFFF)


IMM32_OPS = {"addd": 0x20, "subd": 0x30, "andd": 0x40, "ord": 0x50, "xord": 0x60,
             "movd": 0x70, "cmpd": 0x90}


def op_imm32(op: str, imm: int, q: int) -> tuple[int, ...]:
    imm &= 0xFFFFFFFF
    return (IMM32_OPS[op] | q, imm >> 16, imm & 0xFFFF)


G14 = {"lpr": 0x0, "lprd": 0x1, "spr": 0x2, "sprd": 0x3, "jal": 0x8, "ord": 0x9,
       "xord": 0xA, "andd": 0xB, "subd": 0xC, "macqw": 0xD, "macuw": 0xE, "macsw": 0xF}


def op_dreg(op: str, p: int, q: int) -> tuple[int, ...]:
    """32-bit register forms of the 0x0014 group: ord/xord/andd/subd p, q."""
    return (0x0014, (G14[op] << 12) | (p << 4) | q)


def mac(op: str, s1: int, s2: int, q: int) -> tuple[int, ...]:
    return (0x0014, (G14[op] << 12) | (q << 8) | (s1 << 4) | s2)


def movd_reg(p: int, q: int) -> tuple[int, ...]:
    return (0x5500 | (p << 4) | q,)


def addd_reg(p: int, q: int) -> tuple[int, ...]:
    return (0x6100 | (p << 4) | q,)


def cmpd_reg(p: int, q: int) -> tuple[int, ...]:
    return (0x5700 | (p << 4) | q,)


def movxb(s, d): return (0x5C00 | (s << 4) | d,)
def movzb(s, d): return (0x5D00 | (s << 4) | d,)
def movxw(s, q): return (0x5E00 | (s << 4) | q,)
def movzw(s, q): return (0x5F00 | (s << 4) | q,)
def mulsb(s, d): return (0x0B00 | (s << 4) | d,)
def mulsw(s, q): return (0x6200 | (s << 4) | q,)
def muluw(s, q): return (0x6300 | (s << 4) | q,)


# shifts (sections 3.5, 4.5)
def ashub_imm(n, d):
    assert -8 <= n <= 7
    return (0x4000 | ((n & 0xF) << 4) | d,)


def ashuw_imm(n, d):
    assert -16 <= n <= 15
    return (0x4200 | ((n & 0x1F) << 4) | d,)


def ashud_imm(n, q):
    assert -32 <= n <= 31
    return (0x4C00 | ((n & 0x3F) << 4) | q,)


def lshb_imm(n, d):
    assert -8 <= n <= -1
    return (0x0900 | ((n & 0xF) << 4) | d,)


def lshw_imm(n, d):
    assert -16 <= n <= -1
    return (0x4900 | ((n & 0xF) << 4) | d,)


def lshd_imm(n, q):
    assert -32 <= n <= -1
    return (0x4A00 | ((n & 0x1F) << 4) | q,)


SHIFT_REG = {"ashub": 0x41, "lshb": 0x44, "ashuw": 0x45, "lshw": 0x46, "lshd": 0x47, "ashud": 0x48}


def shift_reg(op, c, d):
    return ((SHIFT_REG[op] << 8) | (c << 4) | d,)


def tbit_imm(b, d): return (0x0600 | (b << 4) | d,)
def tbit_reg(b, d): return (0x0700 | (b << 4) | d,)
def scond(c, d): return (0x0800 | (c << 4) | d,)


# ---- loads / stores (section 4.9)
FAMILY = {"loadw": 0x9, "loadd": 0xA, "loadb": 0xB, "storw": 0xD, "stord": 0xE, "storb": 0xF}
SCALE = {"loadw": 2, "loadd": 2, "loadb": 1, "storw": 2, "stord": 2, "storb": 1}


def ls_disp4(op, r, disp, p):
    s = SCALE[op]
    assert disp % s == 0 and 0 <= disp // s <= 13
    return ((FAMILY[op] << 12) | ((disp // s) << 8) | (r << 4) | p,)


def ls_idx0(op, r, x, k):
    return ((FAMILY[op] << 12) | 0xE00 | (r << 4) | (x << 3) | k,)


def ls_disp16(op, r, disp, p):
    return ((FAMILY[op] << 12) | 0xF00 | (r << 4) | p, disp & 0xFFFF)


ABS20_OP = {"loadb": 0x88, "loadw": 0x89, "loadd": 0x87, "storb": 0xC8, "storw": 0xC9, "stord": 0xC7,
            "storb_imm": 0x81, "storw_imm": 0xC1}
IDXABS_OP = {"loadb": 0x8A, "loadd": 0x8C, "loadw": 0x8E, "storb": 0xCA, "stord": 0xCC, "storw": 0xCE,
             "storb_imm": 0x84, "storw_imm": 0xC4}


def ls_abs20(op, r, addr):
    """r = data register / pair, or the imm4 for storb_imm/storw_imm."""
    return ((ABS20_OP[op] << 8) | (r << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


def ls_idx_abs20(op, r, x, addr):
    return (((IDXABS_OP[op] + x) << 8) | (r << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


# index disp14 group: (opcode byte, t)
IDX14 = {"storb_imm": (0x86, 0), "loadb": (0x86, 1), "loadd": (0x86, 2), "loadw": (0x86, 3),
         "storw_imm": (0xC6, 0), "storb": (0xC6, 1), "stord": (0xC6, 2), "storw": (0xC6, 3)}


def disp14_pieces(disp):
    assert 0 <= disp < 1 << 14
    p0 = ((disp >> 4) & 3) << 4
    p1 = (((disp >> 6) & 3) << 14) | (((disp >> 8) & 0x3F) << 8) | (disp & 0xF)
    return p0, p1


def ls_idx14(op, r, x, k, disp):
    opc, t = IDX14[op]
    a, b = disp14_pieces(disp)
    return ((opc << 8) | (t << 6) | a | (x << 3) | k, b | (r << 4))


# long (48-bit) forms: P0 0x0012 / 0x0013, oo
LONG = {"storb_imm": (0x12, 0), "loadb": (0x12, 1), "loadd": (0x12, 2), "loadw": (0x12, 3),
        "storw_imm": (0x13, 0), "storb": (0x13, 1), "stord": (0x13, 2), "storw": (0x13, 3)}


def ls_long(op, r, mm, b, disp20):
    """mm 0: disp20(reg16 b); 1: disp20(pair b); 2: [rX]disp20(k), b = x<<3|k."""
    opc, oo = LONG[op]
    assert 0 <= disp20 <= 0xFFFFF
    return (opc, (oo << 14) | (mm << 12) | ((disp20 >> 16) << 8) | (r << 4) | b, disp20 & 0xFFFF)


def ls_abs24(op, r, addr):
    opc, oo = LONG[op]
    return (opc, (oo << 14) | (3 << 12) | (((addr >> 16) & 0xF) << 8) | (r << 4) | ((addr >> 20) & 0xF),
            addr & 0xFFFF)


NEG = {"loadb": (0x18, 1), "loadd": (0x18, 2), "loadw": (0x18, 3),
       "storb": (0x19, 1), "stord": (0x19, 2), "storw": (0x19, 3)}


def ls_neg(op, r, m, b, disp):
    """Negative disp20 form; disp in -0xFFFFF..-1; m 0 = reg16 base, 1 = pair base."""
    assert -0xFFFFF <= disp <= -1
    opc, oo = NEG[op]
    f = disp & 0xFFFFF
    return (opc, (oo << 14) | (m << 12) | ((f >> 16) << 8) | (r << 4) | b, f & 0xFFFF)


def storx_imm0(op, imm, p):
    """storb/storw $imm4, 0(p)"""
    return (((0x82 if op == "storb_imm" else 0xC2) << 8) | (imm << 4) | p,)


def storx_imm_disp16(op, imm, disp, p):
    return (((0x83 if op == "storb_imm" else 0xC3) << 8) | (imm << 4) | p, disp & 0xFFFF)


# ---- bit operations (section 4.8)
BITK = {"cbit": 0x68, "sbit": 0x70, "tbit": 0x78}
BITOO = {"cbit": 1, "sbit": 2, "tbit": 3}


def bitb_idx_abs20(op, b, x, addr):
    return ((BITK[op] << 8) | (x << 7) | (b << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


def bitw_disp16(op, b, disp, p):
    return (((BITK[op] + 1) << 8) | (b << 4) | p, disp & 0xFFFF)


def bitb_0(op, b, p):
    assert b < 8
    return (((BITK[op] + 2) << 8) | (b << 4) | p,)


def bit_idx14(op, w, b, x, k, disp):
    a, c = disp14_pieces(disp)
    return (((BITK[op] + 2) << 8) | 0x80 | (w << 6) | a | (x << 3) | k, c | (b << 4))


def bitb_disp16(op, b, disp, p):
    assert b < 8
    return (((BITK[op] + 3) << 8) | (b << 4) | p, disp & 0xFFFF)


def bitb_abs20(op, b, addr):
    assert b < 8
    return (((BITK[op] + 3) << 8) | 0x80 | (b << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


def bitw_idx_abs20(op, b, x, addr):
    return (((BITK[op] + 4 + x) << 8) | (b << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


def bitw_0(op, b, p):
    return (((BITK[op] + 6) << 8) | (b << 4) | p,)


def bitw_abs20(op, b, addr):
    return (((BITK[op] + 7) << 8) | (b << 4) | ((addr >> 16) & 0xF), addr & 0xFFFF)


def bit_long(op, word, b, mm, r, disp20):
    return (0x0011 if word else 0x0010,
            (BITOO[op] << 14) | (mm << 12) | ((disp20 >> 16) << 8) | (b << 4) | r, disp20 & 0xFFFF)


def bit_abs24(op, word, b, addr):
    return (0x0011 if word else 0x0010,
            (BITOO[op] << 14) | (3 << 12) | (((addr >> 16) & 0xF) << 8) | (b << 4) | ((addr >> 20) & 0xF),
            addr & 0xFFFF)


# ---- multiple load/store, stack
def loadm(cnt): return (0x00A0 | (cnt - 1),)
def loadmp(cnt): return (0x00A8 | (cnt - 1),)
def storm(cnt): return (0x00B0 | (cnt - 1),)
def stormp(cnt): return (0x00B8 | (cnt - 1),)


def push(cnt, s, a=False): return (0x0100 | (0x80 if a else 0) | ((cnt - 1) << 4) | s,)
def pop(cnt, s, a=False): return (0x0200 | (0x80 if a else 0) | ((cnt - 1) << 4) | s,)
def popret(cnt, s, a=False): return (0x0300 | (0x80 if a else 0) | ((cnt - 1) << 4) | s,)


# ---- control transfer (sections 3.4, 4.12)
def bcond16(c, disp):
    assert disp % 2 == 0 and -256 <= disp <= 254
    e = (disp // 2) & 0xFF
    assert e != 0x80
    return (0x1000 | ((e >> 4) << 8) | (c << 4) | (e & 0xF),)


def f17(disp):
    assert disp % 2 == 0 and -0x10000 <= disp <= 0xFFFE
    return (disp & 0xFFFE) | (1 if disp < 0 else 0)


def f25(disp):
    assert disp % 2 == 0 and -0x1000000 <= disp <= 0xFFFFFE
    return (disp & 0xFFFFFE) | (1 if disp < 0 else 0)


def bcond32(c, disp):
    return (0x1800 | (c << 4), f17(disp))


def bcond48(c, disp):
    f = f25(disp)
    return (0x0010, (((f >> 16) & 0xF) << 8) | (c << 4) | (f >> 20), f & 0xFFFF)


def bal32(disp):
    f = f25(disp)
    return (0xC000 | (f >> 16), f & 0xFFFF)


def bal48(q, disp):
    f = f25(disp)
    return (0x0010, 0x2000 | (((f >> 16) & 0xF) << 8) | (q << 4) | (f >> 20), f & 0xFFFF)


def beq0(word, neq, n, s):
    opc = 0x0C + (2 if word else 0) + (1 if neq else 0)
    return ((opc << 8) | (n << 4) | s,)


def jcond(c, p): return (0x0A00 | (c << 4) | p,)
def jump(p): return jcond(14, p)
def jusr(p): return jcond(15, p)
def jal(p): return (0x00D0 | p,)
def jal2(q, p): return (0x0014, 0x8000 | (p << 4) | q)
def excp(v): return (0x00C0 | v,)


def lpr(s, preg): return (0x0014, (0x0 << 12) | (preg << 4) | s)
def lprd(p, preg): return (0x0014, (0x1 << 12) | (preg << 4) | p)
def spr(preg, d): return (0x0014, (0x2 << 12) | (preg << 4) | d)
def sprd(preg, q): return (0x0014, (0x3 << 12) | (preg << 4) | q)


PREG16 = {"dbs": 0, "dsr": 1, "dcrl": 2, "dcrh": 3, "car0l": 4, "car0h": 5, "car1l": 6, "car1h": 7,
          "cfg": 8, "psr": 9, "intbasel": 10, "intbaseh": 11, "ispl": 12, "isph": 13, "uspl": 14,
          "usph": 15}
PREG32 = {"dbs": 0, "dsr": 1, "dcr": 2, "car0": 4, "car1": 6, "cfg": 8, "psr": 9, "intbase": 10,
          "isp": 12, "usp": 14}


# --------------------------------------------------------------------------- semantics models
def cond_true(c: int, psr: int) -> bool:
    z, n, l, cf, f = bool(psr & Z), bool(psr & N), bool(psr & L), bool(psr & C), bool(psr & F)
    return [z, not z, cf, not cf, l, not l, n, not n, f, not f,
            (not z) and (not l), z or l, (not z) and (not n), z or n, True][c]


def add_model(d: int, s: int, cin: int, bits: int) -> tuple[int, int, int]:
    """(result, C, F) for d + s + cin in `bits` bits (section 4.2)."""
    m = (1 << bits) - 1
    d &= m
    s &= m
    full = d + s + cin
    r = full & m
    c = 1 if full > m else 0
    sv = sx(d, bits) + sx(s, bits) + cin
    f = 1 if not -(1 << (bits - 1)) <= sv < (1 << (bits - 1)) else 0
    return r, c, f


def sub_model(d: int, s: int, bin_: int, bits: int) -> tuple[int, int, int]:
    """(result, C, F) for d - s - bin in `bits` bits."""
    m = (1 << bits) - 1
    d &= m
    s &= m
    r = (d - s - bin_) & m
    c = 1 if s + bin_ > d else 0
    sv = sx(d, bits) - sx(s, bits) - bin_
    f = 1 if not -(1 << (bits - 1)) <= sv < (1 << (bits - 1)) else 0
    return r, c, f


def cmp_model(s: int, d: int, bits: int) -> int:
    """PSR bits Z|N|L for `cmp s, d` (s is the first operand)."""
    m = (1 << bits) - 1
    out = 0
    if (s & m) == (d & m):
        out |= Z
    if sx(s, bits) > sx(d, bits):
        out |= N
    if (s & m) > (d & m):
        out |= L
    return out


# --------------------------------------------------------------------------- machine helpers
def new_cpu(ram_size: int = RAM, **kw) -> Cpu:
    return Cpu(ram_size, **kw)


def set_regs(cpu: Cpu, regs: dict | None = None, pairs: dict | None = None, **special) -> None:
    """regs: {index: value}; pairs: {pair code: value}; special: pc=..., psr=..."""
    state = cpu.get_state()
    r = list(state["r"])
    for i, v in (regs or {}).items():
        r[i] = v & (0xFFFF if i < 12 else 0xFFFFFFFF)
    for p, v in (pairs or {}).items():
        v &= 0xFFFFFFFF
        if p < 11:
            r[p], r[p + 1] = v & 0xFFFF, v >> 16
        elif p == 11:
            r[11], r[12] = v & 0xFFFF, (r[12] & 0xFFFF0000) | (v >> 16)
        else:
            r[p] = v
    new = {"r": r}
    new.update(special)
    cpu.set_state(new)


def pair_of(r: Sequence[int], p: int) -> int:
    if p < 11:
        return r[p] | (r[p + 1] << 16)
    if p == 11:
        return r[11] | ((r[12] & 0xFFFF) << 16)
    return r[p]


def load(cpu: Cpu, addr: int, *insns) -> int:
    """Write instructions at addr; return the address after them."""
    b = code(*insns)
    cpu.write(addr, b)
    return addr + len(b)


def exec_one(cpu: Cpu, insn: Sequence[int], regs: dict | None = None, pairs: dict | None = None,
             at: int = CODE, psr: int = 0, expect_exit: Exit = Exit.BUDGET, **special) -> dict:
    """Place one instruction at `at`, set registers, run exactly 1 instruction.

    Returns the new state (get_state() dict).  Asserts the exit reason and that
    exactly one instruction was executed when the expected exit is BUDGET.
    """
    load(cpu, at, insn)
    set_regs(cpu, regs, pairs, pc=at, psr=psr, **special)
    why, n = cpu.run(1)
    assert why == expect_exit, (why, cpu.fault)
    if expect_exit == Exit.BUDGET:
        assert n == 1
    return cpu.get_state()


def run_to_probe(cpu: Cpu, budget: int = 1000) -> int:
    """Run until an `excp svc` host call; return the number of executed insns."""
    why, n = cpu.run(budget)
    assert why == Exit.SYSCALL, (why, cpu.fault, hex(cpu.pc))
    return n


def rd16(cpu: Cpu, a: int) -> int:
    return int.from_bytes(cpu.read(a, 2), "little")


def rd32(cpu: Cpu, a: int) -> int:
    return int.from_bytes(cpu.read(a, 4), "little")


def wr16(cpu: Cpu, a: int, v: int) -> None:
    cpu.write(a, (v & 0xFFFF).to_bytes(2, "little"))


def wr32(cpu: Cpu, a: int, v: int) -> None:
    cpu.write(a, (v & 0xFFFFFFFF).to_bytes(4, "little"))


def install_table(cpu: Cpu, intbase: int, handlers: dict[int, int], ed: bool = True) -> None:
    """Write a dispatch table (halved handler addresses) and set INTBASE/CFG.ED."""
    for vec, h in handlers.items():
        if ed:
            wr32(cpu, intbase + 4 * vec, h >> 1)
        else:
            wr16(cpu, intbase + 2 * vec, h >> 1)
    st = cpu.get_state()
    cfg = (st["cfg"] | CFG_ED) if ed else (st["cfg"] & ~CFG_ED)
    cpu.set_state({"intbase": intbase, "cfg": cfg})


def all_flag_combos() -> Iterable[int]:
    """All 32 combinations of C, L, F, Z, N."""
    bits = (C, L, F, Z, N)
    for m in range(32):
        yield sum(b for i, b in enumerate(bits) if m >> i & 1)


# --------------------------------------------------------------------------- toolchain cross-check
def assemble(tmp_path, lines: Sequence[str], link_at: int | None = None) -> bytes:
    """Assemble (and optionally link at `link_at`) with the real cr16-elf tools;
    return the .text bytes.  Skips the test when the toolchain is absent."""
    import subprocess

    from conftest import toolchain_tool

    asm, objcopy = toolchain_tool("as"), toolchain_tool("objcopy")
    src = tmp_path / "t.s"
    src.write_text("  .text\n  .globl _start\n_start:\n" + "".join(f"{ln}\n" for ln in lines))
    obj = tmp_path / "t.o"
    subprocess.run([asm, str(src), "-o", str(obj)], check=True)
    img = obj
    if link_at is not None:
        ld = toolchain_tool("ld")
        img = tmp_path / "t.elf"
        subprocess.run([ld, f"-Ttext={link_at:#x}", "-e", "_start", str(obj), "-o", str(img)], check=True)
    out = tmp_path / "t.bin"
    subprocess.run([objcopy, "-O", "binary", "-j", ".text", str(img), str(out)], check=True)
    return out.read_bytes()


def compare_with_assembler(tmp_path, cases, link_at: int | None = None) -> None:
    """cases: [(assembly line, parcels or None for a label/filler line)]."""
    got = assemble(tmp_path, [a for a, _ in cases], link_at)
    off = 0
    for text, insn in cases:
        if insn is None:
            continue
        want = p2b(*insn)
        assert got[off:off + len(want)] == want, (text, hex(off), got[off:off + len(want)].hex(), want.hex())
        off += len(want)
    assert off == len(got), (off, len(got))
