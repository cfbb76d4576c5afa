/* ctors.c -- constructors and destructors with and without priorities,
 * and their order relative to main and to atexit handlers (the BSP runs
 * .ctors/.init_array itself and registers the destructors with atexit
 * before main, like crt1 does).  Constructors see initialised .data and
 * zeroed .bss. */
#include <stdlib.h>
#include "fw.h"

static int data_value = 1234;
static int bss_value;
static int order;

__attribute__((constructor)) static void c_default(void)
{
    printf("constructor (default priority), step %d\n", ++order);
}

__attribute__((constructor(101))) static void c_101(void)
{
    printf("constructor 101 runs first: data %d bss %d, step %d\n", data_value, bss_value,
           ++order);
    bss_value = 5;
}

__attribute__((constructor(300))) static void c_300(void)
{
    printf("constructor 300, bss now %d, step %d\n", bss_value, ++order);
}

__attribute__((destructor)) static void d_default(void)
{
    printf("destructor (default priority), step %d\n", ++order);
}

__attribute__((destructor(101))) static void d_101(void)
{
    printf("destructor 101 runs last, step %d\n", ++order);
}

static void at_exit(void)
{
    printf("atexit handler, step %d\n", ++order);
}

int main(void)
{
    printf("main, step %d\n", ++order);
    atexit(at_exit);
    return 0;
}
