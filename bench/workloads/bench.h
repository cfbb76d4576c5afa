/* bench.h - shared scaffolding for the CPU benchmark workloads.
 *
 * Every workload is plain C with fixed-width types and no undefined
 * behaviour, so the same source prints the same line when built for the
 * host (int = 32 bits) and for cr16-elf (int = 16 bits).  Arithmetic on
 * 8/16-bit values is always cast back to its type (integer promotion differs
 * between the two ABIs), and every multiply that could exceed 16 bits is done
 * on 32-bit operands.
 *
 * A workload defines `static uint32_t work(uint32_t seed)` and ends with
 * BENCH_MAIN("name").  The seed comes from a volatile variable so the
 * compiler cannot fold the computation.  REPS (set by bench/cpu.py with -D)
 * scales the amount of work.
 *
 * Host builds (-DBENCH_NATIVE) time work() with CLOCK_MONOTONIC and report
 * the seconds on stderr, so process start-up is not counted.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdint.h>
#include <stdio.h>

static volatile uint32_t bench_seed = 0x2545F491UL;

/* A small xorshift generator for filling inputs (same on every target). */
static inline uint32_t xorshift32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

#ifdef BENCH_NATIVE
#include <time.h>
static double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
#define BENCH_MAIN(NAME)                                                   \
    int main(void)                                                         \
    {                                                                      \
        double t0 = bench_now();                                           \
        uint32_t r = work(bench_seed);                                     \
        double t1 = bench_now();                                           \
        fprintf(stderr, "native-seconds %.9f\n", t1 - t0);                 \
        printf("%s reps=%lu result=%08lx\n", NAME, (unsigned long)(REPS),  \
               (unsigned long)r);                                          \
        return 0;                                                          \
    }
#else
#define BENCH_MAIN(NAME)                                                   \
    int main(void)                                                         \
    {                                                                      \
        uint32_t r = work(bench_seed);                                     \
        printf("%s reps=%lu result=%08lx\n", NAME, (unsigned long)(REPS),  \
               (unsigned long)r);                                          \
        return 0;                                                          \
    }
#endif

#endif
