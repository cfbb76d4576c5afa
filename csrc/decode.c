/* decode.c - CR16C instruction decoder (cr16c-isa.md 3 and 4).
 *
 * Turns the parcels at one address into a dinsn: a handler number and its
 * operand fields, with immediates sign- or zero-extended and displacements
 * assembled, so the interpreter does no bit-twiddling at run time.
 */
#include "cr16_internal.h"

/* Index-pair codes k (3 bits) to register-pair codes (1.2). */
static const uint8_t index_pair[8] = {0, 2, 4, 6, 8, 10, 3, 5};

static inline uint32_t sx(uint32_t v, int bits)
{
    uint32_t m = 1u << (bits - 1);
    v &= (1u << bits) - 1;
    return (v ^ m) - m;
}

/* abs20 addresses in the top 64 KiB of the first MiB map to the top of 16 MiB. */
static inline uint32_t remap20(uint32_t a)
{
    return a >= 0xF0000 ? a | 0xF00000 : a;
}

/* disp25 and disp17 keep their sign in bit 0 (3.4). */
static inline uint32_t disp_sign0(uint32_t f, int bits)
{
    uint32_t mag = f & ((1u << (bits - 1)) - 2);
    return (f & 1) ? mag - (1u << (bits - 1)) : mag;
}

/* disp14 of the index forms: P1[13:8] : P1[15:14] : P0[5:4] : P1[3:0]. */
static inline uint32_t disp14(uint32_t p0, uint32_t p1)
{
    return ((p1 >> 8) & 0x3F) << 8 | ((p1 >> 14) & 3) << 6 | ((p0 >> 4) & 3) << 4 | (p1 & 0xF);
}

static inline void set(dinsn *d, int op, unsigned a, unsigned b, uint32_t imm, int len)
{
    d->op = (uint8_t)op;
    d->fa = (uint8_t)a;
    d->fb = (uint8_t)b;
    d->val = imm;
    d->size = (uint8_t)len;
}

#define UND() do { set(d, OP_UND, 0, 0, 0, 2); return; } while (0)

/* First op of each mode group: op + mode index gives the handler. */
enum { M_PD = 0, M_ABS = 1, M_IDX = 2, M_R16 = 3 };

