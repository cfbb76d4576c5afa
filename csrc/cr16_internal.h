/* cr16_internal.h - what the decoder, the interpreter and the API share. */
#ifndef AEMU_CR16_INTERNAL_H
#define AEMU_CR16_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include "cr16.h"

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Code lines: stores check one byte per 64-byte line to see whether they hit
 * predecoded code, so data next to code does not throw whole pages away. */
#define CR16_LINE_BITS 6
#define CR16_ADDR_SPACE (1u << 24)
#define CR16_DPAGES (CR16_ADDR_SPACE >> CR16_PAGE_BITS)
#define CR16_DPAGE_ENTRIES (CR16_PAGE_SIZE / 2)
#define CR16_DPAGE_SENTINELS 3   /* a 6-byte step from the last slot lands in the third */

/* A predecoded instruction: 8 bytes, one per 16-bit parcel address.  An
 * all-zero entry (op = OP_DECODE) means "not decoded yet". */
typedef struct {
    uint32_t val;   /* immediate, displacement, absolute address or count */
    uint8_t op;     /* handler (enum below) */
    uint8_t fa, fb; /* operand fields, meaning depends on op */
    uint8_t size;   /* instruction length in bytes: 2, 4 or 6 */
} dinsn;

/* Addressing modes of loads, stores and bit instructions:
 *   PD  RP(b) + imm          ABS imm (already remapped)
 *   IDX RX + RP(k) + imm, b = k | x << 4     R16 zx(R[b]) + imm            */
#define MODES(X, K) X(K, PD) X(K, ABS) X(K, IDX) X(K, R16)

/* ALU ops on bytes and words, each with an immediate and a register form. */
#define ALU_OPS(X) X(AND) X(OR) X(XOR) X(ADDU) X(ADD) X(ADDC) X(SUB) X(SUBC) X(MUL) X(CMP) X(MOV)
#define ALU_VARIANTS(X, N) X(N##B_I) X(N##B_R) X(N##W_I) X(N##W_R)

/* Condition codes 0..13 (cr16c-isa.md 5); 14 is "always". */
#define CONDS(X) X(EQ) X(NE) X(CS) X(CC) X(HI) X(LS) X(GT) X(LE) X(FS) X(FC) X(LO) X(HS) X(LT) X(GE)

#define MEM_KINDS(X) X(LDB) X(LDW) X(LDD) X(STB) X(STW) X(STD) X(STBI) X(STWI) \
    X(CBITB) X(SBITB) X(TBITB) X(CBITW) X(SBITW) X(TBITW)

#define OP_NAME(n) OP_##n,
#define OP_MODE(k, m) OP_##k##_##m,
#define OP_ALU(n) ALU_VARIANTS(OP_NAME, n)
#define OP_MEMK(k) MODES(OP_MODE, k)
#define OP_BCC(c) OP_B##c,

enum {
    OP_DECODE = 0, OP_PAGEX, OP_UND, OP_NOP,
    ALU_OPS(OP_ALU)
    OP_MOVD_I, OP_MOVD_R, OP_ADDD_I, OP_ADDD_R, OP_SUBD_I, OP_SUBD_R, OP_CMPD_I, OP_CMPD_R,
    OP_ANDD_I, OP_ANDD_R, OP_ORD_I, OP_ORD_R, OP_XORD_I, OP_XORD_R,
    OP_MOVXB, OP_MOVZB, OP_MOVXW, OP_MOVZW, OP_MULSB, OP_MULSW, OP_MULUW,
    OP_MACQW, OP_MACUW, OP_MACSW,
    OP_ASHUB_I, OP_ASHUB_R, OP_LSHB_I, OP_LSHB_R, OP_ASHUW_I, OP_ASHUW_R, OP_LSHW_I, OP_LSHW_R,
    OP_ASHUD_I, OP_ASHUD_R, OP_LSHD_I, OP_LSHD_R,
    OP_TBIT_I, OP_TBIT_R, OP_SCOND,
    MEM_KINDS(OP_MEMK)
    CONDS(OP_BCC)
    OP_BR, OP_BEQ0B, OP_BNE0B, OP_BEQ0W, OP_BNE0W, OP_BAL, OP_JCOND, OP_JUMP, OP_JUSR, OP_JAL,
    OP_PUSH, OP_POP, OP_POPRET, OP_LOADM, OP_LOADMP, OP_STORM, OP_STORMP,
    OP_LPR, OP_LPRD, OP_SPR, OP_SPRD, OP_DI, OP_EI, OP_WAIT, OP_EIWAIT, OP_RETX, OP_EXCP,
    OP_COUNT
};

/* A register whose reads C answers without calling the handler: `before`
 * until the cycle `at`, `after` from then on (a constant when at = 0). */
struct mmio_shadow {
    uint32_t offset, size;
    uint32_t before, after;
    uint64_t at;
};

struct mmio_window {
    uint32_t base, size;
    cr16_mmio_fn fn;
    void *opaque;
    int nshadow;
    struct mmio_shadow shadow[CR16_MAX_SHADOW];
};

