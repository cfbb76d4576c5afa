#!/usr/bin/env python3
"""Per-test reset cost of aemu's pytest fixtures (aemu/testing/).

A firmware (tests/firmware/irq/uart_echo.elf) is booted once to its banner
and sealed, as the fixtures do.  Then each round plays a test that dirtied
a few pages: it writes into K distinct RAM pages (K = 1, 4, 16) through
``cpu.write`` and one device register (TIMER0 RELOAD, through MMIO), and
the reset is timed:

1. ``restore``: ``Checkpoint.restore()`` alone (the pages written, the
   device that changed);
2. ``reset``: ``PooledMachine.reset()``, what a checkout does: every device
   restored (also one changed behind the checkpoint's back), listeners,
   pending UART input, UART and host-service output, pacing;
3. ``fixture path``: what ``aemu_machine_factory`` + ``aemu_machine`` do for a
   test, without pytest: a new MachineFactory, ``await factory()`` (spec
   lookup, checkout, reset) and ``release()``;
4. ``in pytest`` (unless --no-pytest): a generated project of --tests tests
   that each take ``aemu_machine`` and ``aemu_uart`` and dirty 4 pages and a
   register, against the same tests taking no fixture, run by pytest in a
   subprocess; a conftest hook times each test (setup, call, teardown) and the
   difference of the medians is what the fixtures add to a test, pytest-asyncio's
   async-fixture machinery included.

Medians of --rounds rounds (after --warmup uncounted ones); rates are 1/median.
The issue's goal: a per-test reset of at most 100 µs.

Usage: python bench/reset.py [--rounds N] [--tests N] [--no-pytest] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ECHO = ROOT / "tests" / "firmware" / "irq" / "uart_echo.elf"
BANNER = b"'q' ends\n"
PAGE = 4096
#: where the dirtied pages are: the free RAM above the program, far apart
DIRTY_BASE = 0x300000
GOAL_US = 100.0


def dirty(vm, pages: int) -> None:
    for k in range(pages):
        vm.cpu.write(DIRTY_BASE + k * 16 * PAGE, b"\xa5" * 64)
    vm.device("timer0").write(0x04, 4, 12345)       # RELOAD: a device that changed


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def in_process(rounds: int, warmup: int, page_counts: list[int]) -> dict:
    from aemu.testing.machines import MachineFactory, MachinePool, SpecResolver

    pools = {"session": MachinePool("session"), "module": MachinePool("module")}
    resolver = SpecResolver()
    options = {"firmware": str(ECHO), "boot": BANNER}

    def factory() -> MachineFactory:
        return MachineFactory(pools, resolver, options, ROOT)

    first = factory()
    vm = await first()
    first.release()
    checkpoint = vm._checkpoint
    out: dict = {}
    for pages in page_counts:
        restore, reset, path = [], [], []
        for i in range(warmup + rounds):
            dirty(vm, pages)
            t0 = time.perf_counter()
            copied = checkpoint.restore()
            t1 = time.perf_counter()
            assert copied == pages, f"restore copied {copied} pages, not {pages}"
            dirty(vm, pages)
            t2 = time.perf_counter()
            vm.reset()
            t3 = time.perf_counter()
            dirty(vm, pages)
            t4 = time.perf_counter()
            f = factory()
            again = await f()
            f.release()
            t5 = time.perf_counter()
            assert again is vm
            if i >= warmup:
                restore.append(t1 - t0)
                reset.append(t3 - t2)
                path.append(t5 - t4)
        out[pages] = {"restore_us": median_us(restore), "reset_us": median_us(reset),
                      "fixture_path_us": median_us(path)}
    # the reset really resets: the pages read back as they were booted
    dirty(vm, 4)
    vm.reset()
    assert vm.cpu.read(DIRTY_BASE, 64) == bytes(64)
    pools["session"].close()
    return out


CONFTEST = """
import json, os, statistics, time
_T = {}
_D = []

def pytest_runtest_logstart(nodeid, location):
    _T[nodeid] = time.perf_counter()

def pytest_runtest_logfinish(nodeid, location):
    _D.append(time.perf_counter() - _T.pop(nodeid))

