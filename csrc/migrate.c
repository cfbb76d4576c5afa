/* migrate.c - RAM pages to and from QEMU's migration records, in bulk.
 *
 * The Python side moves sections, commands and device state; every byte of
 * page data goes through here, so that a pass over 16 MiB is a few memcpy
 * calls and not four thousand Python iterations.  The record grammar is
 * QEMU's "ram" section v4 (qemu-migration.md 2.5): a be64 of offset | flags,
 * the block name unless CONTINUE, then 4096 page bytes (PAGE) or one fill
 * byte (ZERO).  The multifd packets of 4.2 carry a page-offset array and the
 * page bytes, gathered and scattered here too.  Everything read is checked
 * against the RAM: untrusted bytes never address outside guest memory. */
#include "cr16_internal.h"

#define F_ZERO 0x02u
#define F_PAGE 0x08u
#define F_EOS 0x10u
#define F_CONTINUE 0x20u
#define F_FLUSH 0x200u
#define F_MASK (CR16_PAGE_SIZE - 1)

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Bytes of page p that are RAM (the last page may be short). */
static uint32_t page_len(const struct cr16_cpu *c, uint32_t p)
{
    uint32_t left = c->ram_size - (p << CR16_PAGE_BITS);
    return left < CR16_PAGE_SIZE ? left : CR16_PAGE_SIZE;
}

/* A 64-bit hash of one page (four independent multiply-xor lanes, so that
 * it runs at memory speed): the end-to-end check of a migration compares a
 * digest of every page's last hash on both sides (see cr16.h). */
uint64_t cr16_page_hash(const uint8_t *page)
{
    const uint64_t k = 0x9E3779B97F4A7C15ull;
    uint64_t h[4] = {1, 2, 3, 4};
    for (uint32_t i = 0; i < CR16_PAGE_SIZE; i += 32) {
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, page + i + 8 * j, 8);
            h[j] = (h[j] ^ w) * k;
            h[j] ^= h[j] >> 29;
        }
    }
    uint64_t out = h[0] ^ (h[1] * 3) ^ (h[2] * 5) ^ (h[3] * 7);
    out ^= out >> 31;
    return out * k;
}

static uint64_t zero_hash(void)
{
    static const uint8_t zero[CR16_PAGE_SIZE];
    return cr16_page_hash(zero);
}

void cr16_hash_reset(uint64_t *hashes, uint32_t n)
{
    uint64_t z = zero_hash();
    for (uint32_t i = 0; i < n; i++)
        hashes[i] = z;
}

uint64_t cr16_ram_digest(const uint64_t *hashes, uint32_t n)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t x = (hashes[i] + i) * 0xBF58476D1CE4E5B9ull;
        sum += x ^ (x >> 27);
    }
    return sum;
}

static size_t put_head(uint8_t *out, uint64_t offset, uint32_t flags, const uint8_t *block,
                       uint32_t block_len, int *named)
{
    size_t n = 8;
    put_be64(out, offset | flags | (*named ? F_CONTINUE : 0));
    if (!*named) {
        out[8] = (uint8_t)block_len;
        memcpy(out + 9, block, block_len);
        n += 1 + block_len;
        *named = 1;
    }
    return n;
}

size_t cr16_ram_pack(struct cr16_cpu *c, uint8_t *map, uint32_t *pos, uint8_t *out, size_t cap,
                     const uint8_t *block, uint32_t block_len, int *named, int zero_mode,
                     uint32_t *normal, uint32_t *zero, uint64_t *hashes)
{
    uint64_t zh = hashes ? zero_hash() : 0;
    size_t used = 0;
    size_t worst = 9 + block_len + CR16_PAGE_SIZE;
    uint32_t p = *pos;
    for (; p < c->npages; p++) {
        if (!map[p])
            continue;
        if (cap - used < worst)
            break;
        map[p] = 0;
        const uint8_t *src = c->ram + ((size_t)p << CR16_PAGE_BITS);
        uint32_t len = page_len(c, p);
        if (zero_mode != CR16_ZERO_SEND && cr16_all_zero(src, len)) {
            (*zero)++;
            if (hashes)
                hashes[p] = zh;
            if (zero_mode == CR16_ZERO_SKIP)
                continue;
            used += put_head(out + used, (uint64_t)p << CR16_PAGE_BITS, F_ZERO, block,
                             block_len, named);
            out[used++] = 0;
            continue;
        }
        used += put_head(out + used, (uint64_t)p << CR16_PAGE_BITS, F_PAGE, block, block_len,
                         named);
        memcpy(out + used, src, len);
        if (len < CR16_PAGE_SIZE)
            memset(out + used + len, 0, CR16_PAGE_SIZE - len);
        if (hashes)
            hashes[p] = cr16_page_hash(len == CR16_PAGE_SIZE ? src : out + used);  /* aligned */
        used += CR16_PAGE_SIZE;
        (*normal)++;
    }
    *pos = p;
    return used;
}

/* One page from the stream into RAM: copied (marking it written and dropping
 * decoded code), or zeroed touching only what is not zero already. */
static int store_page(struct cr16_cpu *c, uint64_t offset, const uint8_t *data,
                      uint64_t *hashes, uint64_t zh)
{
    uint32_t p = (uint32_t)(offset >> CR16_PAGE_BITS);
    uint32_t len = page_len(c, p);
    if (!data) {
        if (hashes)
            hashes[p] = zh;
        return cr16_zero(c, (uint32_t)offset, len);
    }
    if (len < CR16_PAGE_SIZE && !cr16_all_zero(data + len, CR16_PAGE_SIZE - len))
        return -1;              /* bytes past the end of RAM */
    if (cr16_write(c, (uint32_t)offset, data, len))
        return -1;
    /* hashed from RAM (page aligned), not from the record: unaligned loads
     * of just-copied bytes run several times slower */
    if (hashes)
        hashes[p] = cr16_page_hash(len == CR16_PAGE_SIZE ? c->ram + offset : data);
    return 0;
}

