/* demo.c -- the program `aemu run` runs when no program is given.
 *
 * A small but real firmware for aemu's default board (docs/board.md):
 *   - its own dispatch table (aemu_irq_install, BSP vectors.c);
 *   - all console output through an interrupt-driven UART0 driver (BSP
 *     uart0.c: a ring buffer drained by the TX-empty interrupt, TXIE on
 *     only while there is data; stdio is redirected to it);
 *   - TIMER0 as a 10 Hz periodic interrupt (100 MHz / 100 = 1 MHz ticks,
 *     RELOAD 99999), a heartbeat line per tick with a counter, the virtual
 *     time (gettime host service) and how many timer and UART interrupts
 *     came since the previous line (the UART takes one per byte sent);
 *   - the CPU sleeps with `wait` between interrupts, so an idle demo costs
 *     the host (almost) no CPU;
 *   - it ends after 3 virtual seconds with exit(0), or runs until stopped
 *     with the argument --forever (`aemu run --forever` passes it).
 *
 * Built with the aemu BSP (see the Makefile):
 *   cr16-elf-gcc -O2 -nostartfiles -T ../bsp/aemu.ld -I../bsp ../bsp/crt0.S \
 *       ../bsp/syscalls.c ../bsp/vectors.c ../bsp/uart0.c demo.c -o demo.elf
 *
 * Without aemu's host block (e.g. on cr16-elf-run, which has no devices)
 * it prints the banner and the Mandelbrot set on stdout and stops there. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aemu_board.h"
#include "aemu_host.h"

#define BEAT_HZ       10u
#define RUN_SECONDS   3u
#define TICK_PRESCALE 99u                                      /* 1 MHz timer clock */
#define TICK_RELOAD   (AEMU_CPU_HZ / (TICK_PRESCALE + 1u) / BEAT_HZ - 1u)

static volatile uint32_t ticks;        /* TIMER0 expiries */

static void banner(int argc, char **argv)
{
    static const char *const lines[] = {
        "aemu - an emulator for the CompactRISC CR16C",
        "this demo is a CR16C firmware: cr16-elf-gcc + newlib + aemu's BSP",
        "timer and UART interrupts, its own dispatch table, `wait` when idle",
    };
    enum { N = sizeof lines / sizeof lines[0] };
    unsigned i, k, width = 0;
    for (i = 0; i < N; i++)
        if (strlen(lines[i]) > width)
            width = (unsigned)strlen(lines[i]);
    putchar('+');
    for (k = 0; k < width + 2; k++)
        putchar('-');
    puts("+");
    for (i = 0; i < N; i++)
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
    enum { COLS = 64, ROWS = 20, MAXIT = 40 };
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

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    ticks++;
}

static void heartbeat(uint32_t n, uint32_t timer_irqs, uint32_t uart_irqs)
{
    uint64_t ns = 0;
    uint32_t us;
    aemu_gettime_ns(&ns);
    us = (uint32_t)(ns / 1000u);
    printf("[%4lu.%06lu] heartbeat %3lu - %lu interrupts since the last one (%lu timer, %lu UART)\n",
           (unsigned long)(us / 1000000u), (unsigned long)(us % 1000000u), (unsigned long)n,
           (unsigned long)(timer_irqs + uart_irqs), (unsigned long)timer_irqs,
           (unsigned long)uart_irqs);
}

int main(int argc, char **argv)
{
    int i, forever = 0;
    uint32_t seen = 0, last_ticks = 0, last_uart = 0;

    for (i = 1; i < argc; i++)
        if (strcmp(argv[i], "--forever") == 0)
            forever = 1;

    if (!aemu_present()) {          /* no board here: just the pictures */
        banner(argc, argv);
        printf("\nThe Mandelbrot set, in 16-bit fixed point:\n");
        mandelbrot();
        printf("\nNo aemu board (no devices): skipping the interrupt-driven part.\nBye.\n");
        return 0;
    }

    aemu_irq_install();
    aemu_uart_irq_init(4);
    aemu_uart_stdio();              /* printf -> ring -> TX interrupt -> UART0 */
    aemu_irq_enable();

    banner(argc, argv);
    printf("\nThe Mandelbrot set, in 16-bit fixed point:\n");
    mandelbrot();
    printf("\nHeartbeat: TIMER0 at %u Hz of virtual time, the CPU sleeps in `wait` between\n"
           "interrupts; %s.\n", BEAT_HZ,
           forever ? "running until stopped (--forever)"
                   : "ending after 3 virtual seconds (run with --forever to go on)");

    aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
    aemu_timer_start(0, TICK_RELOAD, TICK_PRESCALE, TIMER_CTRL_PERIODIC | TIMER_CTRL_IE);

    while (forever || seen < BEAT_HZ * RUN_SECONDS) {
        uint32_t now_ticks, now_uart;
        AEMU_WAIT_WHILE(ticks == seen);
        now_ticks = ticks;
        now_uart = aemu_uart_irq_count;
        heartbeat(++seen, now_ticks - last_ticks, now_uart - last_uart);
        last_ticks = now_ticks;
        last_uart = now_uart;
    }

    aemu_timer_stop(0);
    printf("Bye.\n");
    fflush(stdout);
    aemu_uart_flush();
    exit(0);
}
