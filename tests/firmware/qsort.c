/* qsort.c -- qsort with comparison functions on int32 values, structs
 * (two keys, so the order is total and the result does not depend on the
 * library's algorithm), and strings; bsearch; a hand-written merge sort
 * checked against qsort.  Data from a 32-bit LCG (Numerical Recipes
 * constants), which also exercises 32-bit multiplication. */
#include <stdlib.h>
#include <string.h>
#include "fw.h"

#define N 400

static uint32_t lcg_state = 1;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state;
}

static int32_t v[N], w[N], tmp[N];

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i32_desc(const void *a, const void *b) { return cmp_i32(b, a); }

struct rec { uint16_t key; int32_t val; };

static int cmp_rec(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->val > y->val) - (x->val < y->val);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void msort(int32_t *a, int n)
{
    int mid, i, j, k;
    if (n < 2)
        return;
    mid = n / 2;
    msort(a, mid);
    msort(a + mid, n - mid);
    for (i = 0, j = mid, k = 0; k < n; k++)
        tmp[k] = (j >= n || (i < mid && a[i] <= a[j])) ? a[i++] : a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

int main(void)
{
    int i, sorted = 1, same = 1;
    uint32_t h = 0;
    static struct rec recs[200];
    static const char *words[] = { "pear", "apple", "fig", "banana", "cherry", "date",
                                   "elderberry", "grape", "apricot", "kiwi", "lemon", "lime",
                                   "mango", "nectarine", "orange", "papaya", "quince", "fig" };
    const size_t nw = sizeof words / sizeof words[0];
    const char *sw[sizeof words / sizeof words[0]];

    for (i = 0; i < N; i++)
        v[i] = w[i] = (int32_t)(lcg() >> 8) - 0x800000;
    printf("first values: %ld %ld %ld, lcg state %08lx\n", (long)v[0], (long)v[1], (long)v[2],
           (unsigned long)lcg_state);

    qsort(v, N, sizeof v[0], cmp_i32);
    for (i = 1; i < N; i++)
        if (v[i - 1] > v[i])
            sorted = 0;
    msort(w, N);
    for (i = 0; i < N; i++) {
        if (v[i] != w[i])
            same = 0;
        h = mix32(h, (uint32_t)v[i]);
    }
    printf("sorted %d, mergesort agrees %d, hash %08lx\n", sorted, same, (unsigned long)h);
    printf("min %ld median %ld max %ld\n", (long)v[0], (long)v[N / 2], (long)v[N - 1]);

    {
        int32_t key = v[123], missing = v[10] + 1;
        int32_t *hit = bsearch(&key, v, N, sizeof v[0], cmp_i32);
        while (missing == v[11])
            missing++;
        printf("bsearch hit %d, missing found %d\n", hit != NULL && *hit == key,
               bsearch(&missing, v, N, sizeof v[0], cmp_i32) != NULL);
    }

    qsort(v, N, sizeof v[0], cmp_i32_desc);
    printf("descending: %ld %ld ... %ld\n", (long)v[0], (long)v[1], (long)v[N - 1]);

    for (i = 0; i < 200; i++) {
        uint32_t r = lcg();
        recs[i].key = (uint16_t)(r >> 28);        /* many equal keys */
        recs[i].val = (int32_t)(r & 0xFFFFF) - 500000;
    }
    qsort(recs, 200, sizeof recs[0], cmp_rec);
    h = 0;
    for (i = 0; i < 200; i++)
        h = mix32(mix32(h, recs[i].key), (uint32_t)recs[i].val);
    printf("records: first (%u,%ld) last (%u,%ld) hash %08lx\n", recs[0].key, (long)recs[0].val,
           recs[199].key, (long)recs[199].val, (unsigned long)h);

    memcpy(sw, words, sizeof words);
    qsort(sw, nw, sizeof sw[0], cmp_str);
    for (i = 0; i < (int)nw; i++)
        printf("%s%c", sw[i], i + 1 < (int)nw ? ' ' : '\n');
    return 0;
}
