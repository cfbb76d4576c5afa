/* irqtest.h -- helpers shared by the interrupt test guests.
 *
 * Results go out through UART0, polled (aemu_uart_poll_* / aemu_uart_printf
 * before aemu_uart_irq_init), with the baud rate set to 0 ("infinitely
 * fast": STATUS.TXE never drops, one status read per byte), so printing a
 * report costs few instructions and does not move the timing of what is
 * measured before it.  uart_poll and uart_echo set their own baud rate.
 */
#ifndef IRQTEST_H
#define IRQTEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aemu_board.h"
#include "aemu_host.h"

#define say aemu_uart_printf

static inline void report_init(void)
{
    UART0_BAUD = UART_BAUD_INSTANT;
}

/* argv[i] as an unsigned number (decimal or 0x hex), or dflt. */
static inline uint32_t arg_u32(int argc, char **argv, int i, uint32_t dflt)
{
    if (i < argc && argv[i][0] != '\0')
        return (uint32_t)strtoul(argv[i], NULL, 0);
    return dflt;
}

static inline const char *arg_str(int argc, char **argv, int i, const char *dflt)
{
    return i < argc ? argv[i] : dflt;
}

/* Virtual time since boot in ns (0 when not under aemu). */
static inline uint64_t now_ns(void)
{
    uint64_t ns = 0;
    aemu_gettime_ns(&ns);
    return ns;
}

/* "S.NNNNNNNNN" (no %llu in this newlib) */
static inline void say_ns(uint64_t ns)
{
    say("%lu.%09lu", (unsigned long)(ns / 1000000000u), (unsigned long)(ns % 1000000000u));
}

#endif /* IRQTEST_H */
