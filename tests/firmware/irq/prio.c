/* prio -- interrupt priorities, masking and nesting on the ICU.
 *
 *   prio          (no arguments)
 *
 * Three lines: TIMER0 (line 0, "T0"), TIMER1 (line 1, "T1") and UART0 TX
 * (line 3, "TX": up while STATUS.TXE and CTRL.TXIE).  Each case arms them
 * with interrupts off -- timers one-shot with RELOAD 9, polled until
 * STATUS.EXP is set; TXIE set (the baud rate is 0, so TXE is always 1) --
 * reads ICU PEND and IVCT, then enables interrupts: every handler logs its
 * name and clears its cause, so the log is the order of ISR entry.
 *
 *   priority  T0=5 T1=9 TX=7                   -> T1 TX T0      IVCT 17
 *   equal     all 4 (lower line number wins)   -> T0 T1 TX      IVCT 16
 *   reverse   T0=9 T1=2 TX=5                   -> T0 TX T1      IVCT 16
 *   masked    as priority, ENABLE without line 1: T1 stays pending
 *             (PEND bit 1, IVCT 0 afterwards), then line 1 enabled
 *             (PEND/IVCT read at the "|")      -> TX T0 | T1    IVCT 0
 *   psr       only T0, then only T1: pending while PSR.E = 0 (I = 1), taken
 *             at ei; pending while PSR.I = 0 (E = 1), taken at lpr psr
 *             (PEND/IVCT read while T1 waits)  -> E=0 T0 I=0 T1   IVCT 17
 *   nested    T0 (prio 3) clears its cause, starts T1 (prio 9, RELOAD 99),
 *             re-enables interrupts and spins until T1 has run: T1 preempts
 *                                              -> T0< T1 T0>    depth 2 IVCT 16
 *   unnested  the same without re-enabling; T0 polls TIMER1 STATUS.EXP, so
 *             T1 is pending when T0 returns    -> T0< T0> T1    depth 1
 *
 * PEND (read with the IVCT) must be exactly the armed lines.
 * Output (polled UART0), one line per case:
 *   priority: PEND 0x0000000b IVCT 17 order "T1 TX T0" ok
 *   ...
 *   prio: 7 cases, 0 failed
 * Exit status: the number of failed cases (0 = all as expected).
 */
#include "irqtest.h"

static char order[64];
static volatile uint8_t order_len;
static volatile uint8_t t0_mode;          /* 0 plain, 1 nested, 2 unnested */
static volatile uint8_t t1_seen;
static volatile uint8_t depth, max_depth;

static void log_tok(const char *t)
{
    if (order_len)
        order[order_len++] = ' ';
    while (*t && order_len < sizeof order - 1)
        order[order_len++] = *t++;
    order[order_len] = '\0';
}

static void enter(void)
{
    if (++depth > max_depth)
        max_depth = depth;
}

static void AEMU_ISR t0_isr(void)
{
    uint32_t spin;
    enter();
    aemu_timer_ack(0);
    if (t0_mode == 0) {
        log_tok("T0");
    } else {
        log_tok("T0<");
        aemu_timer_start(1, 99, 0, TIMER_CTRL_IE);
        if (t0_mode == 1) {
            aemu_irq_enable();                    /* PSR.I: nesting allowed */
            for (spin = 0; spin < 100000u && !t1_seen; spin++)
                ;
        } else {
            for (spin = 0; spin < 100000u && !(TIMER1_STATUS & TIMER_STATUS_EXP); spin++)
                ;
        }
        log_tok("T0>");
    }
    depth--;
}

static void AEMU_ISR t1_isr(void)
{
    enter();
    aemu_timer_ack(1);
    log_tok("T1");
    t1_seen = 1;
    depth--;
}

static void AEMU_ISR tx_isr(void)
{
    enter();
    UART0_CTRL = 0;                               /* TXIE off: line 3 drops */
    log_tok("TX");
    depth--;
}

#define L_T0 0x1u
#define L_T1 0x2u
#define L_TX 0x8u

static void reset_log(void)
{
    order_len = 0;
    order[0] = '\0';
    t1_seen = 0;
    depth = max_depth = 0;
}

static void set_prios(unsigned p0, unsigned p1, unsigned ptx)
{
    aemu_icu_set_prio(IRQ_TIMER0, p0);
    aemu_icu_set_prio(IRQ_TIMER1, p1);
    aemu_icu_set_prio(IRQ_UART0_TX, ptx);
}