def pytest_sessionfinish(session):
    with open(os.environ["RESET_BENCH_OUT"], "w") as f:
        json.dump(_D, f)
"""

WITH = f"""
import pytest
pytestmark = [pytest.mark.asyncio, pytest.mark.aemu(firmware={str(ECHO)!r}, boot={BANNER!r})]

@pytest.mark.parametrize("n", range({{tests}}))
async def test_it(aemu_machine, aemu_uart, n):
    for k in range(4):
        aemu_machine.cpu.write({DIRTY_BASE} + k * 16 * {PAGE}, b"x" * 64)
    aemu_machine.device("timer0").write(4, 4, n)
"""

WITHOUT = """
import pytest
pytestmark = pytest.mark.asyncio

@pytest.mark.parametrize("n", range({tests}))
async def test_it(n):
    pass
"""


def pytest_per_test(tests: int, runs: int) -> dict:
    """Median per-test time with the fixtures and without, in µs."""
    results: dict[str, list[float]] = {"with": [], "without": []}
    with tempfile.TemporaryDirectory(prefix="aemu-reset-bench-") as tmp:
        base = Path(tmp)
        (base / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = "
                                         "function\nasyncio_default_test_loop_scope = "
                                         "function\n")
        (base / "conftest.py").write_text(CONFTEST)
        for _ in range(runs):
            for kind, body in (("with", WITH), ("without", WITHOUT)):
                test = base / "test_bench.py"
                test.write_text(body.replace("{tests}", str(tests)))
                out = base / f"{kind}.json"
                env = {**os.environ, "RESET_BENCH_OUT": str(out)}
                done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p",
                                       "no:cacheprovider", "-p", "no:randomly", str(test)],
                                      cwd=base, env=env, capture_output=True, text=True,
                                      timeout=600)
                if done.returncode != 0:
                    raise SystemExit(f"pytest failed:\n{done.stdout}{done.stderr}")
                durations = json.loads(out.read_text())[1:]   # the first test boots
                results[kind].append(median_us(durations))
    with_us = statistics.median(results["with"])
    without_us = statistics.median(results["without"])
    return {"with_us": with_us, "without_us": without_us, "added_us": with_us - without_us,
            "runs": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5000, help="timed resets per figure")
    ap.add_argument("--warmup", type=int, default=200, help="uncounted rounds first")
    ap.add_argument("--pages", default="1,4,16", help="dirty page counts (comma-separated)")
    ap.add_argument("--tests", type=int, default=400, help="tests per pytest run")
    ap.add_argument("--pytest-runs", type=int, default=3, help="pytest runs per variant")
    ap.add_argument("--no-pytest", action="store_true", help="skip the pytest figure")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = ap.parse_args()
    pages = [int(p) for p in opts.pages.split(",")]
    figures = asyncio.run(in_process(opts.rounds, opts.warmup, pages))
    result: dict = {"in_process": figures}
    if not opts.no_pytest:
        result["pytest"] = pytest_per_test(opts.tests, opts.pytest_runs)
    if opts.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"per-test reset of {ECHO.name} (booted to its banner), medians of {opts.rounds}")
    print(f"{'dirty pages':>11} {'restore us':>11} {'reset us':>9} {'fixture path us':>16} "
          f"{'tests/s':>8}")
    for k, f in figures.items():
        print(f"{k:>11} {f['restore_us']:>11.1f} {f['reset_us']:>9.1f} "
              f"{f['fixture_path_us']:>16.1f} {1e6 / f['fixture_path_us']:>8.0f}")
    if "pytest" in result:
        p = result["pytest"]
        print(f"in pytest, per test ({opts.tests} tests, median of {opts.pytest_runs} runs): "
              f"{p['with_us']:.0f} us with aemu_machine + aemu_uart, {p['without_us']:.0f} us "
              f"without: the fixtures add {p['added_us']:.0f} us")
    worst = max(f["fixture_path_us"] for f in figures.values())
    print(f"goal: reset at most {GOAL_US:.0f} us per test: "
          f"{'met' if worst <= GOAL_US else 'MISSED'} (fixture path {worst:.1f} us at most)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
