/* aemu_board.h -- aemu's default board for firmware: register map of the
 * interrupt controller, timers, UART and watchdog (docs/board.md), the CPU's
 * interrupt controls, a dispatch table and an interrupt-driven UART0 driver.
 *
 * Build (in addition to the usual BSP files, see README.md):
 *
 *   cr16-elf-gcc -O2 -nostartfiles -T $BSP/aemu.ld -I$BSP \
 *       $BSP/crt0.S $BSP/syscalls.c $BSP/vectors.c $BSP/uart0.c prog.c
 *
 * vectors.c holds the dispatch table (aemu_vectors) and the default trap
 * handlers, uart0.c the UART0 driver.  Both only touch the devices when
 * called, so linking them costs nothing else.
 *
 * The devices live at 0x1400000, above the 16 MiB that abs24 addressing
 * reaches: every access goes through a pointer (gcc loads the address into
 * a register pair).  Registers are 16 bits wide, some 32 (marked); an access
 * of another width is a bus error (IAD trap), so use exactly these macros.
 * The board does not exist on the reference simulator (cr16-elf-run): there
 * every register access is a bus error.
 *
 * Interrupt handlers are C functions with AEMU_ISR
 * (__attribute__((interrupt))): gcc saves what they use and returns with
 * retx.  The CPU takes a maskable interrupt only while PSR.I and PSR.E are
 * both set; it clears PSR.I on entry (E stays), so handlers do not nest
 * unless one calls aemu_irq_enable() -- after clearing its own cause, since
 * the lines are level-sensitive and the ICU has no "in service" state.
 */
#ifndef AEMU_BOARD_H
#define AEMU_BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------- */
/* The board                                                               */
/* ---------------------------------------------------------------------- */

#define AEMU_CPU_HZ        100000000UL     /* default board; aemu --cpu-hz changes it */
#define AEMU_CYCLES_PER_US (AEMU_CPU_HZ / 1000000UL)

#define AEMU_REG16(addr)   (*(volatile uint16_t *)(uintptr_t)(addr))
#define AEMU_REG32(addr)   (*(volatile uint32_t *)(uintptr_t)(addr))

#define AEMU_ICU_BASE      0x01400000UL
#define AEMU_TIMER0_BASE   0x01400100UL
#define AEMU_TIMER1_BASE   0x01400200UL
#define AEMU_UART0_BASE    0x01400300UL
#define AEMU_WDT_BASE      0x01400400UL

/* Interrupt request lines; line n is CPU vector 16 + n. */
#define IRQ_TIMER0         0
#define IRQ_TIMER1         1
#define IRQ_UART0_RX       2
#define IRQ_UART0_TX       3
#define AEMU_NUM_IRQS      32
#define AEMU_IRQ_VECTOR(line) (16u + (unsigned)(line))

/* ---------------------------------------------------------------------- */
/* ICU -- interrupt controller                                             */
/* ---------------------------------------------------------------------- */

#define ICU_IVCT           AEMU_REG16(AEMU_ICU_BASE + 0x00) /* R: vector of the winner, 0 if none */
#define ICU_PEND           AEMU_REG32(AEMU_ICU_BASE + 0x04) /* R (32): bit n = line n up */
#define ICU_ENABLE         AEMU_REG32(AEMU_ICU_BASE + 0x08) /* RW (32): bit n = line n may interrupt */
#define ICU_NMISTAT        AEMU_REG16(AEMU_ICU_BASE + 0x0C) /* R, W1C */
#define ICU_PRIO2(k)       AEMU_REG16(AEMU_ICU_BASE + 0x20 + 2u * (k)) /* lines 2k (low byte), 2k+1 */
#define ICU_NMISTAT_WDT    0x0001u
#define ICU_PRIO_MAX       15

/* ---------------------------------------------------------------------- */
/* TIMER0 / TIMER1 -- down-counters at cpu_hz / (PRESCALE + 1)             */
/* First expiry (RELOAD + 1) * (PRESCALE + 1) cycles after the CTRL write  */
/* that enables it, then (periodic) every as many cycles.                  */
/* ---------------------------------------------------------------------- */

#define AEMU_TIMER_BASE(n) (AEMU_TIMER0_BASE + 0x100UL * (unsigned long)(n))
#define TIMER_CTRL(n)      AEMU_REG16(AEMU_TIMER_BASE(n) + 0x00)
#define TIMER_PRESCALE(n)  AEMU_REG16(AEMU_TIMER_BASE(n) + 0x02)
#define TIMER_RELOAD(n)    AEMU_REG32(AEMU_TIMER_BASE(n) + 0x04) /* 32 */
#define TIMER_COUNT(n)     AEMU_REG32(AEMU_TIMER_BASE(n) + 0x08) /* 32, R */
#define TIMER_STATUS(n)    AEMU_REG16(AEMU_TIMER_BASE(n) + 0x0C) /* R, W1C */

