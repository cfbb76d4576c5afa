/* divmod.c -- division and modulo: signed and unsigned, 8/16/32/64-bit,
 * negative operands (C truncates toward zero; the remainder has the sign
 * of the dividend), powers of two (shifts in disguise) and division by
 * constants (multiply-by-reciprocal code at -O2). */
#include "fw.h"

int16_t s16[] = { 0, 1, -1, 2, -2, 3, -3, 7, -7, 10, -10, 255, -256, 1000,
                  -1000, 32767, -32767, -32768 };
uint32_t u32[] = { 0, 1, 2, 3, 7, 10, 16, 255, 0xFFFF, 0x10000, 0x12345678,
                   0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu, 1000000000u };
int32_t s32[] = { 0, 1, -1, 2, -2, 7, -7, 10, -10, 32768, -32769, 65536,
                  -65536, 123456789, -123456789, 0x7FFFFFFF, -0x7FFFFFFF,
                  INT32_MIN };
uint64_t u64[] = { 0, 3, 0xFFFFFFFFu, UINT64_C(0x100000000),
                   UINT64_C(0x123456789ABCDEF0), UINT64_C(0xFFFFFFFFFFFFFFFF),
                   UINT64_C(0x8000000000000000), UINT64_C(1000000000000), 7 };
int64_t s64[] = { 0, -1, 7, -7, INT64_C(-1000000000000), INT64_C(0x7FFFFFFFFFFFFFFF),
                  INT64_C(-0x7FFFFFFFFFFFFFFF), -INT64_C(0x100000000), 3 };
#define N(a) (sizeof a / sizeof a[0])

__attribute__((noinline)) int16_t sdiv16(int16_t a, int16_t b) { return (int16_t)(a / b); }
__attribute__((noinline)) int16_t smod16(int16_t a, int16_t b) { return (int16_t)(a % b); }
__attribute__((noinline)) uint16_t udiv16(uint16_t a, uint16_t b) { return (uint16_t)(a / b); }
__attribute__((noinline)) uint16_t umod16(uint16_t a, uint16_t b) { return (uint16_t)(a % b); }
__attribute__((noinline)) uint32_t udiv32(uint32_t a, uint32_t b) { return a / b; }
__attribute__((noinline)) uint32_t umod32(uint32_t a, uint32_t b) { return a % b; }
__attribute__((noinline)) int32_t sdiv32(int32_t a, int32_t b) { return a / b; }
__attribute__((noinline)) int32_t smod32(int32_t a, int32_t b) { return a % b; }
__attribute__((noinline)) uint64_t udiv64(uint64_t a, uint64_t b) { return a / b; }
__attribute__((noinline)) uint64_t umod64(uint64_t a, uint64_t b) { return a % b; }
__attribute__((noinline)) int64_t sdiv64(int64_t a, int64_t b) { return a / b; }
__attribute__((noinline)) int64_t smod64(int64_t a, int64_t b) { return a % b; }

/* Division by constants: gcc turns these into multiplications/shifts. */
__attribute__((noinline)) uint32_t consts32(uint32_t x)
{
    return mix32(mix32(mix32(mix32(x / 3, x % 3), x / 10), x % 1000), x / 7 + x % 16);
}
__attribute__((noinline)) uint32_t sconsts32(int32_t x)
{
    return mix32(mix32(mix32((uint32_t)(x / 3), (uint32_t)(x % 3)), (uint32_t)(x / 8)),
                 (uint32_t)(x % 16));
}
__attribute__((noinline)) uint32_t consts16(int16_t x, uint16_t y)
{
    return mix32(mix32(mix32((uint32_t)(int32_t)(x / 5), (uint32_t)(int32_t)(x % 5)), y / 10u),
                 (uint32_t)(int32_t)(x / 4) ^ (y % 8u));
}
__attribute__((noinline)) uint8_t div8(uint8_t a, uint8_t b) { return (uint8_t)(a / b); }
__attribute__((noinline)) int8_t sdiv8(int8_t a, int8_t b) { return (int8_t)(a / b); }

