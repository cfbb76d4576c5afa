"""Disassembler for the CompactRISC CR16C (GNU ``cr16-elf``), written from cr16c-isa.md.

``decode(read16, addr)`` decodes one instruction; ``read16(a)`` must return the little-endian
16-bit parcel at byte address ``a`` and may raise ``IndexError`` past the end of memory (a
truncated instruction then decodes as ``.word``).  Decoding is table driven: a 256-entry table
on P0[15:8] plus a 256-entry secondary table on P0[7:0] for P0[15:8] = 0x00.

Operand syntax (GNU objdump's cr16 style wherever objdump is right):

* Numbers are hexadecimal with a ``0x`` prefix, lower case, no padding; negative values are
  written ``-0x8``.  ``.word`` operands are the 4-digit parcel, e.g. ``.word 0x0000``.
  Immediates carry ``$``; objdump's ``:s/:m/:l`` size suffixes and ``<symbol>`` notes are not
  printed.
* 16-bit register fields print ``r0``..``r15`` (objdump's names; r14/r15 are the low halves of
  ra/sp).  Register pairs print ``(r1,r0)``..``(r12,r11)``, ``(r12)``, ``(r13)``, ``(ra)``,
  ``(sp)``; the ``[r12]/[r13]`` index modes print ``[r12]0x12(r1,r0)``.  Note that the
  48-bit ``disp20(reg16)`` mode with register 12..15 prints ``(r12)``.. ``(r15)`` like objdump.
* Memory: ``0x4(sp)``, ``0x0(r1,r0)``, ``[r12]0x0(r3,r2)``, absolute ``0x1234``.  abs20
  addresses >= 0xF0000 print REMAPPED (``0xff1234``; objdump prints ``0xf1234``).  The
  0x0018/0x0019 forms take a signed 20-bit displacement and print negative ones as such
  (``-0x4(r1,r0)``; objdump prints the raw 20-bit field ``0xffffc``).
* Immediates: the imm4 value 9 prints ``$-0x1``; an escaped 16-bit immediate of a byte/word
  operation prints the raw parcel (``$0xfffe``, like objdump); the escaped immediate of
  ``movd/addd/cmpd``, which is sign-extended, prints signed (``addd $-0x8,(sp)``; objdump
  ``$0xfff8``).  imm20/imm32 print unsigned.  Shift counts print signed hex (``$-0x3``).
* Branch/call targets print the ABSOLUTE address ``(addr + disp) & 0xFFFFFF`` (objdump prints
  ``*+0x1026``, ``*-0x1000`` for backward branches, and a mere offset for beq0/bne0).
* ``push $0x2,r6,ra``; P0 = 0x011E/0x021E/0x031E print ``push ra``/``pop ra``/``popret ra``.
  Processor registers by name (``psr``, ``cfg``, ``intbase``, ``ispl``...), exception vectors
  by name (``excp svc``; vectors without a name print ``excp 0x0``), ``cinv [d,i,u]``,
  ``loadm $0x3`` (objdump adds a meaningless second operand).

Undefined encodings (cr16c-isa.md section 3.7: P0 = 0x0000-0x0002, 0x0008/9, 0x0015-0x0017,
0x001A-0x001F, 0x0080-0x008F, 0x00E0-0x00FF, 0x80xx, Scond c=14/15, Bcond c=15, lshb with
P0[7]=0, storb with data register 15 and disp16 (0xFFFx), the unused P1 sub-opcodes of
0x0010/0x0011/0x0014/0x0018/0x0019, lprd/sprd with a code that has no 32-bit register) decode as
a 2-byte ``.word 0xNNNN``; decode never raises for a readable P0.  Bits that the ISA tables show
as 0 but that binutils ignores (P1[11:8] of lpr/spr/lprd/sprd/jal/ord/xord/andd/subd, P1[7] of
the 48-bit byte bit operations) are ignored here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Insn", "decode", "decode_bytes", "disassemble_range"]

Read16 = Callable[[int], int]
#: what a handler returns: (length, parcels, mnemonic, operands), or None for undefined
_Result = Optional[tuple[int, tuple[int, ...], str, str]]
_Handler = Callable[[int, Read16, int], _Result]


@dataclass(frozen=True, slots=True)
class Insn:
    """One decoded instruction."""

    addr: int                   #: byte address
    length: int                 #: 2, 4 or 6 bytes
    parcels: tuple[int, ...]    #: the 16-bit parcels (P0, P1, P2) that were used
    mnemonic: str               #: e.g. "addw"; ".word" for an undefined/truncated encoding
    operands: str               #: e.g. "$0xfff,r1"; "" when there are none

    def __str__(self) -> str:
        return f"{self.mnemonic:<7} {self.operands}" if self.operands else self.mnemonic


# --------------------------------------------------------------------------- names

REG = tuple(f"r{i}" for i in range(16))
PAIR = tuple(f"(r{i + 1},r{i})" for i in range(12)) + ("(r12)", "(r13)", "(ra)", "(sp)")
IPAIR = ("(r1,r0)", "(r3,r2)", "(r5,r4)", "(r7,r6)", "(r9,r8)", "(r11,r10)", "(r4,r3)",
         "(r6,r5)")
IDX = ("[r12]", "[r13]")
COND = ("eq", "ne", "cs", "cc", "hi", "ls", "gt", "le", "fs", "fc", "lo", "hs", "lt", "ge")
PREG16 = ("dbs", "dsr", "dcrl", "dcrh", "car0l", "car0h", "car1l", "car1h", "cfg", "psr",
          "intbasel", "intbaseh", "ispl", "isph", "uspl", "usph")
PREG32 = ("dbs", "dsr", "dcr", None, "car0", None, "car1", None, "cfg", "psr", "intbase",
          None, "isp", None, "usp", None)
EXCP = {5: "svc", 6: "dvz", 7: "flg", 8: "bpt", 9: "trc", 10: "und", 12: "iad", 14: "dbg",
        15: "ise"}
_BRANCH = tuple("b" + c for c in COND) + ("br",)


def _h(v: int) -> str:
    """Hex in the module's style: 0x1a, -0x8."""
    return f"0x{v:x}" if v >= 0 else f"-0x{-v:x}"


