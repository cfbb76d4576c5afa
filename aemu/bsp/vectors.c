/* vectors.c -- dispatch table and default trap handlers of the aemu BSP
 * (see aemu_board.h).
 *
 * The CPU finds the handler of vector v at INTBASE + 4 v (CFG.ED = 1), as a
 * halved code address: exactly what gcc stores for a C function pointer
 * (.long f@c), so the table is a plain array of function pointers.  The
 * exception frame (PSR at ISP, the halved return address at ISP + 2) is on
 * the interrupt stack; handlers run on the interrupted code's stack.
 */
#include <stdint.h>

#include "aemu_board.h"

int _write(int fd, const void *buf, size_t n);
void _exit(int status) __attribute__((noreturn));

static const char *const trap_names[16] = {
    "reserved", "NMI", "reserved", "reserved", "reserved", "SVC", "DVZ", "FLG",
    "BPT", "TRC", "UND", "reserved", "IAD", "reserved", "DBG", "ISE",
};

/* 128 + the POSIX signal a native program would die of (as aemu's own
   fault statuses: IAD -> SIGSEGV 139, UND -> SIGILL 132, BPT -> SIGTRAP
   133, DVZ -> SIGFPE 136); NMI and stray interrupts -> SIGABRT 134. */
static int trap_status(unsigned vector)
{
    switch (vector) {
    case AEMU_VEC_IAD: return 139;
    case AEMU_VEC_UND: return 132;
    case AEMU_VEC_DVZ: case AEMU_VEC_FLG: return 136;
    case AEMU_VEC_BPT: case AEMU_VEC_TRC: case AEMU_VEC_DBG: case AEMU_VEC_ISE: return 133;
    default: return 134;
    }
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_dec(char *p, unsigned v)
{
    char tmp[6];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *put_hex(char *p, uint32_t v, int digits)
{
    while (digits--)
        *p++ = "0123456789abcdef"[(v >> (4 * digits)) & 0xFu];
    return p;
}

void aemu_unhandled(unsigned vector)
{
    char msg[96], *p = msg;
    uint32_t isp, ret;
    aemu_di();
    if (vector == AEMU_VEC_NMI)     /* the board's NMI source: stop it, so */
        WDT_CTRL = 0;               /* that it cannot interrupt the report */
    __asm__ volatile ("sprd isp, %0" : "=r"(isp));
    /* the frame of the exception being handled: PSR, then the halved
       return address (unaligned 32-bit load: fine on the CR16C) */
    ret = *(const volatile uint32_t *)(uintptr_t)(isp + 2u);
    p = put_str(p, "aemu_board: ");
    if (vector >= 16u) {
        p = put_str(p, "interrupt on line ");
        p = put_dec(p, vector - 16u);
        p = put_str(p, " (vector ");
        p = put_dec(p, vector);
        p = put_str(p, ") has no handler");
    } else {
        p = put_str(p, "unexpected trap ");
        p = put_str(p, trap_names[vector]);
        p = put_str(p, " (vector ");
        p = put_dec(p, vector);
        p = put_str(p, ")");
    }
    p = put_str(p, " at pc 0x");
    p = put_hex(p, (ret << 1) & 0xFFFFFFu, 6);
    *p++ = '\n';
    _write(2, msg, (size_t)(p - msg));
    _exit(trap_status(vector));
}

#define TRAP(n) static void AEMU_ISR trap_##n(void) { aemu_unhandled(n); }
TRAP(0) TRAP(1) TRAP(2) TRAP(3) TRAP(4) TRAP(6) TRAP(7) TRAP(8) TRAP(9)
TRAP(10) TRAP(11) TRAP(12) TRAP(13) TRAP(14) TRAP(15)
#undef TRAP

/* A line that interrupts without a handler: the ICU names the winner. */
static void AEMU_ISR stray_irq(void)
{
    unsigned v = ICU_IVCT;
    aemu_unhandled(v >= 16u ? v : 16u);
}

#define S stray_irq
aemu_isr_t aemu_vectors[AEMU_NUM_VECTORS] __attribute__((aligned(4))) = {
    trap_0, trap_1, trap_2, trap_3, trap_4, 0 /* svc */, trap_6, trap_7,
    trap_8, trap_9, trap_10, trap_11, trap_12, trap_13, trap_14, trap_15,
    S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
    S, S, S, S, S, S, S, S, S, S, S, S, S, S, S, S,
};
#undef S

static aemu_isr_t default_handler(unsigned vector)
{
    static const aemu_isr_t traps[16] = {
        trap_0, trap_1, trap_2, trap_3, trap_4, 0, trap_6, trap_7,
        trap_8, trap_9, trap_10, trap_11, trap_12, trap_13, trap_14, trap_15,
    };
    return vector < 16u ? traps[vector] : stray_irq;
}

void aemu_irq_install(void)
{
    uint32_t base = (uint32_t)(uintptr_t)aemu_vectors;
    uint16_t cfg;
    __asm__ volatile ("spr cfg, %0\n\torw $0x100, %0\n\tlpr %0, cfg"
                      : "=&r"(cfg) : : "memory");
    __asm__ volatile ("lprd %0, intbase" : : "r"(base) : "memory");
}

aemu_isr_t aemu_set_handler(unsigned vector, aemu_isr_t fn)
{
    aemu_isr_t old;
    uint16_t psr;
    if (vector >= AEMU_NUM_VECTORS)
        return 0;
    if (!fn)
        fn = default_handler(vector);
    psr = aemu_irq_save();
    old = aemu_vectors[vector];
    aemu_vectors[vector] = fn;
    aemu_irq_restore(psr);
    return old;
}

void aemu_irq_attach(unsigned line, aemu_isr_t fn, unsigned prio)
{
    if (line >= AEMU_NUM_IRQS)
        return;
    aemu_set_handler(AEMU_IRQ_VECTOR(line), fn);
    aemu_icu_set_prio(line, prio);
    aemu_icu_enable_line(line);
}

void aemu_irq_detach(unsigned line)
{
    if (line >= AEMU_NUM_IRQS)
        return;
    aemu_icu_disable_line(line);
    aemu_set_handler(AEMU_IRQ_VECTOR(line), 0);
}
