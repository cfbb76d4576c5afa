/* timer_exact -- TIMER0 one-shot or periodic with a given reload and
 * prescaler; counts its interrupts during a window of virtual time.
 *
 *   timer_exact [MODE [RELOAD [PRESCALE [WINDOW_US]]]]
 *       MODE      periodic (default) or oneshot
 *       RELOAD    TIMER0 RELOAD (default 999)
 *       PRESCALE  TIMER0 PRESCALE (default 0)
 *       WINDOW_US the window, in microseconds at 100 MHz (default 100)
 *
 * TIMER0 expires every P = (RELOAD + 1) * (PRESCALE + 1) cycles after the
 * CTRL write that starts it (once, for oneshot).  The window is TIMER1,
 * one-shot, PRESCALE 99, RELOAD WINDOW_US - 1: W = WINDOW_US * 100 cycles,
 * started d cycles after TIMER0 (d = the instructions between the two CTRL
 * writes: 11 in the committed build).  Its ISR (priority 9, above TIMER0's 8, so that the window
 * closes even when TIMER0 fires faster than its handler runs) stops TIMER0.
 * So the tick count is floor((W + d) / P) for periodic -- floor(W / P)
 * unless a tick falls within d cycles after the window's nominal end --
 * and min(1, that) for oneshot.  Both timers are started with PSR.E clear;
 * the main loop sleeps in eiwait (and checks its flag with E clear for 5
 * instructions after each wake-up).  Every handler entry is then exactly at
 * an expiry as long as P >= 64 cycles (measured: 64, 66, ..., 100, 150, 200
 * all exact).  A shorter P is still deterministic but not "exact": the
 * handler (about 55 instructions with the clock reading) or the main loop's
 * E-clear window delays entries, and expiries that come while STATUS.EXP
 * is still set merge into one tick (P = 1..57: 160..189 ticks in 100 us).
 *
 * Each TIMER0 ISR reads the virtual clock (gettime service) first thing; the
 * first 64 readings are printed with their distance to the previous one
 * (periodic: P * 10 ns exactly at 100 MHz).  Output (polled UART0):
 *
 *   timer_exact: mode periodic reload 999 prescale 0 window 100 us
 *   start 0.000123450          (gettime just before the TIMER0 CTRL write)
 *   tick 1 at 0.000133560 (+10110 ns)
 *   tick 2 at 0.000143560 (+10000 ns)
 *   ...
 *   ticks 10
 *
 * Exit status 0 (2 for a bad MODE).
 */
#include "irqtest.h"

#define MAX_STAMPS 64

static volatile uint32_t ticks;
static volatile uint8_t done;
static uint64_t stamps[MAX_STAMPS];

static void AEMU_ISR timer0_isr(void)
{
    uint64_t ns = now_ns();
    aemu_timer_ack(0);
    if (ticks < MAX_STAMPS)
        stamps[ticks] = ns;
    ticks++;
}

static void AEMU_ISR timer1_isr(void)
{
    aemu_timer_ack(1);
    TIMER0_CTRL = 0;
    done = 1;
}

int main(int argc, char **argv)
{
    const char *mode = arg_str(argc, argv, 1, "periodic");
    uint32_t reload = arg_u32(argc, argv, 2, 999);
    uint16_t prescale = (uint16_t)arg_u32(argc, argv, 3, 0);
    uint32_t window = arg_u32(argc, argv, 4, 100);
    uint16_t flags = TIMER_CTRL_IE;
    uint64_t start, prev;
    uint32_t i, n;

    report_init();
    if (strcmp(mode, "periodic") == 0) {
        flags |= TIMER_CTRL_PERIODIC;
    } else if (strcmp(mode, "oneshot") != 0) {
        say("timer_exact: MODE must be periodic or oneshot, not \"%s\"\n", mode);
        return 2;
    }
    if (window == 0)
        window = 1;
    say("timer_exact: mode %s reload %lu prescale %u window %lu us\n", mode,
        (unsigned long)reload, (unsigned)prescale, (unsigned long)window);

    aemu_irq_install();
    aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
    aemu_irq_attach(IRQ_TIMER1, timer1_isr, 9);
    aemu_irq_enable();

    /* Both timers start with PSR.E clear: a TIMER0 faster than its handler
       must not keep the CPU from starting TIMER1. */
    aemu_di();
    start = now_ns();
    aemu_timer_start(0, reload, prescale, flags);
    aemu_timer_start(1, window - 1u, 99, TIMER_CTRL_IE);
    while (!done) {
        aemu_eiwait();
        aemu_di();
    }
    aemu_irq_disable();

    say("start ");
    say_ns(start);
    say("\n");
    n = ticks < MAX_STAMPS ? ticks : MAX_STAMPS;
    prev = start;
    for (i = 0; i < n; i++) {
        say("tick %lu at ", (unsigned long)(i + 1));
        say_ns(stamps[i]);
        say(" (+%lu ns)\n", (unsigned long)(stamps[i] - prev));
        prev = stamps[i];
    }
    say("ticks %lu\n", (unsigned long)ticks);
    return 0;
}
