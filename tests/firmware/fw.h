/* fw.h -- small helpers shared by the firmware test programs.
 *
 * Every program is built twice: for cr16-elf (int = 16 bits, long = 32)
 * and for the host (int = 32, long = 64).  The host build's output is the
 * expected output, so everything printed must be independent of the type
 * sizes: fixed-width types, printf through <inttypes.h> macros or casts to
 * long, and 64-bit values through the helpers below (this newlib has no
 * %lld).  The helpers use only 32-bit arithmetic, so that a CPU model
 * with broken 64-bit carries or shifts still prints what it computed.
 */
#ifndef FW_H
#define FW_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fw.h assumes a little-endian host, like the CR16C target"
#endif

/* The 32-bit halves of a 64-bit value and back, through memory instead of
   64-bit shifts (so that printing a value does not depend on the 64-bit
   shift helpers of libgcc, which are among the things tested). */
union fw_u64 {
    uint64_t v;
    uint32_t w[2];   /* little-endian: w[0] is the low half */
};

static inline uint32_t lo32(uint64_t v)
{
    union fw_u64 u;
    u.v = v;
    return u.w[0];
}

static inline uint32_t hi32(uint64_t v)
{
    union fw_u64 u;
    u.v = v;
    return u.w[1];
}

static inline uint64_t make64(uint32_t hi, uint32_t lo)
{
    union fw_u64 u;
    u.w[0] = lo;
    u.w[1] = hi;
    return u.v;
}

/* xorshift32: a carry-free pseudo-random generator (never 0 for s != 0). */
static inline uint32_t xs32(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* 32-bit value as 8 hex digits (cheaper than printf). */
static inline const char *hex32(uint32_t v, char buf[9])
{
    int i;
    for (i = 7; i >= 0; i--) {
        buf[i] = "0123456789abcdef"[v & 0xFu];
        v >>= 4;
    }
    buf[8] = '\0';
    return buf;
}

/* 64-bit value as 16 hex digits (exactly the bits). */
static inline const char *hex64(uint64_t v, char buf[17])
{
    hex32(hi32(v), buf);
    hex32(lo32(v), buf + 8);
    return buf;
}

/* 64-bit unsigned decimal, by repeated subtraction of powers of ten on
   the two 32-bit halves (borrow from a comparison, no division, no
   64-bit arithmetic). */
static inline const char *udec64(uint64_t v, char buf[21])
{
    static const uint32_t p10[20][2] = {
        { 0x8AC72304u, 0x89E80000u }, { 0x0DE0B6B3u, 0xA7640000u },
        { 0x01634578u, 0x5D8A0000u }, { 0x002386F2u, 0x6FC10000u },
        { 0x00038D7Eu, 0xA4C68000u }, { 0x00005AF3u, 0x107A4000u },
        { 0x00000918u, 0x4E72A000u }, { 0x000000E8u, 0xD4A51000u },
        { 0x00000017u, 0x4876E800u }, { 0x00000002u, 0x540BE400u },
        { 0, 1000000000u }, { 0, 100000000u }, { 0, 10000000u },
        { 0, 1000000u }, { 0, 100000u }, { 0, 10000u }, { 0, 1000u },
        { 0, 100u }, { 0, 10u }, { 0, 1u },
    };
    uint32_t hi = hi32(v), lo = lo32(v);
    int n = 0, k;
    for (k = 0; k < 20; k++) {
        uint32_t ph = p10[k][0], pl = p10[k][1];
        char d = '0';
        while (hi > ph || (hi == ph && lo >= pl)) {
            hi = hi - ph - (lo < pl ? 1u : 0u);
            lo = lo - pl;
            d++;
        }
        if (d != '0' || n > 0 || k == 19)
            buf[n++] = d;
    }
    buf[n] = '\0';
    return buf;
}

/* 64-bit signed decimal.  The negation is done on the two 32-bit halves
   (with an explicit borrow test), not by 64-bit arithmetic. */
static inline const char *sdec64(int64_t v, char buf[22])
{
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        uint32_t lo = lo32(u), hi = hi32(u);
        lo = ~lo + 1u;
        hi = ~hi + (lo == 0 ? 1u : 0u);
        u = make64(hi, lo);
        buf[0] = '-';
        udec64(u, buf + 1);
    } else {
        udec64(u, buf);
    }
    return buf;
}

/* Order-sensitive, carry-free 32-bit mixing for checksums. */
static inline uint32_t mix32(uint32_t h, uint32_t v)
{
    h ^= v;
    h = (h << 7) | (h >> 25);
    h ^= h >> 11;
    return h;
}

#endif /* FW_H */
