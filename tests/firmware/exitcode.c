/* exitcode.c -- exit(3) with output still in stdio's buffers: exit must
 * run the atexit handlers (in reverse order of registration), flush stdout
 * and report status 3 (expected/exitcode.status). */
#include <stdlib.h>
#include "fw.h"

static void first(void) { printf("atexit: registered first, runs last\n"); }
static void second(void) { printf("atexit: registered second, runs first\n"); }

int main(void)
{
    static char buf[256];
    int i;
    setvbuf(stdout, buf, _IOFBF, sizeof buf);     /* fully buffered */
    atexit(first);
    atexit(second);
    for (i = 1; i <= 5; i++)
        printf("line %d of output before exit\n", i);
    printf("no newline at the end, flushed by exit");
    exit(3);
}
