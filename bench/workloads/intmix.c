/* intmix.c - an integer mix in the spirit of Dhrystone/CoreMark, REPS times:
 *   1. linked list: sorted insertion of 48 nodes (pointer chasing),
 *      in-place reversal, a weighted traversal;
 *   2. matrix multiply: 10x10 int16 x int16 -> int32 (16x16->32 multiplies)
 *      and 6x6 uint32 (32-bit multiplies, a libgcc call on CR16);
 *   3. a state machine tokenising a 192-byte text (identifiers, numbers,
 *      operators, blanks) and evaluating the numbers;
 *   4. string ops: length, copy, compare and a naive substring search.
 * Every part folds into a CRC-like checksum. */
#include "bench.h"

#ifndef REPS
#define REPS 100
#endif

static uint32_t fold(uint32_t h, uint32_t v)
{
    h ^= v;
    h = (h << 5) | (h >> 27);
    return (h * 0x9E3779B1UL) & 0xFFFFFFFFUL;
}

/* ------------------------------------------------------------ 1. list */
#define NODES 48
struct node {
    struct node *next;
    uint16_t key;
    uint16_t val;
};
static struct node pool[NODES];

static uint32_t list_part(uint32_t *s)
{
    struct node *head = 0, *p, **pp, *prev, *next;
    uint16_t i, pos;
    uint32_t sum = 0;
    for (i = 0; i < NODES; i++) {
        struct node *n = &pool[i];
        uint32_t r = xorshift32(s);
        n->key = (uint16_t)(r & 0x3FFu);
        n->val = (uint16_t)(r >> 16);
        pp = &head;
        while (*pp && (*pp)->key < n->key)
            pp = &(*pp)->next;
        n->next = *pp;
        *pp = n;
    }
    prev = 0;
    for (p = head; p; p = next) {
        next = p->next;
        p->next = prev;
        prev = p;
    }
    head = prev;
    pos = 1;
    for (p = head; p; p = p->next) {
        sum += (uint32_t)p->key * pos + p->val;
        pos++;
    }
    return sum;
}

/* ---------------------------------------------------------- 2. matrix */
#define M16 10
#define M32 6
static int16_t a16[M16][M16], b16[M16][M16];
static int32_t c16[M16][M16];
static uint32_t a32[M32][M32], b32[M32][M32], c32[M32][M32];

static uint32_t matrix_part(uint32_t *s)
{
    uint16_t i, j, k;
    uint32_t h = 0;
    for (i = 0; i < M16; i++)
        for (j = 0; j < M16; j++) {
            uint32_t r = xorshift32(s);
            a16[i][j] = (int16_t)(r & 0xFFFFu) >> 2;
            b16[i][j] = (int16_t)(r >> 16) >> 2;
        }
    for (i = 0; i < M16; i++)
        for (j = 0; j < M16; j++) {
            uint32_t acc = 0;      /* unsigned: wraps instead of overflowing */
            for (k = 0; k < M16; k++)
                acc += (uint32_t)((int32_t)a16[i][k] * (int32_t)b16[k][j]);
            c16[i][j] = (int32_t)(acc & 0x7FFFFFFFUL);
        }
    for (i = 0; i < M32; i++)
        for (j = 0; j < M32; j++) {
            a32[i][j] = xorshift32(s);
            b32[i][j] = xorshift32(s) | 1u;
        }
    for (i = 0; i < M32; i++)
        for (j = 0; j < M32; j++) {
            uint32_t acc = 0;
            for (k = 0; k < M32; k++)
                acc += a32[i][k] * b32[k][j];
            c32[i][j] = acc;
        }
    for (i = 0; i < M16; i++)
        h = fold(h, (uint32_t)c16[i][(i * 3u) % M16]);
    for (i = 0; i < M32; i++)
        h = fold(h, c32[i][M32 - 1 - i]);
    return h;
}

