/* exec.c - the interpreter: predecoded, computed-goto dispatch.
 *
 * Each 16-bit parcel address in RAM has a dinsn slot, filled on first
 * execution.  A slice runs in chunks of at most CHUNK instructions; between
 * chunks (and whenever an instruction needs it, via FORCE_CHECK) the loop
 * looks at interrupts, the trace trap, stop requests and the budget.
 */
#include <string.h>

#include "cr16_internal.h"

#define CHUNK 262144   /* instructions between looks at stop requests */
#define PC_MASK 0xFFFFFFu

#define C_ CR16_PSR_C
#define L_ CR16_PSR_L
#define F_ CR16_PSR_F
#define Z_ CR16_PSR_Z
#define N_ CR16_PSR_N

static inline uint32_t sxt(uint32_t v, int bits)
{
    uint32_t m = 1u << (bits - 1);
    v &= (uint32_t)((1ull << bits) - 1);
    return (v ^ m) - m;
}

/* C and F after dst + src + cin in `bits` bits (operands already masked). */
static inline uint16_t flags_add(uint16_t psr, uint32_t dst, uint32_t src, uint32_t cin, int bits)
{
    uint64_t full = (uint64_t)dst + src + cin;
    uint32_t r = (uint32_t)full, sign = 1u << (bits - 1);
    unsigned carry = (unsigned)(full >> bits) & 1;
    unsigned ovf = ((~(dst ^ src) & (dst ^ r)) & sign) != 0;
    return (uint16_t)((psr & ~(C_ | F_)) | carry | ovf << 5);
}

/* C (borrow) and F after dst - src - bin. */
static inline uint16_t flags_sub(uint16_t psr, uint32_t dst, uint32_t src, uint32_t bin, int bits)
{
    uint32_t r = dst - src - bin, sign = 1u << (bits - 1);
    unsigned borrow = (uint64_t)src + bin > dst;
    unsigned ovf = (((dst ^ src) & (dst ^ r)) & sign) != 0;
    return (uint16_t)((psr & ~(C_ | F_)) | borrow | ovf << 5);
}

/* The same without a carry in, where the host's flags do the work. */
#define ADD_SUB_CF(NAME, OP, T, ST)                                              \
    static inline uint16_t NAME(uint16_t psr, uint32_t dst, uint32_t src)       \
    {                                                                            \
        T r; ST sr;                                                              \
        unsigned cf = __builtin_##OP##_overflow((T)dst, (T)src, &r);             \
        unsigned of = __builtin_##OP##_overflow((ST)(T)dst, (ST)(T)src, &sr);    \
        return (uint16_t)((psr & ~(C_ | F_)) | cf | of << 5);                    \
    }
ADD_SUB_CF(add_cf8, add, uint8_t, int8_t)
ADD_SUB_CF(add_cf16, add, uint16_t, int16_t)
ADD_SUB_CF(add_cf32, add, uint32_t, int32_t)
ADD_SUB_CF(sub_cf8, sub, uint8_t, int8_t)
ADD_SUB_CF(sub_cf16, sub, uint16_t, int16_t)
ADD_SUB_CF(sub_cf32, sub, uint32_t, int32_t)

/* Compare src (first operand) with dst (second) in `bits` bits: record the
 * operands, shifted to the top of the word, for Z/N/L on demand. */
static inline void compare(struct cr16_cpu *c, uint32_t src, uint32_t dst, int bits)
{
    c->cmp_s = src << (32 - bits);
    c->cmp_d = dst << (32 - bits);
    c->znl_lazy = 1;
}

/* Condition cc (cr16c-isa.md 5): "first operand cc second operand". */
static inline int cond_true(struct cr16_cpu *c, unsigned cc)
{
    const uint16_t p = c->psr;
    if (c->znl_lazy) {
        const uint32_t s = c->cmp_s, d = c->cmp_d;
        switch (cc) {
        case 0: return s == d;
        case 1: return s != d;
        case 4: return s > d;
        case 5: return s <= d;
        case 6: return (int32_t)s > (int32_t)d;
        case 7: return (int32_t)s <= (int32_t)d;
        case 10: return s < d;
        case 11: return s >= d;
        case 12: return (int32_t)s < (int32_t)d;
        case 13: return (int32_t)s >= (int32_t)d;
        default: break;
        }
    }
    switch (cc) {
    case 0: return (p & Z_) != 0;
    case 1: return !(p & Z_);
    case 2: return (p & C_) != 0;
    case 3: return !(p & C_);
    case 4: return (p & L_) != 0;
    case 5: return !(p & L_);
    case 6: return (p & N_) != 0;
    case 7: return !(p & N_);
    case 8: return (p & F_) != 0;
    case 9: return !(p & F_);
    case 10: return !(p & (Z_ | L_));
    case 11: return (p & (Z_ | L_)) != 0;
    case 12: return !(p & (Z_ | N_));
    case 13: return (p & (Z_ | N_)) != 0;
    case 14: return 1;
    default: return 0;
    }
}

/* Shifts: count > 0 left, < 0 right (arith or logical) in `bits` bits. */
static inline uint32_t shift(uint32_t v, int count, int bits, int arith)
{
    uint32_t mask = (uint32_t)((1ull << bits) - 1);
    v &= mask;
    if (count >= 0)
        return count >= bits ? 0 : (v << count) & mask;
    count = -count;
    if (arith) {
        int32_t s = (int32_t)sxt(v, bits);
        return (uint32_t)(s >> (count >= bits ? bits - 1 : count)) & mask;
    }
    return count >= bits ? 0 : v >> count;
}

