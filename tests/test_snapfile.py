"""Snapshot files (aemu/savevm/snapfile.py), the store (store.py) and the
seekable file channel (aemu/transport/file.py).

- Parallel page writes give the same file, byte for byte, as writes on the
  calling thread, for any number of workers, pieces of any size and files
  with holes; an uncommitted file leaves nothing behind.
- The oracle for loads is a twin that never saved: one VM runs a guest with
  a timer interrupt (and host pokes into RAM at fixed cycles, so that diffs
  hold pages that were written, zeroed and written again) and saves a full
  snapshot and two diffs on it; the twin does the same without saving.  A
  fresh VM that loads any of them, eagerly or lazily, holds what the saver
  held at that cycle (RAM, registers, cycles, devices, pending timers) and
  runs on to end exactly as the twin did.
- Deleting with rebase keeps every remaining snapshot loadable and equal.
- A cut or corrupted file is refused with a StreamError that names it, and
  the VM stays exactly as it was (and runs on as the twin); so is a snapshot
  of another board or RAM size.
- A lazily loaded VM keeps running correctly after its file is deleted or
  replaced: the mapping holds the inode.
"""
from __future__ import annotations

import asyncio
import io
import os
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from test_savevm_twin import assert_same, ending, vm_state

import aemu.transport.file as file_mod
from aemu.hw.board import default_board
from aemu.hw.machine import Machine
from aemu.savevm.codec import StreamError
from aemu.savevm.info import find_vmdesc
from aemu.savevm.snapfile import load_files, save_file
from aemu.savevm.store import SnapshotError, SnapshotStore
from aemu.transport.file import BATCH_MIN, SeekableFile, split_batches

IRQ = Path(__file__).resolve().parent / "firmware" / "irq"
ELF = IRQ / "workload_1khz.elf"
ARGS = ["irq", "100"]                     # exits at about cycle 5.44 million
BOARD = default_board().with_changes(ram_size=(3 << 20) + 0x800)   # not whole pages
PAGE = 4096
END = 8_000_000
#: (cycle, name, parent) of the snapshots, and the host's pokes into RAM made
#: just before each (guest RAM the guest never touches: pages 400..600)
POINTS = [(1_000_003, "s0", None), (2_000_029, "s1", "s0"), (3_000_017, "s2", "s1")]
POKES = {
    1_000_003: [(400, b"A"), (401, b"B"), (402, b"C"), (403, b"D")],
    2_000_029: [(402, None), (500, b"E"), (403, b"d")],                # None: zero the page
    3_000_017: [(401, None), (600, b"F"), (402, b"c")],
}


