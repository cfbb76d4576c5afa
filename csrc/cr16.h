/* cr16.h - the CR16C CPU core: public interface.
 *
 * One cr16_cpu owns its registers, its guest RAM buffer, its predecoded
 * instruction cache and its dirty-page maps.  There is no global state: any
 * number of CPUs may live in one process, and a slice of one may run in a
 * thread while others run elsewhere.
 */
#ifndef AEMU_CR16_H
#define AEMU_CR16_H

#include <stddef.h>
#include <stdint.h>

/* Why cr16_run() returned. */
enum cr16_exit {
    CR16_EXIT_BUDGET = 0,     /* executed the whole budget */
    CR16_EXIT_HALT = 1,       /* WAIT/EIWAIT: sleeping until an interrupt */
    CR16_EXIT_SYSCALL = 2,    /* `excp svc` in host-call mode; pc is past it */
    CR16_EXIT_BREAKPOINT = 3, /* `excp bpt` with no dispatch table; pc is past it */
    CR16_EXIT_FAULT = 4,      /* an exception the guest cannot take (see fault_*) */
    CR16_EXIT_STOP = 5,       /* cr16_request_stop() or an MMIO handler asked to stop */
};

/* Exception vectors (cr16c-isa.md 6.1). */
enum cr16_vector {
    CR16_VEC_NMI = 1, CR16_VEC_SVC = 5, CR16_VEC_DVZ = 6, CR16_VEC_FLG = 7,
    CR16_VEC_BPT = 8, CR16_VEC_TRC = 9, CR16_VEC_UND = 10, CR16_VEC_IAD = 12,
    CR16_VEC_DBG = 14, CR16_VEC_ISE = 15,
};

/* PSR bits. */
enum {
    CR16_PSR_C = 0x0001, CR16_PSR_T = 0x0002, CR16_PSR_L = 0x0004, CR16_PSR_U = 0x0008,
    CR16_PSR_F = 0x0020, CR16_PSR_Z = 0x0040, CR16_PSR_N = 0x0080, CR16_PSR_E = 0x0200,
    CR16_PSR_P = 0x0400, CR16_PSR_I = 0x0800,
};
#define CR16_PSR_MASK 0x0EEF
#define CR16_CFG_ED 0x0100

#define CR16_PAGE_BITS 12
#define CR16_PAGE_SIZE (1u << CR16_PAGE_BITS)
#define CR16_MAX_DIRTY_CONSUMERS 8
#define CR16_MAX_MMIO 32
#define CR16_MAX_SHADOW 8
#define CR16_GATHER_MAX 1024     /* pages per cr16_ram_gather call */

/* ---- API: everything below is also cffi's cdef (aemu/cpu/_build.py) ---- */

/* MMIO handler: called for an access in [base, base+size).  `offset` is
 * relative to base; `size` is 1, 2 or 4.  For a read, store the value in
 * *value.  Return 0 on success, 1 on success and "end the slice after this
 * instruction", -1 for a bus error (the guest takes an IAD trap). */
typedef int (*cr16_mmio_fn)(void *opaque, uint32_t offset, int size, int is_write,
                            uint32_t *value);

/* The architectural state, as one plain struct (also what savevm sees).
 * r[15] is the stack pointer instructions see: USP in user mode (PSR.U),
 * the supervisor SP otherwise; `usp` and `ssp` name both banks explicitly. */
struct cr16_regs {
    uint32_t r[16];   /* r0-r11 hold 16-bit values; r12, r13, ra, sp are 32-bit */
    uint32_t pc;
    uint32_t isp, usp, ssp, intbase;
    uint16_t psr, cfg;
    uint16_t dbs, dsr;
    uint32_t dcr, car0, car1;
};

/* Everything of the core that savevm keeps besides RAM: the registers plus
 * the instruction count, idle-cycle offset, halted flag and latched NMI. */
struct cr16_core_state {
    struct cr16_regs regs;
    uint64_t insns, cycle_offset;
    int halted, nmi;
};

struct cr16_cpu;

struct cr16_cpu *cr16_new(uint32_t ram_size);
void cr16_free(struct cr16_cpu *cpu);
/* Registers to their reset values (all zero); memory untouched. */
void cr16_reset(struct cr16_cpu *cpu);

uint8_t *cr16_ram(struct cr16_cpu *cpu);
uint32_t cr16_ram_size(const struct cr16_cpu *cpu);

/* Copy the registers out / in.  Setting PSR switches the SP bank if U changes. */
void cr16_get_regs(const struct cr16_cpu *cpu, struct cr16_regs *out);
void cr16_set_regs(struct cr16_cpu *cpu, const struct cr16_regs *in);
void cr16_get_core_state(const struct cr16_cpu *cpu, struct cr16_core_state *out);
void cr16_set_core_state(struct cr16_cpu *cpu, const struct cr16_core_state *in);

