/* setjmp.c -- setjmp/longjmp: plain, from deep recursion, with value 0
 * (which setjmp must turn into 1), nested handlers, volatile locals that
 * survive the jump, and an error-handling pattern. */
#include <setjmp.h>
#include <string.h>
#include "fw.h"

static jmp_buf top, inner;
static int depth_reached;
static volatile int last_jump;

static void dive(int depth, int target)
{
    char pad[32];
    if (depth > 10000)
        return;
    memset(pad, depth, sizeof pad);
    depth_reached = depth;
    if (depth >= target) {
        last_jump = depth * 10 + pad[5] % 7;
        longjmp(top, last_jump);
    }
    dive(depth + 1, target);
}

static int checked_div(int32_t a, int32_t b, int32_t *out)
{
    if (b == 0)
        longjmp(inner, 42);
    *out = a / b;
    return 0;
}

static int div_errors;

static int32_t safe_divs(const int32_t *a, const int32_t *b, int n)
{
    volatile int32_t sum = 0;
    volatile int i = 0, errs = 0;
    for (; i < n; i++) {
        int32_t q;
        if (setjmp(inner) == 0) {
            checked_div(a[i], b[i], &q);
            sum += q;
        } else {
            errs++;
        }
    }
    div_errors = errs;
    return sum;
}

/* setjmp may only be used in the contexts C11 7.13.1.1 allows (the whole
   controlling expression of a selection statement, a comparison with a
   constant, an expression statement), so the returned value is checked
   with switch statements rather than assigned. */
int main(void)
{
    volatile int rounds = 0;
    static const int32_t a[] = { 100, 7, -50, 9, 1000000, 3 };
    static const int32_t b[] = { 3, 0, 5, 0, -7, 1 };
    int32_t s;

    switch (setjmp(top)) {
    case 0:
        printf("setjmp returned 0\n");
        break;
    case 254: case 501: case 755: case 1002:
        printf("setjmp returned %d (round %d)\n", last_jump, rounds);
        break;
    default:
        printf("setjmp returned an unexpected value (round %d)\n", rounds);
        break;
    }
    if (rounds < 4) {
        rounds++;
        dive(1, rounds * 25);
    }
    printf("depth reached %d\n", depth_reached);

    switch (setjmp(top)) {
    case 0:
        longjmp(top, 0);               /* must come back as 1 */
    case 1:
        printf("longjmp(0) gives 1\n");
        break;
    default:
        printf("longjmp(0) gives neither 0 nor 1\n");
        break;
    }

    s = safe_divs(a, b, 6);
    printf("safe_divs sum %ld errors %d\n", (long)s, div_errors);

    {
        jmp_buf saved;
        volatile int stage = 0;
        memcpy(saved, top, sizeof saved);
        if (setjmp(top) == 0) {
            stage = 1;
            if (setjmp(inner) == 0) {
                stage = 2;
                longjmp(inner, 5);
            }
            stage += 10;
            longjmp(top, 7);
        }
        printf("nested stages %d\n", stage);
        memcpy(top, saved, sizeof saved);
    }
    return 0;
}