def _target(addr: int, disp: int) -> str:
    return f"0x{(addr + disp) & 0xFFFFFF:x}"


def _disp25(f: int) -> int:
    """24-bit branch field with the sign in bit 0 (section 3.4)."""
    return (f & 0xFFFFFE) - (0x1000000 if f & 1 else 0)


def _abs20(v: int) -> str:
    """Absolute abs20 operand with the >= 0xF0000 remap applied."""
    return _h(v | 0xF00000 if v >= 0xF0000 else v)


def _disp14(p0: int, p1: int) -> int:
    """Index-mode disp14: P1[13:8] : P1[15:14] : P0[5:4] : P1[3:0]."""
    return (p1 >> 8 & 0x3F) << 8 | (p1 >> 14) << 6 | (p0 >> 4 & 3) << 4 | (p1 & 15)


def _long_mem(p1: int, p2: int) -> str:
    """Memory operand of the 48-bit forms: P1 = oo mm DDDD rrrr bbbb, P2 = disp[15:0]."""
    b = p1 & 15
    d = (p1 >> 8 & 15) << 16 | p2
    mode = p1 >> 12 & 3
    if mode == 0:
        return f"{_h(d)}({REG[b]})"
    if mode == 1:
        return f"{_h(d)}{PAIR[b]}"
    if mode == 2:
        return f"{IDX[b >> 3]}{_h(d)}{IPAIR[b & 7]}"
    return _h(b << 20 | d)


# --------------------------------------------------------------------------- tables

