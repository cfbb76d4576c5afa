/* nmi_wdt -- the watchdog in NMI mode, then in reset mode.
 *
 *   nmi_wdt       (no arguments)
 *
 * Power-on run (WDT STATUS.FIRED = 0):
 *   1. WDT TIMEOUT 100000 cycles (1 ms), CTRL = EN | NMI.  TIMER0 (periodic,
 *      every 50000 cycles = 0.5 ms) kicks it (KICK = 0x5A5A) 10 times:
 *      no NMI.
 *   2. The TIMER0 handler writes the wrong value (0x1234) instead: the
 *      watchdog expires 1 ms after the last real kick and then every 1 ms
 *      (it restarts the countdown on each NMI).  The NMI handler (vector 1)
 *      reads the virtual time, checks ICU NMISTAT (bit 0 set), clears it
 *      (W1C) and, at the third NMI, turns the watchdog off.
 *   3. FIRED is cleared (W1C), a .data variable is changed, and the
 *      watchdog is re-armed in reset mode (TIMEOUT 200000, CTRL = EN); the
 *      program sleeps.  The board resets 2 ms later (TIMER1 fails the test
 *      after 100 ms if it does not).
 * After the reset (FIRED = 1, the program image reloaded): checks that the
 * .data variable has its initial value again and that WDT CTRL is 0,
 * clears FIRED, exits 0.
 *
 * Output (polled UART0):
 *   nmi_wdt: power-on start (WDT STATUS 0x0000)
 *   kicked 10 times every 0.5 ms with a 1 ms timeout: 0 NMIs
 *   bad kicks (0x1234) are ignored:
 *   NMI 1 at 0.00xxxxxxx (1000000 ns after the last good kick) NMISTAT 0x0001
 *   NMI 2 at 0.00xxxxxxx (+1000000 ns) NMISTAT 0x0001
 *   NMI 3 at 0.00xxxxxxx (+1000000 ns) NMISTAT 0x0001
 *   NMI mode ok: 3 NMIs, 1 ms apart
 *   watchdog in reset mode (timeout 2 ms): waiting for the reset
 *   nmi_wdt: started again after a watchdog reset (WDT STATUS 0x0001)
 *   .data reloaded: yes, WDT CTRL after reset 0x0000
 *   nmi_wdt: ok
 * (the "at" times and the distances are measured with the gettime service
 * in the handlers; the "+" distances are checked to be exactly 1000000 ns,
 * the first one differs from 1 ms by the few instructions between the kick,
 * the NMI and their clock readings: 1000040 ns.)  Exit status 0; 1 if a check failed (the line says FAIL;
 * a failure in NMI mode ends the program before the reset), 3 if no reset
 * came.
 */
#include "irqtest.h"

#define TIMEOUT_NMI   100000UL     /* 1 ms at 100 MHz */
#define TIMEOUT_RESET 200000UL
#define KICK_PERIOD   50000UL      /* 0.5 ms */
#define GOOD_KICKS    10
#define NMIS          3

static volatile uint16_t marker = 0x1234;     /* .data: reloaded by the reset */
static volatile uint16_t kicks, bad_kicks;
static volatile uint8_t kick_good = 1;
static volatile uint16_t nmi_count;
static volatile uint8_t failsafe;
static uint64_t last_good_kick;
static uint64_t nmi_at[NMIS];
static uint16_t nmi_stat[NMIS];

static void AEMU_ISR nmi_isr(void)
{
    uint64_t ns = now_ns();
    uint16_t st = ICU_NMISTAT;
    ICU_NMISTAT = ICU_NMISTAT_WDT;
    if (nmi_count < NMIS) {
        nmi_at[nmi_count] = ns;
        nmi_stat[nmi_count] = st;
    }
    if (++nmi_count == NMIS)
        WDT_CTRL = 0;
}

static void AEMU_ISR timer0_isr(void)
{
    aemu_timer_ack(0);
    if (kick_good) {
        aemu_wdt_kick();
        last_good_kick = now_ns();
        if (++kicks == GOOD_KICKS)
            kick_good = 0;
    } else {
        WDT_KICK = 0x1234;
        bad_kicks++;
    }
}

