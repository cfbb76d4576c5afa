/* softfloat.c -- IEEE single and double arithmetic (soft-float in libgcc on
 * CR16): + - * /, compares, conversions to and from 16/32/64-bit integers,
 * float <-> double, sqrt/floor/ceil/fmod/frexp/ldexp/modf from libm
 * (exact operations only: no sin/exp/pow, whose last bit may differ
 * between libms), a few small numeric algorithms, and printf %f/%e/%g.
 * Results are printed as bit patterns (exact) and, for some, in decimal.
 * No NaN is ever printed: its sign and payload differ between soft-float
 * and the host's SSE unit. */
#include <math.h>
#include <string.h>
#include "fw.h"

float fv[] = { 0.0f, -0.0f, 1.0f, -1.5f, 3.14159265f, 1e-3f, 6.02214076e23f, -2.5e-38f,
               1.17549435e-38f, 3.0e38f, 16777216.0f, 0.1f };
double dv[] = { 0.0, 1.0, -2.25, 3.141592653589793, 1e-300, 2.718281828459045, 1e300,
                -123456789.125, 4503599627370496.0, 0.1, 2.2250738585072014e-308 };
#define N(a) (sizeof a / sizeof a[0])

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Checksum of a result; NaNs collapse to one value. */
static uint32_t fmix(uint32_t h, float f) { return mix32(h, f != f ? 0x7FC00000u : fbits(f)); }
static uint32_t dmix(uint32_t h, double d)
{
    uint64_t u = d != d ? UINT64_C(0x7FF8000000000000) : dbits(d);
    return mix32(mix32(h, hi32(u)), lo32(u));
}

__attribute__((noinline)) float fadd(float a, float b) { return a + b; }
__attribute__((noinline)) float fsub(float a, float b) { return a - b; }
__attribute__((noinline)) float fmul(float a, float b) { return a * b; }
__attribute__((noinline)) float fdiv(float a, float b) { return a / b; }
__attribute__((noinline)) double dadd(double a, double b) { return a + b; }
__attribute__((noinline)) double dsub(double a, double b) { return a - b; }
__attribute__((noinline)) double dmul(double a, double b) { return a * b; }
__attribute__((noinline)) double ddiv(double a, double b) { return a / b; }