_T: list[_Handler] = [lambda p0, rd, a: None] * 256    # primary, by P0[15:8]
_S: list[_Handler] = [lambda p0, rd, a: None] * 256    # secondary, by P0[7:0] when P0[15:8]=0


def _fixed(mn: str, ops: str = "") -> _Handler:
    return lambda p0, rd, a: (2, (p0,), mn, ops)


# ---- secondary map (P0[15:8] = 0x00)

_S[0x03] = _fixed("retx")
_S[0x04] = _fixed("di")
_S[0x05] = _fixed("ei")
_S[0x06] = _fixed("wait")
_S[0x07] = _fixed("eiwait")
for _i, _o in enumerate(("[i]", "[i,u]", "[d]", "[d,u]", "[d,i]", "[d,i,u]")):
    _S[0x0A + _i] = _fixed("cinv", _o)


_BITOP = ("", "cbit", "sbit", "tbit")      # by P1[15:14] of the 48-bit bit operations


def _x10(p0: int, rd: Read16, a: int) -> _Result:
    """0x0010: 48-bit Bcond / bal pair / cbitb, sbitb, tbitb long forms."""
    p1 = rd(a + 2)
    op = p1 >> 12
    if op in (0, 2):
        p2 = rd(a + 4)
        tgt = _target(a, _disp25((p1 & 15) << 20 | (p1 >> 8 & 15) << 16 | p2))
        c = p1 >> 4 & 15
        if op == 2:
            return 6, (p0, p1, p2), "bal", f"{PAIR[c]},{tgt}"
        return None if c == 15 else (6, (p0, p1, p2), _BRANCH[c], tgt)
    if op < 4:
        return None
    p2 = rd(a + 4)
    return 6, (p0, p1, p2), _BITOP[op >> 2] + "b", f"${_h(p1 >> 4 & 7)},{_long_mem(p1, p2)}"


def _x11(p0: int, rd: Read16, a: int) -> _Result:
    """0x0011: cbitw, sbitw, tbitw long forms."""
    p1 = rd(a + 2)
    if p1 < 0x4000:
        return None
    p2 = rd(a + 4)
    return 6, (p0, p1, p2), _BITOP[p1 >> 14] + "w", f"${_h(p1 >> 4 & 15)},{_long_mem(p1, p2)}"


def _long_ls(store: bool) -> _Handler:
    """0x0012 (storb $imm4 / loadb / loadd / loadw) and 0x0013 (storw $imm4 / storb /
    stord / storw): the 48-bit load/store forms."""
    names = ("storw", "storb", "stord", "storw") if store else ("storb", "loadb", "loadd", "loadw")

    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1, p2 = rd(a + 2), rd(a + 4)
        mem, r, op = _long_mem(p1, p2), p1 >> 4 & 15, p1 >> 14
        if op == 0:
            return 6, (p0, p1, p2), names[0], f"${_h(r)},{mem}"
        data = PAIR[r] if op == 2 else REG[r]
        return 6, (p0, p1, p2), names[op], f"{data},{mem}" if store else f"{mem},{data}"
    return h


def _x14(p0: int, rd: Read16, a: int) -> _Result:
    """0x0014: 32-bit register group selected by P1[15:12]."""
    p1 = rd(a + 2)
    op, hi, lo = p1 >> 12, p1 >> 4 & 15, p1 & 15
    pp = (p0, p1)
    if op == 0:
        return 4, pp, "lpr", f"{REG[lo]},{PREG16[hi]}"
    if op == 2:
        return 4, pp, "spr", f"{PREG16[hi]},{REG[lo]}"
    if op in (1, 3):
        preg = PREG32[hi]
        if preg is None:
            return None
        return (4, pp, "lprd", f"{PAIR[lo]},{preg}") if op == 1 else \
            (4, pp, "sprd", f"{preg},{PAIR[lo]}")
    if op == 8:     # jal link, target: link pair in P1[3:0], target pair in P1[7:4]
        return 4, pp, "jal", f"{PAIR[lo]},{PAIR[hi]}"
    if op >= 13:
        return 4, pp, ("macqw", "macuw", "macsw")[op - 13], \
            f"{REG[hi]},{REG[lo]},{PAIR[p1 >> 8 & 15]}"
    if op >= 9:
        return 4, pp, ("ord", "xord", "andd", "subd")[op - 9], f"{PAIR[hi]},{PAIR[lo]}"
    return None


