/* pattern -- the live-migration test guest (QEMU's "A-B" guest for aemu).
 *
 *   pattern        (pattern.elf)       dirty every page, forever
 *   pattern        (pattern_idle.elf,  built with -DIDLE) one sweep, then idle
 *
 * The buffer: PATTERN_PAGES 4 KiB pages at PATTERN_BASE (page aligned),
 * 0x300000 .. 0x1000000 = 13 MiB = 3328 pages: everything from 3 MiB to the
 * end of a 16 MiB RAM board.  The BSP's own sections (code, data, .bss, the
 * host block, the 2 MiB heap, the 256 KiB stack and the interrupt stack) end
 * below 0x260000; pattern.ld asserts at link time that they stay below the
 * buffer.  The buffer is not a C object (it would be in .bss, which crt0
 * clears, and it would push the heap and stack up): it is exported as the
 * absolute ELF symbol `_pattern_buf` (C name pattern_buf) = PATTERN_BASE,
 * and its size as `_pattern_pages`, a const uint32_t in .rdata (in RAM),
 * so a host test reads both from the ELF's symbol table.
 *
 * Behaviour (output on UART0, polled, BAUD = 0 so a byte costs one status
 * read):
 *   - set the first byte of every page to 0 (RAM is not assumed zero);
 *   - print "A";
 *   - forever: increment the first byte of every page, in order (one sweep);
 *     then check that every page's first byte equals the number of sweeps
 *     mod 256 -- on a mismatch print "E", the page index in hex and a
 *     newline, and _exit(1); else print "B".
 *   - IDLE: after the first "B", TIMER0 at 100 Hz; its handler increments
 *     the second byte of page 0 (pattern_buf[1]) and the CPU sleeps (eiwait)
 *     in between: one page dirtied 100 times a (virtual) second.  In fast
 *     pacing an idle guest's clock jumps from tick to tick, so the host runs
 *     it flat out (still dirtying only that page); use pace "realtime" for a
 *     guest that also costs no host CPU.
 *
 * A host that stops the guest anywhere sees every page's first byte equal,
 * except (while a sweep is under way) that the pages before the sweep's
 * position hold one more than those after it: QEMU's check_guests_ram rule
 * (tests/migration_guest.py check_pattern_ram).
 */
#include <stdint.h>
#include <unistd.h>

#include "aemu_board.h"

#define PAGE_SIZE     4096UL
#define PATTERN_BASE  0x300000UL
#define PATTERN_PAGES 3328UL              /* 13 MiB: up to 0x1000000 (16 MiB) */
#define PATTERN_END   (PATTERN_BASE + PATTERN_PAGES * PAGE_SIZE)

_Static_assert(PATTERN_BASE % PAGE_SIZE == 0, "the buffer must be page aligned");
_Static_assert(PATTERN_END <= 0x1000000UL, "the buffer must fit in 16 MiB of RAM");

#define STR_(x) #x
#define STR(x) STR_(x)

/* The absolute symbol _pattern_buf (pattern.ld checks the BSP ends below it). */
__asm__(".globl _pattern_buf\n\t.set _pattern_buf, " STR(PATTERN_BASE));
extern volatile uint8_t pattern_buf[];

/* Number of pages, for the host (the guest itself uses the constant). */
const uint32_t pattern_pages = PATTERN_PAGES;

#define BUF ((volatile uint8_t *)PATTERN_BASE)
#define END ((volatile uint8_t *)PATTERN_END)

static void put_hex(uint32_t v)
{
    char s[8];
    int n = 0;
    do {
        s[n++] = "0123456789abcdef"[v & 15u];
        v >>= 4;
    } while (v);
    while (n)
        aemu_uart_poll_putc(s[--n]);
}

/* One sweep: the first byte of every page += 1.  Unrolled by 8 (the page
   count is a multiple of 8): 3 instructions per page plus 3 per 8 pages. */
static void sweep(void)
{
    volatile uint8_t *p = BUF;
    do {
        p[0 * PAGE_SIZE]++;
        p[1 * PAGE_SIZE]++;
        p[2 * PAGE_SIZE]++;
        p[3 * PAGE_SIZE]++;
        p[4 * PAGE_SIZE]++;
        p[5 * PAGE_SIZE]++;
        p[6 * PAGE_SIZE]++;
        p[7 * PAGE_SIZE]++;
        p += 8 * PAGE_SIZE;
    } while (p != END);
}
_Static_assert(PATTERN_PAGES % 8 == 0, "sweep() is unrolled by 8");

/* Every page's first byte == v?  Returns the first bad page, or -1.
   Unrolled like sweep(): a group of 8 with a bad page is then searched. */
static long check(uint8_t v)
{
    volatile uint8_t *p = BUF;
    do {
        if (p[0 * PAGE_SIZE] != v || p[1 * PAGE_SIZE] != v || p[2 * PAGE_SIZE] != v
            || p[3 * PAGE_SIZE] != v || p[4 * PAGE_SIZE] != v || p[5 * PAGE_SIZE] != v
            || p[6 * PAGE_SIZE] != v || p[7 * PAGE_SIZE] != v) {
            while (*p == v)
                p += PAGE_SIZE;
            return (long)(((uintptr_t)p - PATTERN_BASE) / PAGE_SIZE);
        }
        p += 8 * PAGE_SIZE;
    } while (p != END);
    return -1;
}

#ifdef IDLE
static void AEMU_ISR tick(void)
{
    aemu_timer_ack(0);
    BUF[1]++;
}
#endif

int main(void)
{
    uint8_t sweeps = 0;

    UART0_BAUD = UART_BAUD_INSTANT;
    for (volatile uint8_t *p = BUF; p != END; p += PAGE_SIZE)
        *p = 0;
    aemu_uart_poll_putc('A');
    for (;;) {
        long bad;
        sweep();
        sweeps++;
        bad = check(sweeps);
        if (bad >= 0) {
            aemu_uart_poll_putc('E');
            put_hex((uint32_t)bad);
            aemu_uart_poll_putc('\n');
            _exit(1);
        }
        aemu_uart_poll_putc('B');
#ifdef IDLE
        break;
#endif
    }
#ifdef IDLE
    aemu_irq_install();
    aemu_irq_attach(IRQ_TIMER0, tick, 8);
    aemu_irq_enable();
    aemu_timer_start(0, AEMU_CPU_HZ / 100u - 1u, 0, TIMER_CTRL_PERIODIC | TIMER_CTRL_IE);
    for (;;)
        aemu_eiwait();
#endif
}
