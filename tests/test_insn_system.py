"""Per-instruction tests: lpr/spr/lprd/sprd, push/pop/popret, exceptions (excp, UND,
IAD, TRC), the dispatch table (CFG.ED = 1 and 0), maskable interrupts, NMI, nesting,
retx frames, user mode and its stack, privilege traps, wait/eiwait/halt, svc host
calls, undefined encodings, and independence of two Cpu instances.

Written from cr16c-isa.md sections 1.3-1.5, 4.11-4.13, 6 and the semantics the
core commits to (frame: ISP -= 4, M32 = return >> 1; ISP -= 2, M16 = PSR).

The "probe" trick: a handler starts with `excp svc`, which (svc_host=True) makes
run() return Exit.SYSCALL with no state change, so the state right after exception
entry can be inspected; running again continues the handler.
"""
from __future__ import annotations

import pytest

from insn_helpers import (
    bal32, BPT, C, CFG_ED, CODE, DI, E, EI, EIWAIT, F, I, L, N, P, PREG16, PREG32, RETX, SVC, T, U,
    WAIT, Z, Cpu, Exit, exec_one, excp, install_table, jusr, load, lpr, lprd, ls_abs20,
    ls_disp4, new_cpu, op_imm, op_imm16, pair_of, pop, popret, push, rd16, rd32, run_to_probe,
    set_regs, spr, sprd, wr16, wr32,
)

IE = I | E
INTBASE = 0x8000
ISP0 = 0xA000
SP0 = 0xB000
USP0 = 0xC000
USER = 0x2000


def handler_addr(vec: int) -> int:
    return 0x3000 + 0x20 * vec   # up to 0x4FE0 for vector 255


@pytest.fixture
def cpu():
    return new_cpu()


def setup_traps(cpu: Cpu, vectors, ed: bool = True, body=None) -> dict[int, int]:
    """Dispatch table at INTBASE; handler for v = `excp svc ; retx` (or `body`)."""
    hs = {}
    for v in vectors:
        h = handler_addr(v)
        load(cpu, h, *(body or (SVC, RETX)))
        hs[v] = h
    install_table(cpu, INTBASE, hs, ed=ed)
    cpu.set_state({"isp": ISP0})
    set_regs(cpu, {15: SP0})
    return hs


def frame(cpu: Cpu, isp: int) -> tuple[int, int]:
    """(saved psr, return byte address) of the frame at isp."""
    return rd16(cpu, isp), rd32(cpu, isp + 2) << 1


# =========================================================================== lpr / spr
INIT32 = {"dcr": 0x11112222, "car0": 0x33334444, "car1": 0x55556666, "intbase": 0x00778888,
          "isp": 0x0099AAAA, "usp": 0x00BBCCCC}
INIT16 = {"dbs": 0x0101, "dsr": 0x0202, "cfg": 0x0000, "psr": 0x0000}


def _preg_setup(cpu):
    st = dict(INIT32)
    st.update(INIT16)
    cpu.set_state(st)


@pytest.mark.parametrize("name", list(PREG16))
def test_lpr_16bit_views(cpu, name):
    """lpr rS, preg: xxxl = bits 15:0, xxxh = bits 31:16 of the 32-bit register."""
    code = PREG16[name]
    val = {"psr": 0x0AE5, "cfg": CFG_ED, "intbasel": 0x1234, "intbaseh": 0x0056, "ispl": 0x1234,
           "isph": 0x0012}.get(name, 0x5AC3)
    _preg_setup(cpu)
    load(cpu, CODE, lpr(3, code))
    set_regs(cpu, {3: val}, pc=CODE)
    assert cpu.run(1) == (Exit.BUDGET, 1)
    st = cpu.get_state()
    if name.endswith("l") or name.endswith("h"):
        base = name[:-1]
        old = INIT32[base]
        want = (old & 0xFFFF0000) | val if name.endswith("l") else (old & 0xFFFF) | val << 16
        assert st[base] == want, (name, hex(st[base]), hex(want))
        for other, v in INIT32.items():
            if other != base:
                assert st[other] == v
    else:
        assert st[name] == val
    assert st["r"][3] == val


@pytest.mark.parametrize("name", list(PREG16))
def test_spr_16bit_views(cpu, name):
    code = PREG16[name]
    _preg_setup(cpu)
    cpu.set_state({"psr": Z | C, "cfg": CFG_ED})
    load(cpu, CODE, spr(code, 12))
    set_regs(cpu, {12: 0xFEDC0000}, pc=CODE)
    assert cpu.run(1) == (Exit.BUDGET, 1)
    if name.endswith("l") or name.endswith("h"):
        full = INIT32[name[:-1]]
        want = full & 0xFFFF if name.endswith("l") else full >> 16
    else:
        want = {"psr": Z | C, "cfg": CFG_ED}.get(name, INIT16.get(name))
    assert cpu.reg(12) == 0xFEDC0000 | want, (name, hex(cpu.reg(12)))


@pytest.mark.parametrize("name", ["dcr", "car0", "car1", "intbase", "isp", "usp"])
def test_lprd_sprd_32bit(cpu, name):
    code = PREG32[name]
    val = 0x00ABCDEE if name in ("intbase", "isp") else 0x89ABCDEF
    _preg_setup(cpu)
    load(cpu, CODE, lprd(2, code), sprd(code, 13))
    set_regs(cpu, {13: 0}, pairs={2: val}, pc=CODE)
    assert cpu.run(2) == (Exit.BUDGET, 2)
    st = cpu.get_state()
    assert st[name] == val
    assert st["r"][13] == val


@pytest.mark.parametrize("name,val", [("cfg", CFG_ED), ("psr", Z | N | L), ("dbs", 0x1234), ("dsr", 0x0F0F)])
def test_lprd_sprd_16bit_registers(cpu, name, val):
    code = PREG32[name]
    load(cpu, CODE, lprd(11, code), sprd(code, 4))
    set_regs(cpu, {4: 0xEEEE, 5: 0xEEEE, 12: 0x77770000}, pairs={11: val}, pc=CODE)
    assert cpu.run(2) == (Exit.BUDGET, 2)
    st = cpu.get_state()
    assert st[name] == val
    assert st["r"][4] == val


