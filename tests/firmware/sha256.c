/* sha256.c -- SHA-256 (FIPS 180-4) of the standard test messages and of a
 * 1000-byte message hashed in one go and in odd-sized pieces.  All 32-bit
 * additions, rotations and big-endian packing; the reference simulator
 * loses carries in some of them. */
#include <string.h>
#include "fw.h"

struct sha256 {
    uint32_t h[8];
    uint8_t buf[64];
    uint32_t nbuf;
    uint32_t bits_lo, bits_hi;      /* message length in bits, 64-bit */
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(struct sha256 *s, const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void init(struct sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->nbuf = 0;
    s->bits_lo = s->bits_hi = 0;
}

static void update(struct sha256 *s, const void *data, uint32_t n)
{
    const uint8_t *p = data;
    uint32_t add = n << 3;
    s->bits_hi += (n >> 29) + (s->bits_lo + add < s->bits_lo ? 1u : 0u);
    s->bits_lo += add;
    while (n--) {
        s->buf[s->nbuf++] = *p++;
        if (s->nbuf == 64) {
            block(s, s->buf);
            s->nbuf = 0;
        }
    }
}

static void final(struct sha256 *s, uint8_t out[32])
{
    uint32_t lo = s->bits_lo, hi = s->bits_hi;
    uint8_t pad = 0x80, len[8];
    int i;
    for (i = 0; i < 4; i++) {
        len[i] = (uint8_t)(hi >> (24 - 8 * i));
        len[4 + i] = (uint8_t)(lo >> (24 - 8 * i));
    }
    update(s, &pad, 1);
    pad = 0;
    while (s->nbuf != 56)
        update(s, &pad, 1);
    update(s, len, 8);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void hex(const uint8_t *d, char *out)
{
    int i;
    for (i = 0; i < 32; i++) {
        out[2 * i] = "0123456789abcdef"[d[i] >> 4];
        out[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
    }
    out[64] = '\0';
}

int main(void)
{
    static const char *const msgs[] = {
        "", "abc", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "The quick brown fox jumps over the lazy dog",
    };
    static const char *const known[] = {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
        "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
    };
    struct sha256 s;
    uint8_t d[32], big[1000];
    char text[65], text2[65];
    unsigned i;
    uint32_t off;

    for (i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        init(&s);
        update(&s, msgs[i], (uint32_t)strlen(msgs[i]));
        final(&s, d);
        hex(d, text);
        printf("%s %s\n", text, strcmp(text, known[i]) == 0 ? "ok" : "WRONG");
    }

    for (i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + (i >> 3));
    init(&s);
    update(&s, big, sizeof big);
    final(&s, d);
    hex(d, text);
    init(&s);
    for (off = 0, i = 1; off < sizeof big; i += 6) {
        uint32_t n = i < sizeof big - off ? i : sizeof big - off;
        update(&s, big + off, n);
        off += n;
    }
    final(&s, d);
    hex(d, text2);
    printf("%s pieces %s\n", text, strcmp(text, text2) == 0 ? "agree" : "DISAGREE");
    return 0;
}