/* --------------------------------------------------- 3. state machine */
#define TEXTLEN 192
static char text[TEXTLEN + 1];
static const char alphabet[] = "abcxyz_QRS0123456789  +-*/=(),;\t";

enum { S_IDLE, S_IDENT, S_NUMBER, S_OPER };

static uint32_t fsm_part(uint32_t *s)
{
    uint16_t i;
    uint8_t state = S_IDLE;
    uint32_t idents = 0, numbers = 0, opers = 0, value = 0, total = 0, idhash = 0;
    for (i = 0; i < TEXTLEN; i++)
        text[i] = alphabet[xorshift32(s) % (sizeof alphabet - 1)];
    text[TEXTLEN] = 0;
    for (i = 0; i <= TEXTLEN; i++) {
        char c = text[i];
        uint8_t cls;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
            cls = 1;
        else if (c >= '0' && c <= '9')
            cls = 2;
        else if (c == ' ' || c == '\t' || c == 0)
            cls = 0;
        else
            cls = 3;
        switch (state) {
        case S_IDENT:
            if (cls == 1 || cls == 2) {
                idhash = idhash * 33u + (uint8_t)c;
                continue;
            }
            idents++;
            break;
        case S_NUMBER:
            if (cls == 2) {
                value = value * 10u + (uint32_t)(c - '0');
                continue;
            }
            numbers++;
            total += value;
            break;
        case S_OPER:
            opers++;
            break;
        default:
            break;
        }
        switch (cls) {
        case 1: state = S_IDENT; idhash = idhash * 33u + (uint8_t)c; break;
        case 2: state = S_NUMBER; value = (uint32_t)(c - '0'); break;
        case 3: state = S_OPER; break;
        default: state = S_IDLE; break;
        }
    }
    return fold(fold(fold(idents, numbers), fold(opers, total)), idhash);
}

/* ------------------------------------------------------- 4. strings */
#define STRN 64
static char str_a[STRN + 1], str_b[STRN + 1];

static uint16_t my_strlen(const char *p)
{
    const char *q = p;
    while (*q)
        q++;
    return (uint16_t)(q - p);
}

static void my_strcpy(char *d, const char *s)
{
    while ((*d++ = *s++) != 0)
        ;
}

static int16_t my_strcmp(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (int16_t)((uint8_t)*a - (uint8_t)*b);
}

static int16_t my_strstr(const char *hay, const char *needle)
{
    uint16_t i, j;
    for (i = 0; hay[i]; i++) {
        for (j = 0; needle[j] && hay[i + j] == needle[j]; j++)
            ;
        if (!needle[j])
            return (int16_t)i;
    }
    return -1;
}

static uint32_t string_part(uint32_t *s)
{
    uint16_t i, len;
    uint32_t h = 0;
    char needle[4];
    for (i = 0; i < STRN; i++)
        str_a[i] = (char)('a' + xorshift32(s) % 4u);
    str_a[STRN] = 0;
    my_strcpy(str_b, str_a);
    str_b[STRN / 2] = 'z';
    len = my_strlen(str_a);
    h = fold(h, len);
    h = fold(h, (uint32_t)(int32_t)my_strcmp(str_a, str_b));
    h = fold(h, (uint32_t)(int32_t)my_strcmp(str_b, str_a));
    for (i = 0; i < 6; i++) {
        needle[0] = (char)('a' + i % 4u);
        needle[1] = (char)('a' + (i * 3u) % 4u);
        needle[2] = (char)('a' + (i + 1u) % 4u);
        needle[3] = 0;
        h = fold(h, (uint32_t)(int32_t)my_strstr(str_a, needle));
    }
    return h;
}

static uint32_t work(uint32_t seed)
{
    uint32_t s = seed, h = 0;
    uint16_t r;
    for (r = 0; r < REPS; r++) {
        h = fold(h, list_part(&s));
        h = fold(h, matrix_part(&s));
        h = fold(h, fsm_part(&s));
        h = fold(h, string_part(&s));
    }
    return h;
}

BENCH_MAIN("intmix")