#define TIMER_CTRL_EN       0x0001u
#define TIMER_CTRL_PERIODIC 0x0002u
#define TIMER_CTRL_IE       0x0004u
#define TIMER_STATUS_EXP    0x0001u

#define TIMER0_CTRL        TIMER_CTRL(0)
#define TIMER0_PRESCALE    TIMER_PRESCALE(0)
#define TIMER0_RELOAD      TIMER_RELOAD(0)
#define TIMER0_COUNT       TIMER_COUNT(0)
#define TIMER0_STATUS      TIMER_STATUS(0)
#define TIMER1_CTRL        TIMER_CTRL(1)
#define TIMER1_PRESCALE    TIMER_PRESCALE(1)
#define TIMER1_RELOAD      TIMER_RELOAD(1)
#define TIMER1_COUNT       TIMER_COUNT(1)
#define TIMER1_STATUS      TIMER_STATUS(1)

/* ---------------------------------------------------------------------- */
/* UART0                                                                   */
/* ---------------------------------------------------------------------- */

#define UART0_DATA         AEMU_REG16(AEMU_UART0_BASE + 0x00) /* W: send low byte; R: oldest received */
#define UART0_STATUS       AEMU_REG16(AEMU_UART0_BASE + 0x02) /* R (reading clears OVR) */
#define UART0_CTRL         AEMU_REG16(AEMU_UART0_BASE + 0x04)
#define UART0_BAUD         AEMU_REG16(AEMU_UART0_BASE + 0x06) /* baud / 100; 0 = infinitely fast */

#define UART_STATUS_TXE    0x0001u   /* transmitter ready */
#define UART_STATUS_RXA    0x0002u   /* a received byte is waiting */
#define UART_STATUS_OVR    0x0004u   /* bytes were lost to a full FIFO */
#define UART_CTRL_TXIE     0x0001u
#define UART_CTRL_RXIE     0x0002u
#define UART_BAUD_DEFAULT  1152u     /* 115200 baud */
#define UART_BAUD_INSTANT  0u

/* ---------------------------------------------------------------------- */
/* WDT -- watchdog                                                         */
/* ---------------------------------------------------------------------- */

#define WDT_CTRL           AEMU_REG16(AEMU_WDT_BASE + 0x00)
#define WDT_TIMEOUT        AEMU_REG32(AEMU_WDT_BASE + 0x04) /* 32: cycles from a kick to expiry */
#define WDT_KICK           AEMU_REG16(AEMU_WDT_BASE + 0x08) /* W: 0x5A5A restarts the countdown */
#define WDT_STATUS         AEMU_REG16(AEMU_WDT_BASE + 0x0C) /* R, W1C; FIRED survives the reset */

#define WDT_CTRL_EN        0x0001u
#define WDT_CTRL_NMI       0x0002u   /* expiry raises an NMI instead of resetting */
#define WDT_KICK_VALUE     0x5A5Au
#define WDT_STATUS_FIRED   0x0001u

/* ---------------------------------------------------------------------- */
/* CPU: vectors, PSR, interrupt enables, wait                              */
/* ---------------------------------------------------------------------- */

#define AEMU_VEC_NMI       1
#define AEMU_VEC_SVC       5
#define AEMU_VEC_DVZ       6
#define AEMU_VEC_FLG       7
#define AEMU_VEC_BPT       8
#define AEMU_VEC_TRC       9
#define AEMU_VEC_UND       10
#define AEMU_VEC_IAD       12
#define AEMU_VEC_DBG       14
#define AEMU_VEC_ISE       15
#define AEMU_NUM_VECTORS   (16 + AEMU_NUM_IRQS)       /* 48 */

#define AEMU_PSR_E         0x0200u
#define AEMU_PSR_I         0x0800u

/* An interrupt or trap handler. */
#define AEMU_ISR           __attribute__((interrupt))
typedef void (*aemu_isr_t)(void);

/* The dispatch table (vectors.c): 48 four-byte entries (CFG.ED), which gcc
   stores as halved code addresses (.long f@c), as the CPU wants them.
   Traps 1..15 start with handlers that report on stderr and exit (see
   aemu_unhandled); vector 5 (svc) stays 0 -- it is a trap only when aemu
   runs with --svc guest, and then no host service could report it; IRQ
   vectors 16..47 start with a handler that reports the line and exits. */