def test_lpr_psr_keeps_only_defined_bits(cpu):
    load(cpu, CODE, lpr(0, PREG16["psr"]))
    set_regs(cpu, {0: 0xFFFF & ~(U | T | P)}, pc=CODE)
    cpu.run(1)
    assert cpu.psr == 0x0EEF & ~(U | T | P)


def test_lprd_psr_keeps_only_defined_bits(cpu):
    load(cpu, CODE, lprd(0, PREG32["psr"]))
    set_regs(cpu, pairs={0: 0xFFFFFFFF & ~(U | T | P)}, pc=CODE)
    cpu.run(1)
    assert cpu.psr == 0x0EEF & ~(U | T | P)


def test_retx_psr_keeps_only_defined_bits(cpu):
    wr16(cpu, 0x9000, 0xFFFF & ~(U | T | P))
    wr32(cpu, 0x9002, 0x2000 >> 1)
    st = exec_one(cpu, (RETX,), isp=0x9000, psr=0)
    assert st["psr"] == 0x0EEF & ~(U | T | P)


@pytest.mark.parametrize("p0", range(0x000A, 0x0010))
def test_cinv_is_a_nop(cpu, p0):
    st = exec_one(cpu, (p0,), regs={0: 0x1234}, psr=Z | C | IE)
    assert st["pc"] == CODE + 2 and st["psr"] == Z | C | IE and st["r"][0] == 0x1234


def test_lpr_psr_sets_flags_for_branches(cpu):
    from insn_helpers import bcond16
    load(cpu, CODE, lpr(0, PREG16["psr"]), bcond16(0, 0x20))
    set_regs(cpu, {0: Z}, pc=CODE, psr=0)
    cpu.run(2)
    assert cpu.pc == CODE + 4 + 0x20


def test_crt1_style_cfg_update(cpu):
    """spr cfg,r0 ; orw $0x100,r0 ; lpr r0,cfg (crt1.S step 3)."""
    load(cpu, CODE, spr(8, 0), op_imm16("orw", 0x100, 0), lpr(0, 8))
    set_regs(cpu, pc=CODE)
    cpu.run(3)
    assert cpu.cfg & CFG_ED


# =========================================================================== push / pop / popret
REGVALS = {i: 0x1010 * (i + 1) & 0xFFFF for i in range(12)}
REGVALS.update({12: 0xC0C1C2C3, 13: 0xD0D1D2D3, 14: 0x0000E0E1})


def push_layout(cnt: int, s: int, a: bool, regs: dict) -> bytes:
    out = b""
    words = 0
    r = s
    while words < cnt:
        if r < 12:
            out += (regs[r] & 0xFFFF).to_bytes(2, "little")
            words += 1
        elif words + 2 <= cnt:
            out += regs[r].to_bytes(4, "little")
            words += 2
        else:   # the count ends inside a 32-bit register: its low half only
            out += (regs[r] & 0xFFFF).to_bytes(2, "little")
            words += 1
        r += 1
    if a:
        out += regs[14].to_bytes(4, "little")
    return out


PUSH_CASES = [(1, 0, False), (2, 6, True), (3, 11, False), (7, 7, False), (6, 12, False), (2, 14, False),
              (4, 12, True), (8, 2, True), (8, 4, False), (1, 11, True), (2, 13, True), (4, 10, True)]
# counts ending inside a 32-bit register: only its low half is transferred (section 4.11)
HALF_CASES = [(5, 10, False), (1, 12, False), (3, 12, True), (1, 14, False)]


@pytest.mark.parametrize("cnt,s,a", PUSH_CASES + HALF_CASES)
def test_push(cpu, cnt, s, a):
    sp = 0x6000
    regs = dict(REGVALS)
    regs[15] = sp
    cpu.write(sp - 32, b"\x55" * 36)
    st = exec_one(cpu, push(cnt, s, a), regs=regs, psr=Z)
    lay = push_layout(cnt, s, a, regs)
    w = 2 * cnt + (4 if a else 0)
    assert len(lay) == w
    assert st["r"][15] == sp - w
    assert cpu.read(sp - 32, 36) == b"\x55" * (32 - w) + lay + b"\x55" * 4
    assert st["psr"] == Z
    for i in range(15):
        assert st["r"][i] == regs[i]


@pytest.mark.parametrize("cnt,s,a", PUSH_CASES + HALF_CASES)
def test_pop(cpu, cnt, s, a):
    sp = 0x6000
    new = {i: (0x0F0F * (i + 3)) & 0xFFFF for i in range(12)}
    new.update({12: 0x12345678, 13: 0x9ABCDEF0, 14: 0x00004321})
    lay = push_layout(cnt, s, a, new)
    cpu.write(sp, lay)
    regs = dict(REGVALS)
    regs[15] = sp
    st = exec_one(cpu, pop(cnt, s, a), regs=regs)
    assert st["r"][15] == sp + len(lay)
    # expected register file
    want = dict(regs)
    words, r = 0, s
    while words < cnt:
        if r < 12:
            want[r] = new[r]
            words += 1
        elif words + 2 <= cnt:
            want[r] = new[r]
            words += 2
        else:
            want[r] = (regs[r] & 0xFFFF0000) | (new[r] & 0xFFFF)
            words += 1
        r += 1
    if a:
        want[14] = new[14]
    for i in range(15):
        assert st["r"][i] == want[i], (i, hex(st["r"][i]), hex(want[i]))


def test_push_example_20(cpu):
    assert push(2, 6, True) == (0x0196,)
    assert popret(2, 14) == (0x031E,)
    assert push(2, 14) == (0x011E,) and pop(2, 14) == (0x021E,)


