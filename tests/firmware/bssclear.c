/* bssclear.c -- the BSP's crt0 clears .bss itself.  On CR16 the program
 * first fills its whole .bss (__BSS_START .. __BSS_END from aemu.ld) with
 * garbage and starts over at _start (whose C name is `start`); the second
 * time main runs, every .bss variable must be zero again while .data keeps
 * what was written to it.  The host build just checks its zeroed .bss. */
#include <string.h>
#include "fw.h"

static uint32_t zeros[300];              /* .bss */
static uint16_t small_zero;              /* .bss */
static char big_zero[5000];              /* .bss */
static int restarts = 100;               /* .data, survives the restart */
static const char greeting[] = "bss clear";

#ifdef __CR16__
extern char _BSS_START[], _BSS_END[];    /* __BSS_START, __BSS_END */
extern void start(void);                 /* _start */
#endif

int main(void)
{
    unsigned i, nonzero = 0;
#ifdef __CR16__
    if (restarts == 100) {               /* first run: nothing printed yet */
        restarts = 101;
        memset(_BSS_START, 0xA5, (size_t)(_BSS_END - _BSS_START));
        start();                         /* does not return */
    }
#else
    restarts = 101;
#endif
    for (i = 0; i < sizeof zeros / sizeof zeros[0]; i++)
        if (zeros[i])
            nonzero++;
    for (i = 0; i < sizeof big_zero; i++)
        if (big_zero[i])
            nonzero++;
    if (small_zero)
        nonzero++;
    printf("%s: %u non-zero bytes/words, restarts %d\n", greeting, nonzero, restarts - 100);
    zeros[7] = 7;
    small_zero = 1;
    return 0;
}