def _neg(store: bool) -> _Handler:
    """0x0018 / 0x0019: loads / stores with a signed disp20 (gas uses them for both signs)."""
    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1 = rd(a + 2)
        op = p1 >> 12
        if op not in (4, 5, 8, 9, 12, 13):
            return None
        p2 = rd(a + 4)
        f = (p1 >> 8 & 15) << 16 | p2
        d = _h(f - 0x100000 if f & 0x80000 else f)
        b, r, size = p1 & 15, p1 >> 4 & 15, op >> 2       # size 1 byte, 2 dword, 3 word
        mem = f"{d}{PAIR[b]}" if op & 1 else f"{d}({REG[b]})"
        data = PAIR[r] if size == 2 else REG[r]
        if store:
            return 6, (p0, p1, p2), "stor" + " bdw"[size], f"{data},{mem}"
        return 6, (p0, p1, p2), "load" + " bdw"[size], f"{mem},{data}"
    return h


def _imm32(mn: str) -> _Handler:
    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1, p2 = rd(a + 2), rd(a + 4)
        return 6, (p0, p1, p2), mn, f"${_h(p1 << 16 | p2)},{PAIR[p0 & 15]}"
    return h


def _multi(mn: str) -> _Handler:
    return lambda p0, rd, a: (2, (p0,), mn, f"${_h((p0 & 7) + 1)}")


_S[0x10], _S[0x11], _S[0x14] = _x10, _x11, _x14
_S[0x12], _S[0x13] = _long_ls(False), _long_ls(True)
_S[0x18], _S[0x19] = _neg(False), _neg(True)
for _base, _mn in ((0x20, "addd"), (0x30, "subd"), (0x40, "andd"), (0x50, "ord"),
                   (0x60, "xord"), (0x70, "movd"), (0x90, "cmpd")):
    for _i in range(16):
        _S[_base + _i] = _imm32(_mn)
for _i in range(8):
    _S[0xA0 + _i] = _multi("loadm")
    _S[0xA8 + _i] = _multi("loadmp")
    _S[0xB0 + _i] = _multi("storm")
    _S[0xB8 + _i] = _multi("stormp")
for _i in range(16):
    _S[0xC0 + _i] = _fixed("excp", EXCP.get(_i, _h(_i)))
    _S[0xD0 + _i] = _fixed("jal", PAIR[_i])

_T[0x00] = lambda p0, rd, a: _S[p0 & 0xFF](p0, rd, a)


# ---- 0x01 - 0x0F

def _stack(mn: str) -> _Handler:
    def h(p0: int, rd: Read16, a: int) -> _Result:
        if p0 & 0xFF == 0x1E:
            return 2, (p0,), mn, "ra"
        ra = ",ra" if p0 & 0x80 else ""
        return 2, (p0,), mn, f"${_h((p0 >> 4 & 7) + 1)},{REG[p0 & 15]}{ra}"
    return h


def _imm20(mn: str) -> _Handler:
    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1 = rd(a + 2)
        return 4, (p0, p1), mn, f"${_h((p0 & 15) << 16 | p1)},{PAIR[p0 >> 4 & 15]}"
    return h


def _scond(p0: int, rd: Read16, a: int) -> _Result:
    c = p0 >> 4 & 15
    return None if c >= 14 else (2, (p0,), "s" + COND[c], REG[p0 & 15])


def _lshb_imm(p0: int, rd: Read16, a: int) -> _Result:
    if not p0 & 0x80:
        return None
    return 2, (p0,), "lshb", f"${_h((p0 >> 4 & 15) - 16)},{REG[p0 & 15]}"


