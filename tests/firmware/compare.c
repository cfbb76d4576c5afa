/* compare.c -- signed and unsigned comparisons at the edges of 8/16/32/64
 * bits (every relational operator, in branches and as values), min/max,
 * and conditional selects.
 *
 * Careful with C's promotions: int is 16 bits on cr16, so uint16_t promotes
 * to unsigned int there but to int on the host.  Mixed 16-bit comparisons
 * would differ; every comparison here is between operands of one type. */
#include "fw.h"

int8_t e8[] = { INT8_MIN, -1, 0, 1, INT8_MAX };
int16_t e16[] = { INT16_MIN, INT16_MIN + 1, -256, -1, 0, 1, 255, 256, INT16_MAX - 1, INT16_MAX };
int32_t e32[] = { INT32_MIN, INT32_MIN + 1, -65536, -32769, -32768, -1, 0, 1, 32767,
                  32768, 65535, 65536, INT32_MAX - 1, INT32_MAX };
int64_t e64[] = { INT64_MIN, INT64_MIN + 1, -INT64_C(0x100000000), -INT64_C(0xFFFFFFFF), -1, 0, 1,
                  INT64_C(0xFFFFFFFF), INT64_C(0x100000000), INT64_MAX };
#define N(a) (sizeof a / sizeof a[0])

/* One character per operator: < <= == != >= > as '1'/'0'. */
#define REL(T, name)                                                             \
    __attribute__((noinline)) void name(T a, T b, char *out)                    \
    {                                                                            \
        out[0] = (char)('0' + (a < b));                                          \
        out[1] = (char)('0' + (a <= b));                                         \
        out[2] = (char)('0' + (a == b));                                         \
        out[3] = (char)('0' + (a != b));                                         \
        out[4] = (char)('0' + (a >= b));                                         \
        out[5] = (char)('0' + (a > b));                                          \
        out[6] = ' ';                                                            \
    }
REL(int8_t, rel_s8)
REL(uint8_t, rel_u8)
REL(int16_t, rel_s16)
REL(uint16_t, rel_u16)
REL(int32_t, rel_s32)
REL(uint32_t, rel_u32)
REL(int64_t, rel_s64)
REL(uint64_t, rel_u64)

/* The same through branches (if/else chains instead of set-on-condition). */
#define BR(T, name)                                                              \
    __attribute__((noinline)) int name(T a, T b)                                \
    {                                                                            \
        int r = 0;                                                               \
        if (a < b) r |= 1;                                                       \
        if (a <= b) r |= 2;                                                      \
        if (a == b) r |= 4;                                                      \
        if (a != b) r |= 8;                                                      \
        if (a >= b) r |= 16;                                                     \
        if (a > b) r |= 32;                                                      \
        return r;                                                                \
    }
BR(int16_t, br_s16)
BR(uint16_t, br_u16)
BR(int32_t, br_s32)
BR(uint32_t, br_u32)
BR(int64_t, br_s64)
BR(uint64_t, br_u64)

static int from_rel(const char *s)
{
    int r = 0, k;
    for (k = 0; k < 6; k++)
        if (s[k] == '1')
            r |= 1 << k;
    return r;
}

#define GRID(label, arr, T, U, rel_s, rel_u, br_s, br_u)                         \
    printf("== %s signed / unsigned\n", label);                                  \
    for (i = 0; i < N(arr); i++) {                                               \
        char line[7 * N(arr) + 1], uline[7 * N(arr) + 1];                        \
        for (j = 0; j < N(arr); j++) {                                           \
            rel_s((T)arr[i], (T)arr[j], line + 7 * j);                           \
            rel_u((U)arr[i], (U)arr[j], uline + 7 * j);                          \
            if (from_rel(line + 7 * j) != br_s((T)arr[i], (T)arr[j]))            \
                bad++;                                                           \
            if (from_rel(uline + 7 * j) != br_u((U)arr[i], (U)arr[j]))           \
                bad++;                                                           \
        }                                                                        \
        line[7 * N(arr)] = uline[7 * N(arr)] = '\0';                             \
        printf("%2u s %s\n   u %s\n", i, line, uline);                          \
    }

__attribute__((noinline)) int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }
__attribute__((noinline)) uint32_t minu32(uint32_t a, uint32_t b) { return a < b ? a : b; }
__attribute__((noinline)) int16_t clamp16(int32_t v)
{
    return (int16_t)(v < INT16_MIN ? INT16_MIN : v > INT16_MAX ? INT16_MAX : v);
}
__attribute__((noinline)) int sign64(int64_t v) { return (v > 0) - (v < 0); }

int br_s8(int8_t a, int8_t b) { return br_s16(a, b); }
int br_u8(uint8_t a, uint8_t b) { return br_u16(a, b); }

int main(void)
{
    unsigned i, j;
    int bad = 0;

    GRID("8-bit", e8, int8_t, uint8_t, rel_s8, rel_u8, br_s8, br_u8)
    GRID("16-bit", e16, int16_t, uint16_t, rel_s16, rel_u16, br_s16, br_u16)
    GRID("32-bit", e32, int32_t, uint32_t, rel_s32, rel_u32, br_s32, br_u32)
    GRID("64-bit", e64, int64_t, uint64_t, rel_s64, rel_u64, br_s64, br_u64)
    printf("branch forms disagreeing with value forms: %d\n", bad);

    printf("== min / max / clamp / sign\n");
    printf("%ld %ld %ld\n", (long)max32(-5, 3), (long)max32(INT32_MIN, -1),
           (long)max32(INT32_MAX, INT32_MIN));
    printf("%lu %lu\n", (unsigned long)minu32(0xFFFFFFFFu, 1), (unsigned long)minu32(0x80000000u, 0x7FFFFFFF));
    printf("%d %d %d %d\n", clamp16(-100000), clamp16(100000), clamp16(-32768), clamp16(1234));
    for (i = 0; i < N(e64); i++)
        printf("%d", sign64(e64[i]));
    printf("\n");
    return 0;
}