long cr16_ram_unpack(struct cr16_cpu *c, const uint8_t *buf, size_t len, const uint8_t *block,
                     uint32_t block_len, int *named, int *stop, uint32_t *pages, uint32_t *zeros,
                     int *err, uint64_t *hashes)
{
    uint64_t zh = hashes ? zero_hash() : 0;
    size_t at = 0;
    *stop = CR16_UNPACK_MORE;
    *err = 0;
    while (len - at >= 8) {
        const uint8_t *rec = buf + at;
        uint64_t head = get_be64(rec);
        uint32_t flags = (uint32_t)(head & F_MASK);
        uint64_t offset = head & ~(uint64_t)F_MASK;
        size_t need = 8;
        if (flags == F_EOS || flags == F_FLUSH) {
            *stop = flags == F_EOS ? CR16_UNPACK_EOS : CR16_UNPACK_FLUSH;
            return (long)(at + 8);
        }
        if ((flags & ~(F_PAGE | F_ZERO | F_CONTINUE)) || !(flags & F_PAGE) == !(flags & F_ZERO)) {
            *err = CR16_UNPACK_EFLAGS;
            break;
        }
        if (!(flags & F_CONTINUE)) {
            if (len - at < 9 || len - at < 9 + (size_t)rec[8]) {
                *stop = CR16_UNPACK_MORE;
                return (long)at;
            }
            if (rec[8] != block_len || memcmp(rec + 9, block, block_len)) {
                *err = CR16_UNPACK_EBLOCK;
                break;
            }
            need += 1 + rec[8];
        } else if (!*named) {
            *err = CR16_UNPACK_ENONAME;
            break;
        }
        if (offset >= c->ram_size) {
            *err = CR16_UNPACK_ERANGE;
            break;
        }
        need += (flags & F_PAGE) ? CR16_PAGE_SIZE : 1;
        if (len - at < need)
            return (long)at;
        if (flags & F_ZERO) {
            if (rec[need - 1]) {
                *err = CR16_UNPACK_EFILL;
                break;
            }
            store_page(c, offset, NULL, hashes, zh);
            (*zeros)++;
        } else {
            if (store_page(c, offset, rec + need - CR16_PAGE_SIZE, hashes, zh)) {
                *err = CR16_UNPACK_ERANGE;
                break;
            }
            (*pages)++;
        }
        *named = 1;
        at += need;
    }
    if (*err) {
        *stop = CR16_UNPACK_ERROR;
        return (long)at;        /* where the bad record starts */
    }
    return (long)at;
}

uint32_t cr16_ram_gather(struct cr16_cpu *c, uint8_t *map, uint32_t *pos, uint32_t max,
                         uint8_t *offsets, uint8_t *data, int zero_detect, uint32_t *nzero,
                         uint64_t *hashes)
{
    uint64_t zero_at[CR16_GATHER_MAX];  /* zero pages' offsets go after the normal ones */
    uint64_t zh = hashes ? zero_hash() : 0;
    uint32_t normal = 0, zeros = 0;
    uint32_t p = *pos;
    if (max > CR16_GATHER_MAX)
        max = CR16_GATHER_MAX;
    for (; p < c->npages && normal + zeros < max; p++) {
        if (!map[p])
            continue;
        map[p] = 0;
        const uint8_t *src = c->ram + ((size_t)p << CR16_PAGE_BITS);
        uint32_t len = page_len(c, p);
        uint64_t offset = (uint64_t)p << CR16_PAGE_BITS;
        if (zero_detect && cr16_all_zero(src, len)) {
            zero_at[zeros++] = offset;
            if (hashes)
                hashes[p] = zh;
            continue;
        }
        put_be64(offsets + 8 * (size_t)normal, offset);
        uint8_t *dst = data + (size_t)normal * CR16_PAGE_SIZE;
        memcpy(dst, src, len);
        if (len < CR16_PAGE_SIZE)
            memset(dst + len, 0, CR16_PAGE_SIZE - len);
        if (hashes)
            hashes[p] = cr16_page_hash(dst);
        normal++;
    }
    for (uint32_t i = 0; i < zeros; i++)
        put_be64(offsets + 8 * (size_t)(normal + i), zero_at[i]);
    *pos = p;
    *nzero = zeros;
    return normal;
}

int cr16_ram_scatter(struct cr16_cpu *c, const uint8_t *offsets, uint32_t normal, uint32_t zeros,
                     const uint8_t *data, uint64_t *hashes)
{
    uint64_t zh = hashes ? zero_hash() : 0;
    /* check everything first: a bad packet changes nothing */
    for (uint32_t i = 0; i < normal + zeros; i++) {
        uint64_t offset = get_be64(offsets + 8 * (size_t)i);
        if (offset >= c->ram_size || (offset & F_MASK))
            return -1;
        if (i < normal) {
            uint32_t len = page_len(c, (uint32_t)(offset >> CR16_PAGE_BITS));
            if (len < CR16_PAGE_SIZE &&
                !cr16_all_zero(data + (size_t)i * CR16_PAGE_SIZE + len, CR16_PAGE_SIZE - len))
                return -1;
        }
    }
    for (uint32_t i = 0; i < normal + zeros; i++) {
        uint64_t offset = get_be64(offsets + 8 * (size_t)i);
        store_page(c, offset, i < normal ? data + (size_t)i * CR16_PAGE_SIZE : NULL, hashes,
                   zh);
    }
    return 0;
}