static void AEMU_ISR timer1_isr(void)
{
    aemu_timer_ack(1);
    failsafe = 1;
}

static int after_reset(void)
{
    uint16_t st = WDT_STATUS, ctrl = WDT_CTRL;
    int ok = marker == 0x1234 && ctrl == 0;
    say("nmi_wdt: started again after a watchdog reset (WDT STATUS 0x%04x)\n", st);
    say(".data reloaded: %s, WDT CTRL after reset 0x%04x\n", marker == 0x1234 ? "yes" : "NO",
        ctrl);
    WDT_STATUS = WDT_STATUS_FIRED;
    if (WDT_STATUS & WDT_STATUS_FIRED)
        ok = 0, say("FAIL: FIRED did not clear\n");
    say("nmi_wdt: %s\n", ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

int main(void)
{
    uint16_t st;
    int i, ok = 1;
    uint64_t prev;

    report_init();
    st = WDT_STATUS;
    if (st & WDT_STATUS_FIRED)
        return after_reset();

    say("nmi_wdt: power-on start (WDT STATUS 0x%04x)\n", st);
    aemu_irq_install();
    aemu_set_handler(AEMU_VEC_NMI, nmi_isr);
    aemu_irq_attach(IRQ_TIMER0, timer0_isr, 8);
    aemu_irq_attach(IRQ_TIMER1, timer1_isr, 8);
    aemu_irq_enable();

    /* 1. kicked in time: quiet */
    WDT_TIMEOUT = TIMEOUT_NMI;
    WDT_CTRL = WDT_CTRL_EN | WDT_CTRL_NMI;
    aemu_wdt_kick();
    aemu_timer_start(0, KICK_PERIOD - 1u, 0, TIMER_CTRL_PERIODIC | TIMER_CTRL_IE);
    AEMU_WAIT_WHILE(kicks < GOOD_KICKS);
    say("kicked %u times every 0.5 ms with a 1 ms timeout: %u NMIs\n", kicks, nmi_count);
    if (nmi_count != 0)
        ok = 0;

    /* 2. no more valid kicks: NMIs 1 ms apart */
    say("bad kicks (0x1234) are ignored:\n");
    AEMU_WAIT_WHILE(nmi_count < NMIS);     /* TIMER0 keeps waking us */
    aemu_timer_stop(0);
    prev = last_good_kick;
    for (i = 0; i < NMIS; i++) {
        uint32_t d = (uint32_t)(nmi_at[i] - prev);
        say("NMI %d at ", i + 1);
        say_ns(nmi_at[i]);
        if (i == 0)
            say(" (%lu ns after the last good kick)", (unsigned long)d);
        else
            say(" (+%lu ns)", (unsigned long)d);
        say(" NMISTAT 0x%04x\n", nmi_stat[i]);
        if ((nmi_stat[i] & ICU_NMISTAT_WDT) == 0 || (i > 0 && d != TIMEOUT_NMI * 10u))
            ok = 0;
        prev = nmi_at[i];
    }
    if (nmi_count != NMIS || (ICU_NMISTAT & ICU_NMISTAT_WDT))
        ok = 0;
    say("NMI mode %s: %u NMIs, 1 ms apart\n", ok ? "ok" : "FAIL", nmi_count);
    if (!ok)
        return 1;               /* nothing survives the reset to report it */

    /* 3. reset mode */
    WDT_STATUS = WDT_STATUS_FIRED;
    marker = 0xBEEF;
    say("watchdog in reset mode (timeout 2 ms): waiting for the reset\n");
    aemu_timer_start(1, 9999999UL, 0, TIMER_CTRL_IE);          /* 100 ms failsafe */
    WDT_TIMEOUT = TIMEOUT_RESET;
    WDT_CTRL = WDT_CTRL_EN;
    AEMU_WAIT_WHILE(!failsafe);
    say("FAIL: no reset after 100 ms\n");
    return 3;
}