extern aemu_isr_t aemu_vectors[AEMU_NUM_VECTORS];

/* INTBASE := aemu_vectors, CFG.ED := 1.  Interrupts stay as they were
   (off after reset: PSR = 0). */
void aemu_irq_install(void);

/* Put fn in the table (NULL: the default handler); returns the old one. */
aemu_isr_t aemu_set_handler(unsigned vector, aemu_isr_t fn);

/* Handler + priority + ICU enable bit for one line, and back. */
void aemu_irq_attach(unsigned line, aemu_isr_t fn, unsigned prio);
void aemu_irq_detach(unsigned line);

/* Report an unexpected trap or interrupt on stderr (host service write) --
   "aemu_board: unexpected trap IAD (vector 12) at pc 0x00012a" -- and
   _exit(128 + a signal number): IAD 139, UND 132, BPT/TRC/DBG/ISE 133,
   DVZ/FLG 136, NMI and interrupt lines 134.  For vectors 16..47 the line
   is named instead of the pc. */
void aemu_unhandled(unsigned vector) __attribute__((noreturn));

static inline uint16_t aemu_get_psr(void)
{
    uint16_t p;
    __asm__ volatile ("spr psr, %0" : "=r"(p) : : "memory");
    return p;
}

static inline void aemu_set_psr(uint16_t p)
{
    __asm__ volatile ("lpr %0, psr" : : "r"(p) : "memory", "cc");
}

/* Maskable interrupts on: PSR.I and PSR.E.  (I first by lpr psr, while E
   still masks; E by ei.) */
static inline void aemu_irq_enable(void)
{
    uint16_t p;
    __asm__ volatile ("spr psr, %0\n\torw $0x0800, %0\n\tlpr %0, psr\n\tei"
                      : "=&r"(p) : : "memory", "cc");
}

/* Maskable interrupts off: PSR.E (di) and then PSR.I.  NMIs still come. */
static inline void aemu_irq_disable(void)
{
    uint16_t p;
    __asm__ volatile ("di\n\tnop\n\tspr psr, %0\n\tandw $0xF5FF, %0\n\tlpr %0, psr"
                      : "=&r"(p) : : "memory", "cc");
}

static inline void aemu_di(void) { __asm__ volatile ("di\n\tnop" : : : "memory"); }
static inline void aemu_ei(void) { __asm__ volatile ("ei" : : : "memory"); }

/* Critical section: returns the PSR and clears E; restore sets E again if
   it was set.  Works in handlers too (where I is clear anyway). */
static inline uint16_t aemu_irq_save(void)
{
    uint16_t p = aemu_get_psr();
    aemu_di();
    return p;
}

static inline void aemu_irq_restore(uint16_t psr)
{
    if (psr & AEMU_PSR_E)
        aemu_ei();
}

/* Sleep until an interrupt (or NMI).  The CPU then takes it, if it may,
   and continues after the wait.  An idle guest costs aemu no host CPU. */
static inline void aemu_wait(void) { __asm__ volatile ("wait" : : : "memory"); }

/* Set PSR.E and sleep, in one instruction: the race-free way to sleep
   after checking a condition with E clear (see AEMU_WAIT_WHILE). */
static inline void aemu_eiwait(void) { __asm__ volatile ("eiwait" : : : "memory"); }

/* Sleep while cond holds, without missing the interrupt that changes it:
   cond is checked with E clear, and eiwait re-enables and sleeps at once.
   Needs PSR.I set (aemu_irq_enable); leaves E set. */
#define AEMU_WAIT_WHILE(cond)                                           \
    do {                                                                \
        aemu_di();                                                      \
        while (cond) {                                                  \
            aemu_eiwait();                                              \
            aemu_di();                                                  \
        }                                                               \
        aemu_ei();                                                      \
    } while (0)

/* ---------------------------------------------------------------------- */
/* ICU, timer and watchdog helpers                                         */
/* ---------------------------------------------------------------------- */

static inline void aemu_icu_set_prio(unsigned line, unsigned prio)
{
    volatile uint16_t *r = &ICU_PRIO2(line >> 1);
    uint16_t v = *r;
    if (line & 1u)
        v = (uint16_t)((v & 0x00FFu) | ((prio & 0xFFu) << 8));
    else
        v = (uint16_t)((v & 0xFF00u) | (prio & 0xFFu));
    *r = v;
}