@pytest.mark.parametrize("cnt,s,a", [(2, 6, True), (1, 0, True), (3, 11, True)])
def test_popret_restores_and_returns(cpu, cnt, s, a):
    sp = 0x6000
    new = {i: 0x4444 + i for i in range(12)}
    new.update({12: 0x11112222, 13: 0x33334444, 14: 0x2468 >> 1})
    lay = push_layout(cnt, s, a, new)
    cpu.write(sp, lay)
    regs = dict(REGVALS)
    regs[15] = sp
    st = exec_one(cpu, popret(cnt, s, a), regs=regs)
    assert st["pc"] == 0x2468
    assert st["r"][14] == new[14]
    assert st["r"][15] == sp + len(lay)
    assert st["r"][s] == new[s]


def test_popret_without_ra_flag_uses_current_ra(cpu):
    cpu.write(0x6000, b"\x34\x12")
    st = exec_one(cpu, popret(1, 3), regs={3: 0, 14: 0x3456 >> 1, 15: 0x6000})
    assert st["pc"] == 0x3456 and st["r"][3] == 0x1234 and st["r"][15] == 0x6002


def test_popret_ra_word_pair(cpu):
    """popret $2, ra (0x031E): pops the 32-bit ra and jumps to ra << 1."""
    wr32(cpu, 0x6000, 0x1A2B)
    st = exec_one(cpu, popret(2, 14), regs={14: 0, 15: 0x6000})
    assert st["pc"] == 0x3456 and st["r"][14] == 0x1A2B and st["r"][15] == 0x6004


def test_popret_masks_to_24_bits(cpu):
    wr32(cpu, 0x6000, 0x80000900)
    st = exec_one(cpu, popret(2, 14), regs={15: 0x6000})
    assert st["pc"] == 0x1200


def test_push_pop_round_trip_program(cpu):
    """gcc-style prologue/epilogue: push $3,r7,ra ; change regs ; popret $3,r7,ra."""
    load(cpu, 0x1000, bal32(0x100), SVC)
    load(cpu, 0x1100, push(3, 7, True), op_imm("movw", 0, 7), op_imm("movw", 0, 8),
         op_imm("movw", 0, 9), popret(3, 7, True))
    set_regs(cpu, {7: 0x7777, 8: 0x8888, 9: 0x9999, 15: 0x6000}, pc=0x1000)
    run_to_probe(cpu)
    st = cpu.get_state()
    assert st["r"][7:10] == [0x7777, 0x8888, 0x9999]
    assert st["r"][15] == 0x6000
    assert st["pc"] == 0x1006


def test_push_fault_leaves_state(cpu):
    """push with sp = 2 and 3 words: new SP would be below 0 -> IAD, nothing changes."""
    load(cpu, CODE, push(3, 0))
    set_regs(cpu, {15: 2}, pc=CODE, psr=0)
    before = cpu.get_state()
    mem = cpu.read(0, 4)
    why, n = cpu.run(1)
    assert why == Exit.FAULT and n == 0
    assert cpu.fault[:2] == (12, CODE)
    assert cpu.get_state() == before
    assert cpu.read(0, 4) == mem


# =========================================================================== no dispatch table
@pytest.mark.parametrize("vec", [6, 7, 9, 10, 12, 14, 15])
def test_excp_without_table_is_fatal(cpu, vec):
    load(cpu, CODE, excp(vec))
    set_regs(cpu, {0: 0x1234}, pc=CODE, psr=Z)
    before = cpu.get_state()
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert n == 0
    assert cpu.fault == (vec, CODE, 0)
    assert cpu.pc == CODE
    assert cpu.get_state() == before


