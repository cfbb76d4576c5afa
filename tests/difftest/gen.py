"""Seeded generator of random CR16C assembly programs for differential testing.

A *program* is a sequence of independent *blocks*.  Each block

1. sets every register (r0-r11, r12, r13, ra, sp) and the PSR flags to values
   drawn from the seed,
2. runs a random sequence of instructions (straight-line code plus small
   structures: forward conditional skips, BEQ0/BNE0 skips, Jcond skips,
   counted loops with a backward branch, subroutine calls through
   BAL/JAL with PUSH/POPRET or JUMP returns),
3. dumps r0-r15 and the PSR into its own 256-byte data area and writes that
   area plus its 64-byte "far" area (above 1 MiB, reached by abs24 forms) to
   stdout with the simulator's write service (``excp svc``, code 0x404).

After the last block the program exits (service 0x410) with a seed-derived
status.  The same ELF is run by ``cr16-elf-run-trace`` and by aemu; stdout,
exit status and instruction count must agree.

Only instruction forms and cases that the reference simulator implements as
the architecture says are generated (docs/cr16c-isa.md section 8.1, checked
against sim/cr16/simops.c):

* C is tracked: any add/sub form except ``subw $imm16`` / ``subw reg`` leaves
  a wrong C in the simulator, so after those C is "unknown" until the next
  ``subw``/``lpr psr``; conditions cs/cc, ADDC/SUBC (which consume C) are
  only generated while C is known, and the PSR dump masks C out otherwise.
* no ``addcw reg`` (uses rD twice), no ``subcb`` (writes 16 bits), no
  ``loadd abs20``, no index ([r12]/[r13]) or negative-displacement forms,
  no 32-bit cbitb/sbitb/tbitb forms (abs20, disp16(pair)), no
  loadm/storm, no MAC, no 48-bit ``bal pair``, BEQ0/BNE0 only with n < 15,
  PUSH/POP never split a 32-bit register.
* no 8/16-bit writes to r12-r15 (the simulator sometimes clears bits 31:16);
  those registers are written only as 32-bit registers/pairs.
* shift counts: never the most negative register count (the simulator
  shifts by 0) and never an immediate count of -32 for ``ashud``/``lshd``
  (the simulator does a C shift by 32, i.e. undefined, a no-op on x86).
* ``tbit rB, rD`` only with rB in 0..15 (the simulator uses all 16 bits).
* the pair (r12,r11) is read but never written: the simulator's
  SET_GPR32(11, v) ORs ``v >> 16`` of a signed v into r12, so a negative
  value (movd $-n, mulsw, movxw, ...) also sets r12[31:16].
* no PUSH/POP list holding r12, r13 *and* ra (e.g. ``push $6, r12``,
  ``push $8, r10``): the simulator's list walk mis-steps on the third 32-bit
  register and transfers sp in place of ra.  (``push $n, rX, ra`` with the RA
  flag, gcc's form, is fine.)
* ``disp20(rN)`` (16-bit base register): only the store-immediate and bit
  forms.  gas encodes register loads/stores in this mode with the 0x0018 /
  0x0019 opcodes, which the ISA document defines as negative-displacement
  forms (see op_mem).  The base is loaded right before the access (``mulsb``
  leaves a sign-extended 32-bit value in the simulator's register storage,
  which this mode adds in full), and for ``storw $imm`` as a pair with a zero
  high half (the simulator adds the pair rN+1:rN there).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

TEXT_BASE = 0x1000
NEAR_BASE = 0x30000          # block i's data area: NEAR_BASE + i * NEAR_STRIDE
NEAR_STRIDE = 0x100
FAR_BASE = 0x180000          # block i's far area (abs24 only): FAR_BASE + i * FAR_STRIDE
FAR_STRIDE = 0x40

# layout of a near area
REGS_OFF = 0x00              # r0..r11 as words (24 bytes), then r12, r13, ra, sp as dwords
PSR_OFF = 0x28
SCRATCH_OFF = 0x30
SCRATCH_LEN = 0x80
STACK_OFF = 0xB0
STACK_TOP = 0x100            # sp starts here (the area's end)
MAX_DEPTH = 0x48             # how far below STACK_TOP the generated code may push

NEAR_LEN = NEAR_STRIDE
FAR_LEN = FAR_STRIDE
BLOCK_OUT_LEN = NEAR_LEN + FAR_LEN   # bytes each block writes to stdout

SYS_WRITE = 0x404
SYS_EXIT = 0x410

CONDS = ["eq", "ne", "cs", "cc", "hi", "ls", "gt", "le", "fs", "fc", "lo", "hs", "lt", "ge"]
FLAGS_TRUSTED = 0x00E4       # L F Z N; C (0x0001) only while it is known
PSR_SETTABLE = 0x00E5        # C L F Z N

LINKER_SCRIPT = f"""\
ENTRY(_start)
SECTIONS
{{
  . = {TEXT_BASE:#x};
  .text : {{ *(.text) }}
  . = {NEAR_BASE:#x};
  .near : {{ *(.near) }}
  . = {FAR_BASE:#x};
  .far : {{ *(.far) }}
  /DISCARD/ : {{ *(.comment) }}
}}
"""


def pair_name(p: int) -> str:
    """Assembly spelling of register-pair code p (cr16c-isa.md 1.2)."""
    if p < 12:
        return f"(r{p + 1},r{p})"
    return {12: "(r12)", 13: "(r13)", 14: "(ra)", 15: "(sp)"}[p]


def pair_regs(p: int) -> set[int]:
    """Register numbers a 32-bit write to pair code p touches."""
    return {p, p + 1} if p < 12 else {p}


def reg_name(r: int) -> str:
    return {14: "ra", 15: "sp"}.get(r, f"r{r}")


def reg_words(r: int) -> int:
    return 1 if r <= 11 else 2


@dataclass
class Block:
    index: int
    asm: list[str]
    near: bytes          # initial contents of the near area
    far: bytes           # initial contents of the far area


@dataclass
class Program:
    seed: int
    blocks: list[Block]
    exit_status: int
    asm: str = field(repr=False, default="")

    def block_asm(self, i: int) -> str:
        return "\n".join(self.blocks[i].asm)


class BlockGen:
    """Generates one block.  Tracks just enough state to stay inside the
    subset the simulator gets right: whether C is known, the stack depth,
    and registers that must not be written (loop counters, link registers)."""

    def __init__(self, rng: random.Random, index: int, n_ops: int) -> None:
        self.r = rng
        self.index = index
        self.n_ops = n_ops
        self.out: list[str] = []
        self.c_ok = True
        self.depth = 0
        self.reserved: set[int] = {15}
        self.allow_stack = True
        self.nlabel = 0
        self.near = NEAR_BASE + index * NEAR_STRIDE
        self.far = FAR_BASE + index * FAR_STRIDE

    # ------------------------------------------------------------------ helpers
    def emit(self, line: str) -> None:
        self.out.append("\t" + line)

    def label(self) -> str:
        self.nlabel += 1
        return f".Lb{self.index}_{self.nlabel}"

    def place(self, lab: str) -> None:
        self.out.append(f"{lab}:")

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def w16(self) -> str:
        """A 16-bit register that may be written (r0-r11, not reserved)."""
        return f"r{self.r.choice([i for i in range(12) if i not in self.reserved])}"

    def w16n(self) -> int:
        return self.r.choice([i for i in range(12) if i not in self.reserved])

    def r16(self) -> str:
        """Any register as a 16-bit source."""
        return reg_name(self.r.randrange(16))

    def wpair_n(self, allow_ra: bool = True) -> int:
        # never pair 11 (r12_L:r11): the simulator's SET_GPR32(11, v) ORs
        # v >> 16 of a *signed* v into r12, so a negative value sets r12[31:16]
        cands = [p for p in range(14) if p != 11 and not (pair_regs(p) & self.reserved)]
        if allow_ra and 14 not in self.reserved and self.chance(0.05):
            return 14
        return self.r.choice(cands)

    def wpair(self) -> str:
        return pair_name(self.wpair_n())

    def rpair(self) -> str:
        return pair_name(self.r.randrange(16))

    def cond(self) -> str:
        ok = [c for i, c in enumerate(CONDS) if self.c_ok or i not in (2, 3)]
        return self.r.choice(ok)

    # -------------------------------------------------------------- values
    EDGE16 = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0x8001, 0xFFFE, 0xFFFF]

    def v16(self) -> int:
        if self.chance(0.3):
            return self.r.choice(self.EDGE16)
        return self.r.getrandbits(16)

    def v32(self) -> int:
        k = self.r.random()
        if k < 0.15:
            return self.r.choice([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000, 0x8000])
        if k < 0.3:
            return self.v16() * 0x10001 & 0xFFFFFFFF
        return self.r.getrandbits(32)

    def imm_w(self) -> int:
        """Immediate for a word op, as the assembler accepts it (signed 16)."""
        k = self.r.random()
        if k < 0.35:
            v = self.r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1])
        else:
            v = self.v16()
        return v - 0x10000 if v >= 0x8000 else v

    def imm_b(self) -> int:
        k = self.r.random()
        if k < 0.35:
            return self.r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1])
        return self.r.randrange(-128, 256)

    def imm_d(self) -> str:
        """Immediate for movd/addd/cmpd, hitting imm4, imm16, imm20 and imm32 forms."""
        k = self.r.random()
        if k < 0.25:
            return str(self.r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1]))
        if k < 0.5:
            return str(self.r.randrange(-0x8000, 0x8000))
        if k < 0.7:
            return hex(self.r.randrange(0x8000, 0x100000))
        return hex(self.v32())

    @staticmethod
    def is_imm4(v: int) -> bool:
        return v == -1 or (0 <= v <= 15 and v not in (9, 11))

    # ----------------------------------------------------------- simple ops
    def op_mov_imm(self, single: bool = False) -> None:
        k = self.r.randrange(3)
        if k == 0:
            self.emit(f"movb ${self.imm_b()}, {self.w16()}")
        elif k == 1:
            self.emit(f"movw ${self.imm_w()}, {self.w16()}")
        else:
            self.emit(f"movd ${self.imm_d()}, {self.wpair()}")

    def op_mov_reg(self, single: bool = False) -> None:
        k = self.r.randrange(3)
        if k == 0:
            self.emit(f"movb {self.r16()}, {self.w16()}")
        elif k == 1:
            self.emit(f"movw {self.r16()}, {self.w16()}")
        else:
            self.emit(f"movd {self.rpair()}, {self.wpair()}")

    def op_ext(self, single: bool = False) -> None:
        op = self.r.choice(["movxb", "movzb", "movxw", "movzw"])
        if op in ("movxb", "movzb"):
            self.emit(f"{op} {self.r16()}, {self.w16()}")
        else:
            self.emit(f"{op} {self.r16()}, {self.wpair()}")

    # (mnemonic, byte?, C effect: None = untouched, "bad" = C unknown after,
    #  "sub" = subw rules), needs a known C as input, register form allowed
    ALU = [
        ("addub", True, None, False, True), ("adduw", False, None, False, True),
        ("andb", True, None, False, True), ("andw", False, None, False, True),
        ("orb", True, None, False, True), ("orw", False, None, False, True),
        ("xorb", True, None, False, True), ("xorw", False, None, False, True),
        ("mulb", True, None, False, True), ("mulw", False, None, False, True),
        ("addb", True, "bad", False, True), ("addw", False, "bad", False, True),
        ("subb", True, "bad", False, True), ("subw", False, "sub", False, True),
        ("subw", False, "sub", False, True),
        ("addcb", True, "bad", True, True), ("addcw", False, "bad", True, False),
        ("subcw", False, "bad", True, True),
    ]

    def op_alu(self, single: bool = False) -> None:
        while True:
            name, byte, ceff, needs_c, reg_ok = self.r.choice(self.ALU)
            if not needs_c or self.c_ok:
                break
        use_reg = reg_ok and self.chance(0.4)
        if use_reg:
            src = self.r16()
            self.emit(f"{name} {src}, {self.w16()}")
        else:
            imm = self.imm_b() if byte else self.imm_w()
            self.emit(f"{name} ${imm}, {self.w16()}")
        if ceff == "bad":
            self.c_ok = False
        elif ceff == "sub":
            self.c_ok = use_reg or not self.is_imm4(imm)

    def op_alu32(self, single: bool = False) -> None:
        op = self.r.choice(["addd", "addd", "subd", "andd", "ord", "xord"])
        if self.chance(0.4):
            self.emit(f"{op} {self.rpair()}, {self.wpair()}")
        elif op == "addd":
            self.emit(f"addd ${self.imm_d()}, {self.wpair()}")
        else:
            self.emit(f"{op} ${hex(self.v32())}, {self.wpair()}")
        if op in ("addd", "subd"):
            self.c_ok = False

    def op_cmp(self, single: bool = False) -> None:
        size = self.r.choice("bwd")
        if size == "d":
            if self.chance(0.5):
                a = self.rpair()
                b = a if self.chance(0.2) else self.rpair()
                self.emit(f"cmpd {a}, {b}")
            else:
                self.emit(f"cmpd ${self.imm_d()}, {self.rpair()}")
        else:
            if self.chance(0.5):
                a = self.r16()
                b = a if self.chance(0.2) else self.r16()
                self.emit(f"cmp{size} {a}, {b}")
            else:
                imm = self.imm_b() if size == "b" else self.imm_w()
                self.emit(f"cmp{size} ${imm}, {self.r16()}")

    def op_scond(self, single: bool = False) -> None:
        self.emit(f"s{self.cond()} {self.w16()}")

    def op_shift(self, single: bool = False) -> None:
        if single or self.chance(0.6):
            op = self.r.choice(["ashub", "lshb", "ashuw", "lshw", "ashud", "lshd"])
            lo, hi = {"ashub": (-8, 7), "lshb": (-8, -1), "ashuw": (-16, 15),
                      "lshw": (-16, -1), "ashud": (-31, 31), "lshd": (-31, -1)}[op]
            n = self.r.randint(lo, hi)
            dst = self.wpair() if op.endswith("d") else self.w16()
            self.emit(f"{op} ${n}, {dst}")
            return
        op = self.r.choice(["ashub", "lshb", "ashuw", "lshw", "ashud", "lshd"])
        bits = {"b": 4, "w": 5, "d": 6}[op[-1]]
        lim = (1 << (bits - 1)) - 1          # never the most negative count
        n = self.r.randint(-lim, lim)
        high = self.r.getrandbits(16 - bits) if self.chance(0.5) else (0 if n >= 0 else (1 << (16 - bits)) - 1)
        val = (high << bits | (n & ((1 << bits) - 1))) & 0xFFFF
        rc = self.w16()
        self.emit(f"movw ${val - 0x10000 if val >= 0x8000 else val}, {rc}")
        dst = self.wpair() if op.endswith("d") else self.w16()
        self.emit(f"{op} {rc}, {dst}")

    def op_tbit(self, single: bool = False) -> None:
        if single or self.chance(0.6):
            self.emit(f"tbit ${self.r.randrange(16)}, {self.r16()}")
        else:
            rb = self.w16()
            self.emit(f"movw ${self.r.randrange(16)}, {rb}")
            self.emit(f"tbit {rb}, {self.r16()}")

    def op_mul(self, single: bool = False) -> None:
        k = self.r.randrange(3)
        if k == 0:
            self.emit(f"mulsb {self.r16()}, {self.w16()}")
        elif k == 1:
            self.emit(f"mulsw {self.r16()}, {self.wpair()}")
        else:
            self.emit(f"muluw {self.r16()}, {self.wpair()}")

    def op_psr(self, single: bool = False) -> None:
        if single:
            self.emit("nop")
            return
        if self.chance(0.5):
            rs = self.w16()
            self.emit(f"movw ${self.r.getrandbits(16) & PSR_SETTABLE}, {rs}")
            self.emit(f"lpr {rs}, psr")
            self.c_ok = True
        else:
            rd = self.w16()
            self.emit(f"spr psr, {rd}")
            self.emit(f"andw ${FLAGS_TRUSTED | (1 if self.c_ok else 0)}, {rd}")

    def op_nop(self, single: bool = False) -> None:
        self.emit("nop")

    # --------------------------------------------------------------- memory
    def ea(self, region: str, size: int) -> int:
        if region == "near":
            base, length = self.near + SCRATCH_OFF, SCRATCH_LEN
        else:
            base, length = self.far, FAR_LEN
        off = self.r.randrange(0, length - size + 1)
        if size > 1 and self.chance(0.85):
            off &= ~(size - 1) if size == 2 else ~1
        return base + off

    def mem_access(self, size: int, where: str) -> tuple[str, str]:
        """A random load/store/bit operation on `where` (an operand string)."""
        kinds = ["load", "store", "storei"]
        if size <= 2:
            kinds.append("bit")
        kind = self.r.choice(kinds)
        suf = {1: "b", 2: "w", 4: "d"}[size]
        if kind == "load":
            dst = self.wpair() if size == 4 else self.w16()
            return f"load{suf} {where}, {dst}", kind
        if kind == "store":
            if size == 4:
                src = self.rpair()
            elif size == 1:
                src = reg_name(self.r.randrange(15))    # storb sp is undefined
            else:
                src = self.r16()
            return f"stor{suf} {src}, {where}", kind
        if kind == "storei" and size < 4:
            return f"stor{suf} ${self.r.randrange(16)}, {where}", kind
        if kind == "storei":          # no stord $imm: store a pair instead
            return f"stord {self.rpair()}, {where}", "store"
        op = self.r.choice(["sbit", "cbit", "tbit"])
        bit = self.r.randrange(8 if size == 1 else 16)
        return f"{op}{suf} ${bit}, {where}", kind

    def op_mem(self, single: bool = False) -> None:
        mode = self.r.choice(["pair", "pair", "pair", "abs", "abs", "reg16"])
        if single:
            mode = "abs"
        size = self.r.choice([1, 2, 4])
        if mode == "abs":
            region = self.r.choice(["near", "far"])
            ea = self.ea(region, size)
            while True:
                line, kind = self.mem_access(size, hex(ea))
                # loadd abs20 and the 32-bit abs20 cbitb/sbitb/tbitb are wrong in the sim
                if region == "near" and (line.startswith("loadd") or (kind == "bit" and size == 1)):
                    continue
                break
            self.emit(line)
            return
        if mode == "reg16":
            # disp20(rN), 16-bit base register.  gas encodes loads/stores of a
            # register in this mode with the 0x0018/0x0019 "negative
            # displacement" opcodes (the raw positive field, which the doc
            # reads as field - 0x100000 and the simulator adds unsigned), so
            # only the store-immediate and bit forms (0x0010-0x0013, mm=00)
            # are used.  The simulator's storw $imm, disp20(rN) adds the pair
            # (rN+1:rN): load the base as a pair with a zero high half.
            size = self.r.choice([1, 2])
            ea = self.ea("near", size)
            base = self.r.randrange(0, 0x10000)
            rn = self.r.choice([i for i in range(12) if not ({i, i + 1} & self.reserved)])
            if size == 2:
                self.emit(f"movd ${base:#x}, {pair_name(rn)}")
            else:
                self.emit(f"movw ${base - 0x10000 if base >= 0x8000 else base}, r{rn}")
            where = f"{ea - base:#x}(r{rn})"
            suf = "b" if size == 1 else "w"
            if self.chance(0.5):
                self.emit(f"stor{suf} ${self.r.randrange(16)}, {where}")
            else:
                op = self.r.choice(["sbit", "cbit", "tbit"])
                self.emit(f"{op}{suf} ${self.r.randrange(8 * size)}, {where}")
            return
        region = self.r.choice(["near", "far"])
        ea = self.ea(region, size)
        k = self.r.random()
        if k < 0.3:
            disp = 0
        elif k < 0.6:
            disp = self.r.randrange(0, 14) * (1 if size == 1 else 2)
        elif k < 0.85:
            disp = self.r.randrange(0, 0x10000)
        else:
            disp = self.r.randrange(0x10000, min(ea, 0xFFFFF) + 1)
        p = self.wpair_n(allow_ra=False)
        self.emit(f"movd ${ea - disp:#x}, {pair_name(p)}")
        while True:
            line, kind = self.mem_access(size, f"{disp:#x}{pair_name(p)}")
            # 32-bit cbitb/sbitb/tbitb disp16(pair) forms are wrong in the sim
            if kind == "bit" and size == 1 and 0 < disp <= 0xFFFF:
                continue
            break
        self.emit(line)

    # ---------------------------------------------------------------- stack
    def reg_range(self, max_words: int, exclude_ra: bool) -> tuple[int, int, list[int]] | None:
        """A PUSH/POP register list that never ends inside a 32-bit register."""
        for _ in range(20):
            start = self.r.randrange(0, 15)
            want = self.r.randint(1, 6)
            regs: list[int] = []
            words = 0
            reg = start
            while len(regs) < want and reg <= 14:
                w = reg_words(reg)
                if words + w > min(8, max_words):
                    break
                regs.append(reg)
                words += w
                reg += 1
            if not regs or (exclude_ra and 14 in regs):
                continue
            if 12 in regs and 14 in regs:
                # the simulator's push/pop walk the list with an index that is
                # only corrected by one word for 32-bit registers: the third
                # 32-bit register of a list (ra after r12, r13) becomes sp
                continue
            return start, words, regs
        return None

    def op_stack(self, single: bool = False) -> None:
        if single or not self.allow_stack:
            self.op_alu(single)
            return
        kind = self.r.choice(["push", "push", "pop", "pop", "adjust", "sprel", "sprel", "sprel"])
        room = MAX_DEPTH - self.depth
        if kind == "push" and room >= 2:
            with_ra = self.chance(0.3) and room >= 6
            rr = self.reg_range((room - (4 if with_ra else 0)) // 2, exclude_ra=with_ra)
            if rr is None:
                return
            start, words, _ = rr
            if start == 14 and words == 2 and not with_ra:
                self.emit("push ra")
            else:
                self.emit(f"push ${words}, {reg_name(start)}" + (", ra" if with_ra else ""))
            self.depth += 2 * words + (4 if with_ra else 0)
        elif kind == "pop" and self.depth >= 2:
            with_ra = self.chance(0.3) and self.depth >= 6 and 14 not in self.reserved
            rr = self.reg_range((self.depth - (4 if with_ra else 0)) // 2, exclude_ra=with_ra)
            if rr is None:
                return
            start, words, regs = rr
            if set(regs) & self.reserved:
                return
            if start == 14 and words == 2 and not with_ra:
                self.emit("pop ra")
            else:
                self.emit(f"pop ${words}, {reg_name(start)}" + (", ra" if with_ra else ""))
            self.depth -= 2 * words + (4 if with_ra else 0)
        elif kind == "adjust":
            if self.depth >= 2 and self.chance(0.5):
                n = 2 * self.r.randint(1, self.depth // 2)
                self.emit(f"addd ${n}, (sp)")
                self.depth -= n
            elif room >= 2:
                n = 2 * self.r.randint(1, room // 2)
                self.emit(f"addd ${-n}, (sp)")
                self.depth += n
            self.c_ok = False
        elif kind == "sprel":
            sizes = [s for s in (1, 2, 4) if s <= self.depth]
            if not sizes:
                return
            size = self.r.choice(sizes)
            d = self.r.randrange(0, self.depth - size + 1)
            if size > 1 and self.chance(0.8):
                d &= ~1
            while True:
                line, kind2 = self.mem_access(size, f"{d:#x}(sp)")
                if kind2 == "bit" and size == 1 and 0 < d:
                    continue
                break
            self.emit(line)

    SIMPLE = [
        (6, "op_mov_imm"), (4, "op_mov_reg"), (3, "op_ext"), (14, "op_alu"), (6, "op_alu32"),
        (6, "op_cmp"), (4, "op_scond"), (6, "op_shift"), (3, "op_tbit"), (4, "op_mul"),
        (2, "op_psr"), (1, "op_nop"), (12, "op_mem"), (7, "op_stack"),
    ]
    _simple_total = sum(w for w, _ in SIMPLE)

    def simple(self, single: bool = False) -> None:
        x = self.r.randrange(self._simple_total)
        for w, name in self.SIMPLE:
            if x < w:
                getattr(self, name)(single)
                return
            x -= w

    def body(self, n: int, single: bool = False) -> None:
        """n simple ops inside a structure: no stack traffic, C merged by the caller."""
        saved = self.allow_stack
        self.allow_stack = False
        for _ in range(n):
            self.simple(single)
        self.allow_stack = saved

    def flag_setter(self) -> None:
        k = self.r.random()
        if k < 0.6:
            self.op_cmp()
        elif k < 0.8:
            self.emit(f"tbit ${self.r.randrange(16)}, {self.r16()}")
        elif k < 0.9:
            src = self.r16() if self.chance(0.5) else f"${self.r.choice([9, 11, 16, 0x1234, -2, -0x8000, 0x7FFF])}"
            self.emit(f"subw {src}, {self.w16()}")
            self.c_ok = True
        # else: use whatever flags are there

    # ----------------------------------------------------------- structures
    def st_cond_skip(self) -> None:
        self.flag_setter()
        lab = self.label()
        c = "r" if self.chance(0.07) else self.cond()
        self.emit(f"b{c} {lab}")
        before = self.c_ok
        if self.chance(0.06):
            self.emit(".rept 140")       # a 280-byte skip needs the 32-bit Bcond form
            self.emit("nop")
            self.emit(".endr")
        self.body(self.r.randint(1, 4))
        self.c_ok = self.c_ok and before
        self.place(lab)

    def st_zero_skip(self) -> None:
        lab = self.label()
        op = self.r.choice(["beq0b", "bne0b", "beq0w", "bne0w"])
        self.emit(f"{op} r{self.r.randrange(12)}, {lab}")
        before = self.c_ok
        self.body(self.r.randint(1, 4), single=True)   # <= 24 bytes: n <= 12
        self.c_ok = self.c_ok and before
        self.place(lab)

    def st_jcond_skip(self) -> None:
        lab = self.label()
        p = self.wpair_n(allow_ra=False)
        self.emit(f"movd ${lab}@c, {pair_name(p)}")
        saved = set(self.reserved)
        self.reserved |= pair_regs(p)
        if self.chance(0.6):
            k = self.r.random()
            if k < 0.7:
                self.op_cmp()
            else:
                self.emit(f"tbit ${self.r.randrange(16)}, {self.r16()}")
        self.reserved = saved
        if self.chance(0.1):
            self.emit(f"jump {pair_name(p)}")
        else:
            self.emit(f"j{self.cond()} {pair_name(p)}")
        before = self.c_ok
        self.body(self.r.randint(1, 3))
        self.c_ok = self.c_ok and before
        self.place(lab)

    def st_loop(self) -> None:
        x = self.w16n()
        top = self.label()
        self.emit(f"movw ${self.r.randint(1, 4)}, r{x}")
        self.place(top)
        self.c_ok = False            # later iterations see the C of the decrement
        saved = set(self.reserved)
        self.reserved.add(x)
        self.body(self.r.randint(1, 4))
        self.reserved = saved
        if self.chance(0.5):
            self.emit(f"addw $-1, r{x}")
        else:
            self.emit(f"subw $1, r{x}")
        self.c_ok = False
        self.emit(f"cmpw $0, r{x}")
        self.emit(f"bne {top}")

    def st_call(self) -> None:
        sub, after = self.label(), self.label()
        variant = self.r.choice(["jump", "pushra", "pushregs", "pushregs", "jal", "jal2"])
        self.emit(f"br {after}")
        self.place(sub)
        saved_res = set(self.reserved)
        saved_depth = self.depth
        link = None
        target = None
        if variant == "jal2":
            target = self.wpair_n(allow_ra=False)
            cands = [p for p in range(12) if not (pair_regs(p) & (self.reserved | pair_regs(target)))]
            link = self.r.choice(cands)
            self.reserved |= pair_regs(link)
        self.reserved.add(14)
        epilogue = "jump (ra)"
        room = MAX_DEPTH - self.depth
        if variant == "pushra" and room >= 4:
            self.emit("push ra")
            self.depth += 4
            epilogue = "popret ra"
        elif variant == "pushregs" and room >= 6:
            rr = self.reg_range((room - 4) // 2, exclude_ra=True)
            if rr is not None:
                start, words, _ = rr
                self.emit(f"push ${words}, {reg_name(start)}, ra")
                self.depth += 2 * words + 4
                epilogue = f"popret ${words}, {reg_name(start)}, ra"
        if variant == "jal2":
            epilogue = f"jump {pair_name(link)}"
        self.body(self.r.randint(1, 4))
        self.emit(epilogue)
        self.reserved = saved_res
        self.depth = saved_depth
        self.place(after)
        if variant == "jal":
            p = self.wpair_n(allow_ra=False)
            self.emit(f"movd ${sub}@c, {pair_name(p)}")
            self.emit(f"jal {pair_name(p)}")
        elif variant == "jal2":
            self.emit(f"movd ${sub}@c, {pair_name(target)}")
            self.emit(f"jal {pair_name(link)}, {pair_name(target)}")
        else:
            self.emit(f"bal (ra), {sub}")

    STRUCTS = [(5, "st_cond_skip"), (2, "st_zero_skip"), (1, "st_jcond_skip"),
               (1, "st_loop"), (2, "st_call")]
    _struct_total = sum(w for w, _ in STRUCTS)

    # --------------------------------------------------------------- block
    def generate(self) -> Block:
        r = self.r
        self.out.append(f"# ---- block {self.index}")
        self.out.append(f".Lblock{self.index}:")
        # initial registers and flags
        for i in range(12):
            v = self.v16()
            self.emit(f"movw ${v - 0x10000 if v >= 0x8000 else v}, r{i}")
        for reg in ("r12", "r13", "ra"):
            self.emit(f"movd ${self.v32():#x}, ({reg})")
        self.emit(f"movd ${self.near + STACK_TOP:#x}, (sp)")
        psr = r.getrandbits(16) & PSR_SETTABLE
        self.emit(f"movw ${psr}, r0")
        self.emit("lpr r0, psr")
        v = self.v16()
        self.emit(f"movw ${v - 0x10000 if v >= 0x8000 else v}, r0")
        # the random part
        self.out.append("# body")
        for _ in range(self.n_ops):
            if r.random() < 0.18:
                x = r.randrange(self._struct_total)
                for w, name in self.STRUCTS:
                    if x < w:
                        getattr(self, name)()
                        break
                    x -= w
            else:
                self.simple()
        # dump registers and PSR, then write both areas to stdout
        self.out.append("# dump")
        a = self.near
        self.emit(f"storw r0, {a + REGS_OFF:#x}")
        self.emit("spr psr, r0")
        self.emit(f"andw ${FLAGS_TRUSTED | (1 if self.c_ok else 0)}, r0")
        self.emit(f"storw r0, {a + PSR_OFF:#x}")
        for i in range(1, 12):
            self.emit(f"storw r{i}, {a + REGS_OFF + 2 * i:#x}")
        for j, reg in enumerate(("r12", "r13", "ra", "sp")):
            self.emit(f"stord ({reg}), {a + REGS_OFF + 24 + 4 * j:#x}")
        for base, length in ((a, NEAR_LEN), (self.far, FAR_LEN)):
            self.emit(f"movd ${SYS_WRITE:#x}, (r1,r0)")
            self.emit("movw $1, r2")
            self.emit(f"movd ${base:#x}, (r4,r3)")
            self.emit(f"movw ${length}, r5")
            self.emit("excp svc")
        near = bytes(SCRATCH_OFF) + bytes(r.getrandbits(8) for _ in range(NEAR_LEN - SCRATCH_OFF))
        far = bytes(r.getrandbits(8) for _ in range(FAR_LEN))
        return Block(self.index, self.out, near, far)


def _bytes_directive(data: bytes) -> list[str]:
    return ["\t.byte " + ",".join(str(b) for b in data[i:i + 32]) for i in range(0, len(data), 32)]


def assemble_program(seed: int, blocks: list[Block], status: int) -> Program:
    """The program text for `blocks` (any subset, in order; each keeps its data
    areas at the addresses its index gives)."""
    lines = [f"# aemu differential test program, seed {seed}", "\t.text", "\t.globl _start", "_start:"]
    for b in blocks:
        lines.extend(b.asm)
    lines += ["# ---- exit", f"\tmovw ${status}, r2", f"\tmovd ${SYS_EXIT:#x}, (r1,r0)", "\texcp svc"]
    for name, stride, attr in ((".near", NEAR_STRIDE, "near"), (".far", FAR_STRIDE, "far")):
        lines.append(f"\t.section {name},\"aw\"")
        for b in blocks:
            lines.append(f"\t.org {b.index * stride:#x}")
            lines.extend(_bytes_directive(getattr(b, attr)))
    prog = Program(seed, blocks, status)
    prog.asm = "\n".join(lines) + "\n"
    return prog


def generate_program(seed: int, n_blocks: int = 50, n_ops: int = 40) -> Program:
    """The program for `seed`: n_blocks independent blocks of ~n_ops random ops."""
    rng = random.Random(f"aemu-difftest-{seed}")
    blocks = [BlockGen(rng, i, n_ops).generate() for i in range(n_blocks)]
    return assemble_program(seed, blocks, rng.randrange(256))