static void decode_raw(const uint8_t *ram, uint32_t ram_size, uint32_t pc, dinsn *d)
{
    /* The caller guarantees pc + 2 <= ram_size; later parcels may be missing. */
    uint32_t p0 = ram[pc] | ram[pc + 1] << 8;
    int have1 = pc + 4 <= ram_size, have2 = pc + 6 <= ram_size;
    uint32_t p1 = have1 ? (uint32_t)(ram[pc + 2] | ram[pc + 3] << 8) : 0;
    uint32_t p2 = have2 ? (uint32_t)(ram[pc + 4] | ram[pc + 5] << 8) : 0;
    unsigned hi = p0 >> 8, lo = p0 & 0xFF, n4 = lo >> 4, l4 = lo & 0xF;

#define NEED1() do { if (!have1) { set(d, OP_UND, 1, 0, 0, 4); return; } } while (0)
#define NEED2() do { if (!have2) { set(d, OP_UND, 1, 0, 0, 6); return; } } while (0)

    /* ALU byte/word group 0x20-0x3F, 0x50-0x5B, 0x64-0x67: imm4e or register. */
    static const int8_t alu_of[0x70] = {
        [0x20] = 0, [0x22] = 0, [0x24] = 1, [0x26] = 1, [0x28] = 2, [0x2A] = 2,
        [0x2C] = 3, [0x2E] = 3, [0x30] = 4, [0x32] = 4, [0x34] = 5, [0x36] = 5,
        [0x38] = 6, [0x3A] = 6, [0x3C] = 7, [0x3E] = 7, [0x64] = 8, [0x66] = 8,
        [0x50] = 9, [0x52] = 9, [0x58] = 10, [0x5A] = 10,
    };
    int is_alu = (hi >= 0x20 && hi <= 0x3F) || hi == 0x50 || hi == 0x51 || hi == 0x52 ||
                 hi == 0x53 || (hi >= 0x58 && hi <= 0x5B) || (hi >= 0x64 && hi <= 0x67);
    if (is_alu) {
        unsigned base = hi & ~1u;
        int word = (hi >> 1) & 1;
        int op = OP_ANDB_I + 4 * alu_of[base] + 2 * word;
        if (hi & 1) {
            set(d, op + 1, l4, n4, 0, 2);
        } else if (n4 == 0xB) {
            NEED1();
            set(d, op, l4, 0, word ? p1 : (p1 & 0xFF), 4);
        } else {
            uint32_t v = n4 == 9 ? 0xFFFF : n4;
            set(d, op, l4, 0, word ? v : (v & 0xFF), 2);
        }
        if (p0 == 0x2C00)
            set(d, OP_NOP, 0, 0, 0, 2);
        return;
    }

    switch (hi) {
    case 0x00:
        break;      /* secondary map, below */
    case 0x01: case 0x02: case 0x03:
        set(d, hi == 1 ? OP_PUSH : hi == 2 ? OP_POP : OP_POPRET, l4, ((lo >> 4) & 7) + 1,
            lo >> 7, 2);
        return;
    case 0x04: case 0x05:
        NEED1();
        set(d, hi == 4 ? OP_ADDD_I : OP_MOVD_I, n4, 0, l4 << 16 | p1, 4);
        return;
    case 0x06: set(d, OP_TBIT_I, l4, n4, 0, 2); return;
    case 0x07: set(d, OP_TBIT_R, l4, n4, 0, 2); return;
    case 0x08:
        if (n4 >= 14) UND();
        set(d, OP_SCOND, l4, n4, 0, 2);
        return;
    case 0x09:
        if (!(lo & 0x80)) UND();
        set(d, OP_LSHB_I, l4, 0, sx(n4, 4), 2);
        return;
    case 0x0A:
        set(d, n4 == 14 ? OP_JUMP : n4 == 15 ? OP_JUSR : OP_JCOND, n4, l4, 0, 2);
        return;
    case 0x0B: set(d, OP_MULSB, l4, n4, 0, 2); return;
    case 0x0C: case 0x0D: case 0x0E: case 0x0F:
        set(d, OP_BEQ0B + (hi - 0x0C), l4, 0, 2 * n4 + 2, 2);
        return;
    case 0x40: set(d, OP_ASHUB_I, l4, 0, sx(n4, 4), 2); return;
    case 0x41: set(d, OP_ASHUB_R, l4, n4, 0, 2); return;
    case 0x42: case 0x43: set(d, OP_ASHUW_I, l4, 0, sx((hi & 1) << 4 | n4, 5), 2); return;
    case 0x44: set(d, OP_LSHB_R, l4, n4, 0, 2); return;
    case 0x45: set(d, OP_ASHUW_R, l4, n4, 0, 2); return;
    case 0x46: set(d, OP_LSHW_R, l4, n4, 0, 2); return;
    case 0x47: set(d, OP_LSHD_R, l4, n4, 0, 2); return;
    case 0x48: set(d, OP_ASHUD_R, l4, n4, 0, 2); return;
    case 0x49: set(d, OP_LSHW_I, l4, 0, sx(0x10 | n4, 5), 2); return;
    case 0x4A: case 0x4B: set(d, OP_LSHD_I, l4, 0, sx(0x20 | (hi & 1) << 4 | n4, 6), 2); return;
    case 0x4C: case 0x4D: case 0x4E: case 0x4F:
        set(d, OP_ASHUD_I, l4, 0, sx((hi & 3) << 4 | n4, 6), 2);
        return;
    case 0x54: case 0x56: case 0x60: {
        int op = hi == 0x54 ? OP_MOVD_I : hi == 0x56 ? OP_CMPD_I : OP_ADDD_I;
        if (n4 == 0xB) {
            NEED1();
            set(d, op, l4, 0, sx(p1, 16), 4);
        } else {
            set(d, op, l4, 0, n4 == 9 ? 0xFFFFFFFFu : n4, 2);
        }
        return;
    }
    case 0x55: set(d, OP_MOVD_R, l4, n4, 0, 2); return;
    case 0x57: set(d, OP_CMPD_R, l4, n4, 0, 2); return;
    case 0x5C: set(d, OP_MOVXB, l4, n4, 0, 2); return;
    case 0x5D: set(d, OP_MOVZB, l4, n4, 0, 2); return;
    case 0x5E: set(d, OP_MOVXW, l4, n4, 0, 2); return;
    case 0x5F: set(d, OP_MOVZW, l4, n4, 0, 2); return;
    case 0x61: set(d, OP_ADDD_R, l4, n4, 0, 2); return;
    case 0x62: set(d, OP_MULSW, l4, n4, 0, 2); return;
    case 0x63: set(d, OP_MULUW, l4, n4, 0, 2); return;
    case 0x80: UND();
    case 0xC0:
        NEED1();
        set(d, OP_BAL, 14, 0, disp_sign0(lo << 16 | p1, 25), 4);
        return;
    default:
        break;
    }

    if (hi >= 0x10 && hi <= 0x1F) {     /* Bcond disp9 / disp17 */
        uint32_t disp;
        int len = 2;
        if ((hi & 0xF) == 8 && l4 == 0) {
            NEED1();
            disp = disp_sign0(p1, 17);
            len = 4;
        } else {
            disp = 2 * sx((hi & 0xF) << 4 | l4, 8);
        }
        if (n4 == 15)
            set(d, OP_NOP, 0, 0, 0, len);
        else
            set(d, n4 == 14 ? OP_BR : OP_BEQ + n4, n4, 0, disp, len);
        return;
    }

    if (hi >= 0x68 && hi <= 0x7F) {     /* cbit/sbit/tbit short forms (4.8) */
        int kind = (hi - 0x68) / 8;     /* 0 cbit, 1 sbit, 2 tbit */
        int off = (hi - 0x68) % 8;
        int opb = (kind == 0 ? OP_CBITB_PD : kind == 1 ? OP_SBITB_PD : OP_TBITB_PD);
        int opw = (kind == 0 ? OP_CBITW_PD : kind == 1 ? OP_SBITW_PD : OP_TBITW_PD);
        uint32_t a20 = l4 << 16 | p1;
        if (off != 2 && off != 6)
            NEED1();
        switch (off) {
        case 0: set(d, opb + M_PD, (lo >> 4) & 7, 12 + (lo >> 7), a20, 4); return;
        case 1: set(d, opw + M_PD, n4, l4, p1, 4); return;
        case 2:
            if (!(lo & 0x80)) {
                set(d, opb + M_PD, (lo >> 4) & 7, l4, 0, 2);
            } else {
                NEED1();
                int w = (lo >> 6) & 1;
                unsigned bit = (p1 >> 4) & (w ? 15 : 7);
                set(d, (w ? opw : opb) + M_IDX, bit, index_pair[lo & 7] | ((lo >> 3) & 1) << 4,
                    disp14(p0, p1), 4);
            }
            return;
        case 3:
            if (!(lo & 0x80))
                set(d, opb + M_PD, (lo >> 4) & 7, l4, p1, 4);
            else
                set(d, opb + M_ABS, (lo >> 4) & 7, 0, remap20(a20), 4);
            return;
        case 4: case 5: set(d, opw + M_PD, n4, 12 + (off & 1), a20, 4); return;
        case 6: set(d, opw + M_PD, n4, l4, 0, 2); return;
        case 7: set(d, opw + M_ABS, n4, 0, remap20(a20), 4); return;
        }
    }

    /* Plain pair-relative loads/stores 0x90-0xFF (not 0xC0-0xCF). */
    if (hi >= 0x90 && !(hi >= 0xC0 && hi <= 0xCF)) {
        static const uint8_t fam_op[16] = {
            [0x9] = OP_LDW_PD, [0xA] = OP_LDD_PD, [0xB] = OP_LDB_PD,
            [0xD] = OP_STW_PD, [0xE] = OP_STD_PD, [0xF] = OP_STB_PD,
        };
        unsigned fam = hi >> 4, dd = hi & 0xF;
        int op = fam_op[fam];
        int scale = (fam == 0xB || fam == 0xF) ? 1 : 2;
        if (dd < 14)
            set(d, op + M_PD, n4, l4, dd * scale, 2);
        else if (dd == 14)
            set(d, op + M_IDX, n4, index_pair[l4 & 7] | ((l4 >> 3) & 1) << 4, 0, 2);
        else {
            NEED1();
            set(d, op + M_PD, n4, l4, p1, 4);
        }
        return;
    }

    /* 0x81-0x8F (loads, storb $imm) and 0xC1-0xCF (stores, storw $imm): the
     * low nibble picks the form the same way in both groups (4.9). */
    if ((hi >= 0x81 && hi <= 0x8F) || (hi >= 0xC1 && hi <= 0xCF)) {
        enum { F_ABS = 1, F_D16, F_RX, F_ZERO, F_IDX14 };
        static const uint8_t form[16] = {
            [1] = F_ABS, [2] = F_ZERO, [3] = F_D16, [4] = F_RX, [5] = F_RX, [6] = F_IDX14,
            [7] = F_ABS, [8] = F_ABS, [9] = F_ABS, [10] = F_RX, [11] = F_RX, [12] = F_RX,
            [13] = F_RX, [14] = F_RX, [15] = F_RX};
        /* the PD-mode op of each form; ABS = PD + 1 (MODES order) */
        static const uint8_t op_of[2][16] = {
            {0, OP_STBI_PD, OP_STBI_PD, OP_STBI_PD, OP_STBI_PD, OP_STBI_PD, 0, OP_LDD_PD,
             OP_LDB_PD, OP_LDW_PD, OP_LDB_PD, OP_LDB_PD, OP_LDD_PD, OP_LDD_PD, OP_LDW_PD,
             OP_LDW_PD},
            {0, OP_STWI_PD, OP_STWI_PD, OP_STWI_PD, OP_STWI_PD, OP_STWI_PD, 0, OP_STD_PD,
             OP_STB_PD, OP_STW_PD, OP_STB_PD, OP_STB_PD, OP_STD_PD, OP_STD_PD, OP_STW_PD,
             OP_STW_PD}};
        /* 0x86/0xC6: [rX]disp14(pair), type in P0[7:6] */
        static const uint8_t idx14_op[2][4] = {
            {OP_STBI_IDX, OP_LDB_IDX, OP_LDD_IDX, OP_LDW_IDX},
            {OP_STWI_IDX, OP_STB_IDX, OP_STD_IDX, OP_STW_IDX}};
        int st = hi >= 0xC1, op = op_of[st][hi & 0xF];
        uint32_t a20 = l4 << 16 | p1;
        if (form[hi & 0xF] == F_ZERO) {     /* the 2-byte form must not require P1 */
            set(d, op, n4, l4, 0, 2);
            return;
        }
        NEED1();
        switch (form[hi & 0xF]) {
        case F_ABS: set(d, op + M_ABS, n4, 0, remap20(a20), 4); return;
        case F_D16: set(d, op, n4, l4, p1, 4); return;
        case F_RX: set(d, op, n4, 12 + (hi & 1), a20, 4); return;
        default:
            set(d, idx14_op[st][(lo >> 6) & 3], (p1 >> 4) & 0xF,
                index_pair[lo & 7] | ((lo >> 3) & 1) << 4, disp14(p0, p1), 4);
            return;
        }
    }

    if (hi != 0x00)
        UND();

    /* Secondary map: P0[15:8] == 0. */
    switch (lo) {
    case 0x03: set(d, OP_RETX, 0, 0, 0, 2); return;
    case 0x04: set(d, OP_DI, 0, 0, 0, 2); return;
    case 0x05: set(d, OP_EI, 0, 0, 0, 2); return;
    case 0x06: set(d, OP_WAIT, 0, 0, 0, 2); return;
    case 0x07: set(d, OP_EIWAIT, 0, 0, 0, 2); return;
    case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x0E: case 0x0F:
        set(d, OP_NOP, 0, 0, 0, 2);     /* cinv: caches are not modelled */
        return;
    case 0x10: case 0x11: case 0x12: case 0x13: {
        NEED2();
        unsigned sub = p1 >> 12, mm = sub & 3, r = (p1 >> 4) & 0xF, bb = p1 & 0xF;
        uint32_t d20 = ((p1 >> 8) & 0xF) << 16 | p2;
        uint32_t a24 = bb << 20 | d20;
        int op;
        if (lo == 0x10 && sub == 0) {
            if (r == 15) set(d, OP_NOP, 0, 0, 0, 6);
            else set(d, r == 14 ? OP_BR : OP_BEQ + r, r, 0, disp_sign0(a24, 25), 6);
            return;
        }
        if (lo == 0x10 && sub == 2) {
            set(d, OP_BAL, r, 0, disp_sign0(a24, 25), 6);
            return;
        }
        if (lo <= 0x11) {
            static const uint8_t bop[2][4] = {
                {0, OP_CBITB_PD, OP_SBITB_PD, OP_TBITB_PD},
                {0, OP_CBITW_PD, OP_SBITW_PD, OP_TBITW_PD},
            };
            if (sub < 4) UND();
            op = bop[lo & 1][sub >> 2];
            if (!(lo & 1)) r &= 7;
        } else {
            static const uint8_t mop[2][4] = {
                {OP_STBI_PD, OP_LDB_PD, OP_LDD_PD, OP_LDW_PD},
                {OP_STWI_PD, OP_STB_PD, OP_STD_PD, OP_STW_PD},
            };
            op = mop[lo & 1][sub >> 2];
        }
        switch (mm) {
        case 0: set(d, op + M_R16, r, bb, d20, 6); return;
        case 1: set(d, op + M_PD, r, bb, d20, 6); return;
        case 2: set(d, op + M_IDX, r, index_pair[bb & 7] | ((bb >> 3) & 1) << 4, d20, 6); return;
        default: set(d, op + M_ABS, r, 0, a24, 6); return;
        }
    }
    case 0x14: {
        NEED1();
        unsigned sub = p1 >> 12, f3 = (p1 >> 8) & 0xF, f2 = (p1 >> 4) & 0xF, f1 = p1 & 0xF;
        switch (sub) {
        case 0x0: set(d, OP_LPR, f2, f1, 0, 4); return;
        case 0x1: set(d, OP_LPRD, f2, f1, 0, 4); return;
        case 0x2: set(d, OP_SPR, f2, f1, 0, 4); return;
        case 0x3: set(d, OP_SPRD, f2, f1, 0, 4); return;
        case 0x8: set(d, OP_JAL, f1, f2, 0, 4); return;
        case 0x9: set(d, OP_ORD_R, f1, f2, 0, 4); return;
        case 0xA: set(d, OP_XORD_R, f1, f2, 0, 4); return;
        case 0xB: set(d, OP_ANDD_R, f1, f2, 0, 4); return;
        case 0xC: set(d, OP_SUBD_R, f1, f2, 0, 4); return;
        case 0xD: set(d, OP_MACQW, f3, f2 | f1 << 4, 0, 4); return;
        case 0xE: set(d, OP_MACUW, f3, f2 | f1 << 4, 0, 4); return;
        case 0xF: set(d, OP_MACSW, f3, f2 | f1 << 4, 0, 4); return;
        default: UND();
        }
    }
    case 0x18: case 0x19: {
        NEED2();
        static const uint8_t lop[16] = {
            [4] = OP_LDB_R16, [5] = OP_LDB_PD, [8] = OP_LDD_R16, [9] = OP_LDD_PD,
            [12] = OP_LDW_R16, [13] = OP_LDW_PD};
        static const uint8_t sop[16] = {
            [4] = OP_STB_R16, [5] = OP_STB_PD, [8] = OP_STD_R16, [9] = OP_STD_PD,
            [12] = OP_STW_R16, [13] = OP_STW_PD};
        unsigned sub = p1 >> 12;
        int op = (lo == 0x18 ? lop : sop)[sub];
        if (!op) UND();
        uint32_t f = ((p1 >> 8) & 0xF) << 16 | p2;
        /* A signed 20-bit displacement: gas emits this form for positive
         * disp20(reg16) operands too, so "field - 0x100000" would break them. */
        set(d, op, (p1 >> 4) & 0xF, p1 & 0xF, sx(f, 20), 6);
        return;
    }
    default:
        break;
    }
    if (lo >= 0x20 && lo <= 0x9F && (lo >> 4) != 0x8) {
        static const uint8_t op32[10] = {
            [2] = OP_ADDD_I, [3] = OP_SUBD_I, [4] = OP_ANDD_I, [5] = OP_ORD_I,
            [6] = OP_XORD_I, [7] = OP_MOVD_I, [9] = OP_CMPD_I};
        NEED2();
        set(d, op32[lo >> 4], l4, 0, p1 << 16 | p2, 6);
        return;
    }
    if (lo >= 0xA0 && lo <= 0xBF) {
        static const uint8_t mop[4] = {OP_LOADM, OP_LOADMP, OP_STORM, OP_STORMP};
        set(d, mop[(lo - 0xA0) >> 3], 0, 0, (lo & 7) + 1, 2);
        return;
    }
    if (lo >= 0xC0 && lo <= 0xCF) {
        set(d, OP_EXCP, l4, 0, 0, 2);
        return;
    }
    if (lo >= 0xD0 && lo <= 0xDF) {
        set(d, OP_JAL, 14, l4, 0, 2);
        return;
    }
    UND();
}

