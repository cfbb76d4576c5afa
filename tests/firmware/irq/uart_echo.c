/* uart_echo -- interrupt-driven UART0: echo every received byte, upper-
 * cased, until a 'q' arrives.
 *
 *   uart_echo [TIMEOUT_MS]
 *       TIMEOUT_MS  give up after this many virtual milliseconds (TIMER0,
 *                   one-shot); 0 or absent: wait for ever.  (With --pace
 *                   fast an idle guest's virtual time jumps to its next
 *                   timer, so a timeout ends the run at once when no input
 *                   is waiting; use it with --pace realtime.)
 *
 * Everything goes through the BSP's interrupt-driven driver at the default
 * 115200 baud: RX interrupt (line 2) -> callback in the handler, which
 * upper-cases a..z and queues the byte in the TX ring -> TX interrupt
 * (line 3) sends it.  Bytes after the 'q' are not echoed.  The main
 * program only sleeps (eiwait) until the 'q' (or the timeout).
 *
 * Output (UART0):
 *   uart_echo: ready; send text, 'q' ends
 *   <the received bytes, upper-cased, up to and including the 'Q'>
 *   (a newline)
 *   uart_echo: 19 bytes echoed, 11 letters upper-cased, 0 overruns
 * (for the input "hello, world! 123 qxyz": bytes up to and including the
 * 'q' count; overruns = STATUS reads that showed OVR, 0 unless the host
 * delivers more than the 16-byte FIFO holds between two RX interrupts).
 * Exit status 0; 2 after a timeout (the summary line then starts with
 * "uart_echo: timeout after N ms").
 */
#include "irqtest.h"

static volatile uint8_t quit, timed_out;
static volatile uint32_t echoed, letters;

static void on_rx(uint8_t b)          /* in the RX handler */
{
    if (quit)
        return;
    if (b >= 'a' && b <= 'z') {
        b = (uint8_t)(b - 'a' + 'A');
        letters++;
    }
    echoed++;
    aemu_uart_putc(b);
    if (b == 'Q')
        quit = 1;
}

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    timed_out = 1;
}

int main(int argc, char **argv)
{
    uint32_t timeout_ms = arg_u32(argc, argv, 1, 0);

    aemu_irq_install();
    aemu_uart_set_rx_callback(on_rx);
    aemu_uart_irq_init(6);
    aemu_irq_enable();
    aemu_uart_puts("uart_echo: ready; send text, 'q' ends\n");

    if (timeout_ms) {
        aemu_irq_attach(IRQ_TIMER0, timer0_isr, 4);
        /* 1 ms = PRESCALE 999 (100 kHz) x RELOAD 100 - 1 */
        aemu_timer_start(0, timeout_ms * 100u - 1u, 999, TIMER_CTRL_IE);
    }
    AEMU_WAIT_WHILE(!quit && !timed_out);
    aemu_timer_stop(0);

    aemu_uart_putc('\n');
    if (!quit)
        aemu_uart_printf("uart_echo: timeout after %lu ms: ", (unsigned long)timeout_ms);
    else
        aemu_uart_puts("uart_echo: ");
    aemu_uart_printf("%lu bytes echoed, %lu letters upper-cased, %u overruns\n",
                     (unsigned long)echoed, (unsigned long)letters,
                     (unsigned)aemu_uart_overruns);
    aemu_uart_flush();
    return quit ? 0 : 2;
}