/* With interrupts off: raise the chosen lines and wait until they are up. */
static void arm(unsigned lines)
{
    if (lines & L_T0)
        aemu_timer_start(0, 9, 0, TIMER_CTRL_IE);
    if (lines & L_T1)
        aemu_timer_start(1, 9, 0, TIMER_CTRL_IE);
    if (lines & L_TX)
        UART0_CTRL = UART_CTRL_TXIE;
    if (lines & L_T0)
        while (!(TIMER0_STATUS & TIMER_STATUS_EXP))
            ;
    if (lines & L_T1)
        while (!(TIMER1_STATUS & TIMER_STATUS_EXP))
            ;
}

static int failures, cases;

static void check(const char *name, uint32_t pend, unsigned ivct, uint32_t want_pend,
                  unsigned want_ivct, const char *expect, int want_depth)
{
    int ok = strcmp(order, expect) == 0 && (want_depth < 0 || max_depth == want_depth)
             && pend == want_pend && ivct == want_ivct;
    cases++;
    if (!ok)
        failures++;
    say("%s: PEND 0x%08lx IVCT %u order \"%s\"", name, (unsigned long)pend, ivct, order);
    if (want_depth >= 0)
        say(" depth %u", (unsigned)max_depth);
    say(" %s\n", ok ? "ok" : "FAIL");
    if (!ok) {
        say("  expected PEND 0x%08lx IVCT %u order \"%s\"", (unsigned long)want_pend,
            want_ivct, expect);
        if (want_depth >= 0)
            say(" depth %d", want_depth);
        say("\n");
    }
}

/* One case with all given lines pending at once. */
static void together(const char *name, unsigned lines, unsigned want_ivct, const char *expect)
{
    uint32_t pend;
    unsigned ivct;
    reset_log();
    aemu_irq_disable();
    arm(lines);
    pend = ICU_PEND;
    ivct = ICU_IVCT;
    aemu_irq_enable();
    aemu_irq_disable();
    check(name, pend, ivct, lines, want_ivct, expect, -1);
}

int main(void)
{
    uint32_t pend;
    unsigned ivct;

    report_init();
    say("prio: interrupt priorities, masking and nesting\n");
    aemu_irq_install();
    aemu_irq_attach(IRQ_TIMER0, t0_isr, 0);
    aemu_irq_attach(IRQ_TIMER1, t1_isr, 0);
    aemu_irq_attach(IRQ_UART0_TX, tx_isr, 0);

    set_prios(5, 9, 7);
    together("priority", L_T0 | L_T1 | L_TX, 17, "T1 TX T0");
    set_prios(4, 4, 4);
    together("equal", L_T0 | L_T1 | L_TX, 16, "T0 T1 TX");
    set_prios(9, 2, 5);
    together("reverse", L_T0 | L_T1 | L_TX, 16, "T0 TX T1");

    /* masked: line 1 disabled in the ICU */
    set_prios(5, 9, 7);
    reset_log();
    aemu_irq_disable();
    aemu_icu_disable_line(IRQ_TIMER1);
    arm(L_T0 | L_T1 | L_TX);
    aemu_irq_enable();                    /* TX, T0 run; T1 stays pending */
    pend = ICU_PEND;
    ivct = ICU_IVCT;
    log_tok("|");
    aemu_icu_enable_line(IRQ_TIMER1);     /* taken right after this write */
    aemu_irq_disable();
    check("masked", pend, ivct, L_T1, 0, "TX T0 | T1", -1);

    /* psr: E and I each mask on their own */
    reset_log();
    aemu_irq_disable();
    aemu_set_psr((uint16_t)(aemu_get_psr() | AEMU_PSR_I));     /* I = 1, E = 0 */
    arm(L_T0);
    log_tok("E=0");
    aemu_ei();                                                  /* T0 now */
    aemu_irq_disable();
    aemu_ei();                                                  /* I = 0, E = 1 */
    arm(L_T1);
    log_tok("I=0");
    pend = ICU_PEND;
    ivct = ICU_IVCT;
    aemu_set_psr((uint16_t)(aemu_get_psr() | AEMU_PSR_I));     /* T1 now */
    aemu_irq_disable();
    check("psr", pend, ivct, L_T1, 17, "E=0 T0 I=0 T1", -1);

    /* nested: a handler re-enables interrupts and is preempted */
    set_prios(3, 9, 7);
    reset_log();
    t0_mode = 1;
    aemu_irq_disable();
    arm(L_T0);
    pend = ICU_PEND;
    ivct = ICU_IVCT;
    aemu_irq_enable();
    aemu_irq_disable();
    check("nested", pend, ivct, L_T0, 16, "T0< T1 T0>", 2);

    /* unnested: the same handler without re-enabling */
    reset_log();
    t0_mode = 2;
    arm(L_T0);
    pend = ICU_PEND;
    ivct = ICU_IVCT;
    aemu_irq_enable();
    aemu_irq_disable();
    check("unnested", pend, ivct, L_T0, 16, "T0< T0> T1", 1);

    say("prio: %d cases, %d failed\n", cases, failures);
    return failures;
}
