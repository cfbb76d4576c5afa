/* structs.c -- structs (nested, arrays of, copied, passed and returned by
 * value in registers and in memory), unions, bit-fields (signed and
 * unsigned, straddling words), designated initialisers, compound literals,
 * flexible array members.  Only values are printed: sizeof, offsetof and
 * the in-memory layout of bit-fields legitimately differ between the
 * host and CR16 (4-byte alignment of long long there, 16-bit int), so
 * they are never printed. */
#include <stdlib.h>
#include <string.h>
#include "fw.h"

struct point { int16_t x, y; };                     /* 4 bytes: in registers */
struct rect { struct point lo, hi; };               /* 8 bytes */
struct big { int32_t a[6]; char name[10]; uint8_t tag; };   /* in memory */

struct flags {
    unsigned int ready : 1;
    unsigned int mode : 3;
    signed int delta : 5;
    unsigned int : 0;           /* next field starts a new unit */
    uint32_t wide : 20;         /* wider than a 16-bit int */
    int32_t swide : 12;
    uint8_t low : 4, high : 4;
};

union word {
    uint32_t u32;
    int32_t s32;
    uint16_t u16[2];
    uint8_t b[4];
    float f;
};

struct msg {
    uint16_t len;
    char text[];                /* flexible array member */
};

struct node { int32_t value; struct node *next; };

__attribute__((noinline)) struct point padd(struct point a, struct point b)
{
    struct point r = { (int16_t)(a.x + b.x), (int16_t)(a.y + b.y) };
    return r;
}

__attribute__((noinline)) struct rect bbox(const struct point *p, int n)
{
    struct rect r = { p[0], p[0] };
    int i;
    for (i = 1; i < n; i++) {
        if (p[i].x < r.lo.x) r.lo.x = p[i].x;
        if (p[i].y < r.lo.y) r.lo.y = p[i].y;
        if (p[i].x > r.hi.x) r.hi.x = p[i].x;
        if (p[i].y > r.hi.y) r.hi.y = p[i].y;
    }
    return r;
}

__attribute__((noinline)) struct big make_big(int32_t seed, const char *name)
{
    struct big b;
    int i;
    memset(&b, 0, sizeof b);
    for (i = 0; i < 6; i++)
        b.a[i] = seed * (i + 1) - 7;
    strncpy(b.name, name, sizeof b.name - 1);
    b.tag = (uint8_t)(seed & 0xFF);
    return b;
}

__attribute__((noinline)) int32_t sum_big(struct big b)   /* by value, on the stack */
{
    int32_t s = 0;
    int i;
    for (i = 0; i < 6; i++)
        s += b.a[i];
    b.a[0] = 0;          /* modifies the callee's copy only */
    return s + b.tag;
}

static void print_flags(const char *label, const struct flags *f)
{
    printf("%s: ready=%u mode=%u delta=%d wide=%lu swide=%ld low=%u high=%u\n", label,
           (unsigned)f->ready, (unsigned)f->mode, (int)f->delta, (unsigned long)f->wide,
           (long)f->swide, (unsigned)f->low, (unsigned)f->high);
}

int main(void)
{
    int i;

    printf("== small structs by value\n");
    {
        struct point a = { 100, -200 }, b = { -32000, 32000 };
        struct point c = padd(a, b);
        struct point pts[] = { { 5, 9 }, { -3, 4 }, { 12, -8 }, { 0, 0 }, { 7, 30 } };
        struct rect r = bbox(pts, 5);
        printf("padd = (%d,%d)\n", c.x, c.y);
        printf("bbox = (%d,%d)-(%d,%d)\n", r.lo.x, r.lo.y, r.hi.x, r.hi.y);
    }

    printf("== large structs by value\n");
    {
        struct big b = make_big(1000003, "structure"), c;
        c = b;                               /* struct assignment */
        printf("a = %ld %ld %ld %ld %ld %ld name=%s tag=%u\n", (long)b.a[0], (long)b.a[1],
               (long)b.a[2], (long)b.a[3], (long)b.a[4], (long)b.a[5], b.name, b.tag);
        printf("sum = %ld, a[0] after call = %ld, copy equal = %d\n", (long)sum_big(b),
               (long)b.a[0], memcmp(&b, &c, sizeof b) == 0);
    }

    printf("== bit-fields\n");
    {
        struct flags f;
        memset(&f, 0, sizeof f);
        f.ready = 1;
        f.mode = 5;
        f.delta = -9;
        f.wide = 0xABCDE;
        f.swide = -1000;
        f.low = 0xF;
        f.high = 0x3;
        print_flags("set", &f);
        f.mode = (unsigned)(f.mode + 4);     /* wraps in 3 bits */
        f.delta = (signed)(f.delta - 7);     /* -16: the minimum of 5 bits */
        f.wide = (uint32_t)(f.wide + 0x54321) & 0xFFFFF;
        f.swide = f.swide * 2;
        f.low = (uint8_t)(f.low + 1) & 0xF;
        print_flags("upd", &f);
        for (i = 0; i < 8; i++) {
            f.mode = (unsigned)i;
            f.delta = (signed)(i * 3 - 12);
            printf("%u:%d ", (unsigned)f.mode, (int)f.delta);
        }
        printf("\n");
    }

    printf("== unions\n");
    {
        union word w;
        w.u32 = 0x11223344;
        printf("%02x %02x %02x %02x / %04x %04x\n", w.b[0], w.b[1], w.b[2], w.b[3], w.u16[0],
               w.u16[1]);
        w.s32 = -2;
        printf("%lu %ld\n", (unsigned long)w.u32, (long)w.s32);
        w.f = 1.5f;
        printf("1.5f = %08lx\n", (unsigned long)w.u32);
        w.b[3] = 0xC0;
        w.b[2] = 0x49;
        w.b[1] = 0x0F;
        w.b[0] = 0xDB;
        printf("-pi as float: %08lx, upper half %04x\n", (unsigned long)w.u32, w.u16[1]);
    }

    printf("== initialisers and compound literals\n");
    {
        struct rect r = { .hi = { .y = 7, .x = 6 }, .lo.x = -1 };
        int16_t arr[8] = { [2] = 20, [5] = 50, 60 };
        const struct point *pp = &(struct point){ 33, 44 };
        printf("r = (%d,%d)-(%d,%d)\n", r.lo.x, r.lo.y, r.hi.x, r.hi.y);
        for (i = 0; i < 8; i++)
            printf("%d%c", arr[i], i == 7 ? '\n' : ',');
        printf("pp = (%d,%d)\n", pp->x, pp->y);
    }

    printf("== flexible array member, linked list\n");
    {
        const char *words[] = { "alpha", "bravo", "charlie", "delta" };
        struct node *head = NULL, *n;
        int32_t total = 0;
        for (i = 0; i < 4; i++) {
            size_t len = strlen(words[i]);
            struct msg *m = malloc(sizeof *m + len + 1);
            m->len = (uint16_t)len;
            memcpy(m->text, words[i], len + 1);
            printf("%u:%s ", m->len, m->text);
            free(m);
        }
        printf("\n");
        for (i = 1; i <= 10; i++) {
            n = malloc(sizeof *n);
            n->value = (int32_t)i * i * 1000;
            n->next = head;
            head = n;
        }
        for (n = head; n; n = n->next)
            total += n->value;
        printf("list total %ld first %ld\n", (long)total, (long)head->value);
        while (head) {
            n = head->next;
            free(head);
            head = n;
        }
    }
    return 0;
}
