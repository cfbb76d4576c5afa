/* heap.c -- malloc/calloc/realloc/free under stress: blocks of random
 * sizes filled with a pattern derived from their slot, random frees and
 * reallocs (growing and shrinking, contents must survive), a final check
 * of every live block, and on CR16 a run of the heap into its limit (the
 * BSP's _sbrk must fail cleanly with ENOMEM, after which freed memory is
 * usable again).  Note: newlib's malloc on a 16-bit-int target refuses
 * single requests close to INT_MAX (32767 bytes), so blocks stay small. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "fw.h"

#define SLOTS 64
static uint8_t *blk[SLOTS];
static uint16_t len[SLOTS];

#define pat(slot, i) ((uint8_t)((slot) * 37u + (i) * 11u + ((i) >> 8)))

static void fill(unsigned slot)
{
    unsigned i;
    for (i = 0; i < len[slot]; i++)
        blk[slot][i] = pat(slot, i);
}

static int check(unsigned slot, unsigned n)
{
    unsigned i;
    for (i = 0; i < n; i++)
        if (blk[slot][i] != pat(slot, i))
            return 0;
    return 1;
}

int main(void)
{
    uint32_t s = 2024;
    unsigned round, slot, bad = 0, live = 0, misaligned = 0;
    uint32_t allocs = 0, frees = 0, reallocs = 0, total = 0;

    for (round = 0; round < 300; round++) {
        uint32_t r = xs32(&s);
        slot = r % SLOTS;
        if (!blk[slot]) {
            len[slot] = (uint16_t)(1 + (r >> 8) % ((r >> 20) % 4 == 0 ? 800 : 80));
            blk[slot] = (r >> 6) % 3 == 0 ? calloc(len[slot], 1) : malloc(len[slot]);
            if (!blk[slot]) {
                printf("allocation of %u failed\n", len[slot]);
                return 1;
            }
            if (((uintptr_t)blk[slot] & 3) != 0)
                misaligned++;
            if ((r >> 6) % 3 == 0) {
                unsigned i;
                for (i = 0; i < len[slot]; i++)
                    if (blk[slot][i] != 0)
                        bad++;
            }
            fill(slot);
            allocs++;
        } else if ((r >> 12) % 4 == 0) {
            uint16_t nl = (uint16_t)(1 + (r >> 14) % 600);
            uint16_t keep = nl < len[slot] ? nl : len[slot];
            uint8_t *p = realloc(blk[slot], nl);
            if (!p) {
                printf("realloc to %u failed\n", nl);
                return 1;
            }
            blk[slot] = p;
            if (!check(slot, keep))
                bad++;
            len[slot] = nl;
            fill(slot);
            reallocs++;
        } else {
            if (!check(slot, len[slot]))
                bad++;
            free(blk[slot]);
            blk[slot] = NULL;
            frees++;
        }
    }
    for (slot = 0; slot < SLOTS; slot++)
        if (blk[slot]) {
            live++;
            total += len[slot];
            if (!check(slot, len[slot]))
                bad++;
        }
    printf("allocs %lu frees %lu reallocs %lu live %u bytes %lu\n", (unsigned long)allocs,
           (unsigned long)frees, (unsigned long)reallocs, live, (unsigned long)total);
    printf("corrupted blocks: %u, misaligned: %u\n", bad, misaligned);

    /* realloc(NULL) is malloc, realloc to a larger size keeps the data. */
    {
        char *p = realloc(NULL, 10);
        strcpy(p, "heap test");
        p = realloc(p, 5000);
        printf("after realloc: %s\n", p);
        free(p);
        free(NULL);
    }

    for (slot = 0; slot < SLOTS; slot++) {
        free(blk[slot]);
        blk[slot] = NULL;
    }

#ifdef __CR16__
    /* Exhaust the heap in 16000-byte steps; the host has no such limit, so
       only the outcome is printed. */
    {
        void **chain = NULL, **p;
        uint32_t got = 0;
        int err;
        errno = 0;
        while ((p = malloc(16000)) != NULL) {
            *p = chain;
            chain = p;
            got += 16000;
        }
        err = errno;
        while (chain) {
            p = *chain;
            free(chain);
            chain = p;
        }
        p = malloc(20000);
        printf("heap limit reached cleanly: %s\n",
               got >= 1000000 && err == ENOMEM && p != NULL ? "yes" : "NO");
        free(p);
    }
#else
    printf("heap limit reached cleanly: yes\n");
#endif
    return 0;
}
