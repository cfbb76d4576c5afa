/* mmap flags (MAP_ANONYMOUS) are POSIX extensions beyond -std=c11 */
#define _DEFAULT_SOURCE
/* cpu.c - the CR16C core's public API: life cycle, registers, memory,
 * dirty tracking, interrupts and MMIO windows.  No global state. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "cr16_internal.h"

static uint32_t pages_of(uint32_t bytes, unsigned bits)
{
    return (uint32_t)(((uint64_t)bytes + (1u << bits) - 1) >> bits);
}

/* RAM is its own anonymous mapping (plus slack for a wide read at the last
 * byte), page-aligned so that a snapshot file can be mapped over it. */
static size_t ram_map_len(uint32_t ram_size)
{
    return ((size_t)ram_size + 8 + CR16_PAGE_SIZE - 1) & ~(size_t)(CR16_PAGE_SIZE - 1);
}

static size_t ram_pages_len(uint32_t ram_size)
{
    return ((size_t)ram_size + CR16_PAGE_SIZE - 1) & ~(size_t)(CR16_PAGE_SIZE - 1);
}

struct cr16_cpu *cr16_new(uint32_t ram_size)
{
    struct cr16_cpu *c;
    if (ram_size < 8 || (ram_size & 1))
        return NULL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ram_size = ram_size;
    c->npages = pages_of(ram_size, CR16_PAGE_BITS);
    /* the OS hands out zero pages lazily, so a large idle RAM is cheap */
    c->ram = mmap(NULL, ram_map_len(ram_size), PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (c->ram == MAP_FAILED)
        c->ram = NULL;
    c->dirty = calloc(1, c->npages + 1);
    c->codeline = calloc(1, pages_of(ram_size, CR16_LINE_BITS) + 1);
    c->dpage = calloc(CR16_DPAGES, sizeof(dinsn *));
    if (!c->ram || !c->dirty || !c->codeline || !c->dpage) {
        cr16_free(c);
        return NULL;
    }
    atomic_init(&c->stop_req, 0);
    return c;
}

void cr16_free(struct cr16_cpu *c)
{
    if (!c)
        return;
    if (c->dpage)
        for (uint32_t i = 0; i < CR16_DPAGES; i++)
            free(c->dpage[i]);
    for (int i = 0; i < CR16_MAX_DIRTY_CONSUMERS; i++)
        free(c->consumer[i]);
    free(c->dpage);
    free(c->codeline);
    free(c->dirty);
    if (c->ram)
        munmap(c->ram, ram_map_len(c->ram_size));
    free(c);
}

void cr16_reset(struct cr16_cpu *c)
{
    memset(c->h, 0, sizeof(c->h));
    c->pc = 0;
    c->psr = 0;
    c->znl_lazy = 0;
    c->cfg = 0;
    c->isp = c->intbase = c->sp_bank = 0;
    c->dbs = c->dsr = 0;
    c->dcr = c->car0 = c->car1 = 0;
    c->halted = 0;
    c->nmi = 0;
    c->fault_vector = 0;
    c->fault_pc = c->fault_addr = 0;
}

uint8_t *cr16_ram(struct cr16_cpu *c) { return c->ram; }
uint32_t cr16_ram_size(const struct cr16_cpu *c) { return c->ram_size; }

void cr16_set_psr(struct cr16_cpu *c, uint32_t v)
{
    v &= CR16_PSR_MASK;
    c->znl_lazy = 0;
    if ((v ^ c->psr) & CR16_PSR_U) {   /* switch stack-pointer banks */
        uint32_t t = rp_get(c, 15);
        rp_set(c, 15, c->sp_bank);
        c->sp_bank = t;
    }
    c->psr = (uint16_t)v;
}

void cr16_get_regs(const struct cr16_cpu *c, struct cr16_regs *o)
{
    int user = (c->psr & CR16_PSR_U) != 0;
    for (unsigned i = 0; i < 16; i++)
        o->r[i] = reg_get(c, i);
    o->pc = c->pc;
    o->isp = c->isp;
    o->usp = user ? rp_get(c, 15) : c->sp_bank;
    o->ssp = user ? c->sp_bank : rp_get(c, 15);
    o->intbase = c->intbase;
    o->psr = psr_value(c);
    o->cfg = c->cfg;
    o->dbs = c->dbs;
    o->dsr = c->dsr;
    o->dcr = c->dcr;
    o->car0 = c->car0;
    o->car1 = c->car1;
}

void cr16_set_regs(struct cr16_cpu *c, const struct cr16_regs *in)
{
    int user = (in->psr & CR16_PSR_U) != 0;
    for (int i = 0; i < 16; i++)
        if (i < 12)
            c->h[i] = (uint16_t)in->r[i];
        else
            rp_set(c, i, in->r[i]);
    c->pc = in->pc & 0xFFFFFEu;
    c->isp = in->isp;
    c->intbase = in->intbase & 0x00FFFFFEu;
    c->psr = in->psr & CR16_PSR_MASK;
    c->znl_lazy = 0;
    /* r[15] is the current bank; the other one comes from usp/ssp */
    c->sp_bank = user ? in->ssp : in->usp;
    c->cfg = in->cfg;
    c->dbs = in->dbs;
    c->dsr = in->dsr;
    c->dcr = in->dcr;
    c->car0 = in->car0;
    c->car1 = in->car1;
}

uint64_t cr16_insn_count(const struct cr16_cpu *c) { return c->insns; }
void cr16_set_insn_count(struct cr16_cpu *c, uint64_t n) { c->insns = n; }

void cr16_request_stop(struct cr16_cpu *c)
{
    atomic_store_explicit(&c->stop_req, 1, memory_order_relaxed);
}

void cr16_set_svc_host(struct cr16_cpu *c, int on) { c->svc_host = on != 0; }
int cr16_get_svc_host(const struct cr16_cpu *c) { return c->svc_host; }
int cr16_fault_vector(const struct cr16_cpu *c) { return c->fault_vector; }
uint32_t cr16_fault_pc(const struct cr16_cpu *c) { return c->fault_pc; }
uint32_t cr16_fault_addr(const struct cr16_cpu *c) { return c->fault_addr; }

void cr16_set_irq(struct cr16_cpu *c, int vector)
{
    c->irq = (vector >= 16 && vector <= 255) ? vector : 0;
}
int cr16_get_irq(const struct cr16_cpu *c) { return c->irq; }
void cr16_raise_nmi(struct cr16_cpu *c) { c->nmi = 1; }

void cr16_get_core_state(const struct cr16_cpu *c, struct cr16_core_state *out)
{
    cr16_get_regs(c, &out->regs);
    out->insns = c->insns;
    out->cycle_offset = c->cycle_offset;
    out->halted = c->halted;
    out->nmi = c->nmi;
}

void cr16_set_core_state(struct cr16_cpu *c, const struct cr16_core_state *in)
{
    cr16_set_regs(c, &in->regs);
    c->insns = in->insns;
    c->cycle_offset = in->cycle_offset;
    c->halted = in->halted != 0;
    c->nmi = in->nmi != 0;
}
int cr16_nmi_pending(const struct cr16_cpu *c) { return c->nmi; }
void cr16_set_nmi_pending(struct cr16_cpu *c, int pending) { c->nmi = pending != 0; }
int cr16_halted(const struct cr16_cpu *c) { return c->halted; }
void cr16_set_halted(struct cr16_cpu *c, int halted) { c->halted = halted != 0; }

/* ---- memory ---- */

dinsn *cr16_dpage_alloc(struct cr16_cpu *c, uint32_t page)
{
    dinsn *blk = calloc(CR16_DPAGE_ENTRIES + CR16_DPAGE_SENTINELS, sizeof(dinsn));
    if (blk)
        for (int i = 0; i < CR16_DPAGE_SENTINELS; i++)
            blk[CR16_DPAGE_ENTRIES + i].op = OP_PAGEX;
    c->dpage[page] = blk;
    return blk;
}

/* Forget decoded instructions that may overlap [addr, addr+len): every entry
 * in a written 64-byte line, and the two before it (a 6-byte instruction may
 * start 4 bytes before the line). */
void cr16_code_written(struct cr16_cpu *c, uint32_t addr, uint32_t len)
{
    uint32_t first = addr >> CR16_LINE_BITS, last = (addr + len - 1) >> CR16_LINE_BITS;
    uint32_t nlines = pages_of(c->ram_size, CR16_LINE_BITS);
    if (len == 0)
        return;
    if (last >= nlines)
        last = nlines - 1;
    for (uint32_t line = first; line <= last; line++) {
        if (!c->codeline[line])
            continue;
        c->codeline[line] = 0;
        uint32_t lo = line << CR16_LINE_BITS, hi = lo + (1u << CR16_LINE_BITS);
        lo = lo >= 4 ? lo - 4 : 0;
        for (uint32_t a = lo; a < hi; a += 2) {
            dinsn *blk = a < CR16_ADDR_SPACE ? c->dpage[a >> CR16_PAGE_BITS] : NULL;
            if (blk)
                memset(&blk[(a & (CR16_PAGE_SIZE - 1)) >> 1], 0, sizeof(dinsn));
        }
    }
}

static void mark_range(struct cr16_cpu *c, uint32_t addr, uint32_t len)
{
    if (len == 0)
        return;
    for (uint32_t p = addr >> CR16_PAGE_BITS; p <= (addr + len - 1) >> CR16_PAGE_BITS; p++)
        c->dirty[p] = 1;
    cr16_code_written(c, addr, len);
}

int cr16_write(struct cr16_cpu *c, uint32_t addr, const void *src, uint32_t len)
{
    if (addr > c->ram_size || len > c->ram_size - addr)
        return -1;
    memcpy(c->ram + addr, src, len);
    mark_range(c, addr, len);
    return 0;
}

/* Word-wise, stopping at the first non-zero word. */
int cr16_all_zero(const uint8_t *p, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w)
            return 0;
    }
    for (; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int cr16_zero(struct cr16_cpu *c, uint32_t addr, uint32_t len)
{
    if (addr > c->ram_size || len > c->ram_size - addr)
        return -1;
    while (len) {
        uint32_t in_page = CR16_PAGE_SIZE - (addr & (CR16_PAGE_SIZE - 1));
        uint32_t n = len < in_page ? len : in_page;
        uint8_t *p = c->ram + addr;
        if (!cr16_all_zero(p, n)) {  /* only pages that need it: zero RAM stays untouched */
            memset(p, 0, n);
            mark_range(c, addr, n);
        }
        addr += n;
        len -= n;
    }
    return 0;
}

uint32_t cr16_scan_nonzero(const struct cr16_cpu *c, uint8_t *map)
{
    uint32_t count = 0;
    for (uint32_t p = 0; p < c->npages; p++) {
        const uint8_t *page = c->ram + ((size_t)p << CR16_PAGE_BITS);
        uint32_t len = c->ram_size - (p << CR16_PAGE_BITS);
        if (len > CR16_PAGE_SIZE)
            len = CR16_PAGE_SIZE;
        map[p] = !cr16_all_zero(page, len);
        count += map[p];
    }
    return count;
}

static int fresh_ram(struct cr16_cpu *c, int populate)
{
    void *p = mmap(c->ram, ram_map_len(c->ram_size), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (populate ? MAP_POPULATE : 0),
                   -1, 0);
    if (p == MAP_FAILED)
        return -1;
    mark_range(c, 0, c->ram_size);
    return 0;
}

int cr16_clear_ram(struct cr16_cpu *c)
{
    return fresh_ram(c, 0);
}

int cr16_clear_ram_populate(struct cr16_cpu *c)
{
    return fresh_ram(c, 1);
}

int cr16_map_ram_file(struct cr16_cpu *c, int fd, uint64_t offset, int populate)
{
    if (offset & (CR16_PAGE_SIZE - 1))
        return -1;
    void *p = mmap(c->ram, ram_pages_len(c->ram_size), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_FIXED | (populate ? MAP_POPULATE : 0), fd, (off_t)offset);
    if (p == MAP_FAILED) {
        cr16_clear_ram(c);      /* MAP_FIXED may have dropped the old mapping */
        return -1;
    }
    mark_range(c, 0, c->ram_size);
    return 0;
}

int cr16_read(const struct cr16_cpu *c, uint32_t addr, void *dst, uint32_t len)
{
    if (addr > c->ram_size || len > c->ram_size - addr)
        return -1;
    memcpy(dst, c->ram + addr, len);
    return 0;
}

void cr16_invalidate(struct cr16_cpu *c, uint32_t addr, uint32_t len)
{
    if (addr >= c->ram_size)
        return;
    if (len > c->ram_size - addr)
        len = c->ram_size - addr;
    mark_range(c, addr, len);
}

/* ---- dirty tracking ---- */

int cr16_dirty_new(struct cr16_cpu *c)
{
    for (int i = 0; i < CR16_MAX_DIRTY_CONSUMERS; i++) {
        if (!c->consumer[i]) {
            c->consumer[i] = calloc(1, c->npages);
            if (!c->consumer[i])
                return -1;
            /* pages dirtied before this consumer existed belong to the others */
            cr16_dirty_sync(c, i);
            memset(c->consumer[i], 0, c->npages);
            return i;
        }
    }
    return -1;
}

void cr16_dirty_free(struct cr16_cpu *c, int id)
{
    if (id >= 0 && id < CR16_MAX_DIRTY_CONSUMERS) {
        cr16_dirty_sync(c, id);     /* hand pending bits to the others first */
        free(c->consumer[id]);
        c->consumer[id] = NULL;
    }
}

/* Move the core map's bits into every consumer's map, then clear it. */
uint8_t *cr16_dirty_sync(struct cr16_cpu *c, int id)
{
    if (id < 0 || id >= CR16_MAX_DIRTY_CONSUMERS || !c->consumer[id])
        return NULL;
    const uint32_t n = c->npages;
    for (uint32_t p = 0; p < n; p += 8) {
        uint64_t w = 0;
        uint32_t k = n - p < 8 ? n - p : 8;
        memcpy(&w, c->dirty + p, k);
        if (!w)
            continue;
        for (uint32_t q = p; q < p + k; q++) {
            if (!c->dirty[q])
                continue;
            for (int i = 0; i < CR16_MAX_DIRTY_CONSUMERS; i++)
                if (c->consumer[i])
                    c->consumer[i][q] = 1;
            c->dirty[q] = 0;
        }
    }
    return c->consumer[id];
}

void cr16_dirty_clear(struct cr16_cpu *c, int id)
{
    if (id >= 0 && id < CR16_MAX_DIRTY_CONSUMERS && c->consumer[id]) {
        cr16_dirty_sync(c, id);
        memset(c->consumer[id], 0, c->npages);
    }
}

uint32_t cr16_dirty_pages(const struct cr16_cpu *c) { return c->npages; }

/* Copy back from `saved` (a full copy of RAM, `saved_len` bytes) every page
 * consumer `id` saw written, then clear its map.  The other consumers see
 * those pages as written (they changed).  Returns the pages restored, or -1. */
int cr16_dirty_restore(struct cr16_cpu *c, int id, const uint8_t *saved, uint32_t saved_len)
{
    if (!cr16_dirty_sync(c, id) || saved_len != c->ram_size)
        return -1;
    uint8_t *map = c->consumer[id];
    const uint32_t n = c->npages;
    int restored = 0;
    for (uint32_t p0 = 0; p0 < n; p0 += 8) {
        uint64_t w = 0;
        uint32_t k = n - p0 < 8 ? n - p0 : 8;
        memcpy(&w, map + p0, k);
        if (!w)                 /* eight clean pages at a time */
            continue;
        for (uint32_t p = p0; p < p0 + k; p++) {
            if (!map[p])
                continue;
            uint32_t addr = p << CR16_PAGE_BITS;
            uint32_t len = c->ram_size - addr < CR16_PAGE_SIZE ? c->ram_size - addr
                                                                : CR16_PAGE_SIZE;
            memcpy(c->ram + addr, saved + addr, len);
            cr16_code_written(c, addr, len);
            /* the page changed for every other consumer; for this one it is
             * clean again (its map is cleared below) */
            for (int i = 0; i < CR16_MAX_DIRTY_CONSUMERS; i++)
                if (i != id && c->consumer[i])
                    c->consumer[i][p] = 1;
            restored++;
        }
        memset(map + p0, 0, k);
    }
    return restored;
}

/* ---- MMIO ---- */

int cr16_map_mmio(struct cr16_cpu *c, uint32_t base, uint32_t size, cr16_mmio_fn fn, void *opaque)
{
    uint64_t end = (uint64_t)base + size;
    if (size == 0 || base < c->ram_size || end > 0x100000000ull || c->nmmio >= CR16_MAX_MMIO)
        return -1;
    for (int i = 0; i < c->nmmio; i++) {
        const struct mmio_window *w = &c->mmio[i];
        if (base < (uint64_t)w->base + w->size && w->base < end)
            return -1;
    }
    c->mmio[c->nmmio++] = (struct mmio_window){base, size, fn, opaque, 0, {{0}}};
    return 0;
}

void cr16_unmap_mmio(struct cr16_cpu *c, uint32_t base)
{
    for (int i = 0; i < c->nmmio; i++) {
        if (c->mmio[i].base == base) {
            c->mmio[i] = c->mmio[--c->nmmio];
            return;
        }
    }
}

int cr16_mmio_access(struct cr16_cpu *c, uint32_t addr, int size, int is_write, uint32_t *v)
{
    for (int i = 0; i < c->nmmio; i++) {
        const struct mmio_window *w = &c->mmio[i];
        if (addr >= w->base && (uint64_t)addr + (uint32_t)size <= (uint64_t)w->base + w->size) {
            uint32_t off = addr - w->base;
            if (!is_write) {
                for (int k = 0; k < w->nshadow; k++) {
                    const struct mmio_shadow *sh = &w->shadow[k];
                    if (sh->offset == off && sh->size == (uint32_t)size) {
                        *v = c->insns + c->cycle_offset < sh->at ? sh->before : sh->after;
                        return 0;
                    }
                }
            }
            return w->fn(w->opaque, off, size, is_write, v);
        }
    }
    return -1;
}

int cr16_mmio_shadow(struct cr16_cpu *c, uint32_t base, uint32_t offset, uint32_t size,
                     uint32_t before, uint32_t after, uint64_t at, int remove)
{
    for (int i = 0; i < c->nmmio; i++) {
        struct mmio_window *w = &c->mmio[i];
        if (w->base != base)
            continue;
        for (int k = 0; k < w->nshadow; k++) {
            if (w->shadow[k].offset == offset && w->shadow[k].size == size) {
                if (remove)
                    w->shadow[k] = w->shadow[--w->nshadow];
                else
                    w->shadow[k] = (struct mmio_shadow){offset, size, before, after, at};
                return 0;
            }
        }
        if (remove)
            return 0;
        if (w->nshadow >= CR16_MAX_SHADOW)
            return -1;
        w->shadow[w->nshadow++] = (struct mmio_shadow){offset, size, before, after, at};
        return 0;
    }
    return -1;
}

void cr16_set_cycle_offset(struct cr16_cpu *c, uint64_t offset) { c->cycle_offset = offset; }