/* Execute at most `budget` instructions (>0).  *executed gets how many ran. */
int cr16_run(struct cr16_cpu *cpu, uint64_t budget, uint64_t *executed);
uint64_t cr16_insn_count(const struct cr16_cpu *cpu);
void cr16_set_insn_count(struct cr16_cpu *cpu, uint64_t n);
/* Thread-safe: make a running slice return CR16_EXIT_STOP soon. */
void cr16_request_stop(struct cr16_cpu *cpu);

/* Options. */
void cr16_set_svc_host(struct cr16_cpu *cpu, int on);   /* excp svc = host call */
int cr16_get_svc_host(const struct cr16_cpu *cpu);

/* After CR16_EXIT_FAULT / BREAKPOINT: vector, pc of the instruction, address. */
int cr16_fault_vector(const struct cr16_cpu *cpu);
uint32_t cr16_fault_pc(const struct cr16_cpu *cpu);
uint32_t cr16_fault_addr(const struct cr16_cpu *cpu);

/* Interrupt inputs.  `vector` 0 lowers the maskable line, 16..255 raises it
 * (level-sensitive: it stays raised until lowered).  NMI is an edge. */
void cr16_set_irq(struct cr16_cpu *cpu, int vector);
int cr16_get_irq(const struct cr16_cpu *cpu);
void cr16_raise_nmi(struct cr16_cpu *cpu);
/* The latched NMI edge (for savevm). */
int cr16_nmi_pending(const struct cr16_cpu *cpu);
void cr16_set_nmi_pending(struct cr16_cpu *cpu, int pending);
int cr16_halted(const struct cr16_cpu *cpu);
void cr16_set_halted(struct cr16_cpu *cpu, int halted);

/* Guest memory access from the host: bounds-checked, marks pages dirty and
 * drops predecoded code.  Return 0, or -1 if the range is not all RAM. */
int cr16_write(struct cr16_cpu *cpu, uint32_t addr, const void *src, uint32_t len);
int cr16_read(const struct cr16_cpu *cpu, uint32_t addr, void *dst, uint32_t len);
/* All of RAM to zero at once (fresh anonymous pages); marks every page
 * written.  Returns 0, or -1 (the mapping failed). */
int cr16_clear_ram(struct cr16_cpu *cpu);
/* The same with every page allocated now (an incoming migration: the page
 * faults happen while it listens, not while pages stream in). */
int cr16_clear_ram_populate(struct cr16_cpu *cpu);
/* Zero [addr, addr+len), writing (and marking) only the parts that are not
 * zero already, so never-touched RAM stays unallocated.  0, or -1 if the
 * range is not all RAM. */
int cr16_zero(struct cr16_cpu *cpu, uint32_t addr, uint32_t len);
/* map[p] = 1 if page p of RAM holds a non-zero byte, else 0 (map has
 * cr16_dirty_pages() bytes); returns the number of non-zero pages. */
uint32_t cr16_scan_nonzero(const struct cr16_cpu *cpu, uint8_t *map);
/* Map RAM copy-on-write onto a file from the page-aligned `offset` on: pages
 * are read from the file on first touch (a lazy snapshot load), or all at
 * once with `populate` (an eager one); holes read as zero.  The file must not
 * change afterwards.  Every page counts as written.  Returns 0, or -1 (then
 * RAM is all zero). */
int cr16_map_ram_file(struct cr16_cpu *cpu, int fd, uint64_t offset, int populate);
/* Tell the core that the host changed RAM directly (through the buffer). */
void cr16_invalidate(struct cr16_cpu *cpu, uint32_t addr, uint32_t len);

/* Dirty-page tracking: independent consumers, each with its own map of one
 * byte per 4 KiB page (1 = written since that consumer last cleared). */
int cr16_dirty_new(struct cr16_cpu *cpu);                 /* id or -1 */
void cr16_dirty_free(struct cr16_cpu *cpu, int id);
uint8_t *cr16_dirty_sync(struct cr16_cpu *cpu, int id);   /* up-to-date map */
void cr16_dirty_clear(struct cr16_cpu *cpu, int id);
uint32_t cr16_dirty_pages(const struct cr16_cpu *cpu);    /* map length */
/* Copy the pages consumer `id` saw written back from `saved` (a whole-RAM
 * copy of saved_len == RAM size bytes) and clear its map: the RAM half of an
 * in-memory checkpoint restore.  Returns pages restored, or -1. */
int cr16_dirty_restore(struct cr16_cpu *cpu, int id, const uint8_t *saved, uint32_t saved_len);