static inline int32_t sat32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
}

/* Processor registers by lpr/spr code (16-bit views) and lprd/sprd code. */
static int preg_read(struct cr16_cpu *c, unsigned code, int wide, uint32_t *v)
{
    znl_materialize(c);
    uint32_t full;
    switch (code) {
    case 0x0: *v = c->dbs; return 0;
    case 0x1: *v = c->dsr; return 0;
    case 0x8: *v = c->cfg; return 0;
    case 0x9: *v = c->psr; return 0;
    default: break;
    }
    switch (code & ~1u) {
    case 0x2: full = c->dcr; break;
    case 0x4: full = c->car0; break;
    case 0x6: full = c->car1; break;
    case 0xA: full = c->intbase; break;
    case 0xC: full = c->isp; break;
    case 0xE: full = (c->psr & CR16_PSR_U) ? rp_get(c, 15) : c->sp_bank; break;
    default: return -1;
    }
    if (wide) {
        if (code & 1)
            return -1;
        *v = full;
    } else {
        *v = (code & 1) ? full >> 16 : full & 0xFFFF;
    }
    return 0;
}

static int preg_write(struct cr16_cpu *c, unsigned code, int wide, uint32_t v)
{
    uint32_t *slot, cur;
    int user_sp = (code & ~1u) == 0xE && (c->psr & CR16_PSR_U);
    switch (code) {
    case 0x0: c->dbs = (uint16_t)v; return 0;
    case 0x1: c->dsr = (uint16_t)v; return 0;
    case 0x8: c->cfg = (uint16_t)v; return 0;
    case 0x9: cr16_set_psr(c, v & 0xFFFF); return 0;
    default: break;
    }
    switch (code & ~1u) {
    case 0x2: slot = &c->dcr; break;
    case 0x4: slot = &c->car0; break;
    case 0x6: slot = &c->car1; break;
    case 0xA: slot = &c->intbase; break;
    case 0xC: slot = &c->isp; break;
    case 0xE: slot = &c->sp_bank; break;
    default: return -1;
    }
    cur = user_sp ? rp_get(c, 15) : *slot;     /* in user mode USP is the live sp */
    if (wide) {
        if (code & 1)
            return -1;
        cur = v;
    } else if (code & 1) {
        cur = (cur & 0xFFFF) | (v & 0xFFFF) << 16;
    } else {
        cur = (cur & 0xFFFF0000u) | (v & 0xFFFF);
    }
    if (slot == &c->intbase)
        cur &= 0x00FFFFFEu;
    if (user_sp)
        rp_set(c, 15, cur);
    else
        *slot = cur;
    return 0;
}

/* A store into predecoded code is only noted here: the decoded entries are
 * dropped between instructions (events), so the running instruction's entry
 * stays intact while it executes.  Returns 1 when the caller must make the
 * loop reach events before the next instruction. */
static void note_code_write(struct cr16_cpu *c, uint32_t a, uint32_t n)
{
    if (!c->smc_pending) {
        c->smc_lo = a;
        c->smc_hi = a + n;
        c->smc_pending = 1;
    } else {
        if (a < c->smc_lo) c->smc_lo = a;
        if (a + n > c->smc_hi) c->smc_hi = a + n;
    }
}

static inline int mark_store(struct cr16_cpu *c, uint8_t *dirty, const uint8_t *codeline,
                             uint32_t a, uint32_t n)
{
    if (LIKELY(((a ^ (a + n - 1)) >> CR16_LINE_BITS) == 0)) {  /* one line, one page */
        dirty[a >> CR16_PAGE_BITS] = 1;
        if (UNLIKELY(codeline[a >> CR16_LINE_BITS])) {
            note_code_write(c, a, n);
            return 1;
        }
        return 0;
    }
    dirty[a >> CR16_PAGE_BITS] = 1;
    dirty[(a + n - 1) >> CR16_PAGE_BITS] = 1;
    if (UNLIKELY(codeline[a >> CR16_LINE_BITS] | codeline[(a + n - 1) >> CR16_LINE_BITS])) {
        note_code_write(c, a, n);
        return 1;
    }
    return 0;
}

static void drop_written_code(struct cr16_cpu *c)
{
    if (c->smc_pending) {
        c->smc_pending = 0;
        cr16_code_written(c, c->smc_lo, c->smc_hi - c->smc_lo);
    }
}

/* Take exception `vec` with return address `ret`.  Returns the handler's pc,
 * or -1 when the guest has no handler (no table, empty entry, or a frame or
 * table outside RAM): the caller reports a fault to the host instead. */
static int64_t enter_exception(struct cr16_cpu *c, int vec, uint32_t ret)
{
    uint32_t entry, ea, isp;
    if (c->intbase == 0)
        return -1;
    if (c->cfg & CR16_CFG_ED) {
        ea = c->intbase + 4u * (uint32_t)vec;
        if (ea > c->ram_size - 4)
            return -1;
        entry = c->ram[ea] | c->ram[ea + 1] << 8 | (uint32_t)c->ram[ea + 2] << 16 |
                (uint32_t)c->ram[ea + 3] << 24;
    } else {
        ea = c->intbase + 2u * (uint32_t)vec;
        if (ea > c->ram_size - 2)
            return -1;
        entry = c->ram[ea] | c->ram[ea + 1] << 8;
    }
    if (entry == 0)
        return -1;
    isp = c->isp - 6;
    if (isp > c->ram_size - 6 || c->isp < 6)
        return -1;
    /* frame: PSR at ISP, halved return address (32 bits) at ISP+2 */
    uint32_t r = ret >> 1;
    znl_materialize(c);
    uint16_t psr = c->psr & ~CR16_PSR_P;
    c->ram[isp] = (uint8_t)psr;
    c->ram[isp + 1] = (uint8_t)(psr >> 8);
    c->ram[isp + 2] = (uint8_t)r;
    c->ram[isp + 3] = (uint8_t)(r >> 8);
    c->ram[isp + 4] = (uint8_t)(r >> 16);
    c->ram[isp + 5] = (uint8_t)(r >> 24);
    mark_store(c, c->dirty, c->codeline, isp, 6);
    c->isp = isp;
    uint32_t np = psr & ~(CR16_PSR_U | CR16_PSR_T | CR16_PSR_P);
    if (vec == CR16_VEC_NMI || vec >= 16)
        np &= ~CR16_PSR_I;
    cr16_set_psr(c, np);
    return (entry << 1) & PC_MASK;
}