def poke(vm: Machine, cycle: int) -> None:
    for page, fill in POKES.get(cycle, ()):
        data = bytes(PAGE) if fill is None else (fill * 7 + bytes([page & 0xFF])) * (PAGE // 8)
        vm.cpu.write(page * PAGE, data)


async def finish(vm: Machine) -> None:
    """Run on to END as the saver and its twin did: the host's pokes still
    ahead of the VM's cycle happen at theirs."""
    for cycle in sorted(POKES):
        if cycle > vm.cycles:
            await vm.run_until(cycles=cycle)
            poke(vm, cycle)
    await vm.run_until(cycles=END)


def new_vm(board: Any = BOARD) -> Machine:
    return Machine(board, str(ELF), args=ARGS, start_paused=True,
                   backends={"uart0": "none"}, stdout=io.BytesIO())


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- the seekable file channel ----------------------------------------------------------------
def _pieces(rng: random.Random) -> tuple[list[tuple[int, Any]], int]:
    """Non-overlapping pieces of varied sizes (1 byte to 1.5 MiB, memoryview
    slices, bytearrays) with gaps between them: the file has holes."""
    sizes = [1, 7, 4095, 4096, 4097, 3 * 4096, 65_536 + 3, 1 << 20, (3 << 19) + 11,
             2 * 4096, 123_457, 1 << 20, 4096, 1, (1 << 20) - 5]
    rng.shuffle(sizes)
    pieces, at = [], rng.randrange(0, 3 * 4096)
    for i, n in enumerate(sizes):
        raw = rng.randbytes(n)
        buf: Any = raw if i % 3 == 0 else bytearray(raw) if i % 3 == 1 else \
            memoryview(b"\xEE" + raw + b"\xEE")[1:-1]
        pieces.append((at, buf))
        at += n + rng.choice([0, 0, 1, 4096, 100_000, 1 << 20])    # adjacent, or a hole
    return pieces, at + rng.randrange(0, 2 * 4096)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parallel_writes_equal_the_serial_ones(tmp_path: Path, seed: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pieces, size = _pieces(random.Random(seed))
    total = sum(len(b) for _, b in pieces)
    assert total >= 4 * BATCH_MIN                     # so that 4 workers get 4 batches
    ref = SeekableFile.create(tmp_path / "ref")
    ref.truncate(size)
    assert ref.pwrite_all_sync(pieces) == total
    ref.commit(sync=False)
    ref.close()
    want = (tmp_path / "ref").read_bytes()

    threads: list[str] = []
    real = file_mod._pwrite_batch

    def spy(fd: int, batch: Any) -> int:
        threads.append(threading.current_thread().name)
        return real(fd, batch)
    monkeypatch.setattr(file_mod, "_pwrite_batch", spy)

    async def write(path: Path, workers: int, truncate: bool) -> int:
        f = SeekableFile.create(path)
        try:
            if truncate:
                f.truncate(size)
            n = await f.pwrite_all(pieces, workers=workers)
            assert f.bytes_written == n
            f.commit(sync=False)
            return n
        finally:
            f.close()

    for workers in (1, 2, 4):
        nbatches = len(split_batches(pieces, workers))
        assert nbatches == 1 if workers == 1 else nbatches > 1
        for truncate in (True, False):
            threads.clear()
            path = tmp_path / f"w{workers}{truncate}"
            assert run(write(path, workers, truncate)) == total
            # one thread hop per batch, on the channel's worker threads
            assert len(threads) == nbatches and all(t.startswith("aemu-file") for t in threads)
            got = path.read_bytes()
            if truncate:
                assert got == want
            else:                  # without truncate the file ends with the last piece
                end = max(off + len(b) for off, b in pieces)
                assert got == want[:end] and not any(want[end:])
            assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_batches_keep_every_piece_once_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    pieces = [(i * 10_000, bytes(rng.randrange(1, 9000))) for i in range(200)]
    monkeypatch.setattr(file_mod, "BATCH_MIN", 4096)
    for workers in (1, 2, 3, 4, 8):
        batches = split_batches(pieces, workers)
        assert len(batches) == min(workers, len(pieces))
        assert [p for b in batches for p in b] == pieces
        sizes = [sum(len(x) for _, x in b) for b in batches]
        assert max(sizes) - min(sizes) <= workers * 9000        # similar byte counts
    monkeypatch.setattr(file_mod, "BATCH_MIN", 1 << 20)
    assert len(split_batches(pieces, 4)) == 1                  # under 1 MiB: not split


def test_small_pieces_on_many_threads_equal_serial(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_mod, "BATCH_MIN", 512)
    rng = random.Random(11)
    pieces, at = [], 0
    for _ in range(300):
        n = rng.randrange(1, 700)
        pieces.append((at, rng.randbytes(n)))
        at += n + rng.choice([0, 1, 5000])

    async def main() -> None:
        for workers in (1, 2, 4):
            with SeekableFile.create(tmp_path / f"p{workers}") as f:
                await f.pwrite_all(pieces, workers=workers)
                f.commit(sync=False)
        with SeekableFile.create(tmp_path / "sync") as f:
            f.pwrite_all_sync(pieces)
            f.commit(sync=False)
    run(main())
    want = (tmp_path / "sync").read_bytes()
    for workers in (1, 2, 4):
        assert (tmp_path / f"p{workers}").read_bytes() == want


def test_an_uncommitted_file_leaves_nothing_behind(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.snap"
    f = SeekableFile.create(target)
    f.truncate(1 << 20)
    f.pwrite(4096, b"data")
    f.close()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), SeekableFile.create(target) as f:
        f.pwrite(0, b"x")
        raise RuntimeError("abandoned")
    assert os.listdir(tmp_path) == []
    # an existing file is not touched by an abandoned rewrite, nor by a failed save
    target.write_bytes(b"old contents")
    with SeekableFile.create(target) as f:
        f.pwrite(0, b"new")
    assert target.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["x.snap"]

    async def boom(self: SeekableFile, pieces: Any, workers: int = 2) -> int:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(SeekableFile, "pwrite_all", boom)

    async def main() -> None:
        vm = new_vm()
        await vm.start()
        try:
            await vm.run_until(cycles=10_007)
            with pytest.raises(OSError, match="No space"):
                await save_file(vm, target)
        finally:
            await vm.close()
    run(main())
    assert target.read_bytes() == b"old contents" and os.listdir(tmp_path) == ["x.snap"]


# -- the saver, its twin and the snapshots ---------------------------------------------------------
async def _saver(root: Path) -> dict[str, Any]:
    """The VM that saves (a store chain s0 <- s1 <- s2, plus a plain full file
    at s2's cycle) and its twin that never does.  What each held, and how
    both ended."""
    out: dict[str, Any] = {"root": root, "at": {}, "info": {}}
    vm, twin = new_vm(), new_vm()
    await vm.start()
    await twin.start()
    store = SnapshotStore(root / "store")
    try:
        for cycle, name, parent in POINTS:
            for m in (vm, twin):
                await m.run_until(cycles=cycle)
                poke(m, cycle)
            info = await store.save("vm", vm, name, parent=parent)
            out["info"][name] = info
            out["at"][name] = vm_state(vm)
            out.setdefault("nonzero", {})[name] = set(vm.cpu.nonzero_pages())
            assert_same(vm_state(twin), out["at"][name], f"twin at {name}")
        saved = await save_file(vm, root / "full.snap")
        out["full_pages"] = saved.pages
        assert_same(vm_state(vm), out["at"]["s2"], "save_file changes nothing")
        for m in (vm, twin):
            await m.run_until(cycles=END)
        out["end"] = vm_state(twin)
        out["ending"] = ending(twin)
        assert out["ending"][0] == "exit" and out["ending"][1] == 0
        assert_same(vm_state(vm), out["end"], "the saver ran on as its twin")
        assert ending(vm) == out["ending"]
    finally:
        store.close()
        await vm.close()
        await twin.close()
    return out


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run(_saver(tmp_path_factory.mktemp("snapfile")))


async def _load_and_finish(saved: dict, load: Any, want: str, what: str,
                           board: Any = BOARD) -> Machine:
    """A fresh VM: ``load(vm)``; it must hold snapshot ``want``'s state and
    run on to the twin's end."""
    vm = new_vm(board)
    await vm.start()
    try:
        load(vm)
        assert_same(vm_state(vm), saved["at"][want], f"{what}: after the load")
        await finish(vm)
        assert_same(vm_state(vm), saved["end"], f"{what}: at the end")
        assert ending(vm) == saved["ending"]
    finally:
        await vm.close()
    return vm


def test_the_chain_is_what_it_claims(saved: dict) -> None:
    info = saved["info"]
    assert [info[n].parent for n in ("s0", "s1", "s2")] == [None, "s0", "s1"]
    d = saved["root"] / "store" / "vm"
    assert sorted(os.listdir(d)) == ["s0.snap", "s1.snap", "s2.snap"]
    files = {n: present_pages(d / f"{n}.snap") for n in info}
    assert {n: len(p) for n, p in files.items()} == {n: i.pages for n, i in info.items()}
    # the full one: the non-zero pages; diffs: the pages written since their
    # parent, zero or not (402 in s1 and 401 in s2 were zeroed), not the others
    assert files["s0"] == saved["nonzero"]["s0"] and {400, 401, 402, 403} <= files["s0"]
    assert {402, 403, 500} <= files["s1"] and not {400, 401, 600} & files["s1"]
    assert {401, 402, 600} <= files["s2"] and not {400, 403, 500} & files["s2"]
    assert len(files["s1"]) < len(files["s0"]) and len(files["s2"]) < len(files["s0"])
    assert present_pages(saved["root"] / "full.snap") == saved["nonzero"]["s2"]


@pytest.mark.parametrize("lazy", [False, True])
def test_save_file_then_load_files_equals_the_twin(saved: dict, lazy: bool) -> None:
    path = saved["root"] / "full.snap"
    run(_load_and_finish(saved, lambda vm: load_files(vm, [path], lazy=lazy), "s2",
                         f"full file, lazy={lazy}"))


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name", ["s0", "s1", "s2"])
def test_every_snapshot_of_the_chain_loads_as_the_twin(saved: dict, name: str,
                                                      lazy: bool) -> None:
    store = SnapshotStore(saved["root"] / "store")
    try:
        run(_load_and_finish(saved, lambda vm: store.load("vm", vm, name, lazy=lazy), name,
                             f"{name}, lazy={lazy}"))
    finally:
        store.close()


def test_delete_with_rebase_keeps_the_rest_loadable(saved: dict, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(saved["root"] / "store", root)
    store = SnapshotStore(root)

    def all_load(names: list[str]) -> None:
        for name in names:
            for lazy in (False, True):
                run(_load_and_finish(
                    saved, lambda vm, name=name, lazy=lazy: store.load("vm", vm, name, lazy=lazy),
                    name, f"after delete: {name}, lazy={lazy}"))
    try:
        with pytest.raises(SnapshotError, match="diff snapshots on top"):
            store.delete("vm", "s1")
        assert store.delete("vm", "s1", rebase=True) == ["s2"]
        assert store.get("vm", "s2").parent == "s0"
        all_load(["s0", "s2"])
        assert store.delete("vm", "s0", rebase=True) == ["s2"]
        s2 = store.get("vm", "s2")
        assert s2.parent is None and [s.name for s in store.list("vm")] == ["s2"]
        assert sorted(os.listdir(root / "vm")) == ["s2.snap"]
        # now a snapshot of its own: every page any of the three held
        merged = present_pages(root / "vm" / "s2.snap")
        assert s2.pages == len(merged) and saved["nonzero"]["s2"] <= merged
        all_load(["s2"])
        # and aemu's own walk of the rebased file agrees: a whole stream
        run(_load_and_finish(saved, lambda vm: load_files(vm, [root / "vm" / "s2.snap"],
                                                          lazy=False), "s2", "rebased file"))
    finally:
        store.close()


# -- refusals -------------------------------------------------------------------------------------
def _layout(data: bytes, ram_size: int) -> dict[str, int]:
    """Offsets in a snapshot file: its mapped-ram header, bitmap, pages, tail."""
    length = -(-ram_size // PAGE) * PAGE
    at = data.index(b"\x08cr16.ram" + length.to_bytes(8, "big")) + 17
    assert int.from_bytes(data[at:at + 4], "big") == 1
    bitmap = int.from_bytes(data[at + 12:at + 20], "big")
    pages = int.from_bytes(data[at + 20:at + 28], "big")
    tail = pages + length
    return {"header": at, "bitmap": bitmap, "pages": pages, "tail": tail,
            "cpu": data.index(b"\x03cpu", tail), "wdt": data.index(b"\x03wdt", tail),
            "eof": find_vmdesc(data)[1] - 1}


def present_pages(path: Path) -> set[int]:
    """The pages a snapshot file holds (its bitmap)."""
    data = path.read_bytes()
    lay = _layout(data, BOARD.ram_size)
    npages = -(-BOARD.ram_size // PAGE)
    bits = data[lay["bitmap"]:lay["bitmap"] + -(-npages // 8)]
    return {i for i in range(npages) if bits[i >> 3] >> (i & 7) & 1}


def _damaged(data: bytes, lay: dict[str, int]) -> dict[str, bytes]:
    def flip(i: int, x: int = 0x01) -> bytes:
        return data[:i] + bytes([data[i] ^ x]) + data[i + 1:]
    cpu, wdt, tail = lay["cpu"], lay["wdt"], lay["tail"]
    wdt_footer = data.index(b"\x7e" + data[wdt - 4:wdt], wdt)
    assert data[tail + 8] == 0x7E and data[tail + 13] == 0x03 and data[tail + 25] == 0x10
    return {
        "empty": b"",
        "cut in the configuration": data[:20],
        "cut in the ram header": data[:lay["header"] + 10],
        "cut in the bitmap": data[:lay["bitmap"] + 3],
        "cut in the page area": data[:lay["pages"] + 5000],
        "cut in the ram END section": data[:tail + 20],
        "cut in the cpu section": data[:cpu + 40],
        "cut in the wdt section": data[:wdt + 12],
        "cut before EOF": data[:lay["eof"]],
        "cut in the description": data[:-7],
        "flipped: a section name": flip(cpu + 2),
        "flipped: a section version": flip(cpu + 8, 0x40),
        "flipped: a section footer": flip(wdt_footer),
        "flipped: a footer's section id": flip(wdt_footer + 4),
        "flipped: a section type": flip(cpu - 5, 0x06),
        "flipped: the ram footer": flip(tail + 12, 0x10),
        "flipped: the ram END record": flip(tail + 25, 0x18),
        "flipped: the board name": flip(13),
        "grown": data + b"\0",
    }


def test_a_damaged_file_is_refused_and_changes_nothing(saved: dict, tmp_path: Path) -> None:
    good = saved["root"] / "full.snap"
    data = good.read_bytes()
    lay = _layout(data, BOARD.ram_size)
    assert lay["header"] < lay["bitmap"] < lay["pages"] < lay["tail"] < lay["cpu"] < lay["wdt"]
    cases = _damaged(data, lay)
    diff = saved["root"] / "store" / "vm" / "s1.snap"

    async def main() -> None:
        vm = new_vm()
        await vm.start()
        try:
            await vm.run_until(cycles=POINTS[0][0])
            poke(vm, POINTS[0][0])
            before = vm_state(vm)
            for what, blob in cases.items():
                path = tmp_path / f"{what.replace(' ', '_').replace(':', '')}.snap"
                path.write_bytes(blob)
                for lazy in (False, True):
                    for chain in ([path], [saved["root"] / "store" / "vm" / "s0.snap", path]):
                        with pytest.raises(StreamError) as err:
                            load_files(vm, chain, lazy=lazy)
                        assert str(path) in str(err.value), what
                        assert_same(vm_state(vm), before, f"{what}, lazy={lazy}")
            # a good root with a damaged diff: nothing loads either
            bad_diff = tmp_path / "bad_diff.snap"
            raw = diff.read_bytes()
            bad_diff.write_bytes(raw[:len(raw) - 200])
            with pytest.raises(StreamError, match="bad_diff.snap"):
                load_files(vm, [saved["root"] / "store" / "vm" / "s0.snap", bad_diff])
            assert_same(vm_state(vm), before, "damaged diff")
            # the VM that refused all that runs on as the twin did
            await finish(vm)
            assert_same(vm_state(vm), saved["end"], "after the refusals")
            assert ending(vm) == saved["ending"]
        finally:
            await vm.close()
    run(main())


@pytest.mark.parametrize("change", [{"ram_size": BOARD.ram_size + 2},
                                    {"ram_size": BOARD.ram_size + PAGE},
                                    {"name": "another-board"}])
def test_a_snapshot_of_another_board_is_refused(saved: dict, change: dict) -> None:
    board = BOARD.with_changes(**change)
    store = SnapshotStore(saved["root"] / "store")

    async def main() -> None:
        vm = new_vm(board)
        await vm.start()
        try:
            await vm.run_until(cycles=77_777)
            before = vm_state(vm)
            for lazy in (False, True):
                with pytest.raises(StreamError, match="full.snap") as err:
                    load_files(vm, [saved["root"] / "full.snap"], lazy=lazy)
                assert ("board" in str(err.value)) == ("name" in change)
                with pytest.raises(SnapshotError, match="this VM is"):
                    store.load("vm", vm, "s2", lazy=lazy)
                assert_same(vm_state(vm), before, f"{change}, lazy={lazy}")
        finally:
            await vm.close()
    try:
        run(main())
    finally:
        store.close()


# -- a lazily loaded VM outlives its file ---------------------------------------------------------
@pytest.mark.parametrize("fate", ["deleted", "replaced", "rebased"])
def test_a_lazy_vm_runs_on_after_its_file_is_gone(saved: dict, tmp_path: Path,
                                                 fate: str) -> None:
    root = tmp_path / "store"
    shutil.copytree(saved["root"] / "store", root)
    path = tmp_path / "lazy.snap"
    shutil.copyfile(saved["root"] / "full.snap", path)

    async def main() -> None:
        vm, other = new_vm(), new_vm()
        await vm.start()
        await other.start()
        store = SnapshotStore(root)
        try:
            if fate == "rebased":                    # s0's file, then s0 deleted into s1
                store.load("vm", vm, "s0", lazy=True)
                assert store.delete("vm", "s0", rebase=True) == ["s1"]
                assert not (root / "vm" / "s0.snap").exists()
                want = "s0"
            else:
                load_files(vm, [path], lazy=True)
                want = "s2"
                if fate == "deleted":
                    os.unlink(path)
                else:                                # another VM's snapshot, renamed over it
                    await other.run_until(cycles=12_345)
                    await save_file(other, path)
            assert_same(vm_state(vm), saved["at"][want], f"{fate}: after the load")
            await finish(vm)
            assert_same(vm_state(vm), saved["end"], f"{fate}: at the end")
            assert ending(vm) == saved["ending"]
        finally:
            store.close()
            await vm.close()
            await other.close()
    run(main())
