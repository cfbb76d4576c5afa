/* uart0.c -- UART0 driver of the aemu BSP: polled, and interrupt-driven
 * with a transmit ring drained by the TX-empty interrupt (see aemu_board.h).
 *
 * TX: writers append to tx_ring with PSR.E clear and turn TXIE on; the TX
 * handler moves bytes to DATA while STATUS.TXE is set and turns TXIE off
 * when the ring is empty (IRQ 3 is up while TXE and TXIE, so it must).
 * RX: the RX handler reads DATA while STATUS.RXA is set and hands each byte
 * to the callback or to rx_ring.
 */
#define _DEFAULT_SOURCE 1          /* funopen() from newlib's <stdio.h> */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "aemu_board.h"

#define TX_RING 512u               /* powers of two */
#define RX_RING 64u

static uint8_t tx_ring[TX_RING];
static volatile uint16_t tx_head, tx_tail;   /* head: next free; tail: next to send */
static uint8_t rx_ring[RX_RING];
static volatile uint16_t rx_head, rx_tail;
static void (*volatile rx_callback)(uint8_t);
static volatile uint8_t irq_mode;

volatile uint32_t aemu_uart_rx_count;
volatile uint32_t aemu_uart_irq_count;
volatile uint16_t aemu_uart_overruns;
volatile uint16_t aemu_uart_rx_dropped;

static uint16_t uart_status(void)
{
    uint16_t s = UART0_STATUS;
    if (s & UART_STATUS_OVR)
        aemu_uart_overruns++;
    return s;
}

/* ---- polled ---------------------------------------------------------- */

void aemu_uart_poll_putc(int c)
{
    while (!(uart_status() & UART_STATUS_TXE))
        ;
    UART0_DATA = (uint8_t)c;
}

void aemu_uart_poll_write(const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n--)
        aemu_uart_poll_putc(*p++);
}

void aemu_uart_poll_puts(const char *s)
{
    while (*s)
        aemu_uart_poll_putc((uint8_t)*s++);
}

int aemu_uart_poll_getc(void)
{
    if (!(uart_status() & UART_STATUS_RXA))
        return -1;
    return (uint8_t)UART0_DATA;
}

/* ---- interrupt-driven ------------------------------------------------ */

/* Move ring bytes to the UART while it is ready (E clear or in a handler). */
static void tx_pump(void)
{
    while (tx_tail != tx_head && (uart_status() & UART_STATUS_TXE)) {
        UART0_DATA = tx_ring[tx_tail];
        tx_tail = (uint16_t)((tx_tail + 1u) & (TX_RING - 1u));
    }
    if (tx_tail == tx_head)
        UART0_CTRL = (uint16_t)(UART0_CTRL & ~UART_CTRL_TXIE);
}

static void AEMU_ISR uart_tx_isr(void)
{
    aemu_uart_irq_count++;
    tx_pump();
}

static void AEMU_ISR uart_rx_isr(void)
{
    aemu_uart_irq_count++;
    while (uart_status() & UART_STATUS_RXA) {
        uint8_t b = (uint8_t)UART0_DATA;
        void (*cb)(uint8_t) = rx_callback;
        aemu_uart_rx_count++;
        if (cb) {
            cb(b);
        } else {
            uint16_t next = (uint16_t)((rx_head + 1u) & (RX_RING - 1u));
            if (next != rx_tail) {
                rx_ring[rx_head] = b;
                rx_head = next;
            } else {                        /* full: the byte is dropped */
                aemu_uart_rx_dropped++;
            }
        }
    }
}

void aemu_uart_irq_init(unsigned prio)
{
    uint16_t psr = aemu_irq_save();
    tx_head = tx_tail = 0;
    rx_head = rx_tail = 0;
    UART0_CTRL = UART_CTRL_RXIE;
    aemu_irq_attach(IRQ_UART0_TX, uart_tx_isr, prio);
    aemu_irq_attach(IRQ_UART0_RX, uart_rx_isr, prio);
    irq_mode = 1;
    aemu_irq_restore(psr);
}

void aemu_uart_set_rx_callback(void (*cb)(uint8_t byte))
{
    rx_callback = cb;
}

int aemu_uart_getc(void)
{
    int c = -1;
    uint16_t psr;
    if (!irq_mode)
        return aemu_uart_poll_getc();
    psr = aemu_irq_save();
    if (rx_tail != rx_head) {
        c = rx_ring[rx_tail];
        rx_tail = (uint16_t)((rx_tail + 1u) & (RX_RING - 1u));
    }
    aemu_irq_restore(psr);
    return c;
}

static int irqs_on(uint16_t psr)
{
    return (psr & (AEMU_PSR_I | AEMU_PSR_E)) == (AEMU_PSR_I | AEMU_PSR_E);
}

void aemu_uart_putc(int c)
{
    uint16_t psr, next;
    if (!irq_mode) {
        aemu_uart_poll_putc(c);
        return;
    }
    psr = aemu_irq_save();
    for (;;) {
        next = (uint16_t)((tx_head + 1u) & (TX_RING - 1u));
        if (next != tx_tail)
            break;
        if (irqs_on(psr)) {     /* TXIE is on: the TX interrupt makes room */
            aemu_eiwait();
            aemu_di();
        } else {                /* in a handler / interrupts off: do it ourselves */
            tx_pump();
        }
    }
    tx_ring[tx_head] = (uint8_t)c;
    tx_head = next;
    UART0_CTRL = (uint16_t)(UART0_CTRL | UART_CTRL_TXIE);
    aemu_irq_restore(psr);
}

void aemu_uart_write(const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n--)
        aemu_uart_putc(*p++);
}

void aemu_uart_puts(const char *s)
{
    while (*s)
        aemu_uart_putc((uint8_t)*s++);
}

int aemu_uart_printf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        aemu_uart_write(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
    return n;
}

void aemu_uart_flush(void)
{
    uint16_t psr = aemu_irq_save();
    while (irq_mode && tx_tail != tx_head) {
        if (irqs_on(psr)) {
            aemu_eiwait();
            aemu_di();
        } else {
            tx_pump();
        }
    }
    while (!(uart_status() & UART_STATUS_TXE))
        ;
    aemu_irq_restore(psr);
}

/* ---- stdio ----------------------------------------------------------- */

static int stdio_write(void *cookie, const char *buf, int n)
{
    (void)cookie;
    aemu_uart_write(buf, (size_t)n);
    return n;
}

static void stdio_atexit(void)
{
    /* exit() runs atexit handlers before it flushes stdio: flush here, so
       that everything reaches the ring, then drain the ring. */
    fflush(stdout);
    fflush(stderr);
    aemu_uart_flush();
}

int aemu_uart_stdio(void)
{
    FILE *out = funopen(NULL, NULL, stdio_write, NULL, NULL);
    FILE *err = funopen(NULL, NULL, stdio_write, NULL, NULL);
    if (!out || !err)
        return -1;
    setvbuf(out, NULL, _IOLBF, 128);
    setvbuf(err, NULL, _IONBF, 0);
    fflush(stdout);
    fflush(stderr);
    stdout = out;
    stderr = err;
    atexit(stdio_atexit);
    return 0;
}
