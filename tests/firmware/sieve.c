/* sieve.c -- sieve of Eratosthenes up to 20000 over a bit array (in .bss),
 * counting primes, twin primes, the largest prime gap, and summing them;
 * then a check of some of the results by (16-bit) trial division. */
#include "fw.h"

#define LIMIT 20000u
static uint16_t composite[LIMIT / 16 + 1];      /* bit i set: i is composite */

#define IS_COMPOSITE(i) (composite[(i) >> 4] & (1u << ((i) & 15)))

static int is_prime_trial(uint16_t n)
{
    uint16_t d;
    if (n < 2)
        return 0;
    for (d = 2; (uint32_t)d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

int main(void)
{
    uint16_t i, j;
    uint16_t count = 0, twins = 0, gap = 0, gap_at = 0, prev = 0;
    uint32_t sum = 0;
    uint16_t last[10];
    int k, bad = 0;

    composite[0] = 3;                               /* 0 and 1 */
    for (i = 2; (uint32_t)i * i < LIMIT; i++)
        if (!IS_COMPOSITE(i))
            for (j = (uint16_t)(i * i); j < LIMIT; j = (uint16_t)(j + i))
                composite[j >> 4] |= (uint16_t)(1u << (j & 15));

    for (i = 2; i < LIMIT; i++) {
        if (IS_COMPOSITE(i))
            continue;
        count++;
        sum += i;
        last[count % 10] = i;
        if (prev && i - prev == 2)
            twins++;
        if (prev && i - prev > gap) {
            gap = (uint16_t)(i - prev);
            gap_at = prev;
        }
        prev = i;
    }
    printf("primes below %u: %u, sum %lu, twin pairs %u\n", LIMIT, count, (unsigned long)sum, twins);
    printf("largest gap %u after %u\n", gap, gap_at);
    printf("last ten:");
    for (k = 1; k <= 10; k++)
        printf(" %u", last[(count + k) % 10]);
    printf("\n");

    for (i = 19001; i < LIMIT; i += 94)
        if ((!IS_COMPOSITE(i)) != is_prime_trial(i))
            bad++;
    printf("trial division agrees: %s\n", bad ? "NO" : "yes");
    printf("is 10007 prime: %d, 65521: %d\n", is_prime_trial(10007),
           is_prime_trial(65521));
    return 0;
}
