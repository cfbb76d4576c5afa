/* uart_poll -- a long text through UART0, busy-waiting on STATUS.TXE
 * before every byte (polled; no interrupts).  The benchmark measures the
 * MIPS of this loop: one 16-bit MMIO read of STATUS per iteration.
 *
 *   uart_poll [BYTES [BAUD100]]
 *       BYTES    how much text (default 4096; whole 64-byte lines)
 *       BAUD100  UART0 BAUD register: baud rate / 100 (default: leave the
 *                reset value, 1152 = 115200 baud, 86800 cycles per 10
 *                bytes at 100 MHz; 0 = infinitely fast)
 *
 * Output (UART0): BYTES / 64 lines of exactly 64 bytes (a 4-digit line
 * number, a space, 58 characters of the pangram text rotated by the line
 * number, '\n'):
 *   0000 The quick brown fox jumps over the lazy dog. 0123456789 The\n
 *   0001 he quick brown fox jumps over the lazy dog. 0123456789 The \n
 *   ...
 * then the summary
 *   uart_poll: 4096 bytes of text, crc32 0x........
 * (the CRC-32 of the text lines; the same for every baud rate).  Exit 0.
 */
#include <stdio.h>

#include "irqtest.h"

#define LINE 64

static uint32_t crc_update(uint32_t crc, uint8_t b)
{
    int k;
    crc ^= b;
    for (k = 0; k < 8; k++)
        crc = (crc >> 1) ^ (0xEDB88320UL & (0UL - (crc & 1UL)));
    return crc;
}

static inline void putc_polled(uint8_t c)
{
    while (!(UART0_STATUS & UART_STATUS_TXE))
        ;
    UART0_DATA = c;
}

int main(int argc, char **argv)
{
    static const char text[] =
        "The quick brown fox jumps over the lazy dog. 0123456789 ";
    uint32_t bytes = arg_u32(argc, argv, 1, 4096);
    uint32_t lines = bytes / LINE, i, crc = 0xFFFFFFFFUL;
    char line[LINE];
    char summary[80];
    int k, n;

    if (argc > 2)
        UART0_BAUD = (uint16_t)arg_u32(argc, argv, 2, UART_BAUD_DEFAULT);
    for (i = 0; i < lines; i++) {
        /* "NNNN " + text, filled to 63 characters with the text again, '\n' */
        line[0] = (char)('0' + (i / 1000u) % 10u);
        line[1] = (char)('0' + (i / 100u) % 10u);
        line[2] = (char)('0' + (i / 10u) % 10u);
        line[3] = (char)('0' + i % 10u);
        line[4] = ' ';
        for (k = 5; k < LINE - 1; k++)
            line[k] = text[(k - 5 + i) % (sizeof text - 1)];
        line[LINE - 1] = '\n';
        for (k = 0; k < LINE; k++) {
            crc = crc_update(crc, (uint8_t)line[k]);
            putc_polled((uint8_t)line[k]);
        }
    }
    n = snprintf(summary, sizeof summary, "uart_poll: %lu bytes of text, crc32 0x%08lx\n",
                 (unsigned long)(lines * LINE), (unsigned long)~crc);
    for (k = 0; k < n; k++)
        putc_polled((uint8_t)summary[k]);
    while (!(UART0_STATUS & UART_STATUS_TXE))      /* the last byte has left */
        ;
    return 0;
}
