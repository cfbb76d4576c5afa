"""cffi (API mode, out-of-line) build of the C core as ``aemu.cpu._core``."""
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"

ffibuilder = FFI()
# The declarations after the API marker in cr16.h are plain C that cffi
# parses as they are: one source of truth for the interface.
_MARKER = "/* ---- API: everything below is also cffi's cdef"
_header = (CSRC / "cr16.h").read_text()
_api = _header.split(_MARKER, 1)[1].split("*/", 1)[1].rsplit("#endif", 1)[0]
ffibuilder.cdef(
    _api
    + """
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