/* Which operand fields name a register or pair (XA: field a, XB: field b).
 * The interpreter wants those as halfword offsets into cr16_cpu.h[]. */
enum { XA = 1, XB = 2 };
#define XL_ALU(n) [OP_##n##B_I] = XA, [OP_##n##B_R] = XA | XB, [OP_##n##W_I] = XA, [OP_##n##W_R] = XA | XB,
#define XL_MEM(k, m) [OP_##k##_##m] = XL_MEMBITS(k, m),
#define XL_MEMK(k) MODES(XL_MEM, k)
#define XL_DATA_LDB XA
#define XL_DATA_LDW XA
#define XL_DATA_LDD XA
#define XL_DATA_STB XA
#define XL_DATA_STW XA
#define XL_DATA_STD XA
#define XL_DATA_STBI 0
#define XL_DATA_STWI 0
#define XL_DATA_CBITB 0
#define XL_DATA_SBITB 0
#define XL_DATA_TBITB 0
#define XL_DATA_CBITW 0
#define XL_DATA_SBITW 0
#define XL_DATA_TBITW 0
#define XL_BASE_PD XB
#define XL_BASE_ABS 0
#define XL_BASE_IDX 0
#define XL_BASE_R16 XB
#define XL_MEMBITS(k, m) (XL_DATA_##k | XL_BASE_##m)

