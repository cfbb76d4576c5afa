"""Every committed test program runs on aemu and prints exactly what the same
C source prints when built for the host (tests/firmware/expected/, made by
`make expected`): the oracle is C itself."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from aemu.hw.program import run_program

FIRMWARE = Path(__file__).resolve().parent / "firmware"
ELFS = sorted(FIRMWARE.glob("*.elf"))


def _program(elf: Path) -> str:
    """`sieve-O2.elf` and `sieve-msim-O0.elf` both test `sieve`."""
    return elf.stem.rsplit("-", 1)[0].removesuffix("-msim")


def test_every_program_is_here() -> None:
    sources = {p.stem for p in FIRMWARE.glob("*.c")}
    assert len(sources) >= 15
    for src in sources:
        for opt in ("O0", "O2", "Os"):
            assert (FIRMWARE / f"{src}-{opt}.elf").exists(), f"{src}-{opt}.elf missing"
        assert (FIRMWARE / "expected" / f"{src}.out").exists()


@pytest.mark.parametrize("elf", ELFS, ids=[e.stem for e in ELFS])
def test_program_output_matches_host_build(elf: Path, tmp_path: Path) -> None:
    prog = _program(elf)
    expected = (FIRMWARE / "expected" / f"{prog}.out").read_bytes()
    status_file = FIRMWARE / "expected" / f"{prog}.status"
    expected_status = int(status_file.read_text()) if status_file.exists() else 0
    args_file = FIRMWARE / "expected" / f"{prog}.args"
    args = args_file.read_text(encoding="utf-8").splitlines() if args_file.exists() else []
    in_file = FIRMWARE / "input" / f"{prog}.in"
    stdin = io.BytesIO(in_file.read_bytes() if in_file.exists() else b"")
    out, err = io.BytesIO(), io.BytesIO()

    result = run_program(elf, args, name=prog, fs_root=tmp_path, stdin=stdin, stdout=out,
                         stderr=err, max_insns=50_000_000, warn=lambda msg: None)

    assert result.reason == "exit", (result.reason, result.message, err.getvalue())
    assert out.getvalue().decode(errors="replace") == expected.decode(errors="replace")
    assert out.getvalue() == expected
    assert result.status == expected_status