def _jcond(p0: int, rd: Read16, a: int) -> _Result:
    c = p0 >> 4 & 15
    mn = "jump" if c == 14 else "jusr" if c == 15 else "j" + COND[c]
    return 2, (p0,), mn, PAIR[p0 & 15]


def _beq0(mn: str) -> _Handler:
    return lambda p0, rd, a: (2, (p0,), mn,
                              f"{REG[p0 & 15]},{_target(a, 2 * (p0 >> 4 & 15) + 2)}")


def _bcond(p0: int, rd: Read16, a: int) -> _Result:
    c = p0 >> 4 & 15
    if c == 15:
        return None
    e = (p0 >> 4 & 0xF0) | (p0 & 15)            # P0[11:8] : P0[3:0]
    if e == 0x80:                               # escape: 32-bit form, disp17 in P1
        p1 = rd(a + 2)
        return 4, (p0, p1), _BRANCH[c], _target(a, (p1 & 0xFFFE) - (0x10000 if p1 & 1 else 0))
    return 2, (p0,), _BRANCH[c], _target(a, 2 * (e - 256 if e & 0x80 else e))


def _rr(mn: str, src: tuple[str, ...] = REG, dst: tuple[str, ...] = REG) -> _Handler:
    """Two-register form: P0 = op ssss dddd."""
    return lambda p0, rd, a: (2, (p0,), mn, f"{src[p0 >> 4 & 15]},{dst[p0 & 15]}")


_T[0x01], _T[0x02], _T[0x03] = _stack("push"), _stack("pop"), _stack("popret")
_T[0x04], _T[0x05] = _imm20("addd"), _imm20("movd")
_T[0x06] = lambda p0, rd, a: (2, (p0,), "tbit", f"${_h(p0 >> 4 & 15)},{REG[p0 & 15]}")
_T[0x07] = _rr("tbit")
_T[0x08] = _scond
_T[0x09] = _lshb_imm
_T[0x0A] = _jcond
_T[0x0B] = _rr("mulsb")
_T[0x0C], _T[0x0D] = _beq0("beq0b"), _beq0("bne0b")
_T[0x0E], _T[0x0F] = _beq0("beq0w"), _beq0("bne0w")
for _i in range(0x10, 0x20):
    _T[_i] = _bcond


# ---- 0x20 - 0x67: ALU

def _alu_imm(mn: str, dword: bool = False) -> _Handler:
    """imm4e form (section 3.2): 9 = -1, 11 = escape to a 16-bit immediate in P1."""
    dst_names = PAIR if dword else REG

    def h(p0: int, rd: Read16, a: int) -> _Result:
        f, dst = p0 >> 4 & 15, dst_names[p0 & 15]
        if f == 11:
            p1 = rd(a + 2)
            v = p1 - 0x10000 if dword and p1 & 0x8000 else p1
            return 4, (p0, p1), mn, f"${_h(v)},{dst}"
        return 2, (p0,), mn, f"${_h(-1 if f == 9 else f)},{dst}"
    return h


for _op, _mn in ((0x20, "andb"), (0x22, "andw"), (0x24, "orb"), (0x26, "orw"), (0x28, "xorb"),
                 (0x2A, "xorw"), (0x2C, "addub"), (0x2E, "adduw"), (0x30, "addb"),
                 (0x32, "addw"), (0x34, "addcb"), (0x36, "addcw"), (0x38, "subb"),
                 (0x3A, "subw"), (0x3C, "subcb"), (0x3E, "subcw"), (0x50, "cmpb"),
                 (0x52, "cmpw"), (0x58, "movb"), (0x5A, "movw"), (0x64, "mulb"),
                 (0x66, "mulw")):
    _T[_op], _T[_op + 1] = _alu_imm(_mn), _rr(_mn)