/* Decoded register fields A and B are halfword offsets into h[] (decode.c
 * translates them), so handlers index h[] directly.  Byte writes keep bits
 * 15:8; 16-bit writes to r12..sp keep the upper half. */
static inline uint32_t hp_get(const struct cr16_cpu *c, unsigned o)
{
    uint32_t v;
    memcpy(&v, &c->h[o], 4);
    return v;
}

static inline void hp_set(struct cr16_cpu *c, unsigned o, uint32_t v)
{
    memcpy(&c->h[o], &v, 4);
}

#define W8(o, v) (c->h[o] = (uint16_t)((c->h[o] & 0xFF00u) | ((v) & 0xFFu)))
#define W16(o, v) (c->h[o] = (uint16_t)(v))

#define FAULT(vec, addr) do { fvec = (vec); faddr = (addr); goto fault; } while (0)
#define FORCE_CHECK() do {                                              \
        done += chunk_start - chunk; chunk_start = chunk = 0; tbl = lbl_precise; \
    } while (0)

/* Budget.  `chunk` is how many more instructions may start in this chunk;
 * every instruction start charges one.  In fast mode (tbl == lbl) the
 * sequential step (NEXT) charges without looking: only jumps and page
 * crossings check, and they leave fast mode once fewer than CHUNK_MIN
 * remain, more than a page of straight-line code can use up.  In precise
 * mode (tbl == lbl_precise) every start goes through precise_start, which
 * stops the chunk exactly.  Every handler ends in its own copy of the
 * dispatch, so the host's branch predictor sees one indirect jump per
 * guest instruction kind. */
#define CHUNK_MIN 4096
#define NEXT() do {                                                     \
        pc += len; d = (dinsn *)((char *)d + 4 * len);                  \
        chunk--;                                                        \
        goto *tbl[d->op];                                               \
    } while (0)
/* Start the instruction at d (found by a jump), with the check. */
#define START() do {                                                    \
        if (UNLIKELY(--chunk < CHUNK_MIN)) goto slow_start;             \
        goto *lbl[d->op];                                               \
    } while (0)
#define DISPATCH() do {                                                 \
        dinsn *blk_ = dpage[pc >> CR16_PAGE_BITS];                      \
        if (UNLIKELY(!blk_)) { chunk--; goto miss; }                    \
        d = &blk_[(pc & (CR16_PAGE_SIZE - 1)) >> 1];                    \
        START();                                                        \
    } while (0)
/* A pc-relative jump by `disp`: on the same page, step d instead of a lookup. */
#define JUMP_REL(disp) do {                                             \
        uint32_t npc_ = (pc + (disp)) & PC_MASK;                        \
        if (((npc_ ^ pc) >> CR16_PAGE_BITS) == 0) {                     \
            d = (dinsn *)((char *)d + 4 * (int32_t)(npc_ - pc));        \
            pc = npc_;                                                  \
            START();                                                    \
        }                                                               \
        pc = npc_;                                                      \
        DISPATCH();                                                     \
    } while (0)
#define PRIV() do { if (UNLIKELY(c->psr & CR16_PSR_U)) FAULT(CR16_VEC_UND, 0); } while (0)

/* During the handler, insn_count is live: the instructions completed before
 * this one, so devices see the exact cycle of the access. */
#define MMIO(a, n, w, val) do {                                         \
        uint64_t live_ = done + (uint64_t)(int64_t)(chunk_start - chunk) - 1; \
        c->insns += live_;                                              \
        int rc_ = cr16_mmio_access(c, (a), (n), (w), &(val));          \
        c->insns -= live_;                                              \
        if (rc_ < 0) FAULT(CR16_VEC_IAD, (a));                          \
        if (rc_ > 0) stop_after = 1;                                    \
        FORCE_CHECK();                                                  \
    } while (0)

/* Guest RAM is little-endian like every host this builds for (see the check
 * in cr16_internal.h), so multi-byte accesses are plain unaligned copies. */
static inline uint32_t ram_ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t ram_ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline void ram_st16(uint8_t *p, uint32_t v) { uint16_t w = (uint16_t)v; memcpy(p, &w, 2); }
static inline void ram_st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

#define RD8(addr, dst) do { uint32_t a_ = (addr);                                   \
        if (LIKELY(a_ < ram_size)) dst = ram[a_];                                   \
        else { uint32_t v_ = 0; MMIO(a_, 1, 0, v_); dst = v_ & 0xFF; } } while (0)
#define RD16(addr, dst) do { uint32_t a_ = (addr);                                  \
        if (LIKELY(a_ < lim16)) dst = ram_ld16(ram + a_);                           \
        else { uint32_t v_ = 0; MMIO(a_, 2, 0, v_); dst = v_ & 0xFFFF; } } while (0)
