/* idle -- a periodic timer and `wait`: an idle guest.
 *
 *   idle [SECONDS [HZ]]
 *       SECONDS  how long, in virtual seconds (default 1)
 *       HZ       TIMER0 frequency at 100 MHz (default 1000: RELOAD 99999)
 *
 * TIMER0 periodic at HZ (PRESCALE 0, RELOAD 100000000 / HZ - 1); its
 * handler counts and, at SECONDS * HZ ticks, stops the timer.  The main
 * program sleeps in eiwait between ticks.  Host CPU of this guest with
 * --pace realtime is the cost of an idle guest plus HZ interrupts a second.
 *
 * Output (polled UART0):
 *   idle: TIMER0 at 1000 Hz for 1 s
 *   idle: 1000 ticks, 1000 wakeups, virtual time 1.000xxxxxx s
 * (wakeups = times the main loop came out of eiwait = ticks: nothing else
 * interrupts.)  Exit status 0.
 */
#include "irqtest.h"

static volatile uint32_t ticks, target;

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    if (++ticks >= target)
        TIMER0_CTRL = 0;
}

int main(int argc, char **argv)
{
    uint32_t seconds = arg_u32(argc, argv, 1, 1);
    uint32_t hz = arg_u32(argc, argv, 2, 1000);
    uint32_t wakeups = 0;

    report_init();
    if (hz == 0)
        hz = 1;
    target = seconds * hz;
    say("idle: TIMER0 at %lu Hz for %lu s\n", (unsigned long)hz, (unsigned long)seconds);

    aemu_irq_install();
    aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
    aemu_irq_enable();
    aemu_timer_start(0, AEMU_CPU_HZ / hz - 1u, 0, TIMER_CTRL_PERIODIC | TIMER_CTRL_IE);

    aemu_di();
    while (ticks < target) {
        aemu_eiwait();
        aemu_di();
        wakeups++;
    }
    aemu_ei();

    say("idle: %lu ticks, %lu wakeups, virtual time ", (unsigned long)ticks,
        (unsigned long)wakeups);
    say_ns(now_ns());
    say(" s\n");
    return 0;
}
