"""cffi (API mode, out-of-line) build of the C core as ``aemu.cpu._core``."""
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"

ffibuilder = FFI()
ffibuilder.cdef(
    """
    struct cr16_regs {
        uint32_t r[16];
        uint32_t pc;
        uint32_t isp, usp, ssp, intbase;
        uint16_t psr, cfg;
        uint16_t dbs, dsr;
        uint32_t dcr, car0, car1;
    };
    struct cr16_cpu;
    typedef int (*cr16_mmio_fn)(void *opaque, uint32_t offset, int size, int is_write,
                                uint32_t *value);

    struct cr16_cpu *cr16_new(uint32_t ram_size);
    void cr16_free(struct cr16_cpu *cpu);
    void cr16_reset(struct cr16_cpu *cpu);
    uint8_t *cr16_ram(struct cr16_cpu *cpu);
    uint32_t cr16_ram_size(const struct cr16_cpu *cpu);
    void cr16_get_regs(const struct cr16_cpu *cpu, struct cr16_regs *out);
    void cr16_set_regs(struct cr16_cpu *cpu, const struct cr16_regs *in);
    int cr16_run(struct cr16_cpu *cpu, uint64_t budget, uint64_t *executed);
    uint64_t cr16_insn_count(const struct cr16_cpu *cpu);
    void cr16_set_insn_count(struct cr16_cpu *cpu, uint64_t n);
    void cr16_request_stop(struct cr16_cpu *cpu);
    void cr16_set_svc_host(struct cr16_cpu *cpu, int on);
    int cr16_get_svc_host(const struct cr16_cpu *cpu);
    int cr16_fault_vector(const struct cr16_cpu *cpu);
    uint32_t cr16_fault_pc(const struct cr16_cpu *cpu);
    uint32_t cr16_fault_addr(const struct cr16_cpu *cpu);
    void cr16_set_irq(struct cr16_cpu *cpu, int vector);
    int cr16_get_irq(const struct cr16_cpu *cpu);
    void cr16_raise_nmi(struct cr16_cpu *cpu);
    int cr16_halted(const struct cr16_cpu *cpu);
    void cr16_set_halted(struct cr16_cpu *cpu, int halted);
    int cr16_write(struct cr16_cpu *cpu, uint32_t addr, const void *src, uint32_t len);
    int cr16_read(const struct cr16_cpu *cpu, uint32_t addr, void *dst, uint32_t len);
    void cr16_invalidate(struct cr16_cpu *cpu, uint32_t addr, uint32_t len);
    int cr16_dirty_new(struct cr16_cpu *cpu);
    void cr16_dirty_free(struct cr16_cpu *cpu, int id);
    uint8_t *cr16_dirty_sync(struct cr16_cpu *cpu, int id);
    void cr16_dirty_clear(struct cr16_cpu *cpu, int id);
    uint32_t cr16_dirty_pages(const struct cr16_cpu *cpu);
    int cr16_map_mmio(struct cr16_cpu *cpu, uint32_t base, uint32_t size, cr16_mmio_fn fn,
                      void *opaque);
    void cr16_unmap_mmio(struct cr16_cpu *cpu, uint32_t base);

    extern "Python" int _aemu_mmio(void *opaque, uint32_t offset, int size, int is_write,
                                   uint32_t *value);
    """
)
ffibuilder.set_source(
    "aemu.cpu._core",
    '#include "cr16.h"',
    sources=[str(p.relative_to(ROOT)) for p in sorted(CSRC.glob("*.c"))],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=["-std=c11", "-O2", "-fno-gcse", "-fno-crossjumping", "-Wall", "-Wextra",
                        "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
