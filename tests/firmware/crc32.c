/* crc32.c -- CRC-32 (IEEE 802.3, reflected 0xEDB88320) bitwise and
 * table-driven, CRC-32C (Castagnoli), CRC-16/CCITT and Adler-32, checked
 * against the published check values for "123456789". */
#include <string.h>
#include "fw.h"

static uint32_t table[256];

static uint32_t crc32_bitwise(uint32_t crc, const uint8_t *p, uint32_t n, uint32_t poly)
{
    crc = ~crc;
    while (n--) {
        int k;
        crc ^= *p++;
        for (k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (poly & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void make_table(uint32_t poly)
{
    uint32_t i;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        int k;
        for (k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ poly : c >> 1;
        table[i] = c;
    }
}

static uint32_t crc32_table(uint32_t crc, const uint8_t *p, uint32_t n)
{
    crc = ~crc;
    while (n--)
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint16_t crc16_ccitt(const uint8_t *p, uint32_t n)
{
    uint16_t crc = 0xFFFF;
    while (n--) {
        int k;
        crc = (uint16_t)(crc ^ (uint16_t)((unsigned)*p++ << 8));
        for (k = 0; k < 8; k++)
            crc = (uint16_t)(crc & 0x8000 ? (uint16_t)(crc << 1) ^ 0x1021 : (uint16_t)(crc << 1));
    }
    return crc;
}

static uint32_t adler32(const uint8_t *p, uint32_t n)
{
    uint32_t a = 1, b = 0;
    while (n--) {
        a = (a + *p++) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

static const char *ok(int good) { return good ? "ok" : "WRONG"; }

int main(void)
{
    static const char *msgs[] = {
        "", "a", "abc", "123456789", "The quick brown fox jumps over the lazy dog",
        "CompactRISC CR16C",
    };
    static uint8_t buf[2048];
    const uint8_t *check = (const uint8_t *)"123456789";
    uint32_t i, c1, c2, s = 7;

    make_table(0xEDB88320u);
    c1 = crc32_bitwise(0, check, 9, 0xEDB88320u);
    c2 = crc32_table(0, check, 9);
    printf("crc32(\"123456789\") bitwise %08lx table %08lx %s\n", (unsigned long)c1,
           (unsigned long)c2, ok(c1 == 0xCBF43926u && c2 == c1));
    c1 = crc32_bitwise(0, check, 9, 0x82F63B78u);
    printf("crc32c(\"123456789\") %08lx %s\n", (unsigned long)c1, ok(c1 == 0xE3069283u));
    printf("crc16-ccitt(\"123456789\") %04x %s\n", crc16_ccitt(check, 9),
           ok(crc16_ccitt(check, 9) == 0x29B1));
    printf("adler32(\"123456789\") %08lx %s\n", (unsigned long)adler32(check, 9),
           ok(adler32(check, 9) == 0x091E01DEu));

    for (i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        const uint8_t *m = (const uint8_t *)msgs[i];
        uint32_t n = (uint32_t)strlen(msgs[i]);
        printf("%-45s %08lx %08lx %04x %08lx\n", msgs[i], (unsigned long)crc32_table(0, m, n),
               (unsigned long)crc32_bitwise(0, m, n, 0x82F63B78u), crc16_ccitt(m, n),
               (unsigned long)adler32(m, n));
    }

    for (i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)xs32(&s);
    c1 = crc32_table(0, buf, sizeof buf);
    c2 = crc32_bitwise(0, buf, sizeof buf, 0xEDB88320u);
    printf("2 KiB random: %08lx %s\n", (unsigned long)c1, ok(c1 == c2));
    /* incremental == one-shot */
    c2 = crc32_table(crc32_table(0, buf, 1000), buf + 1000, sizeof buf - 1000);
    printf("incremental: %08lx %s\n", (unsigned long)c2, ok(c1 == c2));
    return 0;
}