#define RD32(addr, dst) do { uint32_t a_ = (addr);                                  \
        if (LIKELY(a_ < lim32)) dst = ram_ld32(ram + a_);                           \
        else { uint32_t v_ = 0; MMIO(a_, 4, 0, v_); dst = v_; } } while (0)

#define WR8(addr, val) do { uint32_t a_ = (addr), v_ = (val);                       \
        if (LIKELY(a_ < ram_size)) { ram[a_] = (uint8_t)v_;                         \
            if (UNLIKELY(mark_store(c, dirty, codeline, a_, 1))) FORCE_CHECK(); }    \
        else { v_ &= 0xFF; MMIO(a_, 1, 1, v_); } } while (0)
#define WR16(addr, val) do { uint32_t a_ = (addr), v_ = (val);                      \
        if (LIKELY(a_ < lim16)) { ram_st16(ram + a_, v_);                           \
            if (UNLIKELY(mark_store(c, dirty, codeline, a_, 2))) FORCE_CHECK(); }    \
        else { v_ &= 0xFFFF; MMIO(a_, 2, 1, v_); } } while (0)
#define WR32(addr, val) do { uint32_t a_ = (addr), v_ = (val);                      \
        if (LIKELY(a_ < lim32)) { ram_st32(ram + a_, v_);                           \
            if (UNLIKELY(mark_store(c, dirty, codeline, a_, 4))) FORCE_CHECK(); }    \
        else { MMIO(a_, 4, 1, v_); } } while (0)

/* Effective addresses of the four modes (see cr16_internal.h). */
#define EA_PD (hp_get(c, B) + imm)
#define EA_ABS (imm)
#define EA_IDX (hp_get(c, 12 + 2 * (B >> 4)) + hp_get(c, B & 15) + imm)
#define EA_R16 (c->h[B] + imm)

#define BITOP(RD, WR, EA, KIND)                                         \
    { uint32_t ea_ = EA, bv_; RD(ea_, bv_);                               \
      c->psr = (uint16_t)((c->psr & ~F_) | ((bv_ >> A) & 1) << 5);      \
      if (KIND == 0) WR(ea_, bv_ & ~(1u << A));                          \
      else if (KIND == 1) WR(ea_, bv_ | (1u << A));                      \
      NEXT(); }

#define MEM_HANDLERS(M)                                                                \
    op_LDB_##M: { uint32_t v; RD8(EA_##M, v); W8(A, v); NEXT(); }                    \
    op_LDW_##M: { uint32_t v; RD16(EA_##M, v); W16(A, v); NEXT(); }                  \
    op_LDD_##M: { uint32_t v; RD32(EA_##M, v); hp_set(c, A, v); NEXT(); }           \
    op_STB_##M: { WR8(EA_##M, c->h[A]); NEXT(); }                                    \
    op_STW_##M: { WR16(EA_##M, c->h[A]); NEXT(); }                                   \
    op_STD_##M: { WR32(EA_##M, hp_get(c, A)); NEXT(); }                              \
    op_STBI_##M: { WR8(EA_##M, A); NEXT(); }                                         \
    op_STWI_##M: { WR16(EA_##M, A); NEXT(); }                                        \
    op_CBITB_##M: BITOP(RD8, WR8, EA_##M, 0)                                         \
    op_SBITB_##M: BITOP(RD8, WR8, EA_##M, 1)                                         \
    op_TBITB_##M: BITOP(RD8, WR8, EA_##M, 2)                                         \
    op_CBITW_##M: BITOP(RD16, WR16, EA_##M, 0)                                       \
    op_SBITW_##M: BITOP(RD16, WR16, EA_##M, 1)                                       \
    op_TBITW_##M: BITOP(RD16, WR16, EA_##M, 2)

/* Byte/word ALU: the immediate form reads imm, the register form R[B]; both
 * then compute FLAGS and (if WRITES) RESULT from dv (destination), s
 * (source), ci (carry in) and bits. */
#define ALU(NAME, SZ, MASK, BITS, WR, FLAGS, RESULT, WRITES)            \
    op_##NAME##SZ##_I: s = imm; goto NAME##SZ##_body;                  \
    op_##NAME##SZ##_R: s = c->h[B] & MASK;                              \
    NAME##SZ##_body: {                                                  \
        const int bits = BITS;                                          \
        uint32_t dv = c->h[A] & MASK, ci = c->psr & C_;                 \
        (void)bits; (void)ci; (void)dv;                                 \
        FLAGS;                                                          \
        if (WRITES) WR(A, RESULT);                                      \
    } NEXT();

#define ALU_BOTH(NAME, FLAGS, RESULT, WRITES)                           \
    ALU(NAME, B, 0xFFu, 8, W8, FLAGS, RESULT, WRITES)                  \
    ALU(NAME, W, 0xFFFFu, 16, W16, FLAGS, RESULT, WRITES)

#define BCC_HANDLER(CC) \
    op_B##CC: if (cond_true(c, OP_B##CC - OP_BEQ)) JUMP_REL(imm); NEXT();

#define LBL_NAME(n) [OP_##n] = &&op_##n,
#define LBL_MODE(k, m) [OP_##k##_##m] = &&op_##k##_##m,
#define LBL_ALU(n) ALU_VARIANTS(LBL_NAME, n)
#define LBL_MEMK(k) MODES(LBL_MODE, k)
#define LBL_BCC(cc) [OP_B##cc] = &&op_B##cc,

