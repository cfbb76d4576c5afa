"""Seeded random-instruction differential test: aemu against cr16-elf-run-trace.

Each seed generates one program of independent random blocks
(tests/difftest/gen.py), assembles and links it with the cr16-elf toolchain,
runs it on the reference simulator and on aemu, and compares stdout (every
block's registers, PSR flags and data areas), the exit status and the number
of executed instructions.  Only instruction forms and cases the simulator
implements as documented are generated (docs/cr16c-isa.md section 8.1).

Environment knobs for longer local runs:

* ``AEMU_DIFF_SEEDS``  number of seeds (default 60, i.e. 3000 random blocks)
* ``AEMU_DIFF_FIRST``  first seed (default 0)
* ``AEMU_DIFF_BLOCKS`` blocks per program (default 50)

A failure names the seed and the first differing block, shows the differing
registers/bytes and the block's assembly, and a version of the block reduced
by deleting lines.  To reproduce by hand (from tests/)::

    python -m difftest.harness --prefix $AEMU_CR16_PREFIX --start SEED --seeds 1 --minimize --keep
"""
from __future__ import annotations

import os

import pytest

from conftest import toolchain_tool
from difftest import gen, harness

N_SEEDS = int(os.environ.get("AEMU_DIFF_SEEDS", "60"))
FIRST_SEED = int(os.environ.get("AEMU_DIFF_FIRST", "0"))
N_BLOCKS = int(os.environ.get("AEMU_DIFF_BLOCKS", "50"))
N_OPS = 40

pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="module")
def tools() -> harness.Tools:
    return harness.Tools(toolchain_tool("as"), toolchain_tool("ld"), toolchain_tool("run-trace"))


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + N_SEEDS))
def test_random_program(seed: int, tools: harness.Tools, tmp_path) -> None:
    prog = gen.generate_program(seed, N_BLOCKS, N_OPS)
    elf = harness.build(prog, tools, tmp_path)
    sim = harness.run_sim(elf, tools)
    # the generated program must be one the simulator runs to completion
    assert not sim.error and sim.status == prog.exit_status, (
        f"seed {seed}: the simulator did not run the program cleanly "
        f"(status {sim.status}, stderr {sim.error!r}); generator bug")
    assert len(sim.stdout) == N_BLOCKS * gen.BLOCK_OUT_LEN
    emu = harness.run_aemu(elf)
    report = harness.compare(prog, sim, emu)
    if report is not None:
        try:
            report += "\n\n" + harness.minimize(seed, tools, tmp_path, N_BLOCKS, N_OPS)
        except Exception as exc:  # pragma: no cover - diagnostics only
            report += f"\n\n(minimizing failed: {exc!r})"
        pytest.fail(report, pytrace=False)


def test_generator_is_deterministic() -> None:
    a = gen.generate_program(12345, 5, N_OPS)
    b = gen.generate_program(12345, 5, N_OPS)
    assert a.asm == b.asm and a.exit_status == b.exit_status
    assert gen.generate_program(12346, 5, N_OPS).asm != a.asm
