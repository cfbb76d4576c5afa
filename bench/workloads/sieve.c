/* sieve.c - sieve of Eratosthenes over 16384 byte flags, REPS times.
 * Byte stores in a strided inner loop, byte loads, 16/32-bit counters.
 * The result folds the prime count and a position hash of every pass. */
#include "bench.h"

#ifndef REPS
#define REPS 100
#endif

#define SIEVE 16384u

static uint8_t flags[SIEVE];

static uint32_t sieve_pass(uint16_t limit)
{
    uint16_t i, j;
    uint32_t count = 0, hash = 0;
    for (i = 0; i < limit; i++)
        flags[i] = 1;
    for (i = 2; i < limit; i++) {
        if (flags[i]) {
            count++;
            hash = (hash * 31u + i) & 0xFFFFFFFFUL;
            for (j = (uint16_t)(i + i); j < limit; j = (uint16_t)(j + i))
                flags[j] = 0;
        }
    }
    return count ^ (hash << 12);
}

static uint32_t work(uint32_t seed)
{
    uint32_t acc = seed;
    uint16_t r;
    for (r = 0; r < REPS; r++) {
        /* vary the limit a little so no two passes are identical */
        uint16_t limit = (uint16_t)(SIEVE - (r & 7u) * 5u);
        acc = (acc * 1103515245UL + 12345UL) ^ sieve_pass(limit);
    }
    return acc;
}

BENCH_MAIN("sieve")