_addub = _T[0x2C]
_T[0x2C] = lambda p0, rd, a: (2, (p0,), "nop", "") if p0 == 0x2C00 else _addub(p0, rd, a)
for _op, _mn in ((0x54, "movd"), (0x56, "cmpd"), (0x60, "addd")):
    _T[_op], _T[_op + 1] = _alu_imm(_mn, True), _rr(_mn, PAIR, PAIR)
_T[0x5C], _T[0x5D] = _rr("movxb"), _rr("movzb")
_T[0x5E], _T[0x5F] = _rr("movxw", REG, PAIR), _rr("movzw", REG, PAIR)
_T[0x62], _T[0x63] = _rr("mulsw", REG, PAIR), _rr("muluw", REG, PAIR)


# ---- 0x40 - 0x4F: shifts

def _shift_imm(mn: str, bits: int, bias: int, dst: tuple[str, ...]) -> _Handler:
    """Count = P0[3+bits:4] taken as `bits`-bit two's complement, or minus `bias` when given."""
    mask, half = (1 << bits) - 1, 1 << (bits - 1)

    def h(p0: int, rd: Read16, a: int) -> _Result:
        n = p0 >> 4 & mask
        n = n - bias if bias else (n - (1 << bits) if n & half else n)
        return 2, (p0,), mn, f"${_h(n)},{dst[p0 & 15]}"
    return h


_T[0x40] = _shift_imm("ashub", 4, 0, REG)
_T[0x41] = _rr("ashub")
_T[0x42] = _T[0x43] = _shift_imm("ashuw", 5, 0, REG)
_T[0x44], _T[0x45], _T[0x46] = _rr("lshb"), _rr("ashuw"), _rr("lshw")
_T[0x47], _T[0x48] = _rr("lshd", REG, PAIR), _rr("ashud", REG, PAIR)
_T[0x49] = _shift_imm("lshw", 4, 16, REG)
_T[0x4A] = _T[0x4B] = _shift_imm("lshd", 5, 32, PAIR)
for _i in range(0x4C, 0x50):
    _T[_i] = _shift_imm("ashud", 6, 0, PAIR)


# ---- 0x68 - 0x7F: cbit / sbit / tbit short forms (section 4.8)

def _bitop(op: str, n: int) -> _Handler:
    """Opcode byte K + n with K = 0x68 (cbit), 0x70 (sbit), 0x78 (tbit)."""
    def h(p0: int, rd: Read16, a: int) -> _Result:
        lo = p0 & 15
        if n == 2 and p0 & 0x80:                    # [rX]disp14(pair), byte or word
            p1 = rd(a + 2)
            word = p0 & 0x40
            bit = p1 >> 4 & (15 if word else 7)
            mem = f"{IDX[p0 >> 3 & 1]}{_h(_disp14(p0, p1))}{IPAIR[p0 & 7]}"
            return 4, (p0, p1), op + ("w" if word else "b"), f"${_h(bit)},{mem}"
        if n == 2:
            return 2, (p0,), op + "b", f"${_h(p0 >> 4 & 7)},0x0{PAIR[lo]}"
        if n == 6:
            return 2, (p0,), op + "w", f"${_h(p0 >> 4 & 15)},0x0{PAIR[lo]}"
        p1 = rd(a + 2)
        a20 = lo << 16 | p1
        if n == 0:
            mn, bit, mem = "b", p0 >> 4 & 7, f"{IDX[p0 >> 7 & 1]}{_h(a20)}"
        elif n == 1:
            mn, bit, mem = "w", p0 >> 4 & 15, f"{_h(p1)}{PAIR[lo]}"
        elif n == 3:
            mn, bit = "b", p0 >> 4 & 7
            mem = _abs20(a20) if p0 & 0x80 else f"{_h(p1)}{PAIR[lo]}"
        elif n == 7:
            mn, bit, mem = "w", p0 >> 4 & 15, _abs20(a20)
        else:                                       # 4 / 5: [r12] / [r13] abs20
            mn, bit, mem = "w", p0 >> 4 & 15, f"{IDX[n & 1]}{_h(a20)}"
        return 4, (p0, p1), op + mn, f"${_h(bit)},{mem}"
    return h