static inline unsigned aemu_icu_get_prio(unsigned line)
{
    uint16_t v = ICU_PRIO2(line >> 1);
    return (line & 1u) ? (unsigned)(v >> 8) : (unsigned)(v & 0xFFu);
}

static inline void aemu_icu_enable_line(unsigned line)
{
    uint16_t psr = aemu_irq_save();
    ICU_ENABLE = ICU_ENABLE | (1UL << line);
    aemu_irq_restore(psr);
}

static inline void aemu_icu_disable_line(unsigned line)
{
    uint16_t psr = aemu_irq_save();
    ICU_ENABLE = ICU_ENABLE & ~(1UL << line);
    aemu_irq_restore(psr);
}

/* Stop timer n, clear EXP, load PRESCALE and RELOAD, start it with
   ctrl_flags (TIMER_CTRL_PERIODIC and/or TIMER_CTRL_IE; EN is added).
   The first expiry comes (reload + 1) * (prescale + 1) cycles after the
   final CTRL write. */
static inline void aemu_timer_start(unsigned n, uint32_t reload, uint16_t prescale,
                                    uint16_t ctrl_flags)
{
    TIMER_CTRL(n) = 0;
    TIMER_STATUS(n) = TIMER_STATUS_EXP;
    TIMER_PRESCALE(n) = prescale;
    TIMER_RELOAD(n) = reload;
    TIMER_CTRL(n) = (uint16_t)(ctrl_flags | TIMER_CTRL_EN);
}

static inline void aemu_timer_stop(unsigned n)
{
    TIMER_CTRL(n) = 0;
    TIMER_STATUS(n) = TIMER_STATUS_EXP;
}

/* In a timer handler: clear the cause (lowers the line). */
static inline void aemu_timer_ack(unsigned n) { TIMER_STATUS(n) = TIMER_STATUS_EXP; }

static inline void aemu_wdt_kick(void) { WDT_KICK = WDT_KICK_VALUE; }

/* ---------------------------------------------------------------------- */
/* UART0 driver (uart0.c)                                                  */
/* ---------------------------------------------------------------------- */

/* Polled: busy-wait on STATUS.TXE / STATUS.RXA.  Work with interrupts in
   any state, also inside handlers. */
void aemu_uart_poll_putc(int c);
void aemu_uart_poll_write(const void *buf, size_t n);
void aemu_uart_poll_puts(const char *s);          /* no newline added */
int aemu_uart_poll_getc(void);                    /* -1 if nothing waiting */

/* Interrupt-driven: attaches the TX (line 3) and RX (line 2) handlers with
   the given priority, enables RX interrupts, and from then on
   aemu_uart_putc/write go through a 512-byte ring that the TX interrupt
   drains (TXIE is on only while the ring holds data).  Call
   aemu_irq_install() first and aemu_irq_enable() after.  A writer that
   finds the ring full sleeps (eiwait) if interrupts are on, else (inside a
   handler, or with interrupts off) moves bytes to the UART itself by
   polling -- output is never lost and never reordered. */
void aemu_uart_irq_init(unsigned prio);

/* Received bytes: with a callback, each byte is handed to it inside the RX
   handler (interrupt context); without one (NULL, the default) they go to
   a 64-byte ring that aemu_uart_getc() reads. */
void aemu_uart_set_rx_callback(void (*cb)(uint8_t byte));
int aemu_uart_getc(void);                          /* -1 if the ring is empty */

/* Before aemu_uart_irq_init these are the polled versions. */
void aemu_uart_putc(int c);
void aemu_uart_write(const void *buf, size_t n);
void aemu_uart_puts(const char *s);                /* no newline added */
int aemu_uart_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wait until everything written has left the UART (ring empty, TXE). */
void aemu_uart_flush(void);

/* stdout and stderr (stdio) to UART0 through aemu_uart_write, line
   buffered; exit() flushes them and the ring.  Returns 0, -1 on failure. */
int aemu_uart_stdio(void);

/* Counters kept by the driver. */
extern volatile uint32_t aemu_uart_rx_count;       /* bytes received by the RX handler */
extern volatile uint32_t aemu_uart_irq_count;      /* TX + RX handler entries */
extern volatile uint16_t aemu_uart_overruns;       /* STATUS reads that showed OVR */
extern volatile uint16_t aemu_uart_rx_dropped;     /* bytes lost to a full RX ring */

#ifdef __cplusplus
}
#endif

#endif /* AEMU_BOARD_H */
