/* workload_1khz -- a CPU-bound workload, with or without a 1 kHz timer
 * interrupt: the cost of taking interrupts.
 *
 *   workload_1khz [irq|noirq [ROUNDS]]
 *       irq     TIMER0 periodic at 1 kHz (RELOAD 99999) interrupts it (default)
 *       noirq   no interrupts (the devices are not touched until the report)
 *       ROUNDS  table-driven CRC-32 rounds over a 4 KiB buffer (default 2000:
 *               about 106.6 million instructions, 1.07 s of virtual time at
 *               100 MHz: 1065 timer interrupts)
 *
 * The buffer is filled from an LCG; each round runs CRC-32 over it and
 * feeds the result back into the first four bytes.  The handler only
 * acknowledges and counts.  The result does not depend on the mode.
 *
 * Output (polled UART0, after the work):
 *   workload_1khz: 2000 rounds of crc32 over 4096 bytes: 0x3687a28c
 *   workload_1khz: mode irq, 1065 timer interrupts
 * (the first line is the same in both modes; the second says "mode noirq,
 * 0 timer interrupts" without the timer.)  Exit status 0; 2 for a bad mode.
 */
#include "irqtest.h"

#define BUF 4096

static uint8_t buf[BUF];
static uint32_t table[256];
static volatile uint32_t ticks;

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    ticks++;
}

static void make_table(void)
{
    uint32_t i;
    int k;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320UL & (0UL - (c & 1UL)));
        table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t crc = 0xFFFFFFFFUL;
    while (n--)
        crc = table[(uint8_t)(crc ^ *p++)] ^ (crc >> 8);
    return ~crc;
}

int main(int argc, char **argv)
{
    const char *mode = arg_str(argc, argv, 1, "irq");
    uint32_t rounds = arg_u32(argc, argv, 2, 2000);
    uint32_t i, seed = 12345, crc = 0;
    int irq;

    if (strcmp(mode, "irq") == 0) {
        irq = 1;
    } else if (strcmp(mode, "noirq") == 0) {
        irq = 0;
    } else {
        report_init();
        say("workload_1khz: mode must be irq or noirq, not \"%s\"\n", mode);
        return 2;
    }
    make_table();
    for (i = 0; i < BUF; i++) {
        seed = seed * 1103515245UL + 12345UL;
        buf[i] = (uint8_t)(seed >> 16);
    }
    if (irq) {
        aemu_irq_install();
        aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
        aemu_irq_enable();
        aemu_timer_start(0, AEMU_CPU_HZ / 1000u - 1u, 0, TIMER_CTRL_PERIODIC | TIMER_CTRL_IE);
    }

    for (i = 0; i < rounds; i++) {
        crc = crc32(buf, BUF);
        buf[0] ^= (uint8_t)crc;
        buf[1] ^= (uint8_t)(crc >> 8);
        buf[2] ^= (uint8_t)(crc >> 16);
        buf[3] ^= (uint8_t)(crc >> 24);
    }

    if (irq) {
        aemu_timer_stop(0);
        aemu_irq_disable();
    }
    report_init();
    say("workload_1khz: %lu rounds of crc32 over %u bytes: 0x%08lx\n", (unsigned long)rounds,
        (unsigned)BUF, (unsigned long)crc);
    say("workload_1khz: mode %s, %lu timer interrupts\n", mode, (unsigned long)ticks);
    return 0;
}