/* Handlers read their operands straight from the entry d (stable for the
 * whole instruction, see note_code_write). */
#define imm (d->val)
#define A ((unsigned)d->fa)
#define B ((unsigned)d->fb)
#define len ((unsigned)d->size)

int cr16_run(struct cr16_cpu *c, uint64_t budget, uint64_t *executed)
{
    static const void *const lbl[OP_COUNT] = {
        LBL_NAME(DECODE) LBL_NAME(PAGEX) LBL_NAME(UND) LBL_NAME(NOP)
        ALU_OPS(LBL_ALU)
        LBL_NAME(MOVD_I) LBL_NAME(MOVD_R) LBL_NAME(ADDD_I) LBL_NAME(ADDD_R)
        LBL_NAME(SUBD_I) LBL_NAME(SUBD_R) LBL_NAME(CMPD_I) LBL_NAME(CMPD_R)
        LBL_NAME(ANDD_I) LBL_NAME(ANDD_R) LBL_NAME(ORD_I) LBL_NAME(ORD_R)
        LBL_NAME(XORD_I) LBL_NAME(XORD_R)
        LBL_NAME(MOVXB) LBL_NAME(MOVZB) LBL_NAME(MOVXW) LBL_NAME(MOVZW)
        LBL_NAME(MULSB) LBL_NAME(MULSW) LBL_NAME(MULUW)
        LBL_NAME(MACQW) LBL_NAME(MACUW) LBL_NAME(MACSW)
        LBL_NAME(ASHUB_I) LBL_NAME(ASHUB_R) LBL_NAME(LSHB_I) LBL_NAME(LSHB_R)
        LBL_NAME(ASHUW_I) LBL_NAME(ASHUW_R) LBL_NAME(LSHW_I) LBL_NAME(LSHW_R)
        LBL_NAME(ASHUD_I) LBL_NAME(ASHUD_R) LBL_NAME(LSHD_I) LBL_NAME(LSHD_R)
        LBL_NAME(TBIT_I) LBL_NAME(TBIT_R) LBL_NAME(SCOND)
        MEM_KINDS(LBL_MEMK)
        CONDS(LBL_BCC)
        LBL_NAME(BR) LBL_NAME(BEQ0B) LBL_NAME(BNE0B) LBL_NAME(BEQ0W) LBL_NAME(BNE0W)
        LBL_NAME(BAL) LBL_NAME(JCOND) LBL_NAME(JUMP) LBL_NAME(JUSR) LBL_NAME(JAL)
        LBL_NAME(PUSH) LBL_NAME(POP) LBL_NAME(POPRET)
        LBL_NAME(LOADM) LBL_NAME(LOADMP) LBL_NAME(STORM) LBL_NAME(STORMP)
        LBL_NAME(LPR) LBL_NAME(LPRD) LBL_NAME(SPR) LBL_NAME(SPRD)
        LBL_NAME(DI) LBL_NAME(EI) LBL_NAME(WAIT) LBL_NAME(EIWAIT) LBL_NAME(RETX)
        LBL_NAME(EXCP)
    };
    static const void *const lbl_precise[OP_COUNT] = {[0 ... OP_COUNT - 1] = &&precise_start};
    static const uint8_t mlist[8] = {2, 3, 4, 5, 8, 9, 10, 11};   /* loadm/storm order */

    uint8_t *const ram = c->ram, *const dirty = c->dirty;
    const uint8_t *const codeline = c->codeline;
    const uint32_t ram_size = c->ram_size, lim16 = ram_size - 1, lim32 = ram_size - 3;
    uint64_t done = 0;
    int32_t chunk_start = 0, chunk = 0;
    const void *const *tbl = lbl_precise;
    uint32_t pc = c->pc, s = 0, faddr = 0;
    int reason = CR16_EXIT_BUDGET, stop_after = 0, fvec = 0;
    dinsn *d = NULL;
    dinsn **const dpage = c->dpage;

    goto events;

precise_start:      /* the instruction at d is charged: may it start? */
    if (chunk < 0) {
        chunk = 0;
        goto events;
    }
redispatch:
    goto *lbl[d->op];

slow_start:         /* START found the chunk nearly used up */
    tbl = lbl_precise;
    goto precise_start;

miss:               /* the instruction at pc is charged; its page is not decoded */
    if (chunk < 0) {
        chunk = 0;
        goto events;
    }
    if (chunk < CHUNK_MIN)
        tbl = lbl_precise;
    if (pc > ram_size - 2 || pc >= CR16_ADDR_SPACE)
        FAULT(CR16_VEC_IAD, pc);
    {
        dinsn *blk = cr16_dpage_alloc(c, pc >> CR16_PAGE_BITS);
        if (!blk)
            FAULT(0, pc);     /* host out of memory */
        d = &blk[(pc & (CR16_PAGE_SIZE - 1)) >> 1];
    }
    goto redispatch;

op_DECODE:
    if (UNLIKELY(pc > ram_size - 2))    /* stepped past the end of RAM */
        FAULT(CR16_VEC_IAD, pc);
    cr16_decode(ram, ram_size, pc, d);
    c->codeline[pc >> CR16_LINE_BITS] = 1;
    if (((pc + d->size - 1) >> CR16_LINE_BITS) < ((ram_size + 63) >> CR16_LINE_BITS))
        c->codeline[(pc + d->size - 1) >> CR16_LINE_BITS] = 1;
    goto redispatch;

op_PAGEX:   /* stepped off the end of a decoded page (the next insn is charged) */
    pc &= PC_MASK;      /* the 24-bit pc wraps */
    {
        dinsn *blk = dpage[pc >> CR16_PAGE_BITS];
        if (UNLIKELY(!blk))
            goto miss;
        d = &blk[(pc & (CR16_PAGE_SIZE - 1)) >> 1];
    }
    if (UNLIKELY(chunk < CHUNK_MIN))
        goto slow_start;
    goto redispatch;

op_UND:
    if (A == 1)     /* instruction runs past the end of RAM */
        FAULT(CR16_VEC_IAD, ram_size);
    FAULT(CR16_VEC_UND, 0);
op_NOP:
    NEXT();

    /* ---- byte/word ALU ---- */
    ALU_BOTH(AND, (void)0, dv & s, 1)
    ALU_BOTH(OR, (void)0, dv | s, 1)
    ALU_BOTH(XOR, (void)0, dv ^ s, 1)
    ALU_BOTH(ADDU, (void)0, dv + s, 1)
    ALU(ADD, B, 0xFFu, 8, W8, c->psr = add_cf8(c->psr, dv, s), dv + s, 1)
    ALU(ADD, W, 0xFFFFu, 16, W16, c->psr = add_cf16(c->psr, dv, s), dv + s, 1)
    ALU_BOTH(ADDC, c->psr = flags_add(c->psr, dv, s, ci, bits), dv + s + ci, 1)
    ALU(SUB, B, 0xFFu, 8, W8, c->psr = sub_cf8(c->psr, dv, s), dv - s, 1)
    ALU(SUB, W, 0xFFFFu, 16, W16, c->psr = sub_cf16(c->psr, dv, s), dv - s, 1)
    ALU_BOTH(SUBC, c->psr = flags_sub(c->psr, dv, s, ci, bits), dv - s - ci, 1)
    ALU_BOTH(MUL, (void)0, dv * s, 1)
    ALU_BOTH(CMP, compare(c, s, dv, bits), 0, 0)
    ALU_BOTH(MOV, (void)0, s, 1)

    /* ---- 32-bit ALU ---- */
op_MOVD_I: hp_set(c, A, imm); NEXT();
op_MOVD_R: hp_set(c, A, hp_get(c, B)); NEXT();
op_ADDD_R: s = hp_get(c, B); goto addd_body;
op_ADDD_I: s = imm;
addd_body: {
        uint32_t dv = hp_get(c, A);
        c->psr = add_cf32(c->psr, dv, s);
        hp_set(c, A, dv + s);
        NEXT();
    }
op_SUBD_R: s = hp_get(c, B); goto subd_body;
op_SUBD_I: s = imm;
subd_body: {
        uint32_t dv = hp_get(c, A);
        c->psr = sub_cf32(c->psr, dv, s);
        hp_set(c, A, dv - s);
        NEXT();
    }
op_CMPD_R: s = hp_get(c, B); goto cmpd_body;
op_CMPD_I: s = imm;
cmpd_body: compare(c, s, hp_get(c, A), 32); NEXT();
op_ANDD_R: s = hp_get(c, B); goto andd_body;
op_ANDD_I: s = imm;
andd_body: hp_set(c, A, hp_get(c, A) & s); NEXT();
op_ORD_R: s = hp_get(c, B); goto ord_body;
op_ORD_I: s = imm;
ord_body: hp_set(c, A, hp_get(c, A) | s); NEXT();
op_XORD_R: s = hp_get(c, B); goto xord_body;
op_XORD_I: s = imm;
xord_body: hp_set(c, A, hp_get(c, A) ^ s); NEXT();

op_MOVXB: W16(A, sxt(c->h[B], 8)); NEXT();
op_MOVZB: W16(A, c->h[B] & 0xFF); NEXT();
op_MOVXW: hp_set(c, A, sxt(c->h[B], 16)); NEXT();
op_MOVZW: hp_set(c, A, c->h[B] & 0xFFFF); NEXT();
op_MULSB: W16(A, (uint32_t)((int32_t)sxt(c->h[B], 8) * (int32_t)sxt(c->h[A], 8))); NEXT();
op_MULSW:
    hp_set(c, A, (uint32_t)((int32_t)sxt(c->h[B], 16) * (int32_t)sxt(c->h[A], 16)));
    NEXT();
op_MULUW: hp_set(c, A, (uint32_t)c->h[B] * c->h[A]); NEXT();
op_MACUW: hp_set(c, A, hp_get(c, A) + (r16_get(c, B & 15) & 0xFFFF) * (r16_get(c, B >> 4) & 0xFFFF)); NEXT();
op_MACSW:
    hp_set(c, A, hp_get(c, A) + (uint32_t)((int32_t)sxt(r16_get(c, B & 15), 16) *
                                           (int32_t)sxt(r16_get(c, B >> 4), 16)));
    NEXT();
op_MACQW: {
        int64_t p = 2 * (int64_t)(int32_t)sxt(r16_get(c, B & 15), 16) * (int32_t)sxt(r16_get(c, B >> 4), 16);
        p = sat32(p);
        hp_set(c, A, (uint32_t)sat32((int64_t)(int32_t)hp_get(c, A) + p));
        NEXT();
    }

    /* ---- shifts ---- */
op_ASHUB_I: W8(A, shift(c->h[A], (int32_t)imm, 8, 1)); NEXT();
op_ASHUB_R: W8(A, shift(c->h[A], (int32_t)sxt(c->h[B], 4), 8, 1)); NEXT();
op_LSHB_I: W8(A, shift(c->h[A], (int32_t)imm, 8, 0)); NEXT();
op_LSHB_R: W8(A, shift(c->h[A], (int32_t)sxt(c->h[B], 4), 8, 0)); NEXT();
op_ASHUW_I: W16(A, shift(c->h[A], (int32_t)imm, 16, 1)); NEXT();
op_ASHUW_R: W16(A, shift(c->h[A], (int32_t)sxt(c->h[B], 5), 16, 1)); NEXT();
op_LSHW_I: W16(A, shift(c->h[A], (int32_t)imm, 16, 0)); NEXT();
op_LSHW_R: W16(A, shift(c->h[A], (int32_t)sxt(c->h[B], 5), 16, 0)); NEXT();
op_ASHUD_I: hp_set(c, A, shift(hp_get(c, A), (int32_t)imm, 32, 1)); NEXT();
op_ASHUD_R: hp_set(c, A, shift(hp_get(c, A), (int32_t)sxt(c->h[B], 6), 32, 1)); NEXT();
op_LSHD_I: hp_set(c, A, shift(hp_get(c, A), (int32_t)imm, 32, 0)); NEXT();
op_LSHD_R: hp_set(c, A, shift(hp_get(c, A), (int32_t)sxt(c->h[B], 6), 32, 0)); NEXT();

op_TBIT_I: c->psr = (uint16_t)((c->psr & ~F_) | ((c->h[A] >> B) & 1) << 5); NEXT();
op_TBIT_R: c->psr = (uint16_t)((c->psr & ~F_) | ((c->h[A] >> (c->h[B] & 15)) & 1) << 5); NEXT();
op_SCOND: W16(A, cond_true(c, B)); NEXT();

    /* ---- loads, stores, bit operations on memory ---- */
    MEM_HANDLERS(PD)
    MEM_HANDLERS(ABS)
    MEM_HANDLERS(IDX)
    MEM_HANDLERS(R16)

    /* ---- control transfer ---- */
    CONDS(BCC_HANDLER)
op_BR: JUMP_REL(imm);
op_BEQ0B: if ((c->h[A] & 0xFF) == 0) JUMP_REL(imm); NEXT();
op_BNE0B: if ((c->h[A] & 0xFF) != 0) JUMP_REL(imm); NEXT();
op_BEQ0W: if ((c->h[A] & 0xFFFF) == 0) JUMP_REL(imm); NEXT();
op_BNE0W: if ((c->h[A] & 0xFFFF) != 0) JUMP_REL(imm); NEXT();
op_BAL: hp_set(c, A, (pc + len) >> 1); pc = (pc + imm) & PC_MASK; DISPATCH();
op_JCOND:
    if (cond_true(c, A)) { pc = (hp_get(c, B) << 1) & PC_MASK; DISPATCH(); }
    NEXT();
op_JUMP: pc = (hp_get(c, B) << 1) & PC_MASK; DISPATCH();
op_JUSR:
    pc = (hp_get(c, B) << 1) & PC_MASK;
    cr16_set_psr(c, psr_value(c) | CR16_PSR_U);
    DISPATCH();
op_JAL: {
        uint32_t t = hp_get(c, B);
        hp_set(c, A, (pc + len) >> 1);
        pc = (t << 1) & PC_MASK;
        DISPATCH();
    }

    /* ---- stack and multiple transfers ---- */
op_PUSH: {
        uint32_t sp = rp_get(c, 15), w = 2 * B + (imm ? 4 : 0), p = sp - w, left = B;
        for (unsigned i = A; left && i < 16; i++) {
            if (i < 12 || left == 1) {
                WR16(p, r16_get(c, i));
                p += 2;
                left--;
            } else {
                WR32(p, rp_get(c, i));
                p += 4;
                left -= 2;
            }
        }
        if (imm)
            WR32(sp - 4, rp_get(c, 14));
        rp_set(c, 15, sp - w);
        NEXT();
    }
op_POP: s = 0; goto pop_common;
op_POPRET: s = 1;
pop_common: {
        uint32_t sp = rp_get(c, 15), p = sp, left = B, val[16], ra = rp_get(c, 14);
        uint8_t half[16];
        unsigned i, end;
        for (i = A; left && i < 16; i++) {
            half[i] = i < 12 || left == 1;
            if (half[i]) {
                RD16(p, val[i]);
                p += 2;
                left--;
            } else {
                RD32(p, val[i]);
                p += 4;
                left -= 2;
            }
        }
        end = i;
        if (imm)
            RD32(sp + 2 * B, ra);
        for (i = A; i < end; i++) {
            if (half[i])
                r16_set(c, i, val[i]);
            else
                rp_set(c, i, val[i]);
        }
        if (imm)
            rp_set(c, 14, ra);
        rp_set(c, 15, sp + 2 * B + (imm ? 4 : 0));
        if (s) {
            pc = (rp_get(c, 14) << 1) & PC_MASK;
            DISPATCH();
        }
        NEXT();
    }
op_LOADM: s = imm | 0x100; goto loadm_body;   /* bit 8: 16-bit address in r0 */
op_LOADMP: s = imm;
loadm_body: {
        uint32_t n = s & 0xFF, p = (s & 0x100) ? (r16_get(c, 0) & 0xFFFF) : rp_get(c, 0), val[8];
        for (uint32_t i = 0; i < n; i++, p += 2)
            RD16(p, val[i]);
        for (uint32_t i = 0; i < n; i++)
            r16_set(c, mlist[i], val[i]);
        if (s & 0x100)
            W16(0, p);
        else
            rp_set(c, 0, p);
        NEXT();
    }
op_STORM: s = imm | 0x100; goto storm_body;   /* bit 8: 16-bit address in r1 */
op_STORMP: s = imm;
storm_body: {
        uint32_t n = s & 0xFF, p = (s & 0x100) ? (r16_get(c, 1) & 0xFFFF) : rp_get(c, 6);
        for (uint32_t i = 0; i < n; i++, p += 2)
            WR16(p, r16_get(c, mlist[i]));
        if (s & 0x100)
            W16(1, p);
        else
            rp_set(c, 6, p);
        NEXT();
    }

    /* ---- processor registers and system ---- */
op_LPR:
    PRIV();
    if (preg_write(c, A, 0, c->h[B]) < 0)
        FAULT(CR16_VEC_UND, 0);
    FORCE_CHECK();
    NEXT();
op_LPRD:
    PRIV();
    if (preg_write(c, A, 1, hp_get(c, B)) < 0)
        FAULT(CR16_VEC_UND, 0);
    FORCE_CHECK();
    NEXT();
op_SPR: {
        uint32_t v;
        if (preg_read(c, A, 0, &v) < 0)
            FAULT(CR16_VEC_UND, 0);
        W16(B, v);
        NEXT();
    }
op_SPRD: {
        uint32_t v;
        if (preg_read(c, A, 1, &v) < 0)
            FAULT(CR16_VEC_UND, 0);
        hp_set(c, B, v);
        NEXT();
    }
op_DI: PRIV(); c->psr &= ~CR16_PSR_E; NEXT();
op_EI: PRIV(); c->psr |= CR16_PSR_E; FORCE_CHECK(); NEXT();
op_EIWAIT: PRIV(); c->psr |= CR16_PSR_E; goto do_wait;
op_WAIT: PRIV();
do_wait:
    c->halted = 1;
    FORCE_CHECK();
    NEXT();
op_RETX: {
        uint32_t isp = c->isp, psr, ret;
        PRIV();
        RD16(isp, psr);
        RD32(isp + 2, ret);
        c->isp = isp + 6;
        pc = (ret << 1) & PC_MASK;
        cr16_set_psr(c, psr);
        FORCE_CHECK();
        DISPATCH();
    }
op_EXCP:
    if (A == CR16_VEC_SVC && c->svc_host) {
        pc += 2;
        reason = CR16_EXIT_SYSCALL;
        goto out;
    }
    if (c->intbase == 0 && A == CR16_VEC_BPT) {
        c->fault_vector = CR16_VEC_BPT;
        c->fault_pc = pc;
        c->fault_addr = 0;
        pc += 2;
        reason = CR16_EXIT_BREAKPOINT;
        goto out;
    }
    {
        int64_t h = enter_exception(c, (int)A, pc + 2);
        if (h < 0)
            FAULT((int)A, 0);
        pc = (uint32_t)h;
        FORCE_CHECK();
        DISPATCH();
    }

fault:
    /* The instruction at pc did not complete: it does not count. */
    done += chunk_start - chunk;
    chunk_start = chunk = 0;
    done -= 1;
    stop_after = 0;
    {
        int64_t h = fvec > 0 ? enter_exception(c, fvec, pc) : -1;
        if (h < 0)
            goto unhandled;
        pc = (uint32_t)h;
    }
    goto events;

unhandled:          /* exception fvec at pc has no guest handler: the host's turn */
    c->fault_vector = fvec;
    c->fault_pc = pc;
    c->fault_addr = faddr;
    reason = CR16_EXIT_FAULT;
    goto out;

events:
    done += chunk_start - chunk;
    chunk_start = chunk = 0;
    if (stop_after) {
        reason = CR16_EXIT_STOP;
        goto out;
    }
    if (c->psr & CR16_PSR_P) {      /* trace trap after a traced instruction */
        c->psr &= ~CR16_PSR_P;
        int64_t h = enter_exception(c, CR16_VEC_TRC, pc);
        if (h < 0) {
            fvec = CR16_VEC_TRC;
            faddr = 0;
            goto unhandled;
        }
        pc = (uint32_t)h;
    }
    if (atomic_exchange_explicit(&c->stop_req, 0, memory_order_relaxed)) {
        reason = CR16_EXIT_STOP;
        goto out;
    }
    if (c->nmi || (c->irq && (c->psr & (CR16_PSR_I | CR16_PSR_E)) == (CR16_PSR_I | CR16_PSR_E))) {
        int vec = c->nmi ? CR16_VEC_NMI : c->irq;
        int64_t h = enter_exception(c, vec, pc);
        if (vec == CR16_VEC_NMI)
            c->nmi = 0;
        c->halted = 0;
        if (h < 0) {
            fvec = vec;
            faddr = 0;
            goto unhandled;
        }
        pc = (uint32_t)h;
    }
    if (c->halted) {
        reason = CR16_EXIT_HALT;
        goto out;
    }
    if (done >= budget) {
        reason = CR16_EXIT_BUDGET;
        goto out;
    }
    drop_written_code(c);
    chunk = budget - done > CHUNK ? CHUNK : (int32_t)(budget - done);
    if (c->psr & CR16_PSR_T) {
        chunk = 1;
        c->psr |= CR16_PSR_P;
    }
    chunk_start = chunk;
    tbl = chunk > CHUNK_MIN ? lbl : lbl_precise;
    pc &= PC_MASK;
    DISPATCH();

out:
    drop_written_code(c);
    done += chunk_start - chunk;
    c->pc = pc & PC_MASK;
    c->insns += done;
    *executed = done;
    return reason;
}

#undef imm
#undef A
#undef B
#undef len
