/* recursion.c -- deep and branching recursion: Ackermann, Fibonacci,
 * Towers of Hanoi, mutual recursion, a recursive-descent expression
 * evaluator, permutations, and a deep recursion with a stack frame that
 * uses a local array (about 70 KiB of stack in total). */
#include <string.h>
#include "fw.h"

static uint32_t calls;

__attribute__((noinline)) uint16_t ack(uint16_t m, uint16_t n)
{
    calls++;
    if (m == 0)
        return (uint16_t)(n + 1);
    if (n == 0)
        return ack((uint16_t)(m - 1), 1);
    return ack((uint16_t)(m - 1), ack(m, (uint16_t)(n - 1)));
}

__attribute__((noinline)) uint32_t fib(uint16_t n)
{
    calls++;
    return n < 2 ? n : fib((uint16_t)(n - 1)) + fib((uint16_t)(n - 2));
}

static uint32_t hanoi_hash;
static uint16_t moves;

static void hanoi(int n, char from, char to, char via)
{
    if (n == 0)
        return;
    hanoi(n - 1, from, via, to);
    moves++;
    hanoi_hash = mix32(hanoi_hash, (uint32_t)(n << 8 | (from - 'A') << 4 | (to - 'A')));
    hanoi(n - 1, via, to, from);
}

static int is_odd(uint16_t n);
static int is_even(uint16_t n) { return n == 0 ? 1 : is_odd((uint16_t)(n - 1)); }
static int is_odd(uint16_t n) { return n == 0 ? 0 : is_even((uint16_t)(n - 1)); }

/* expr := term (('+'|'-') term)* ; term := factor (('*'|'/'|'%') factor)* ;
   factor := number | '-' factor | '(' expr ')' */
static const char *src;
static int32_t expr(void);

static int32_t factor(void)
{
    int32_t v = 0;
    if (*src == '(') {
        src++;
        v = expr();
        src++;                          /* ')' */
    } else if (*src == '-') {
        src++;
        v = -factor();
    } else {
        while (*src >= '0' && *src <= '9')
            v = v * 10 + (*src++ - '0');
    }
    return v;
}

static int32_t term(void)
{
    int32_t v = factor();
    for (;;) {
        char op = *src;
        int32_t r;
        if (op != '*' && op != '/' && op != '%')
            return v;
        src++;
        r = factor();
        v = op == '*' ? v * r : op == '/' ? v / r : v % r;
    }
}

static int32_t expr(void)
{
    int32_t v = term();
    while (*src == '+' || *src == '-') {
        char op = *src++;
        int32_t r = term();
        v = op == '+' ? v + r : v - r;
    }
    return v;
}

/* All permutations of a small array (Heap's algorithm, recursive). */
static uint16_t perm_count;
static uint32_t perm_hash;

static void permute(char *a, int k)
{
    int i;
    if (k == 1) {
        perm_count++;
        perm_hash = mix32(perm_hash, (uint32_t)a[0] | (uint32_t)a[1] << 8 |
                                     (uint32_t)a[2] << 16 | (uint32_t)a[3] << 24);
        perm_hash = mix32(perm_hash, (uint32_t)a[4] | (uint32_t)a[5] << 8);
        return;
    }
    for (i = 0; i < k; i++) {
        char t;
        permute(a, k - 1);
        if (k % 2 == 0) {
            t = a[i]; a[i] = a[k - 1]; a[k - 1] = t;
        } else {
            t = a[0]; a[0] = a[k - 1]; a[k - 1] = t;
        }
    }
}

/* Each level keeps a 64-byte local array live across the recursive call. */
__attribute__((noinline)) uint32_t deep(uint16_t depth, uint32_t acc)
{
    uint8_t local[64];
    uint32_t r;
    unsigned i;
    for (i = 0; i < sizeof local; i++)
        local[i] = (uint8_t)(depth + i);
    if (depth == 0)
        return acc;
    r = deep((uint16_t)(depth - 1), mix32(acc, depth));
    for (i = 0; i < sizeof local; i += 8)
        r = mix32(r, local[i]);
    return r;
}

int main(void)
{
    static const char *exprs[] = {
        "1+2*3", "(1+2)*3", "100/7%3", "-(5-12)*-3", "2*(3+(4-1)*2)-7",
        "1000000/-7", "((((((1))))))+((2))", "65536*16384/1024", "-2147483647-1+0",
    };
    unsigned i;

    {
        uint16_t a1, a2, a3;
        uint32_t f;
        calls = 0;
        a1 = ack(2, 3);
        a2 = ack(3, 3);
        a3 = ack(3, 4);
        printf("ack(2,3)=%u ack(3,3)=%u ack(3,4)=%u calls=%lu\n", a1, a2, a3,
               (unsigned long)calls);
        calls = 0;
        f = fib(18);
        printf("fib(18)=%lu calls=%lu\n", (unsigned long)f, (unsigned long)calls);
    }

    hanoi(10, 'A', 'C', 'B');
    printf("hanoi(10): %u moves, hash %08lx\n", moves, (unsigned long)hanoi_hash);

    printf("is_even(1001)=%d is_odd(777)=%d\n", is_even(1001), is_odd(777));

    for (i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        src = exprs[i];
        printf("%s = %ld\n", exprs[i], (long)expr());
    }

    {
        char a[7] = "ABCDEF";
        permute(a, 6);
        printf("permutations: %u hash %08lx final %s\n", perm_count, (unsigned long)perm_hash, a);
    }

    printf("deep(800) = %08lx\n", (unsigned long)deep(800, 1));
    return 0;
}
