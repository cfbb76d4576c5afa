/* shell.c -- the example project's firmware: a small command shell on
 * UART0 of aemu's default board.
 *
 * It prints "shell 1.0 ready", then a "> " prompt before each command line
 * (lines end with '\n'; '\r' is ignored; input is not echoed):
 *
 *   ping          -> "pong"
 *   add A B       -> A + B (32-bit; decimal or 0x hex)
 *   count         -> "count N": N = ++counter (a global the tests also read
 *                    from memory through its symbol, _counter)
 *   led on|off    -> "led on" / "led off" (the global led: 1 / 0)
 *   sleep MS      -> waits MS virtual milliseconds on TIMER0, then "slept MS ms"
 *   exit N        -> the program exits with status N
 *   anything else -> "unknown command: ..."
 *
 * Interrupt-driven throughout (the BSP's UART0 driver: RX ring, TX ring
 * drained by the TX interrupt; TIMER0 one-shot), and the CPU sleeps with
 * eiwait while it waits, so an idle shell costs the host no CPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aemu_board.h"

#define LINE_SIZE 64

volatile uint32_t counter;
volatile uint16_t led;
static volatile uint8_t woke;

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    woke = 1;
}

static int wait_getc(void)
{
    int c;
    AEMU_WAIT_WHILE((c = aemu_uart_getc()) < 0);
    return c;
}

static void read_line(char *buf, unsigned size)
{
    unsigned n = 0;
    for (;;) {
        int c = wait_getc();
        if (c == '\n')
            break;
        if (c != '\r' && n + 1 < size)
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
}

static void sleep_ms(uint32_t ms)
{
    /* one-shot TIMER0: PRESCALE 999 is 100 kHz at 100 MHz, so 100 counts a ms */
    woke = 0;
    aemu_timer_start(0, ms * 100u - 1u, 999, TIMER_CTRL_IE);
    AEMU_WAIT_WHILE(!woke);
    aemu_timer_stop(0);
}

int main(void)
{
    char line[LINE_SIZE];

    aemu_irq_install();
    aemu_uart_irq_init(4);
    aemu_irq_attach(IRQ_TIMER0, timer0_isr, 6);
    aemu_irq_enable();
    aemu_uart_puts("shell 1.0 ready\n");
    for (;;) {
        aemu_uart_puts("> ");
        read_line(line, sizeof line);
        if (strcmp(line, "ping") == 0) {
            aemu_uart_puts("pong\n");
        } else if (strncmp(line, "add ", 4) == 0) {
            char *end;
            long a = strtol(line + 4, &end, 0);
            long b = strtol(end, &end, 0);
            aemu_uart_printf("%ld\n", a + b);
        } else if (strcmp(line, "count") == 0) {
            aemu_uart_printf("count %lu\n", (unsigned long)++counter);
        } else if (strcmp(line, "led on") == 0 || strcmp(line, "led off") == 0) {
            led = line[5] == 'n';
            aemu_uart_printf("led %s\n", led ? "on" : "off");
        } else if (strncmp(line, "sleep ", 6) == 0) {
            unsigned long ms = strtoul(line + 6, NULL, 0);
            if (ms)
                sleep_ms((uint32_t)ms);
            aemu_uart_printf("slept %lu ms\n", ms);
        } else if (strncmp(line, "exit", 4) == 0) {
            int status = (int)strtol(line + 4, NULL, 0);
            aemu_uart_flush();
            return status;
        } else if (line[0] != '\0') {
            aemu_uart_printf("unknown command: %s\n", line);
        }
    }
}
