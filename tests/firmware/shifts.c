/* shifts.c -- shifts by every count (constant and variable), logical and
 * arithmetic, 8/16/32/64-bit, plus rotates built from shifts.
 * (Right shifts of negative values are arithmetic in gcc on every target;
 * left shifts are done on unsigned values, so nothing here is undefined.) */
#include "fw.h"

uint8_t x8 = 0xB5;
uint16_t x16 = 0xB5C3;
uint32_t x32 = 0xB5C3E1F7u;
uint64_t x64 = UINT64_C(0xB5C3E1F70F1E3C5A);
int counts[64];   /* 0..63, filled at run time: variable shift counts */

__attribute__((noinline)) uint8_t shl8(uint8_t x, int n) { return (uint8_t)(x << n); }
__attribute__((noinline)) uint8_t shr8(uint8_t x, int n) { return (uint8_t)(x >> n); }
__attribute__((noinline)) int8_t sar8(int8_t x, int n) { return (int8_t)(x >> n); }
__attribute__((noinline)) uint16_t shl16(uint16_t x, int n) { return (uint16_t)((uint32_t)x << n); }
__attribute__((noinline)) uint16_t shr16(uint16_t x, int n) { return (uint16_t)(x >> n); }
__attribute__((noinline)) int16_t sar16(int16_t x, int n) { return (int16_t)(x >> n); }
__attribute__((noinline)) uint32_t shl32(uint32_t x, int n) { return x << n; }
__attribute__((noinline)) uint32_t shr32(uint32_t x, int n) { return x >> n; }
__attribute__((noinline)) int32_t sar32(int32_t x, int n) { return x >> n; }
__attribute__((noinline)) uint64_t shl64(uint64_t x, int n) { return x << n; }
__attribute__((noinline)) uint64_t shr64(uint64_t x, int n) { return x >> n; }
__attribute__((noinline)) int64_t sar64(int64_t x, int n) { return x >> n; }
__attribute__((noinline)) uint32_t rotl32(uint32_t x, int n) { return (x << (n & 31)) | (x >> ((32 - n) & 31)); }
__attribute__((noinline)) uint16_t rotr16(uint16_t x, int n)
{
    return (uint16_t)((x >> (n & 15)) | ((uint32_t)x << ((16 - n) & 15)));
}

/* Constant counts: every count is a separate instruction sequence. */
#define C32(n) h = mix32(h, x << n); h = mix32(h, x >> n); h = mix32(h, (uint32_t)(sx >> n));
#define C16(n) h = mix32(h, (uint16_t)((uint32_t)y << n)); h = mix32(h, (uint16_t)(y >> n)); \
               h = mix32(h, (uint16_t)(sy >> n));
#define C64(n) { uint64_t a = z << n, b = z >> n; int64_t c = sz >> n; \
                 h = mix32(mix32(h, hi32(a)), lo32(a)); \
                 h = mix32(mix32(h, hi32(b)), lo32(b)); \
                 h = mix32(mix32(h, hi32((uint64_t)c)), lo32((uint64_t)c)); }
#define R8(f, a, b, c, d, e, g, i, j) f(a) f(b) f(c) f(d) f(e) f(g) f(i) f(j)

__attribute__((noinline)) uint32_t const32(uint32_t x)
{
    uint32_t h = 0;
    int32_t sx = (int32_t)x;
    R8(C32, 0, 1, 2, 3, 4, 5, 6, 7) R8(C32, 8, 9, 10, 11, 12, 13, 14, 15)
    R8(C32, 16, 17, 18, 19, 20, 21, 22, 23) R8(C32, 24, 25, 26, 27, 28, 29, 30, 31)
    return h;
}

__attribute__((noinline)) uint32_t const16(uint16_t y)
{
    uint32_t h = 0;
    int16_t sy = (int16_t)y;
    R8(C16, 0, 1, 2, 3, 4, 5, 6, 7) R8(C16, 8, 9, 10, 11, 12, 13, 14, 15)
    return h;
}

__attribute__((noinline)) uint32_t const64(uint64_t z)
{
    uint32_t h = 0;
    int64_t sz = (int64_t)z;
    R8(C64, 0, 1, 2, 3, 4, 5, 6, 7) R8(C64, 8, 9, 15, 16, 17, 24, 31, 32)
    R8(C64, 33, 39, 40, 47, 48, 49, 55, 56) R8(C64, 57, 58, 59, 60, 61, 62, 63, 30)
    return h;
}

int main(void)
{
    int i;
    char b1[17], b2[17], b3[17];

    for (i = 0; i < 64; i++)
        counts[i] = i;

    printf("== 8-bit x=%02x, signed %d\n", x8, (int8_t)x8);
    for (i = 0; i < 8; i++)
        printf("%d: %02x %02x %d\n", i, shl8(x8, counts[i]), shr8(x8, counts[i]),
               sar8((int8_t)x8, counts[i]));

    printf("== 16-bit x=%04x\n", x16);
    for (i = 0; i < 16; i++)
        printf("%2d: %04x %04x %6d %04x\n", i, shl16(x16, counts[i]), shr16(x16, counts[i]),
               sar16((int16_t)x16, counts[i]), rotr16(x16, counts[i]));

    printf("== 32-bit x=%s\n", hex32(x32, b1));
    for (i = 0; i < 32; i++) {
        printf("%2d: %s %s", i, hex32(shl32(x32, counts[i]), b1), hex32(shr32(x32, counts[i]), b2));
        printf(" %11ld %s\n", (long)sar32((int32_t)x32, counts[i]),
               hex32(rotl32(x32, counts[i]), b3));
    }
    printf("positive: %ld %ld\n", (long)sar32(0x40000000, counts[30]),
           (long)sar32(0x7FFFFFFF, counts[31]));

    printf("== 64-bit x=%s\n", hex64(x64, b1));
    for (i = 0; i < 64; i++)
        printf("%2d: %s %s %s\n", i, hex64(shl64(x64, counts[i]), b1),
               hex64(shr64(x64, counts[i]), b2),
               hex64((uint64_t)sar64((int64_t)x64, counts[i]), b3));

    printf("== constant counts (checksums)\n");
    printf("c16 %s\n", hex32(const16(x16), b1));
    printf("c16 %s\n", hex32(const16(0x1234), b1));
    printf("c32 %s\n", hex32(const32(x32), b1));
    printf("c32 %s\n", hex32(const32(0x12345678), b1));
    printf("c64 %s\n", hex32(const64(x64), b1));
    printf("c64 %s\n", hex32(const64(UINT64_C(0x123456789ABCDEF0)), b1));
    return 0;
}