/* MMIO windows outside RAM.  Returns 0, or -1 (overlap / table full). */
int cr16_map_mmio(struct cr16_cpu *cpu, uint32_t base, uint32_t size, cr16_mmio_fn fn,
                  void *opaque);
void cr16_unmap_mmio(struct cr16_cpu *cpu, uint32_t base);
/* Let C answer reads of one register of the window at `base` (a polled
 * status register must not cost a call into the handler): the value is
 * `before` until cycle `at`, `after` from then on (`at` = 0: always `after`).
 * Cycles are insn_count + cycle_offset.  remove != 0 drops the shadow.
 * Returns 0, or -1 (no such window, table full). */
int cr16_mmio_shadow(struct cr16_cpu *cpu, uint32_t base, uint32_t offset, uint32_t size,
                     uint32_t before, uint32_t after, uint64_t at, int remove);
void cr16_set_cycle_offset(struct cr16_cpu *cpu, uint64_t offset);

/* Migration records (csrc/migrate.c; qemu-migration.md 2.5, 4.2).
 * zero_mode of cr16_ram_pack: how a page of zeros goes out. */
enum { CR16_ZERO_SEND = 0, CR16_ZERO_RECORD = 1, CR16_ZERO_SKIP = 2 };
/* cr16_ram_unpack's *stop and *err. */
enum { CR16_UNPACK_MORE = 0, CR16_UNPACK_EOS = 1, CR16_UNPACK_FLUSH = 2, CR16_UNPACK_ERROR = -1 };
enum { CR16_UNPACK_EFLAGS = 1, CR16_UNPACK_EBLOCK = 2, CR16_UNPACK_ENONAME = 3,
       CR16_UNPACK_ERANGE = 4, CR16_UNPACK_EFILL = 5 };
/* Write PAGE (or ZERO, by zero_mode: SEND = as a normal page, RECORD = a
 * ZERO record, SKIP = nothing, the receiver's RAM is zero) records for the
 * pages p >= *pos with map[p] set, clearing map[p], until `out` has no room
 * for another record; the block is named in the first record of a section
 * (*named = 0), CONTINUE after.  Counts into *normal and *zero; returns the
 * bytes written; *pos is where to go on.  `hashes`: see cr16_page_hash. */
size_t cr16_ram_pack(struct cr16_cpu *cpu, uint8_t *map, uint32_t *pos, uint8_t *out, size_t cap,
                     const uint8_t *block, uint32_t block_len, int *named, int zero_mode,
                     uint32_t *normal, uint32_t *zero, uint64_t *hashes);
/* Apply the complete records in buf[0, len) to RAM, checked: returns bytes
 * consumed; *stop = MORE (the rest is an incomplete record), EOS or FLUSH
 * (that record consumed), or ERROR (*err says why; the return value is where
 * the bad record starts).  *named carries the CONTINUE state across calls. */
long cr16_ram_unpack(struct cr16_cpu *cpu, const uint8_t *buf, size_t len, const uint8_t *block,
                     uint32_t block_len, int *named, int *stop, uint32_t *pages, uint32_t *zeros,
                     int *err, uint64_t *hashes);
/* Take up to `max` (<= CR16_GATHER_MAX) pages with map[p] set from *pos on,
 * clearing map[p]: be64 offsets of the normal pages, then of the zero pages
 * (zero_detect; else every page is normal) into `offsets`, the normal pages'
 * bytes into `data`.  Returns the normal count, *nzero the zero count. */
uint32_t cr16_ram_gather(struct cr16_cpu *cpu, uint8_t *map, uint32_t *pos, uint32_t max,
                         uint8_t *offsets, uint8_t *data, int zero_detect, uint32_t *nzero,
                         uint64_t *hashes);
/* Store a multifd packet's pages: `normal` pages from data, then `zeros`
 * zeroed.  Every offset is checked first: 0, or -1 and RAM unchanged. */
int cr16_ram_scatter(struct cr16_cpu *cpu, const uint8_t *offsets, uint32_t normal, uint32_t zeros,
                     const uint8_t *data, uint64_t *hashes);
/* The end-to-end check: every function above that sends or stores a page
 * records its hash in hashes[page] (when hashes is not NULL); both sides
 * start from cr16_hash_reset (every page zero), and after the last page the
 * two digests must be equal, or some page arrived different from how it
 * left.  (Pages the sender skipped as zero keep the zero hash on both.) */
uint64_t cr16_page_hash(const uint8_t *page);
void cr16_hash_reset(uint64_t *hashes, uint32_t n);
uint64_t cr16_ram_digest(const uint64_t *hashes, uint32_t n);

#endif
