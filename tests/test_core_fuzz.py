"""Garbage in, no host crash: random code and state on small RAM sizes.

Every exit must be one of the documented reasons, the instruction count must
stay within the budget, and the core must never touch host memory outside
the guest's (the same loop runs under AddressSanitizer with
`AEMU_ASAN_FUZZ=1 python -m pytest tests/test_core_fuzz.py` after building
the core with -fsanitize=address; see docs/cpu.md)."""
from __future__ import annotations

import os
import random

import pytest

from aemu.cpu import Cpu, Exit

SEEDS = int(os.environ.get("AEMU_FUZZ_SEEDS", "400"))
RAM_SIZES = (8, 64, 4094, 4096, 4098, 65536, 1 << 20)


def _random_state(rng: random.Random, ram: int) -> dict:
    return {
        "r": [rng.getrandbits(16) for _ in range(12)] + [rng.getrandbits(32) for _ in range(4)],
        "pc": rng.randrange(0, min(ram, 1 << 24)) & ~1,
        "psr": rng.getrandbits(16),
        "cfg": rng.getrandbits(16),
        "isp": rng.choice([rng.getrandbits(32), rng.randrange(0, ram + 16)]),
        "usp": rng.getrandbits(32),
        "intbase": rng.choice([0, rng.getrandbits(24), rng.randrange(0, ram + 16)]),
    }


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_code_never_crashes(seed: int) -> None:
    rng = random.Random(seed)
    ram = rng.choice(RAM_SIZES)
    cpu = Cpu(ram, svc_host=rng.random() < 0.7)
    cpu.write(0, rng.randbytes(ram))
    if rng.random() < 0.3:      # an MMIO window right above RAM
        cpu.map_mmio(ram, 0x100, lambda off, size: rng.getrandbits(32),
                     lambda off, size, value: rng.random() < 0.1)
    cpu.set_state(_random_state(rng, ram))
    for _ in range(8):
        budget = rng.choice([1, 2, 17, 1000, 5000, 70000])
        if rng.random() < 0.2:
            cpu.set_irq(rng.randrange(16, 256))
        if rng.random() < 0.1:
            cpu.raise_nmi()
        before = cpu.insn_count
        why, n = cpu.run(budget)
        assert why in Exit and 0 <= n <= budget
        assert cpu.insn_count == before + n
        assert cpu.pc < 1 << 24 and cpu.pc % 2 == 0
        if why == Exit.BUDGET:
            assert n == budget
        if why in (Exit.FAULT, Exit.HALT) or rng.random() < 0.2:
            if rng.random() < 0.5:      # scribble over some code while it is decoded
                addr = rng.randrange(0, ram)
                cpu.write(addr, rng.randbytes(min(64, ram - addr)))
            cpu.set_state(_random_state(rng, ram))
            cpu.halted = False
