/* arith64.c -- 16/32/64-bit add, subtract, multiply, negate with carries
 * and borrows across every word boundary, plus widening multiplies.
 * 64-bit long long arithmetic is exactly what the reference simulator gets
 * wrong (it loses the carry of addd/addcw, cr16c-isa.md 8.1 items 1-2). */
#include "fw.h"

/* Not static and not const, so the compiler cannot fold the arithmetic. */
uint64_t v64[] = {
    0, 1, 2, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu,
    UINT64_C(0x100000000), UINT64_C(0x00000001FFFFFFFF),
    UINT64_C(0x7FFFFFFFFFFFFFFF), UINT64_C(0x8000000000000000),
    UINT64_C(0xFFFFFFFFFFFFFFFF), UINT64_C(0x123456789ABCDEF0),
    UINT64_C(0xFEDCBA9876543210), UINT64_C(0x0000FFFF0000FFFF),
    UINT64_C(0xFFFF0000FFFF0000), UINT64_C(0x00000000DEADBEEF),
};
#define N64 (sizeof v64 / sizeof v64[0])

uint32_t v32[] = {
    0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x1FFFF, 0x7FFFFFFF, 0x80000000u,
    0xFFFFFFFFu, 0x12345678, 0xFEDCBA98u, 0x0000FFFF, 0xFFFF0000u,
};
#define N32 (sizeof v32 / sizeof v32[0])

uint16_t v16[] = { 0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1234, 0xABCD };
#define N16 (sizeof v16 / sizeof v16[0])

__attribute__((noinline)) uint64_t add64(uint64_t a, uint64_t b) { return a + b; }
__attribute__((noinline)) uint64_t sub64(uint64_t a, uint64_t b) { return a - b; }
__attribute__((noinline)) uint64_t mul64(uint64_t a, uint64_t b) { return a * b; }
__attribute__((noinline)) int64_t neg64(int64_t a) { return (int64_t)(0 - (uint64_t)a); }
__attribute__((noinline)) uint32_t add32(uint32_t a, uint32_t b) { return a + b; }
__attribute__((noinline)) uint32_t sub32(uint32_t a, uint32_t b) { return a - b; }
__attribute__((noinline)) uint32_t mul32(uint32_t a, uint32_t b) { return a * b; }
__attribute__((noinline)) uint64_t mulw32(uint32_t a, uint32_t b) { return (uint64_t)a * b; }
__attribute__((noinline)) int64_t smulw32(int32_t a, int32_t b) { return (int64_t)a * b; }
__attribute__((noinline)) uint32_t mulw16(uint16_t a, uint16_t b) { return (uint32_t)a * b; }
__attribute__((noinline)) int32_t smulw16(int16_t a, int16_t b) { return (int32_t)a * b; }
__attribute__((noinline)) uint16_t add16(uint16_t a, uint16_t b) { return (uint16_t)(a + b); }
__attribute__((noinline)) uint16_t sub16(uint16_t a, uint16_t b) { return (uint16_t)(a - b); }
__attribute__((noinline)) uint16_t mul16(uint16_t a, uint16_t b) { return (uint16_t)((uint32_t)a * b); }

/* Carry out of a 32-bit addition, computed both ways. */
__attribute__((noinline)) int carry32(uint32_t a, uint32_t b) { return a + b < a; }
__attribute__((noinline)) int borrow32(uint32_t a, uint32_t b) { return a < b; }

int main(void)
{
    char b1[17], b2[17], b3[17];
    unsigned i, j;
    uint32_t h = 0;

    printf("== 64-bit add / sub / mul\n");
    for (i = 0; i < N64; i++)
        for (j = i; j < N64; j++)
            printf("%2u %2u %s %s %s\n", i, j,
                   hex64(add64(v64[i], v64[j]), b1),
                   hex64(sub64(v64[i], v64[j]), b2),
                   hex64(mul64(v64[i], v64[j]), b3));

    printf("== 64-bit negate, signed decimal\n");
    for (i = 0; i < N64; i++) {
        char d1[22], d2[22];
        int64_t s = (int64_t)v64[i];
        printf("%2u %s %s\n", i, sdec64(s, d1), sdec64(neg64(s), d2));
    }

    printf("== 64-bit accumulate (carry chain)\n");
    {
        uint64_t acc = 0, acc2 = UINT64_C(0xFFFFFFFFFFFFFFFF);
        uint32_t s = 12345;
        for (i = 0; i < 200; i++) {
            uint32_t hi = xs32(&s);
            uint64_t x = make64(hi, xs32(&s));
            acc += x;
            acc2 -= x >> 1;
        }
        printf("sum %s  diff %s\n", hex64(acc, b1), hex64(acc2, b2));
    }

    printf("== 32-bit add / sub / mul / widening mul (checksums per row)\n");
    for (i = 0; i < N32; i++) {
        uint32_t ha = 0, hs = 0, hm = 0, hw = 0, hsw = 0, hc = 0;
        for (j = 0; j < N32; j++) {
            uint32_t a = v32[i], b = v32[j];
            uint64_t w = mulw32(a, b), sw = (uint64_t)smulw32((int32_t)a, (int32_t)b);
            ha = mix32(ha, add32(a, b));
            hs = mix32(hs, sub32(a, b));
            hm = mix32(hm, mul32(a, b));
            hw = mix32(mix32(hw, hi32(w)), lo32(w));
            hsw = mix32(mix32(hsw, hi32(sw)), lo32(sw));
            hc = (hc << 2) | (uint32_t)(carry32(a, b) << 1) | (uint32_t)borrow32(a, b);
        }
        printf("%2u %s add %s sub %s mul %s", i, hex32(v32[i], b1), hex32(ha, b2),
               hex32(hs, b3), hex32(hm, b1));
        printf(" mulw %s smulw %s cb %s\n", hex32(hw, b1), hex32(hsw, b2), hex32(hc, b3));
    }
    printf("0xffffffff*0xffffffff=%s  0x80000000*0x80000000 (signed)=%s\n",
           hex64(mulw32(0xFFFFFFFFu, 0xFFFFFFFFu), b1),
           hex64((uint64_t)smulw32(INT32_MIN, INT32_MIN), b2));
    printf("0x12345678*0x9abcdef0=%s  -1*0x7fffffff=%s\n",
           hex64(mulw32(0x12345678u, 0x9ABCDEF0u), b1),
           hex64((uint64_t)smulw32(-1, INT32_MAX), b2));

    printf("== 16-bit add / sub / mul / widening mul\n");
    for (i = 0; i < N16; i++)
        for (j = 0; j < N16; j++) {
            uint16_t a = v16[i], b = v16[j];
            h = mix32(h, add16(a, b));
            h = mix32(h, sub16(a, b));
            h = mix32(h, mul16(a, b));
            h = mix32(h, mulw16(a, b));
            h = mix32(h, (uint32_t)smulw16((int16_t)a, (int16_t)b));
        }
    printf("16-bit checksum %08lx\n", (unsigned long)h);
    printf("0x7fff*0x7fff=%08lx  -32768*-32768=%ld  -32768*32767=%ld\n",
           (unsigned long)mulw16(0x7FFF, 0x7FFF),
           (long)smulw16(-32768, -32768), (long)smulw16(-32768, 32767));

    printf("== factorials mod 2^64\n");
    {
        uint64_t f = 1;
        char d[21];
        for (i = 1; i <= 25; i++) {
            f = mul64(f, i);
            printf("%2u! = %s\n", i, udec64(f, d));
        }
    }
    return 0;
}