int main(void)
{
    unsigned i, j;
    char b1[17], b2[17], b3[17], b4[17], b5[17];

    printf("== float: per a, checksums of a+b a-b a*b a/b and compares over all b\n");
    for (i = 0; i < N(fv); i++) {
        uint32_t h = 0, c = 0;
        for (j = 0; j < N(fv); j++) {
            h = fmix(h, fadd(fv[i], fv[j]));
            h = fmix(h, fsub(fv[i], fv[j]));
            h = fmix(h, fmul(fv[i], fv[j]));
            if (fv[j] != 0.0f)
                h = fmix(h, fdiv(fv[i], fv[j]));
            c = (c << 2) | (uint32_t)((fv[i] < fv[j]) << 1 | (fv[i] == fv[j]));
        }
        printf("%s %s cmp %s\n", hex32(fbits(fv[i]), b1), hex32(h, b2), hex32(c, b3));
    }
    printf("1/3 %s  2/3*3 %s  0.1+0.2 %s  1e38*10 %s  1e-38/1e4 %s\n",
           hex32(fbits(fdiv(1.0f, 3.0f)), b1), hex32(fbits(fmul(fdiv(2.0f, 3.0f), 3.0f)), b2),
           hex32(fbits(fadd(0.1f, 0.2f)), b3), hex32(fbits(fmul(1e38f, 10.0f)), b4),
           hex32(fbits(fdiv(1e-38f, 1e4f)), b5));

    printf("== double\n");
    for (i = 0; i < N(dv); i++) {
        uint32_t h = 0, c = 0;
        for (j = 0; j < N(dv); j++) {
            h = dmix(h, dadd(dv[i], dv[j]));
            h = dmix(h, dsub(dv[i], dv[j]));
            h = dmix(h, dmul(dv[i], dv[j]));
            if (dv[j] != 0.0)
                h = dmix(h, ddiv(dv[i], dv[j]));
            c = (c << 2) | (uint32_t)((dv[i] < dv[j]) << 1 | (dv[i] >= dv[j]));
        }
        printf("%s %s cmp %s\n", hex64(dbits(dv[i]), b1), hex32(h, b2), hex32(c, b3));
    }
    printf("1/3 %s  0.1+0.2 %s\n", hex64(dbits(ddiv(1.0, 3.0)), b1),
           hex64(dbits(dadd(0.1, 0.2)), b2));

    printf("== conversions\n");
    {
        static const int32_t iv[] = { 0, 1, -1, 16777217, -16777217, 2147483647, -2147483647 - 1,
                                      123456789 };
        static const double cv[] = { 0.5, -0.5, 1.9999, -1.9999, 2147483647.9, -2147483648.9,
                                     65535.75, 1e9 };
        for (i = 0; i < N(iv); i++)
            printf("%ld -> f %s d %s\n", (long)iv[i], hex32(fbits((float)iv[i]), b1),
                   hex64(dbits((double)iv[i]), b2));
        for (i = 0; i < N(cv); i++)
            printf("%s -> i32 %ld i16 %d f %s\n", hex64(dbits(cv[i]), b1), (long)(int32_t)cv[i],
                   (int)(int16_t)(cv[i] / 65536.0), hex32(fbits((float)cv[i]), b2));
        printf("u32 4294967295 -> d %s, d 4294967295.5 -> u32 %lu\n",
               hex64(dbits((double)UINT32_C(4294967295)), b1),
               (unsigned long)(uint32_t)4294967295.5);
        printf("i64 -> d %s, d -> i64 %s\n",
               hex64(dbits((double)INT64_C(-9007199254740993)), b1),
               hex64((uint64_t)(int64_t)-1e18, b2));
        printf("u64 -> f %s, f -> u64 %s\n", hex32(fbits((float)UINT64_C(0xFFFFFFFFFFFFFFFF)), b1),
               hex64((uint64_t)1.5e19f, b2));
        printf("f->d %s  d->f %s  d->f (round) %s  (overflow) %s\n", hex64(dbits((double)0.1f), b1),
               hex32(fbits((float)0.1), b2), hex32(fbits((float)1.00000005960464477539), b3),
               hex32(fbits((float)1e39), b4));
    }

    printf("== libm\n");
    {
        static const double mv[] = { 2.0, 0.25, 1e-10, 12345.678, 1e100, -7.5 };
        for (i = 0; i < N(mv); i++) {
            double ip, fr = modf(mv[i], &ip);
            int e;
            double m = frexp(mv[i], &e);
            printf("%u sqrt %s floor %s ceil %s", i, hex64(dbits(sqrt(fabs(mv[i]))), b1),
                   hex64(dbits(floor(mv[i])), b2), hex64(dbits(ceil(mv[i])), b3));
            printf(" fmod %s frexp %s,%d modf %s", hex64(dbits(fmod(mv[i], 3.0)), b1),
                   hex64(dbits(m), b2), e, hex64(dbits(fr), b3));
            printf(" ldexp %s sqrtf %s\n", hex64(dbits(ldexp(mv[i], -3)), b1),
                   hex32(fbits(sqrtf((float)fabs(mv[i]))), b2));
        }
    }

    printf("== algorithms\n");
    {
        double x = 1.0, s = 0.0, p;
        float fx = 1.0f;
        int k;
        for (k = 0; k < 6; k++)
            x = 0.5 * (x + 2.0 / x);               /* Newton: sqrt(2) */
        for (k = 0; k < 6; k++)
            fx = 0.5f * (fx + 2.0f / fx);
        for (k = 200; k >= 1; k--)
            s += 1.0 / ((double)k * k);            /* pi^2/6 */
        p = ((((3.0 * 0.7 - 2.0) * 0.7 + 1.5) * 0.7 - 4.0) * 0.7 + 0.25);   /* Horner */
        printf("newton %s %s series %s horner %s\n", hex64(dbits(x), b1), hex32(fbits(fx), b2),
               hex64(dbits(s), b3), hex64(dbits(p), b4));
        printf("scaled: sqrt2*1e6 = %ld, series*1e9 = %ld\n", (long)(x * 1e6), (long)(s * 1e9));
    }

    printf("== printf\n");
    printf("[%f] [%.3f] [%10.4f] [%-10.2f] [%+.1f] [%.0f]\n", 3.14159265358979, 2.0 / 3.0,
           -1.5, 1234.5678, 0.05, 2.5000001);
    printf("[%e] [%.2e] [%E] [%12.3e]\n", 123456.789, 0.000123456, 1e-300, -6.02214076e23);
    printf("[%g] [%g] [%g] [%g] [%.10g] [%G]\n", 100000.0, 1000000.0, 0.0001, 0.00001,
           1.0 / 7.0, 1e-20);
    printf("[%f] [%f] [%e] [%g]\n", -0.0, 1e15, 1.0 / 3.0, (double)16777217.0f);
    printf("[%f] [%5.1f] [%g]\n", (double)HUGE_VAL, -(double)HUGE_VAL, 0.0);
    printf("isnan %d %d isinf %d signbit %d\n", isnan(sqrt(-1.0)) != 0, isnan(1.0) != 0,
           isinf(fdiv(1.0f, 0.0f)) != 0, signbit(-0.0) != 0);
    return 0;
}
