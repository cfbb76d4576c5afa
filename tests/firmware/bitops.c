/* bitops.c -- and/or/xor/not, bit counting, bit reversal, byte swaps,
 * single-bit set/clear/test on memory (gcc may use sbit/cbit/tbit), masks
 * and field extraction/insertion, on 8/16/32/64-bit values. */
#include "fw.h"

uint32_t vals[] = { 0, 1, 0x80000000u, 0xFFFFFFFFu, 0x12345678, 0xF0F0F0F0u,
                    0x0000FFFF, 0x00010000, 0xDEADBEEFu, 0x7FFFFFFF, 0x55AA55AA, 0x00800080 };
#define NV (sizeof vals / sizeof vals[0])

static int popcount32(uint32_t x)
{
    int n = 0;
    while (x) {
        x &= x - 1;
        n++;
    }
    return n;
}

static int clz32(uint32_t x)
{
    int n = 0;
    if (x == 0)
        return 32;
    while (!(x & 0x80000000u)) {
        x <<= 1;
        n++;
    }
    return n;
}

static uint32_t rev32(uint32_t x)
{
    uint32_t r = 0;
    int i;
    for (i = 0; i < 32; i++) {
        r = (r << 1) | (x & 1);
        x >>= 1;
    }
    return r;
}

static uint32_t bswap32(uint32_t x)
{
    return (x >> 24) | ((x >> 8) & 0xFF00u) | ((x << 8) & 0xFF0000u) | (x << 24);
}

/* Bit-field extraction and insertion with masks. */
__attribute__((noinline)) uint32_t extract(uint32_t x, int pos, int len)
{
    return (x >> pos) & ((len == 32) ? 0xFFFFFFFFu : ((UINT32_C(1) << len) - 1));
}

__attribute__((noinline)) uint32_t insert(uint32_t x, uint32_t v, int pos, int len)
{
    uint32_t m = ((len == 32) ? 0xFFFFFFFFu : ((UINT32_C(1) << len) - 1)) << pos;
    return (x & ~m) | ((v << pos) & m);
}

/* A bitmap in memory: set/clear/test individual bits. */
uint16_t bitmap16[8];
uint8_t bitmap8[16];

int main(void)
{
    unsigned i;
    char b1[9], b2[9], b3[9], b4[9];

    printf("== per value: popcount clz ctz rev bswap ~x\n");
    for (i = 0; i < NV; i++) {
        uint32_t x = vals[i];
        printf("%s %2d %2d %2d %s %s %s\n", hex32(x, b1), popcount32(x), clz32(x),
               x ? __builtin_ctzl(x) : 32, hex32(rev32(x), b2), hex32(bswap32(x), b3),
               hex32(~x, b4));
        if (popcount32(x) != __builtin_popcountl(x))
            printf("  builtin popcount disagrees\n");
        if (bswap32(x) != __builtin_bswap32(x))
            printf("  builtin bswap32 disagrees\n");
        if ((uint16_t)(((uint16_t)x >> 8) | ((uint16_t)x << 8)) != __builtin_bswap16((uint16_t)x))
            printf("  builtin bswap16 disagrees\n");
        if (x && clz32(x) != __builtin_clzl(x) - (int)(sizeof(long) * 8 - 32))
            printf("  builtin clz disagrees\n");
    }

    printf("== pairwise and/or/xor/andnot (checksums)\n");
    {
        uint32_t ha = 0, ho = 0, hx = 0, hn = 0;
        unsigned j;
        for (i = 0; i < NV; i++)
            for (j = 0; j < NV; j++) {
                ha = mix32(ha, vals[i] & vals[j]);
                ho = mix32(ho, vals[i] | vals[j]);
                hx = mix32(hx, vals[i] ^ vals[j]);
                hn = mix32(hn, vals[i] & ~vals[j]);
            }
        printf("and %s or %s xor %s andnot %s\n", hex32(ha, b1), hex32(ho, b2), hex32(hx, b3),
               hex32(hn, b4));
    }

    printf("== 8/16-bit logic\n");
    {
        uint8_t a8 = 0xA5, c8 = 0x3C;
        uint16_t a16 = 0xA55A, c16 = 0x0FF0;
        printf("%02x %02x %02x %02x\n", (uint8_t)(a8 & c8), (uint8_t)(a8 | c8),
               (uint8_t)(a8 ^ c8), (uint8_t)~a8);
        printf("%04x %04x %04x %04x\n", (uint16_t)(a16 & c16), (uint16_t)(a16 | c16),
               (uint16_t)(a16 ^ c16), (uint16_t)~a16);
    }

    printf("== 64-bit logic\n");
    {
        uint64_t p = UINT64_C(0xF0F0F0F00F0F0F0F), q = UINT64_C(0x123456789ABCDEF0);
        char c1[17], c2[17], c3[17], c4[17];
        printf("%s %s %s %s\n", hex64(p & q, c1), hex64(p | q, c2), hex64(p ^ q, c3), hex64(~p, c4));
    }

    printf("== extract / insert\n");
    {
        uint32_t h = 0;
        int pos, len;
        for (pos = 0; pos < 32; pos += 3)
            for (len = 1; len + pos <= 32; len += 5) {
                h = mix32(h, extract(0xDEADBEEFu, pos, len));
                h = mix32(h, insert(0x12345678u, 0xFFFFFFFFu, pos, len));
                h = mix32(h, insert(0xFFFFFFFFu, 0x5u, pos, len));
            }
        printf("fields %s, extract(0xdeadbeef,8,12)=%s insert=%s\n", hex32(h, b1),
               hex32(extract(0xDEADBEEFu, 8, 12), b2), hex32(insert(0, 0xABC, 20, 12), b3));
    }

    printf("== bitmaps\n");
    for (i = 0; i < 128; i += 3)
        bitmap16[i / 16] |= (uint16_t)(1u << (i % 16));
    for (i = 0; i < 128; i += 7)
        bitmap16[i / 16] &= (uint16_t)~(1u << (i % 16));
    for (i = 0; i < 128; i += 5)
        bitmap8[i / 8] ^= (uint8_t)(1u << (i % 8));
    for (i = 0; i < 8; i++)
        printf("%04x%s", bitmap16[i], i == 7 ? "\n" : " ");
    for (i = 0; i < 16; i++)
        printf("%02x%s", bitmap8[i], i == 15 ? "\n" : " ");
    {
        unsigned n = 0;
        for (i = 0; i < 128; i++)
            if (bitmap16[i / 16] & (1u << (i % 16)))
                n++;
        printf("bits set: %u\n", n);
    }
    return 0;
}