struct cr16_cpu {
    /* hot state first.  Registers live as 16-bit halves laid out so that every
     * register pair is one contiguous little-endian 32-bit word: r0..r11 at
     * h[0..11], then r12, r13, ra, sp as two halves each at h[12..19].  Pair
     * 11 (r12_L:r11) is therefore h[11..12] with no special case. */
    uint16_t h[20];
    uint32_t pc;
    uint16_t psr, cfg;
    /* Z, N and L are computed lazily: while znl_lazy is set they are not in
     * psr but follow from the last compare's operands, shifted to the top
     * of 32 bits so that one unsigned and one signed compare give L and N. */
    int znl_lazy;
    uint32_t cmp_s, cmp_d;
    uint32_t isp, intbase;
    uint32_t sp_bank;          /* the inactive stack pointer: USP in supervisor
                                  mode, the supervisor SP in user mode */
    uint8_t *ram;
    uint32_t ram_size;
    uint8_t *dirty;            /* core dirty map, one byte per page */
    uint8_t *codeline;         /* one byte per 64-byte line: holds decoded code */
    dinsn **dpage;             /* decoded pages, CR16_DPAGES entries */
    uint64_t insns;
    uint64_t cycle_offset;     /* cycles = insns + cycle_offset (idle time) */
    int svc_host;
    int halted;
    int irq;                   /* raised maskable vector, 0 = none */
    int nmi;                   /* NMI edge latched */
    _Atomic int stop_req;
    int smc_pending;           /* guest stores hit predecoded code ... */
    uint32_t smc_lo, smc_hi;   /* ... in [smc_lo, smc_hi): dropped between instructions */
    /* debug registers: stored only */
    uint16_t dbs, dsr;
    uint32_t dcr, car0, car1;
    /* last fault */
    int fault_vector;
    uint32_t fault_pc, fault_addr;
    /* dirty consumers */
    uint32_t npages;
    uint8_t *consumer[CR16_MAX_DIRTY_CONSUMERS];
    /* MMIO */
    int nmmio;
    struct mmio_window mmio[CR16_MAX_MMIO];
};

/* The whole PSR, with Z, N and L worked out if they are pending. */
static inline uint16_t psr_value(const struct cr16_cpu *c)
{
    uint32_t s = c->cmp_s, d = c->cmp_d;
    if (!c->znl_lazy)
        return c->psr;
    return (uint16_t)((c->psr & ~(CR16_PSR_Z | CR16_PSR_N | CR16_PSR_L)) |
                      (s == d ? CR16_PSR_Z : 0) | ((int32_t)s > (int32_t)d ? CR16_PSR_N : 0) |
                      (s > d ? CR16_PSR_L : 0));
}

/* Put Z, N, L into psr (before anything reads or saves psr as a whole). */
static inline void znl_materialize(struct cr16_cpu *c)
{
    c->psr = psr_value(c);
    c->znl_lazy = 0;
}

/* decode.c */
/* 1 if the n bytes at p are all zero (cpu.c). */
int cr16_all_zero(const uint8_t *p, uint32_t n);
void cr16_decode(const uint8_t *ram, uint32_t ram_size, uint32_t pc, dinsn *d);

/* cpu.c helpers used by the interpreter */
void cr16_code_written(struct cr16_cpu *c, uint32_t addr, uint32_t len);
dinsn *cr16_dpage_alloc(struct cr16_cpu *c, uint32_t page);
int cr16_mmio_access(struct cr16_cpu *c, uint32_t addr, int size, int is_write, uint32_t *v);
void cr16_set_psr(struct cr16_cpu *c, uint32_t v);

/* Halfword offset of register n (and of register pair n) in h[]. */
static const uint8_t cr16_regoff[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18};

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "the register file layout assumes a little-endian host"
#endif

/* Register pairs (cr16c-isa.md 1.2) and the 32-bit registers r12..sp. */
static inline uint32_t rp_get(const struct cr16_cpu *c, unsigned p)
{
    uint32_t v;
    memcpy(&v, &c->h[cr16_regoff[p]], 4);
    return v;
}

static inline void rp_set(struct cr16_cpu *c, unsigned p, uint32_t v)
{
    memcpy(&c->h[cr16_regoff[p]], &v, 4);
}

/* 16-bit view of register n (the low half of r12..sp). */
static inline uint32_t r16_get(const struct cr16_cpu *c, unsigned n)
{
    return c->h[cr16_regoff[n]];
}

static inline void r16_set(struct cr16_cpu *c, unsigned n, uint32_t v)
{
    c->h[cr16_regoff[n]] = (uint16_t)v;
}

/* Architectural value of register n: 16 bits for r0..r11, 32 for the rest. */
static inline uint32_t reg_get(const struct cr16_cpu *c, unsigned n)
{
    return n < 12 ? c->h[n] : rp_get(c, n);
}

#endif
