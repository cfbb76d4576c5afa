/* crc32.c - bitwise (table-less) CRC-32 (IEEE 802.3, reflected) over a
 * 2 KiB buffer, REPS times, each pass seeded with the previous CRC.
 * Mostly 32-bit shifts/xors/ands on register pairs, one byte load per
 * eight inner iterations. */
#include "bench.h"

#ifndef REPS
#define REPS 100
#endif

#define BUFSZ 2048

static uint8_t buf[BUFSZ];

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, uint16_t n)
{
    uint16_t i;
    uint8_t k;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320UL & (0UL - (crc & 1UL)));
    }
    return ~crc;
}

static uint32_t work(uint32_t seed)
{
    uint32_t s = seed, crc = 0;
    uint16_t i, r;
    for (i = 0; i < BUFSZ; i++)
        buf[i] = (uint8_t)xorshift32(&s);
    for (r = 0; r < REPS; r++)
        crc = crc32_update(crc, buf, BUFSZ);
    return crc;
}

BENCH_MAIN("crc32")