for _base, _mn in ((0x68, "cbit"), (0x70, "sbit"), (0x78, "tbit")):
    for _i in range(8):
        _T[_base + _i] = _bitop(_mn, _i)


# ---- 0x81 - 0x8F, 0xC0 - 0xCF: absolute, index and store-immediate forms

def _mem4(mn: str, kind: str, data: str) -> _Handler:
    """4-byte P0 `op rrrr aaaa`, P1 forms.  kind: abs | idx0 | idx1 | disp16;
    data: 'imm' ($i, a store), 'reg'/'pair' loaded, 'sreg'/'spair' stored."""
    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1 = rd(a + 2)
        r, lo = p0 >> 4 & 15, p0 & 15
        if kind == "abs":
            mem = _abs20(lo << 16 | p1)
        elif kind == "disp16":
            mem = f"{_h(p1)}{PAIR[lo]}"
        else:
            mem = f"{IDX[kind == 'idx1']}{_h(lo << 16 | p1)}"
        if data == "imm":
            return 4, (p0, p1), mn, f"${_h(r)},{mem}"
        if data in ("reg", "pair"):
            return 4, (p0, p1), mn, f"{mem},{(REG if data == 'reg' else PAIR)[r]}"
        return 4, (p0, p1), mn, f"{(REG if data == 'sreg' else PAIR)[r]},{mem}"
    return h


def _idx14(store: bool) -> _Handler:
    """0x86 / 0xC6: [rX]disp14(pair) group, P0 = op ttDD xkkk, P1 = DDDD DDDD rrrr DDDD."""
    names = ("storw", "storb", "stord", "storw") if store else ("storb", "loadb", "loadd", "loadw")

    def h(p0: int, rd: Read16, a: int) -> _Result:
        p1 = rd(a + 2)
        t, r = p0 >> 6 & 3, p1 >> 4 & 15
        mem = f"{IDX[p0 >> 3 & 1]}{_h(_disp14(p0, p1))}{IPAIR[p0 & 7]}"
        if t == 0:
            ops = f"${_h(r)},{mem}"
        else:
            data = PAIR[r] if t == 2 else REG[r]
            ops = f"{data},{mem}" if store else f"{mem},{data}"
        return 4, (p0, p1), names[t], ops
    return h


def _store_imm0(mn: str) -> _Handler:
    return lambda p0, rd, a: (2, (p0,), mn, f"${_h(p0 >> 4 & 15)},0x0{PAIR[p0 & 15]}")


def _bal(p0: int, rd: Read16, a: int) -> _Result:
    p1 = rd(a + 2)
    return 4, (p0, p1), "bal", f"(ra),{_target(a, _disp25((p0 & 0xFF) << 16 | p1))}"


for _base, _mn in ((0x80, "storb"), (0xC0, "storw")):
    _T[_base + 1] = _mem4(_mn, "abs", "imm")
    _T[_base + 2] = _store_imm0(_mn)
    _T[_base + 3] = _mem4(_mn, "disp16", "imm")
    _T[_base + 4] = _mem4(_mn, "idx0", "imm")
    _T[_base + 5] = _mem4(_mn, "idx1", "imm")
_T[0x86], _T[0xC6] = _idx14(False), _idx14(True)
_T[0x87] = _mem4("loadd", "abs", "pair")
_T[0x88], _T[0x89] = _mem4("loadb", "abs", "reg"), _mem4("loadw", "abs", "reg")
_T[0xC0] = _bal
_T[0xC7] = _mem4("stord", "abs", "spair")
_T[0xC8], _T[0xC9] = _mem4("storb", "abs", "sreg"), _mem4("storw", "abs", "sreg")
for _x, _mode in ((0, "idx0"), (1, "idx1")):
    _T[0x8A + _x] = _mem4("loadb", _mode, "reg")
    _T[0x8C + _x] = _mem4("loadd", _mode, "pair")
    _T[0x8E + _x] = _mem4("loadw", _mode, "reg")
    _T[0xCA + _x] = _mem4("storb", _mode, "sreg")
    _T[0xCC + _x] = _mem4("stord", _mode, "spair")
    _T[0xCE + _x] = _mem4("storw", _mode, "sreg")


