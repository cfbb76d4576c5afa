/* demo.c -- the program `aemu run` runs when no program is given.
 *
 * Built with the aemu BSP (see the Makefile):
 *   cr16-elf-gcc -O2 -nostartfiles -T ../bsp/aemu.ld -I../bsp \
 *       ../bsp/crt0.S ../bsp/syscalls.c demo.c -o demo.elf
 *
 * Prints a banner, an ASCII Mandelbrot set computed in Q12 fixed point
 * (16x16 -> 32-bit multiplies), the primes below 200 from a sieve, CRC-32
 * check values, and how much virtual time the run took.  About 1.3 million
 * instructions; no floating point.  It also runs on cr16-elf-run, which
 * has no host block and no virtual clock. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aemu_host.h"

static void banner(int argc, char **argv)
{
    static const char *const lines[] = {
        "aemu - an emulator for the CompactRISC CR16C",
        "this demo is a CR16C program: cr16-elf-gcc + newlib + aemu's BSP",
    };
    unsigned i, k, width = 0;
    for (i = 0; i < 2; i++)
        if (strlen(lines[i]) > width)
            width = (unsigned)strlen(lines[i]);
    putchar('+');
    for (k = 0; k < width + 2; k++)
        putchar('-');
    puts("+");
    for (i = 0; i < 2; i++)
        printf("| %-*s |\n", (int)width, lines[i]);
    putchar('+');
    for (k = 0; k < width + 2; k++)
        putchar('-');
    puts("+");
    if (aemu_present()) {
        printf("running under aemu; argc = %d:", argc);
        for (i = 0; i < (unsigned)argc; i++)
            printf(" \"%s\"", argv[i]);
        printf("\n");
    } else {
        printf("not running under aemu (no host block): argc = %d\n", argc);
    }
}

/* Shade of a point that escaped after `it` iterations (roughly
   logarithmic); '@' for the points that never escaped. */
static int level(int it)
{
    static const uint8_t upto[] = { 4, 5, 6, 7, 9, 12, 16, 24, 40 };
    int i = 0;
    while (i < 9 && it >= upto[i])
        i++;
    return i;
}

/* Mandelbrot set, x in [-2.2, 0.8), y in [-1.2, 1.2], Q12 fixed point. */
static void mandelbrot(void)
{
    enum { COLS = 64, ROWS = 24, MAXIT = 40 };
    const int32_t ONE = 4096;                   /* int is 16 bits: stay in int32 */
    static const char shade[] = " .:-=+*#%@";
    int row, col;
    for (row = 0; row < ROWS; row++) {
        char line[COLS + 1];
        int16_t cy = (int16_t)(-12 * ONE / 10 + row * (24 * ONE / 10) / (ROWS - 1));
        for (col = 0; col < COLS; col++) {
            int16_t cx = (int16_t)(-22 * ONE / 10 + col * (3 * ONE) / COLS);
            int16_t x = 0, y = 0;
            int it = 0;
            while (it < MAXIT) {
                int32_t x2 = (int32_t)x * x, y2 = (int32_t)y * y;
                if (x2 + y2 > 4 * ONE * ONE)
                    break;
                y = (int16_t)((((int32_t)x * y) >> 11) + cy);      /* 2xy + cy */
                x = (int16_t)(((x2 - y2) >> 12) + cx);
                it++;
            }
            line[col] = shade[level(it)];
        }
        line[COLS] = '\0';
        puts(line);
    }
}

static void primes(void)
{
    static uint8_t composite[200];
    unsigned i, j, n = 0;
    for (i = 2; i * i < 200; i++)
        if (!composite[i])
            for (j = i * i; j < 200; j += i)
                composite[j] = 1;
    printf("primes below 200:");
    for (i = 2; i < 200; i++)
        if (!composite[i]) {
            if (n % 16 == 0)
                printf("\n ");
            printf(" %u", i);
            n++;
        }
    printf("\n  (%u of them)\n", n);
}

static uint32_t crc32(const char *s)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (*s) {
        int k;
        crc ^= (uint8_t)*s++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

int main(int argc, char **argv)
{
    static const char *const texts[] = {
        "123456789", "The quick brown fox jumps over the lazy dog", "CompactRISC CR16C",
    };
    unsigned i;
    uint64_t t0 = 0, t1 = 0;
    int have_clock = aemu_gettime_ns(&t0) == 0;

    banner(argc, argv);
    printf("\nThe Mandelbrot set, in 16-bit fixed point:\n");
    mandelbrot();
    printf("\n");
    primes();
    printf("\nCRC-32:\n");
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++)
        printf("  %08lx  \"%s\"\n", (unsigned long)crc32(texts[i]), texts[i]);
    if (have_clock && aemu_gettime_ns(&t1) == 0) {
        uint32_t us = (uint32_t)((t1 - t0) / 1000u);
        printf("\nThat took %lu.%03lu ms of virtual time.\n", (unsigned long)(us / 1000u),
               (unsigned long)(us % 1000u));
    }
    printf("Bye.\n");
    return 0;
}