static const uint8_t xlat[OP_COUNT] = {
    ALU_OPS(XL_ALU)
    [OP_MOVD_I] = XA, [OP_MOVD_R] = XA | XB, [OP_ADDD_I] = XA, [OP_ADDD_R] = XA | XB,
    [OP_SUBD_I] = XA, [OP_SUBD_R] = XA | XB, [OP_CMPD_I] = XA, [OP_CMPD_R] = XA | XB,
    [OP_ANDD_I] = XA, [OP_ANDD_R] = XA | XB, [OP_ORD_I] = XA, [OP_ORD_R] = XA | XB,
    [OP_XORD_I] = XA, [OP_XORD_R] = XA | XB,
    [OP_MOVXB] = XA | XB, [OP_MOVZB] = XA | XB, [OP_MOVXW] = XA | XB, [OP_MOVZW] = XA | XB,
    [OP_MULSB] = XA | XB, [OP_MULSW] = XA | XB, [OP_MULUW] = XA | XB,
    [OP_MACQW] = XA, [OP_MACUW] = XA, [OP_MACSW] = XA,
    [OP_ASHUB_I] = XA, [OP_ASHUB_R] = XA | XB, [OP_LSHB_I] = XA, [OP_LSHB_R] = XA | XB,
    [OP_ASHUW_I] = XA, [OP_ASHUW_R] = XA | XB, [OP_LSHW_I] = XA, [OP_LSHW_R] = XA | XB,
    [OP_ASHUD_I] = XA, [OP_ASHUD_R] = XA | XB, [OP_LSHD_I] = XA, [OP_LSHD_R] = XA | XB,
    [OP_TBIT_I] = XA, [OP_TBIT_R] = XA | XB, [OP_SCOND] = XA,
    MEM_KINDS(XL_MEMK)
    [OP_BEQ0B] = XA, [OP_BNE0B] = XA, [OP_BEQ0W] = XA, [OP_BNE0W] = XA,
    [OP_BAL] = XA, [OP_JCOND] = XB, [OP_JUMP] = XB, [OP_JUSR] = XB, [OP_JAL] = XA | XB,
    [OP_LPR] = XB, [OP_LPRD] = XB, [OP_SPR] = XB, [OP_SPRD] = XB,
};

void cr16_decode(const uint8_t *ram, uint32_t ram_size, uint32_t pc, dinsn *d)
{
    decode_raw(ram, ram_size, pc, d);
    if (xlat[d->op] & XA)
        d->fa = cr16_regoff[d->fa & 15];
    if (xlat[d->op] & XB)
        d->fb = cr16_regoff[d->fb & 15];
}
