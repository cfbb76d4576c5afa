/* funcptr.c -- function pointers (arrays of them, in structs, returned from
 * functions, passed as callbacks) and dense switch statements that gcc
 * compiles to jump tables (halved .long Lx@c entries on CR16). */
#include "fw.h"

typedef int32_t (*binop)(int32_t, int32_t);

static int32_t op_add(int32_t a, int32_t b) { return a + b; }
static int32_t op_sub(int32_t a, int32_t b) { return a - b; }
static int32_t op_mul(int32_t a, int32_t b) { return a * b; }
static int32_t op_div(int32_t a, int32_t b) { return b ? a / b : 0; }
static int32_t op_and(int32_t a, int32_t b) { return a & b; }
static int32_t op_max(int32_t a, int32_t b) { return a > b ? a : b; }

static const binop table[] = { op_add, op_sub, op_mul, op_div, op_and, op_max };
static const char *const names[] = { "add", "sub", "mul", "div", "and", "max" };

struct shape {
    const char *name;
    int32_t (*area)(const struct shape *);
    int32_t w, h;
};

static int32_t rect_area(const struct shape *s) { return s->w * s->h; }
static int32_t tri_area(const struct shape *s) { return s->w * s->h / 2; }
static int32_t square_area(const struct shape *s) { return s->w * s->w; }

static binop pick(char c)
{
    switch (c) {
    case '+': return op_add;
    case '-': return op_sub;
    case '*': return op_mul;
    default: return op_max;
    }
}

static int32_t fold(const int32_t *v, int n, binop f, int32_t init)
{
    int i;
    for (i = 0; i < n; i++)
        init = f(init, v[i]);
    return init;
}

/* A dense switch with 24 cases: gcc emits a jump table. */
__attribute__((noinline)) uint32_t dense(uint16_t k, uint32_t x)
{
    switch (k) {
    case 0: return x + 1;
    case 1: return x * 3;
    case 2: return x ^ 0x5555;
    case 3: return x << 3;
    case 4: return x >> 2;
    case 5: return ~x;
    case 6: return x - 1000;
    case 7: return x | 0x80000000u;
    case 8: return x & 0xFFFF;
    case 9: return x * x;
    case 10: return x + 0x10000;
    case 11: return (x << 16) | (x >> 16);
    case 12: return x / 3;
    case 13: return x % 1000;
    case 14: return x ^ (x >> 7);
    case 15: return 15;
    case 16: return x + x;
    case 17: return x - (x >> 1);
    case 18: return x * 7 + 3;
    case 19: return x & 0xF0F0F0F0u;
    case 20: return x | 1;
    case 21: return 0;
    case 22: return x ^ 0xFFFFFFFFu;
    case 23: return x + 23;
    default: return 0xDEADBEEFu;
    }
}

/* A state machine whose next state comes from a switch on a char. */
static int count_numbers(const char *s)
{
    enum { OUT, INT, FRAC } st = OUT;
    int n = 0;
    for (;; s++) {
        char c = *s;
        switch (st) {
        case OUT:
            if (c >= '0' && c <= '9') { st = INT; n++; }
            break;
        case INT:
            if (c == '.') st = FRAC;
            else if (c < '0' || c > '9') st = OUT;
            break;
        case FRAC:
            if (c < '0' || c > '9') st = OUT;
            break;
        }
        if (c == '\0')
            return n;
    }
}

static void (*callback)(const char *);
static int called;
static void hello(const char *who) { printf("hello, %s\n", who); called++; }
static void bye(const char *who) { printf("bye, %s\n", who); called += 10; }

int main(void)
{
    static const int32_t v[] = { 12, -5, 1000, 7, -3, 44 };
    unsigned i;
    uint16_t k;
    uint32_t h = 0;
    struct shape shapes[] = {
        { "rect", rect_area, 300, 400 },
        { "tri", tri_area, 1001, 30 },
        { "square", square_area, 2000, 0 },
    };

    for (i = 0; i < sizeof table / sizeof table[0]; i++)
        printf("%s: %ld %ld fold=%ld\n", names[i], (long)table[i](1000, 7),
               (long)table[i](-50000, 123), (long)fold(v, 6, table[i], 1));
    printf("pick: %ld %ld %ld %ld\n", (long)pick('+')(3, 4), (long)pick('-')(3, 4),
           (long)pick('*')(3, 4), (long)pick('?')(3, 4));

    for (i = 0; i < 3; i++)
        printf("%s area %ld\n", shapes[i].name, (long)shapes[i].area(&shapes[i]));

    for (k = 0; k < 26; k++) {
        uint32_t r = dense(k, 0x12345678u);
        h = mix32(h, r);
        if (k % 6 == 0)
            printf("dense(%u) = %08lx\n", k, (unsigned long)r);
    }
    printf("dense hash %08lx\n", (unsigned long)h);

    printf("numbers in text: %d\n", count_numbers("pi is 3.14, e is 2.718 and 42 is 42."));

    callback = hello;
    callback("world");
    callback = bye;
    callback("world");
    printf("called %d; pointers equal: %d %d\n", called, callback == bye, (binop)op_add == table[0]);
    return 0;
}
