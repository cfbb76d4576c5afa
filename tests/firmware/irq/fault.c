/* fault -- a guest that waits a while, then faults: a load from outside RAM.
 *
 *   fault [DELAY_MS]
 *       DELAY_MS  how long to wait first, in virtual milliseconds (default
 *                 100; 0: fault at once)
 *
 * Prints its line (polled UART0), then sleeps in eiwait until a one-shot
 * TIMER0 (PRESCALE 999: 100 kHz at 100 MHz, RELOAD DELAY_MS * 100 - 1)
 * expires, then reads a 16-bit word at 0x1800000: above the default
 * board's 20 MiB of RAM (and any RAM up to 24 MiB) and its MMIO window at
 * 0x1400000..0x14004ff, so the load is an illegal-address fault, vector
 * 12 (IAD).  Nothing in the guest handles it: the IAD entry of the BSP's
 * dispatch table is emptied first (its default trap handler would print
 * "unexpected trap" and _exit(139), an ordinary exit), so the fault goes to
 * aemu, which ends the run there (`aemu run` exit status 139; under `aemu
 * serve` the VM goes to guest-panicked with a GUEST_PANICKED event, and
 * __org.aemu_query-run gives exit reason "fault").  With DELAY_MS 0 the BSP's
 * table is never installed (INTBASE 0): the same fault, at once.
 *
 * With --pace fast the wait costs no host time (virtual time jumps to the
 * timer); with --pace realtime it lasts DELAY_MS of wall time, long enough
 * for a host test to see the VM running before it faults.
 *
 * Output (UART0):
 *   fault: loading from 0x1800000 after 100 ms
 * then, from aemu (stderr of `aemu run`):
 *   aemu: guest fault: illegal address 0x1800000 at pc 0x... (vector 12)
 * Exit status: none of its own (139 from aemu run).
 */
#include "irqtest.h"

#define BAD_ADDR 0x1800000UL

static volatile uint8_t expired;

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    expired = 1;
}

int main(int argc, char **argv)
{
    uint32_t delay_ms = arg_u32(argc, argv, 1, 100);

    report_init();
    say("fault: loading from 0x%lx after %lu ms\n", (unsigned long)BAD_ADDR,
        (unsigned long)delay_ms);

    if (delay_ms) {
        aemu_irq_install();
        aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
        aemu_irq_enable();
        /* 1 ms = PRESCALE 999 (100 kHz) x RELOAD 100 - 1 */
        aemu_timer_start(0, delay_ms * 100u - 1u, 999, TIMER_CTRL_IE);
        AEMU_WAIT_WHILE(!expired);
        aemu_timer_stop(0);
        aemu_vectors[AEMU_VEC_IAD] = 0;     /* no guest handler: aemu's fault */
    }

    return *(volatile uint16_t *)BAD_ADDR;
}