def test_excp_bpt_without_table_is_breakpoint(cpu):
    load(cpu, CODE, op_imm("movw", 1, 0), BPT, op_imm("movw", 2, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.BREAKPOINT
    assert n == 2
    assert cpu.fault == (8, CODE + 2, 0)
    assert cpu.pc == CODE + 4
    assert cpu.reg(0) == 1
    assert cpu.run(1) == (Exit.BUDGET, 1)
    assert cpu.reg(0) == 2


def test_excp_svc_host_call(cpu):
    load(cpu, CODE, op_imm16("movw", 0x404, 0), SVC, op_imm("movw", 3, 1))
    set_regs(cpu, {0: 0, 1: 0, 15: SP0}, pc=CODE, psr=Z | C, isp=ISP0)
    before_isp = cpu.isp
    why, n = cpu.run(10)
    assert (why, n) == (Exit.SYSCALL, 2)
    assert cpu.pc == CODE + 6
    assert cpu.reg(0) == 0x404 and cpu.psr == Z | C and cpu.isp == before_isp
    assert cpu.run(1) == (Exit.BUDGET, 1)
    assert cpu.reg(1) == 3


def test_excp_svc_host_call_ignores_table(cpu):
    setup_traps(cpu, [5])
    load(cpu, CODE, SVC)
    set_regs(cpu, pc=CODE, psr=0)
    assert cpu.run(10) == (Exit.SYSCALL, 1)
    assert cpu.pc == CODE + 2 and cpu.isp == ISP0


def test_excp_svc_not_host_without_table_faults():
    cpu = new_cpu(svc_host=False)
    assert cpu.svc_host is False
    load(cpu, CODE, SVC)
    set_regs(cpu, pc=CODE, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT and n == 0
    assert cpu.fault == (5, CODE, 0)
    assert cpu.pc == CODE


def test_svc_host_property_toggle(cpu):
    cpu.svc_host = False
    setup_traps(cpu, [5], body=(op_imm("movw", 9, 0), BPT))
    cpu.set_state({"intbase": INTBASE})
    load(cpu, CODE, SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    # the svc is now a real trap to vector 5; its handler ends in excp bpt (vector 8 has no entry)
    why, n = cpu.run(10)
    assert cpu.reg(0) == 9
    assert why == Exit.FAULT and cpu.fault[:2] == (8, handler_addr(5) + 4)  # movw $9 is 4 bytes


UNDEFINED = [
    (0x0000,), (0x0001,), (0x0002,), (0x0008,), (0x0009,), (0x0015, 0, 0), (0x0016, 0, 0),
    (0x0017, 0, 0), (0x001A, 0, 0), (0x001F, 0, 0), (0x0080, 0, 0), (0x0085, 0, 0),
    (0x008F, 0, 0), (0x00E0,), (0x00EF,), (0x00FF,), (0x08E3,), (0x08F3,), (0x0905,), (0x097F,),
    (0x8000, 0), (0x80FF, 0), (0x0010, 0x1000, 0), (0x0010, 0x3000, 0), (0x0011, 0x0000, 0),
    (0x0011, 0x1000, 0), (0x0011, 0x2000, 0), (0x0011, 0x3000, 0), (0x0014, 0x4000), (0x0014, 0x5000),
    (0x0014, 0x6000), (0x0014, 0x7000), (0x0018, 0x0000, 0), (0x0018, 0x1000, 0), (0x0018, 0x6000, 0),
    (0x0018, 0xE000, 0), (0x0018, 0xB000, 0), (0x0019, 0x2000, 0), (0x0019, 0x7000, 0), (0x0019, 0xF000, 0),
]


@pytest.mark.parametrize("insn", UNDEFINED, ids=lambda i: "_".join(f"{p:04x}" for p in i))
def test_undefined_encoding_without_table(cpu, insn):
    load(cpu, CODE, insn)
    set_regs(cpu, {0: 0x1111, 1: 0x2222}, pc=CODE, psr=Z)
    before = cpu.get_state()
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert n == 0
    assert cpu.fault == (10, CODE, 0)
    assert cpu.get_state() == before


def test_undefined_after_valid_instructions(cpu):
    load(cpu, CODE, op_imm("movw", 1, 0), op_imm("movw", 2, 1), (0x0000,))
    set_regs(cpu, {0: 0, 1: 0}, pc=CODE, psr=0)
    count = cpu.insn_count
    why, n = cpu.run(10)
    assert (why, n) == (Exit.FAULT, 2)
    assert cpu.fault == (10, CODE + 4, 0)
    assert cpu.reg(0) == 1 and cpu.reg(1) == 2 and cpu.pc == CODE + 4
    assert cpu.insn_count == count + 2


def test_trc_without_table_is_fatal_after_instruction(cpu):
    load(cpu, CODE, op_imm("movw", 5, 0), op_imm("movw", 6, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=T)
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert cpu.fault[0] == 9
    assert cpu.reg(0) == 5, "the traced instruction completes before the trap"


# =========================================================================== dispatch through table
TRAP_VECS = [6, 7, 8, 9, 10, 12, 14, 15]
PSR_BEFORE = C | L | F | Z | N | E | I


@pytest.mark.parametrize("ed", [True, False])
@pytest.mark.parametrize("vec", TRAP_VECS)
def test_excp_through_table(cpu, vec, ed):
    setup_traps(cpu, [vec], ed=ed)
    load(cpu, CODE, excp(vec), SVC)
    set_regs(cpu, pc=CODE, psr=PSR_BEFORE)
    n = run_to_probe(cpu)
    assert n in (1, 2)                  # the probe (+ the excp, if a trapping excp counts)
    st = cpu.get_state()
    assert st["pc"] == handler_addr(vec) + 2
    assert st["isp"] == ISP0 - 6
    assert frame(cpu, st["isp"]) == (PSR_BEFORE, CODE + 2)
    assert st["psr"] == PSR_BEFORE      # traps clear U/T/P only; I stays
    assert st["r"][15] == SP0
    # retx
    n = run_to_probe(cpu)
    assert n == 2
    st = cpu.get_state()
    assert st["pc"] == CODE + 4
    assert st["isp"] == ISP0
    assert st["psr"] == PSR_BEFORE


def test_excp_svc_trap_when_not_host():
    cpu = new_cpu(svc_host=False)
    setup_traps(cpu, [5], body=(op_imm("movw", 7, 0), RETX))
    load(cpu, CODE, SVC, op_imm("movw", 1, 1), BPT)
    set_regs(cpu, {0: 0, 1: 0}, pc=CODE, psr=Z)
    why, n = cpu.run(20)
    # excp bpt: vector 8 has no entry -> unhandled
    assert why == Exit.FAULT and cpu.fault[:2] == (8, CODE + 4)
    assert cpu.reg(0) == 7 and cpu.reg(1) == 1
    assert cpu.isp == ISP0 and cpu.psr == Z


def test_dispatch_entry_address_ed1(cpu):
    """ED=1: entry for vector v at INTBASE + 4v holds the halved handler address."""
    setup_traps(cpu, [7])
    # a bogus 16-bit-layout entry must not be used: INTBASE + 2*7 holds garbage
    wr16(cpu, INTBASE + 14, 0x1234)
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.pc == handler_addr(7) + 2


def test_dispatch_entry_address_ed0(cpu):
    setup_traps(cpu, [7], ed=False)
    assert cpu.cfg & CFG_ED == 0
    wr32(cpu, INTBASE + 28, 0x00123456 >> 1)  # where an ED=1 entry would be
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.pc == handler_addr(7) + 2


def test_dispatch_32bit_entry_high_half_used(cpu):
    """A handler above 128 KiB needs the high half of a 32-bit entry."""
    h = 0x32100
    load(cpu, h, SVC)
    install_table(cpu, INTBASE, {7: h}, ed=True)
    cpu.set_state({"isp": ISP0})
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.pc == h + 2


def test_unhandled_vector_entry_zero_faults(cpu):
    setup_traps(cpu, [7])
    load(cpu, CODE, excp(6))
    set_regs(cpu, pc=CODE, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert cpu.fault[:2] == (6, CODE)


def test_trap_with_isp_outside_ram_is_fatal(cpu):
    """The frame cannot be pushed: the run must stop (not loop), nothing changes."""
    setup_traps(cpu, [7])
    cpu.set_state({"isp": 4})
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=Z)
    why, n = cpu.run(100)
    assert why == Exit.FAULT
    assert cpu.pc == CODE and cpu.isp == 4 and cpu.psr == Z


def test_trap_with_table_outside_ram_is_fatal(cpu):
    cpu.set_state({"intbase": 0x100000 - 2, "cfg": CFG_ED, "isp": ISP0})
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=Z)
    why, n = cpu.run(100)
    assert why == Exit.FAULT
    assert cpu.pc == CODE and cpu.isp == ISP0


@pytest.mark.parametrize("ed", [True, False])
def test_und_through_table_returns_to_faulting_insn(cpu, ed):
    setup_traps(cpu, [10], ed=ed)
    load(cpu, CODE, (0x0000,))
    set_regs(cpu, pc=CODE, psr=Z | I)
    n = run_to_probe(cpu)
    assert n == 1
    st = cpu.get_state()
    assert st["isp"] == ISP0 - 6
    assert frame(cpu, st["isp"]) == (Z | I, CODE)
    assert st["psr"] == Z | I


def test_iad_through_table_returns_to_faulting_insn(cpu):
    setup_traps(cpu, [12])
    load(cpu, CODE, op_imm("movw", 1, 0), ls_disp4("loadw", 1, 0, 12))
    set_regs(cpu, {12: 0x100000, 1: 0x4444}, pc=CODE, psr=C)
    n = run_to_probe(cpu)
    assert n == 2
    st = cpu.get_state()
    assert frame(cpu, st["isp"]) == (C, CODE + 2)
    assert st["r"][1] == 0x4444
    assert st["pc"] == handler_addr(12) + 2


def test_fetch_fault_through_table(cpu):
    setup_traps(cpu, [12])
    from insn_helpers import jump
    load(cpu, CODE, jump(0))
    set_regs(cpu, pairs={0: 0x100000 >> 1}, pc=CODE, psr=0)
    n = run_to_probe(cpu)
    assert n == 2
    assert frame(cpu, cpu.isp) == (0, 0x100000)


def test_retx_frame_layout(cpu):
    """retx pops PSR (16 bit) then the halved return address (32 bit)."""
    isp = 0x9000
    wr16(cpu, isp, C | L | F | Z | N | E | I)
    wr32(cpu, isp + 2, 0x2468 >> 1)
    st = exec_one(cpu, (RETX,), isp=isp, psr=0)
    assert st["pc"] == 0x2468
    assert st["psr"] == C | L | F | Z | N | E | I
    assert st["isp"] == isp + 6


def test_retx_ignores_sp(cpu):
    isp = 0x9000
    wr16(cpu, isp, Z)
    wr32(cpu, isp + 2, 0x3000 >> 1)
    st = exec_one(cpu, (RETX,), regs={15: 0x7000}, isp=isp, psr=0)
    assert st["r"][15] == 0x7000 and st["pc"] == 0x3000


def test_trap_frame_does_not_touch_sp_stack(cpu):
    setup_traps(cpu, [7])
    cpu.write(SP0 - 8, b"\x55" * 16)
    load(cpu, CODE, excp(7))
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert cpu.read(SP0 - 8, 16) == b"\x55" * 16
    assert cpu.get_state()["r"][15] == SP0


def test_trap_marks_frame_page_dirty(cpu):
    setup_traps(cpu, [7])
    log = cpu.dirty_consumer()
    load(cpu, CODE, excp(7))
    log.clear()
    set_regs(cpu, pc=CODE, psr=0)
    run_to_probe(cpu)
    assert (ISP0 - 6) >> 12 in log.dirty_pages()


# =========================================================================== TRC
def test_trace_trap_frame(cpu):
    setup_traps(cpu, [9])
    load(cpu, CODE, op_imm("movw", 1, 0), op_imm("movw", 2, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=T | Z)
    n = run_to_probe(cpu)
    assert n == 2                       # movw + the probe
    st = cpu.get_state()
    assert st["r"][0] == 1
    saved, ret = frame(cpu, st["isp"])
    assert ret == CODE + 2
    assert saved & ~P == T | Z
    assert st["psr"] & (T | P) == 0
    assert st["psr"] & Z


def test_trace_single_steps_whole_program(cpu):
    """Handler `addw $1, r11 ; retx`: one trap per traced instruction, progress made."""
    setup_traps(cpu, [9], body=(op_imm("addw", 1, 11), RETX))
    load(cpu, CODE, *[op_imm("addw", 1, 0)] * 200)
    set_regs(cpu, {0: 0, 11: 0}, pc=CODE, psr=T)
    why, n = cpu.run(300)
    assert (why, n) == (Exit.BUDGET, 300)
    r0, r11 = cpu.reg(0), cpu.reg(11)
    assert r0 == 100 and r11 in (99, 100), (r0, r11)
    assert cpu.psr & T or cpu.pc >= handler_addr(9)


# =========================================================================== interrupts


@pytest.mark.parametrize("vec", [16, 20, 63, 255])
@pytest.mark.parametrize("ed", [True, False])
def test_maskable_interrupt_taken(cpu, vec, ed):
    setup_traps(cpu, [vec], ed=ed)
    load(cpu, CODE, op_imm("movw", 3, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE | Z)
    cpu.set_irq(vec)
    assert cpu.irq == vec
    n = run_to_probe(cpu)
    assert n == 1
    st = cpu.get_state()
    assert st["pc"] == handler_addr(vec) + 2
    assert frame(cpu, st["isp"]) == (IE | Z, CODE)
    assert st["psr"] == E | Z, "I is cleared on interrupt entry"
    assert st["r"][0] == 0
    cpu.set_irq(0)
    n = run_to_probe(cpu)               # retx, movw, probe
    assert n == 3
    assert cpu.reg(0) == 3 and cpu.psr == IE | Z and cpu.isp == ISP0


def test_interrupt_entry_does_not_consume_budget(cpu):
    setup_traps(cpu, [20], body=(op_imm("movw", 5, 0), RETX))
    load(cpu, CODE, op_imm("movw", 3, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE)
    cpu.set_irq(20)
    assert cpu.run(1) == (Exit.BUDGET, 1)
    assert cpu.reg(0) == 5
    assert cpu.pc == handler_addr(20) + 2


def test_interrupt_level_sensitive_retaken(cpu):
    setup_traps(cpu, [20])
    load(cpu, CODE, op_imm("movw", 3, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE)
    cpu.set_irq(20)
    assert run_to_probe(cpu) == 1
    assert run_to_probe(cpu) == 2       # retx, then the still-raised line re-enters
    assert cpu.pc == handler_addr(20) + 2
    assert cpu.reg(0) == 0
    assert frame(cpu, cpu.isp) == (IE, CODE)


@pytest.mark.parametrize("psr", [0, I, E, Z | C])
def test_interrupt_masked(cpu, psr):
    setup_traps(cpu, [20])
    load(cpu, CODE, op_imm("movw", 3, 0), op_imm("movw", 4, 0), op_imm("movw", 5, 0))
    set_regs(cpu, pc=CODE, psr=psr)
    cpu.set_irq(20)
    assert cpu.run(3) == (Exit.BUDGET, 3)
    assert cpu.reg(0) == 5 and cpu.isp == ISP0 and cpu.irq == 20


def test_ei_enables_pending_interrupt(cpu):
    setup_traps(cpu, [20])
    load(cpu, CODE, (EI,), op_imm("movw", 3, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=I)
    cpu.set_irq(20)
    n = run_to_probe(cpu)
    assert n == 2
    assert frame(cpu, cpu.isp) == (IE, CODE + 2)
    assert cpu.reg(0) == 0


def test_di_ei_bits(cpu):
    st = exec_one(cpu, (DI,), psr=IE | Z)
    assert st["psr"] == I | Z
    st = exec_one(cpu, (EI,), psr=Z)
    assert st["psr"] == E | Z


def test_lpr_psr_enabling_interrupt(cpu):
    setup_traps(cpu, [33])
    load(cpu, CODE, lpr(1, PREG16["psr"]), op_imm("movw", 3, 0))
    set_regs(cpu, {1: IE}, pc=CODE, psr=0)
    cpu.set_irq(33)
    assert run_to_probe(cpu) == 2
    assert frame(cpu, cpu.isp) == (IE, CODE + 4)


def test_interrupt_without_table_is_fatal(cpu):
    load(cpu, CODE, op_imm("movw", 3, 0))
    set_regs(cpu, pc=CODE, psr=IE)
    cpu.set_irq(20)
    why, n = cpu.run(10)
    assert why == Exit.FAULT and cpu.fault[0] == 20


def test_set_irq_range_check(cpu):
    with pytest.raises(ValueError):
        cpu.set_irq(15)
    with pytest.raises(ValueError):
        cpu.set_irq(256)


@pytest.mark.parametrize("psr", [0, IE, Z])
def test_nmi(cpu, psr):
    setup_traps(cpu, [1])
    load(cpu, CODE, op_imm("movw", 3, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=psr)
    cpu.raise_nmi()
    assert run_to_probe(cpu) == 1
    st = cpu.get_state()
    assert st["pc"] == handler_addr(1) + 2
    assert frame(cpu, st["isp"]) == (psr, CODE)
    assert st["psr"] == psr & ~I
    # edge: not taken again after retx
    assert run_to_probe(cpu) == 3
    assert cpu.reg(0) == 3 and cpu.pc == CODE + 4 and cpu.isp == ISP0


def test_nmi_without_table_is_fatal(cpu):
    load(cpu, CODE, op_imm("movw", 3, 0))
    set_regs(cpu, pc=CODE, psr=0)
    cpu.raise_nmi()
    why, n = cpu.run(10)
    assert why == Exit.FAULT and cpu.fault[0] == 1


def test_nmi_has_priority_over_maskable(cpu):
    setup_traps(cpu, [1, 20])
    load(cpu, CODE, op_imm("movw", 3, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE)
    cpu.set_irq(20)
    cpu.raise_nmi()
    run_to_probe(cpu)
    assert cpu.pc == handler_addr(1) + 2
    cpu.set_irq(20)
    run_to_probe(cpu)                   # NMI retx restores I=1: the interrupt follows
    assert cpu.pc == handler_addr(20) + 2
    assert frame(cpu, cpu.isp) == (IE, CODE)


def test_nmi_nests_into_interrupt_handler(cpu):
    setup_traps(cpu, [1, 20])
    load(cpu, CODE, op_imm("movw", 3, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE)
    cpu.set_irq(20)
    run_to_probe(cpu)                   # in the vector-20 handler, I = 0
    cpu.set_irq(0)
    cpu.raise_nmi()
    run_to_probe(cpu)                   # NMI taken before the handler's retx
    assert cpu.pc == handler_addr(1) + 2
    assert cpu.isp == ISP0 - 12
    assert frame(cpu, cpu.isp) == (E, handler_addr(20) + 2)
    assert frame(cpu, cpu.isp + 6) == (IE, CODE)
    run_to_probe(cpu)                   # NMI retx -> handler-20 retx -> movw -> probe
    assert cpu.reg(0) == 3 and cpu.isp == ISP0 and cpu.psr == IE


def test_nested_maskable_interrupts(cpu):
    h20, h21 = handler_addr(20), handler_addr(21)
    setup_traps(cpu, [21])
    # handler 20: probe ; lpr r5,psr (I=1) ; probe ; retx
    load(cpu, h20, SVC, lpr(5, PREG16["psr"]), SVC, RETX)
    install_table(cpu, INTBASE, {20: h20, 21: h21})
    load(cpu, CODE, op_imm("movw", 7, 0), SVC)
    set_regs(cpu, {0: 0, 5: IE}, pc=CODE, psr=IE)
    cpu.set_irq(20)
    run_to_probe(cpu)
    assert cpu.pc == h20 + 2
    cpu.set_irq(21)
    run_to_probe(cpu)
    assert cpu.pc == h21 + 2
    assert cpu.isp == ISP0 - 12
    assert frame(cpu, cpu.isp) == (IE, h20 + 6)
    assert frame(cpu, cpu.isp + 6) == (IE, CODE)
    cpu.set_irq(0)
    run_to_probe(cpu)
    assert cpu.pc == h20 + 8 and cpu.isp == ISP0 - 6 and cpu.psr == IE
    run_to_probe(cpu)
    assert cpu.pc == CODE + 4 and cpu.isp == ISP0 and cpu.reg(0) == 7


# =========================================================================== wait / halt
def test_wait_halts(cpu):
    load(cpu, CODE, (WAIT,), op_imm("movw", 1, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    why, n = cpu.run(10)
    assert why == Exit.HALT
    assert n == 1
    assert cpu.pc == CODE + 2
    assert cpu.halted
    assert cpu.run(10) == (Exit.HALT, 0)
    assert cpu.pc == CODE + 2 and cpu.reg(0) == 0


def test_wait_after_other_instructions(cpu):
    load(cpu, CODE, op_imm("movw", 1, 0), op_imm("movw", 2, 0), (WAIT,))
    set_regs(cpu, pc=CODE, psr=0)
    assert cpu.run(100) == (Exit.HALT, 3)
    assert cpu.pc == CODE + 6 and cpu.reg(0) == 2


def test_wait_woken_by_interrupt(cpu):
    setup_traps(cpu, [20])
    load(cpu, CODE, (WAIT,), op_imm("movw", 1, 0), SVC)
    set_regs(cpu, {0: 0}, pc=CODE, psr=IE)
    assert cpu.run(10) == (Exit.HALT, 1)
    cpu.set_irq(20)
    n = run_to_probe(cpu)
    assert n == 1
    assert not cpu.halted
    assert frame(cpu, cpu.isp) == (IE, CODE + 2)
    cpu.set_irq(0)
    run_to_probe(cpu)
    assert cpu.reg(0) == 1


def test_wait_not_woken_by_masked_interrupt(cpu):
    setup_traps(cpu, [20])
    load(cpu, CODE, (WAIT,))
    set_regs(cpu, pc=CODE, psr=E)
    assert cpu.run(10) == (Exit.HALT, 1)
    cpu.set_irq(20)
    assert cpu.run(10) == (Exit.HALT, 0)
    assert cpu.halted


def test_wait_woken_by_nmi(cpu):
    setup_traps(cpu, [1])
    load(cpu, CODE, (WAIT,))
    set_regs(cpu, pc=CODE, psr=0)
    assert cpu.run(10) == (Exit.HALT, 1)
    cpu.raise_nmi()
    assert run_to_probe(cpu) == 1
    assert not cpu.halted
    assert frame(cpu, cpu.isp) == (0, CODE + 2)


def test_eiwait_sets_e_and_halts(cpu):
    load(cpu, CODE, (EIWAIT,))
    set_regs(cpu, pc=CODE, psr=I | Z)
    assert cpu.run(10) == (Exit.HALT, 1)
    assert cpu.psr == I | E | Z
    assert cpu.halted and cpu.pc == CODE + 2


def test_halted_setter(cpu):
    load(cpu, CODE, op_imm("movw", 1, 0))
    set_regs(cpu, {0: 0}, pc=CODE, psr=0)
    cpu.halted = True
    assert cpu.run(5) == (Exit.HALT, 0)
    cpu.halted = False
    assert cpu.run(1) == (Exit.BUDGET, 1)
    assert cpu.reg(0) == 1


# =========================================================================== user mode
def _enter_user(cpu, user_code, regs=None, intbase=True, vecs=(7, 10)):
    if intbase:
        setup_traps(cpu, list(vecs))
    load(cpu, CODE, jusr(0))
    load(cpu, USER, *user_code)
    r = {15: SP0}
    r.update(regs or {})
    set_regs(cpu, r, pairs={0: USER >> 1}, pc=CODE, psr=Z, usp=USP0)
    if not intbase:
        cpu.set_state({"isp": ISP0})


def test_jusr_enters_user_mode(cpu):
    _enter_user(cpu, [SVC])
    why, n = cpu.run(10)
    assert (why, n) == (Exit.SYSCALL, 2)
    assert cpu.psr == Z | U
    assert cpu.pc == USER + 2


def test_user_stack_and_trap_bank_switch(cpu):
    # user: push $1,r2 ; excp flg ; pop $1,r3 ; excp svc
    _enter_user(cpu, [push(1, 2), excp(7), pop(1, 3), SVC], regs={2: 0xBEEF, 3: 0})
    cpu.write(SP0 - 4, b"\x55" * 8)
    run_to_probe(cpu)                  # in the flg handler (supervisor)
    st = cpu.get_state()
    assert st["psr"] == Z
    assert st["r"][15] == SP0, "handler runs on the supervisor stack"
    assert st["usp"] == USP0 - 2, "user SP saved as USP"
    assert rd16(cpu, USP0 - 2) == 0xBEEF
    assert cpu.read(SP0 - 4, 8) == b"\x55" * 8
    assert st["isp"] == ISP0 - 6
    assert frame(cpu, st["isp"]) == (Z | U, USER + 4)
    run_to_probe(cpu)                  # retx -> pop -> probe
    assert cpu.reg(3) == 0xBEEF
    assert cpu.psr == Z | U
    assert cpu.pc == USER + 8


def test_user_mode_push_uses_usp_via_retx(cpu):
    """retx with U in the saved PSR enters user mode on the USP stack."""
    load(cpu, USER, push(2, 2), SVC)
    wr16(cpu, ISP0 - 6, U)
    wr32(cpu, ISP0 - 4, USER >> 1)
    load(cpu, CODE, (RETX,))
    set_regs(cpu, {2: 0x1111, 3: 0x2222, 15: SP0}, pc=CODE, psr=0, isp=ISP0 - 6, usp=USP0)
    cpu.write(SP0 - 4, b"\x66" * 4)
    run_to_probe(cpu)
    assert cpu.psr & U
    assert cpu.read(USP0 - 4, 4) == bytes.fromhex("11112222")
    assert cpu.read(SP0 - 4, 4) == b"\x66" * 4
    assert cpu.isp == ISP0


def test_interrupt_in_user_mode_switches_stack(cpu):
    _enter_user(cpu, [op_imm("movw", 1, 0), push(1, 0), SVC], regs={0: 0}, vecs=(20,))
    cpu.set_state({"psr": Z | IE})
    assert cpu.run(2) == (Exit.BUDGET, 2)          # jusr, movw (user mode now)
    assert cpu.psr == Z | IE | U
    cpu.set_irq(20)
    run_to_probe(cpu)
    st = cpu.get_state()
    assert st["psr"] == Z | E
    assert st["r"][15] == SP0 and st["usp"] == USP0
    assert frame(cpu, st["isp"]) == (Z | IE | U, USER + 2)
    cpu.set_irq(0)
    run_to_probe(cpu)                              # retx, push (user stack), probe
    assert rd16(cpu, USP0 - 2) == 1
    assert cpu.psr == Z | IE | U


def test_spr_psr_in_user_mode_shows_u(cpu):
    _enter_user(cpu, [spr(PREG16["psr"], 4), SVC], regs={4: 0})
    assert cpu.run(10) == (Exit.SYSCALL, 3)
    assert cpu.reg(4) == Z | U


PRIVILEGED = {"lpr": lpr(0, PREG16["cfg"]), "lprd": lprd(0, PREG32["intbase"]), "di": (DI,), "ei": (EI,),
              "eiwait": (EIWAIT,), "wait": (WAIT,), "retx": (RETX,)}


@pytest.mark.parametrize("name", list(PRIVILEGED))
def test_privileged_in_user_mode_without_table(cpu, name):
    _enter_user(cpu, [op_imm("movw", 1, 5), PRIVILEGED[name]], regs={5: 0}, intbase=False)
    why, n = cpu.run(10)
    assert why == Exit.FAULT
    assert n == 2                       # jusr, movw
    assert cpu.fault == (10, USER + 2, 0)
    assert cpu.pc == USER + 2
    assert cpu.psr == Z | U
    assert cpu.reg(5) == 1


@pytest.mark.parametrize("name", list(PRIVILEGED))
def test_privileged_in_user_mode_traps_und(cpu, name):
    _enter_user(cpu, [PRIVILEGED[name]])
    n = run_to_probe(cpu)
    assert n == 2                       # jusr + probe
    st = cpu.get_state()
    assert st["pc"] == handler_addr(10) + 2
    assert frame(cpu, st["isp"]) == (Z | U, USER)
    assert st["psr"] == Z
    assert st["intbase"] == INTBASE and st["cfg"] & CFG_ED


@pytest.mark.parametrize("name", ["spr", "movw", "push"])
def test_unprivileged_in_user_mode(cpu, name):
    insn = {"spr": spr(PREG16["psr"], 4), "movw": op_imm("movw", 4, 4), "push": push(1, 4)}[name]
    _enter_user(cpu, [insn, SVC], regs={4: 0})
    why, n = cpu.run(10)
    assert (why, n) == (Exit.SYSCALL, 3)
    assert cpu.psr & U


# =========================================================================== two CPUs
def test_two_cpus_independent():
    a, b = new_cpu(), new_cpu()
    load(a, CODE, op_imm("addw", 1, 0), ls_abs20("storw", 0, 0x5000), op_imm("movw", 0, 0))
    load(b, CODE, op_imm("addw", 2, 0), ls_abs20("storw", 0, 0x5000), op_imm("movw", 0, 0))
    set_regs(a, {0: 10}, pc=CODE, psr=0)
    set_regs(b, {0: 20}, pc=CODE, psr=Z)
    assert a.run(1) == (Exit.BUDGET, 1)
    assert b.run(2) == (Exit.BUDGET, 2)
    assert a.reg(0) == 11 and b.reg(0) == 22
    assert a.run(1) == (Exit.BUDGET, 1)
    assert rd16(a, 0x5000) == 11 and rd16(b, 0x5000) == 22
    assert a.psr == 0 and b.psr == Z
    assert a.insn_count == 2 and b.insn_count == 2
    a.write(CODE, b"\x00\x00")
    assert b.read(CODE, 2) != b"\x00\x00"


def test_two_cpus_interrupt_state_independent():
    a, b = new_cpu(), new_cpu()
    for c in (a, b):
        setup_traps(c, [20])
        load(c, CODE, op_imm("movw", 1, 0), SVC)
        set_regs(c, {0: 0}, pc=CODE, psr=IE)
    a.set_irq(20)
    assert b.irq == 0
    assert run_to_probe(b) == 2 and b.reg(0) == 1
    assert run_to_probe(a) == 1 and a.pc == handler_addr(20) + 2


def test_reset_zeroes_registers(cpu):
    set_regs(cpu, {0: 5, 12: 0x12345678}, pc=CODE, psr=Z, isp=0x100, intbase=0x200)
    cpu.write(0x100, b"\x12")
    cpu.reset()
    st = cpu.get_state()
    assert st["r"] == [0] * 16 and st["pc"] == 0 and st["psr"] == 0 and st["isp"] == 0
    assert cpu.read(0x100, 1) == b"\x12"