# ---- 0x90 - 0xBF, 0xD0 - 0xFF: pair-relative load/store families

def _family(mn: str, scale: int, pair_data: bool, store: bool) -> _Handler:
    """P0 = ffff DDDD rrrr pppp: disp4 (x scale) / 14 = [rX]0(k) / 15 = disp16 in P1."""
    data_names = PAIR if pair_data else REG

    def h(p0: int, rd: Read16, a: int) -> _Result:
        d, r, p = p0 >> 8 & 15, p0 >> 4 & 15, p0 & 15
        parcels: tuple[int, ...]
        if d == 15:
            if mn == "storb" and r == 15:
                return None                         # storb r15,disp16(pair): undefined
            p1 = rd(a + 2)
            length, parcels, mem = 4, (p0, p1), f"{_h(p1)}{PAIR[p]}"
        elif d == 14:
            length, parcels, mem = 2, (p0,), f"{IDX[p >> 3]}0x0{IPAIR[p & 7]}"
        else:
            length, parcels, mem = 2, (p0,), f"{_h(d * scale)}{PAIR[p]}"
        data = data_names[r]
        return length, parcels, mn, f"{data},{mem}" if store else f"{mem},{data}"
    return h


for _hi, _args in ((0x9, ("loadw", 2, False, False)), (0xA, ("loadd", 2, True, False)),
                   (0xB, ("loadb", 1, False, False)), (0xD, ("storw", 2, False, True)),
                   (0xE, ("stord", 2, True, True)), (0xF, ("storb", 1, False, True))):
    _fh = _family(*_args)
    for _i in range(16):
        _T[_hi << 4 | _i] = _fh

del _i, _o, _base, _mn, _op, _x, _mode, _hi, _args, _fh


# --------------------------------------------------------------------------- API

def _word(addr: int, p0: int) -> Insn:
    return Insn(addr, 2, (p0,), ".word", f"0x{p0:04x}")


def decode(read16: Read16, addr: int) -> Insn:
    """Decode the instruction at byte address `addr`.

    `read16(a)` returns the 16-bit parcel (0..0xFFFF) at `a`; an IndexError from it for P1/P2
    makes the instruction a truncated `.word` (an IndexError for P0 itself propagates)."""
    p0 = read16(addr) & 0xFFFF
    try:
        r = _T[p0 >> 8](p0, read16, addr)
    except IndexError:                      # memory ends inside the instruction?
        try:
            read16(addr + 2)
            read16(addr + 4)
        except IndexError:
            r = None
        else:                               # no: a decoder bug, do not hide it
            raise
    if r is None:
        return _word(addr, p0)
    return Insn(addr, r[0], r[1], r[2], r[3])


def decode_bytes(data: bytes, addr: int = 0) -> Insn:
    """Decode the instruction at the start of `data`, which is located at byte address `addr`."""
    n = len(data)

    def read16(a: int) -> int:
        i = a - addr
        if i < 0 or i + 1 >= n:
            raise IndexError(a)
        return data[i] | data[i + 1] << 8
    return decode(read16, addr)


def disassemble_range(read16: Read16, start: int, end: int) -> list[Insn]:
    """Decode instructions sequentially from `start` while the address is below `end`.

    Stops early (without raising) if memory ends inside the range."""
    out: list[Insn] = []
    a = start
    while a < end:
        try:
            insn = decode(read16, a)
        except IndexError:
            break
        out.append(insn)
        a += insn.length
    return out