int main(void)
{
    unsigned i, j;
    char b1[22], b2[22];

    printf("== int16 a/b a%%b for b = 3, -3, 7, -10, 256, -32768; checksum over all b\n");
    for (i = 0; i < N(s16); i++) {
        int16_t a = s16[i];
        uint32_t h = 0;
        for (j = 0; j < N(s16); j++) {
            if (s16[j] == 0 || (a == -32768 && s16[j] == -1))
                continue;
            h = mix32(h, (uint16_t)sdiv16(a, s16[j]));
            h = mix32(h, (uint16_t)smod16(a, s16[j]));
        }
        printf("%6d: %d,%d %d,%d %d,%d %d,%d %d,%d %d,%d %s\n", a,
               sdiv16(a, 3), smod16(a, 3), sdiv16(a, -3), smod16(a, -3),
               sdiv16(a, 7), smod16(a, 7), sdiv16(a, -10), smod16(a, -10),
               sdiv16(a, 256), smod16(a, 256), sdiv16(a, -32768), smod16(a, -32768),
               hex32(h, b1));
    }

    printf("== uint16 checksums\n");
    {
        uint32_t h = 0;
        for (i = 0; i < N(s16); i++)
            for (j = 0; j < N(s16); j++) {
                uint16_t a = (uint16_t)s16[i], b = (uint16_t)s16[j];
                if (b == 0)
                    continue;
                h = mix32(h, udiv16(a, b));
                h = mix32(h, umod16(a, b));
            }
        printf("u16 %s\n", hex32(h, b1));
    }

    printf("== uint32 a/b a%%b\n");
    for (i = 0; i < N(u32); i++) {
        uint32_t h = 0;
        for (j = 0; j < N(u32); j++) {
            if (u32[j] == 0)
                continue;
            h = mix32(h, udiv32(u32[i], u32[j]));
            h = mix32(h, umod32(u32[i], u32[j]));
        }
        printf("%10lu / 7 = %lu r %lu, / 0x10000 = %lu, h %s\n", (unsigned long)u32[i],
               (unsigned long)udiv32(u32[i], 7), (unsigned long)umod32(u32[i], 7),
               (unsigned long)udiv32(u32[i], 0x10000), hex32(h, b1));
    }

    printf("== int32 a/b a%%b\n");
    for (i = 0; i < N(s32); i++) {
        uint32_t h = 0;
        for (j = 0; j < N(s32); j++) {
            if (s32[j] == 0 || (s32[i] == INT32_MIN && s32[j] == -1))
                continue;
            h = mix32(h, (uint32_t)sdiv32(s32[i], s32[j]));
            h = mix32(h, (uint32_t)smod32(s32[i], s32[j]));
        }
        printf("%11ld / -7 = %ld r %ld, / 10 = %ld r %ld, h %s\n", (long)s32[i],
               (long)sdiv32(s32[i], -7), (long)smod32(s32[i], -7),
               (long)sdiv32(s32[i], 10), (long)smod32(s32[i], 10), hex32(h, b1));
    }

    printf("== division by constants\n");
    {
        uint32_t h = 0, s = 99;
        for (i = 0; i < 64; i++) {
            uint32_t x = xs32(&s);
            h = mix32(h, consts32(x));
            h = mix32(h, sconsts32((int32_t)x));
            h = mix32(h, consts16((int16_t)(uint16_t)x, (uint16_t)(x >> 16)));
            h = mix32(h, div8((uint8_t)x, (uint8_t)((x >> 8) | 1)));
            h = mix32(h, (uint32_t)(int32_t)sdiv8((int8_t)(uint8_t)(x >> 16),
                                                 (int8_t)(uint8_t)((x >> 24) | 1)));
        }
        printf("consts %s\n", hex32(h, b1));
    }

    printf("== uint64 a/b a%%b\n");
    for (i = 0; i < N(u64); i++)
        for (j = 0; j < N(u64); j++) {
            if (u64[j] == 0)
                continue;
            printf("%2u %2u %s %s\n", i, j, udec64(udiv64(u64[i], u64[j]), b1),
                   udec64(umod64(u64[i], u64[j]), b2));
        }

    printf("== int64 a/b a%%b\n");
    for (i = 0; i < N(s64); i++)
        for (j = 0; j < N(s64); j++) {
            if (s64[j] == 0)
                continue;
            printf("%2u %2u %s %s\n", i, j, sdec64(sdiv64(s64[i], s64[j]), b1),
                   sdec64(smod64(s64[i], s64[j]), b2));
        }
    return 0;
}
