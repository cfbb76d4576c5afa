"""Boards as data (aemu.hw.board): the default board against docs/board.md,
round trips, the example boards, and one bad board file per validation rule."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from aemu.hw.board import (
    Board, BoardError, DeviceSpec, default_board, load_board, parse_hz, parse_size,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "board.md"
EXAMPLES = sorted((ROOT / "examples" / "boards").glob("*.toml"))

ICU = '[[device]]\nkind = "icu"\nname = "icu"\nbase = 0x1400000\n'


def timer(name: str, base: int, irq: int | str = 0) -> str:
    return f'[[device]]\nkind = "timer"\nname = "{name}"\nbase = {base:#x}\nirq = {irq}\n'


def uart(name: str, base: int, rx: int = 2, tx: int = 3, extra: str = "") -> str:
    return (f'[[device]]\nkind = "uart"\nname = "{name}"\nbase = {base:#x}\n'
            f'irq_rx = {rx}\nirq_tx = {tx}\n{extra}')


def bad(text: str, *needles: str, path: Path | None = None) -> BoardError:
    """Load ``text`` (from ``path`` if given); assert it fails and the
    message contains every needle (case-sensitive)."""
    if path is not None:
        path.write_text(text)
    with pytest.raises(BoardError) as info:
        load_board(path if path is not None else text)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    return info.value


# -- the default board is docs/board.md's table --------------------------------

KIND_OF = {"interrupt controller": "icu", "timer": "timer", "UART": "uart",
           "watchdog": "watchdog"}


def doc_table() -> list[tuple[str, int, int, str]]:
    """(region, base, size, description) rows of the memory-map table."""
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.fullmatch(r"\| (\w+) \| `(0x[0-9a-fA-F]+)` \| ([^|]+) \| (.*) \|", line)
        if m:
            size_text = m.group(3).strip()
            size = (int(size_text.split()[0]) << 20 if size_text.endswith("MiB")
                    else int(size_text, 0))
            rows.append((m.group(1), int(m.group(2), 16), size, m.group(4).strip()))
    return rows


def test_doc_table_parses():
    regions = [r[0] for r in doc_table()]
    assert regions == ["RAM", "ICU", "TIMER0", "TIMER1", "UART0", "WDT"]


def test_default_board_matches_docs():
    board = default_board()
    rows = doc_table()
    ram = rows[0]
    assert (board.ram_base, board.ram_size) == (ram[1], ram[2]) == (0, 20 << 20)
    assert [d.name for d in board.devices] == [r[0].lower() for r in rows[1:]]
    for (region, base, size, what), dev in zip(rows[1:], board.devices):
        assert (dev.base, dev.size) == (base, size), region
        kind = next(k for text, k in KIND_OF.items() if what.startswith(text))
        assert dev.kind == kind, region
        irqs = [int(n) for n in re.findall(r"(?:IRQ|and) (\d+)", what)]
        assert sorted(dev.irqs.values()) == irqs, region
    assert board.device("uart0").irqs == {"irq_rx": 2, "irq_tx": 3}
    assert board.device("timer0").irqs == {"irq": 0}
    assert board.device("timer1").irqs == {"irq": 1}


def test_default_board_settings():
    board = default_board()
    assert board.name == "aemu-default"
    assert board.cpu_hz == 100_000_000          # docs: default 100 MHz
    assert board.svc == "host" and board.svc_host
    assert board.device("uart0").params == {"backend": "stdio", "baud": 115200}
    assert board.uart_backends() == {"uart0": {"backend": "stdio"}}
    # the window lies above the 16 MiB abs24 reaches, and above RAM
    assert all(d.base >= max(1 << 24, board.ram_end) for d in board.devices)


def test_default_board_is_package_data():
    from importlib.resources import files
    assert (files("aemu.hw.boards") / "default.toml").is_file()
    assert load_board(ROOT / "aemu" / "hw" / "boards" / "default.toml") == default_board()


def test_default_board_matches_device_classes():
    """If the devices package exists, its windows agree with the board and
    every non-ICU device accepts its spec's keywords."""
    import inspect
    devices = pytest.importorskip("aemu.hw.devices")
    kinds = getattr(devices, "DEVICE_KINDS", None)
    if kinds is None:
        pytest.skip("aemu.hw.devices has no DEVICE_KINDS yet")
    for path in [ROOT / "aemu/hw/boards/default.toml", *EXAMPLES]:
        for dev in load_board(path).devices:
            assert dev.kind in kinds
            cls = kinds[dev.kind]
            assert cls.WINDOW == dev.size
            if dev.kind != "icu":     # the machine adds the ICU's delivery callbacks
                inspect.signature(cls).bind(dev.name, dev.base, None, **dev.kwargs())


# -- round trips and the Python API --------------------------------------------

@pytest.mark.parametrize("path", [ROOT / "aemu/hw/boards/default.toml", *EXAMPLES],
                         ids=lambda p: p.name)
def test_round_trip(path):
    board = load_board(path)
    text = board.to_toml()
    again = load_board(text)
    assert again == board
    assert again.to_toml() == text


def test_round_trip_python_board():
    board = Board("py \"quoted\"\tname", cpu_hz=1, ram_size=8, svc="guest", devices=[
        DeviceSpec("icu", "icu", 0x1000),
        DeviceSpec("timer", "t-1", 0x1100, irqs={"irq": 31}),
        DeviceSpec("uart", "u_0", 0xFFFFFF00, irqs={"irq_rx": 0, "irq_tx": 30},
                   params={"backend": "unix", "path": "/tmp/a b\\c", "listen": False,
                           "baud": 0}),
    ])
    board.validate()
    assert isinstance(board.devices, tuple)
    assert load_board(board.to_toml()) == board


def test_example_boards_load():
    names = {p.name for p in EXAMPLES}
    assert {"minimal.toml", "two-uarts.toml"} <= names
    minimal = load_board(ROOT / "examples/boards/minimal.toml")
    assert minimal.ram_size == 64 << 10
    assert minimal.devices_of("uart") and minimal.cpu_hz == 10_000_000
    two = load_board(ROOT / "examples/boards/two-uarts.toml")
    assert two.uart_backends() == {
        "uart0": {"backend": "stdio"},
        "uart1": {"backend": "tcp", "host": "127.0.0.1", "port": 5555, "listen": True},
    }


def test_board_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my-board.toml"
    path.write_text('[ram]\nsize = "1M"\n')
    assert load_board(path).name == "my-board"
    assert load_board(str(path)).name == "my-board"
    assert load_board('[ram]\nsize = "1M"\n').name == "board"


def test_empty_board_is_the_plain_simulator():
    board = load_board("")
    assert (board.ram_size, board.cpu_hz, board.svc, board.devices) == (
        20 << 20, 100_000_000, "host", ())


def test_device_lookup():
    board = default_board()
    assert board.device("wdt").kind == "watchdog"
    with pytest.raises(KeyError, match="no device 'uart1'.*did you mean 'uart0'"):
        board.device("uart1")
    assert [d.name for d in board.devices_of("timer")] == ["timer0", "timer1"]
    # constructor keywords: the IRQ lines and device parameters, not the host back-end
    assert board.device("uart0").kwargs() == {"irq_rx": 2, "irq_tx": 3, "baud": 115200}
    assert board.device("timer1").kwargs() == {"irq": 1}
    assert board.device("wdt").kwargs() == {}


def test_with_changes():
    board = default_board()
    changed = board.with_changes(cpu_hz="25MHz", ram_size="1M", svc="guest")
    assert (changed.cpu_hz, changed.ram_size, changed.svc) == (25_000_000, 1 << 20, "guest")
    assert not changed.svc_host
    assert board.cpu_hz == 100_000_000          # the original is untouched
    with pytest.raises(BoardError, match="cpu_hz must be positive"):
        board.with_changes(cpu_hz=0)
    with pytest.raises(BoardError, match="overlaps RAM"):
        board.with_changes(ram_size="32M")      # RAM would run into the MMIO window
    with pytest.raises(BoardError, match="ram_sz"):
        board.with_changes(ram_sz=1)


def test_with_device():
    board = default_board().with_device("uart0", backend="tcp", port=5555, baud=None)
    uart0 = board.device("uart0")
    assert uart0.params == {"backend": "tcp", "port": 5555}
    assert board.uart_backends()["uart0"] == {
        "backend": "tcp", "host": "127.0.0.1", "port": 5555, "listen": True}
    moved = board.with_device("timer1", irq=7, base=0x1400500)
    assert moved.device("timer1").irqs == {"irq": 7}
    assert moved.device("timer1").base == 0x1400500
    with pytest.raises(BoardError, match="needs a port"):
        default_board().with_device("uart0", backend="tcp")
    with pytest.raises(BoardError, match="already claimed"):
        default_board().with_device("timer1", irq=0)


def test_specs_copy_their_dicts():
    irqs = {"irq": 0}
    spec = DeviceSpec("timer", "t", 0x1400100, irqs=irqs)
    irqs["irq"] = 99
    assert spec.irqs == {"irq": 0}
    assert "base=0x1400100" in repr(spec)


@pytest.mark.parametrize("text,expected", [
    ("20M", 20 << 20), ("512K", 512 << 10), ("64KiB", 64 << 10), ("1MB", 1 << 20),
    ("0x1000", 0x1000), ("4096", 4096), (0x1000, 0x1000), ("1_024", 1024), ("1.5K", 1536),
    ("1G", 1 << 30), (" 2m ", 2 << 20),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "20X", "-1", -1, "1.3", "0x1.8K", 1.5, True, None, "M"])
def test_parse_size_rejects(text):
    with pytest.raises(BoardError):
        parse_size(text)
    with pytest.raises(ValueError):             # BoardError is a ValueError
        parse_size(text)


@pytest.mark.parametrize("text,expected", [
    ("100M", 100_000_000), ("25MHz", 25_000_000), ("1.5G", 1_500_000_000), ("32768", 32768),
    (100_000_000, 100_000_000), ("10 kHz", 10_000),
])
def test_parse_hz(text, expected):
    assert parse_hz(text) == expected


@pytest.mark.parametrize("text", ["fast", "1.5", "0x10", "", True])
def test_parse_hz_rejects(text):
    with pytest.raises(BoardError, match="invalid frequency"):
        parse_hz(text)


# -- every validation rule, from a bad board file ------------------------------

def test_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    err = bad('name = "x"\nbase = = 3\n', "broken.toml", "invalid TOML", "line 2", path=path)
    assert err.source == str(path)
    bad("name = 'x'\n[[device]\n", "<board text>", "invalid TOML")


def test_missing_file(tmp_path):
    with pytest.raises(BoardError, match="nope.toml: no such board file"):
        load_board(tmp_path / "nope.toml")


def test_unknown_top_level_key():
    bad('nmae = "x"\n', "unknown top-level key 'nmae'", "did you mean 'name'")


def test_unknown_ram_key():
    bad('[ram]\nsize = "1M"\nsise = 3\n', "[ram]", "unknown key 'sise'")


def test_unknown_device_key_per_kind():
    bad(ICU + 'color = "red"\n', "device 'icu' (icu)", "unknown key 'color'")
    bad(ICU + uart("uart0", 0x1400300, extra="bauds = 9600\n"),
        "device 'uart0' (uart)", "unknown key 'bauds'", "did you mean 'baud'")
    # baud is a UART key, not a timer's
    bad(ICU + timer("timer0", 0x1400100) + "baud = 9600\n",
        "device 'timer0' (timer)", "unknown key 'baud'")


def test_unknown_irq_line_per_kind():
    bad(ICU + timer("timer0", 0x1400100) + "irq_tx = 4\n",
        "device 'timer0' (timer)", "unknown IRQ line 'irq_tx'")
    bad(ICU + '[[device]]\nkind = "watchdog"\nname = "wdt"\nbase = 0x1400400\nirq = 5\n',
        "device 'wdt' (watchdog)", "unknown IRQ line 'irq'", "watchdog lines: none")


def test_unknown_device_kind_lists_the_known_ones():
    err = bad('[[device]]\nkind = "uartt"\nname = "u"\nbase = 0x1400300\n',
              "device 'u'", "unknown device kind 'uartt'", "did you mean 'uart'")
    for kind in ("icu", "timer", "uart", "watchdog"):
        assert kind in str(err)


def test_missing_name_kind_base():
    bad('[[device]]\nkind = "timer"\nbase = 0x1400100\nirq = 0\n', "device #1", "missing name")
    bad('[[device]]\nname = "t"\nbase = 0x1400100\n', "device 't'", "missing kind")
    bad(ICU + '[[device]]\nkind = "timer"\nname = "t"\nirq = 0\n',
        "device 't' (timer)", "missing base")
    # a misspelt key is reported with the missing one it explains
    bad(ICU + '[[device]]\nkind = "timer"\nname = "t"\nbsae = 0x1400100\nirq = 0\n',
        "missing base", "unknown key 'bsae'", "did you mean 'base'")


def test_missing_irq():
    bad(ICU + '[[device]]\nkind = "timer"\nname = "timer0"\nbase = 0x1400100\n',
        "device 'timer0' (timer)", "missing IRQ line 'irq'")
    bad(ICU + '[[device]]\nkind = "uart"\nname = "uart0"\nbase = 0x1400300\nirq_rx = 2\n',
        "device 'uart0' (uart)", "missing IRQ line 'irq_tx'")


def test_duplicate_device_name():
    bad(ICU + timer("t", 0x1400100, 0) + timer("t", 0x1400200, 1),
        "duplicate device name 't'", "0x1400100", "0x1400200")


@pytest.mark.parametrize("irq", [32, -1, 1000])
def test_irq_out_of_range(irq):
    bad(ICU + timer("timer0", 0x1400100, irq), "device 'timer0' (timer)",
        f"irq = {irq} is out of range", "0..31")


def test_irq_must_be_an_integer():
    bad(ICU + timer("timer0", 0x1400100, '"0"'), "device 'timer0'", "out of range")


def test_irq_claimed_twice():
    bad(ICU + timer("timer0", 0x1400100, 3) + uart("uart0", 0x1400300, 2, 3),
        "device 'uart0' (uart)", "irq_tx = 3", "already claimed by device 'timer0'",
        "IRQ line 3")
    bad(ICU + uart("uart0", 0x1400300, 4, 4), "irq_tx = 4", "already claimed by it (irq_rx)")


def test_window_overlaps_another():
    err = bad(ICU + timer("timer0", 0x1400100) + timer("timer1", 0x1400100, 1),
              "device 'timer1' (timer)", "window 0x1400100..0x14001ff",
              "overlaps device 'timer0' (timer) window 0x1400100..0x14001ff")
    assert len(err.problems) == 1
    bad(ICU + timer("timer0", 0x1400000), "device 'timer0'", "overlaps device 'icu'")


def test_larger_window_overlaps_the_next():
    """A window bigger than 0x100 (allowed by the format; the device kinds
    of aemu.hw.devices, when importable, insist on their own size)."""
    board = Board("b", devices=(DeviceSpec("icu", "icu", 0x1400000),
                                DeviceSpec("timer", "timer0", 0x1400100, 0x200, {"irq": 0}),
                                DeviceSpec("timer", "timer1", 0x1400200, irqs={"irq": 1})))
    with pytest.raises(BoardError) as info:
        board.validate()
    assert any("device 'timer1' (timer): window 0x1400200..0x14002ff overlaps device "
               "'timer0' (timer) window 0x1400100..0x14002ff" in p for p in info.value.problems)


def test_window_size_must_match_the_device_class():
    devices = pytest.importorskip("aemu.hw.devices")
    if getattr(devices, "DEVICE_KINDS", None) is None:
        pytest.skip("aemu.hw.devices has no DEVICE_KINDS yet")
    bad(ICU + timer("timer0", 0x1400100) + "size = 0x200\n",
        "device 'timer0' (timer): window size 0x200 does not match the timer device's 0x100")


def test_window_overlaps_ram():
    bad('[ram]\nsize = "24M"\n' + ICU, "device 'icu' (icu)", "0x1400000..0x14000ff",
        "overlaps RAM", "0x0..0x17fffff")


def test_window_past_the_address_space():
    bad(ICU.replace("0x1400000", "0xffffff00") + "size = 0x200\n",
        "device 'icu'", "runs past the 32-bit address space")


def test_misaligned_base():
    bad(ICU.replace("0x1400000", "0x1400080"), "device 'icu' (icu)",
        "base 0x1400080 is misaligned", "multiple of 0x100")


def test_bad_window_size():
    bad(ICU + "size = 0x80\n", "device 'icu'", "window size", "multiple of 0x100")


@pytest.mark.parametrize("size,why", [
    ("0", "is zero"), ("1001", "is odd"), ('"65M"', "over 64 MiB"), ('"1G"', "over 64 MiB"),
    ("4", "too small"),
])
def test_bad_ram_size(size, why):
    bad(f"[ram]\nsize = {size}\n", "ram size", why, "64 MiB")


def test_ram_size_limits_accepted():
    assert load_board('[ram]\nsize = "64M"\n').ram_size == 64 << 20
    assert load_board("[ram]\nsize = 8\n").ram_size == 8


def test_ram_base_must_be_zero():
    bad("[ram]\nbase = 0x10000\n", "ram base must be 0")


def test_ram_must_be_a_table():
    bad('ram = "20M"\n', "ram must be a table")


@pytest.mark.parametrize("hz,needle", [
    ("0", "cpu_hz must be positive"), ("-5", "cpu_hz must be positive"),
    ('"fast"', "invalid frequency 'fast'"), ("1.5e8", "cpu_hz"),
])
def test_bad_cpu_hz(hz, needle):
    bad(f"cpu_hz = {hz}\n", needle)


def test_cpu_hz_string():
    assert load_board('cpu_hz = "32.768kHz"\n').cpu_hz == 32768


def test_bad_svc():
    bad('svc = "trap"\n', "svc must be 'host'", "'guest'", "not 'trap'")
    assert load_board('svc = "guest"\n').svc == "guest"


def test_two_icus():
    bad(ICU + ICU.replace('"icu"\nbase = 0x1400000', '"icu2"\nbase = 0x1400100'),
        "more than one interrupt controller", "'icu'", "'icu2'")


def test_no_icu_but_irqs():
    bad(timer("timer0", 0x1400100), "no interrupt controller", "'timer0' needs IRQ lines")
    # a watchdog alone has no IRQ lines: fine without an ICU
    load_board('[[device]]\nkind = "watchdog"\nname = "wdt"\nbase = 0x1400400\n')


def test_device_must_be_an_array_of_tables():
    bad('[device]\nkind = "icu"\n', "device must be an array of tables")


def test_uart_parameters():
    u = lambda extra: ICU + uart("uart0", 0x1400300, extra=extra)  # noqa: E731
    bad(u('backend = "serial"\n'), "device 'uart0'", "unknown backend 'serial'", "stdio")
    bad(u('backend = "tcp"\n'), "the tcp backend needs a port")
    bad(u('backend = "tcp"\nport = 70000\n'), "port 70000 is out of range")
    bad(u('backend = "unix"\n'), "the unix backend needs a path")
    bad(u('backend = "stdio"\nport = 1\n'), "'port' does not apply to the stdio backend")
    bad(u("baud = 115201\n"), "baud 115201 must be a multiple of 100")
    bad(u("baud = 6553600\n"), "baud 6553600")
    bad(u('baud = "fast"\n'), "baud must be an integer")
    bad(u("baud = true\n"), "baud must be an integer")
    bad(u('backend = "tcp"\nport = 1\nlisten = "yes"\n'), "listen must be a boolean")
    board = load_board(u('backend = "file"\npath = "out.txt"\n'))
    assert board.uart_backends() == {"uart0": {"backend": "file", "path": "out.txt"}}
    assert load_board(u("")).uart_backends() == {"uart0": {"backend": "null"}}


def test_two_uarts_on_stdio():
    bad(ICU + uart("uart0", 0x1400300, extra='backend = "stdio"\n')
        + uart("uart1", 0x1400500, 4, 5, extra='backend = "stdio"\n'),
        "more than one UART on the stdio back-end", "'uart0'", "'uart1'")


def test_bad_device_names():
    bad(ICU.replace('name = "icu"', 'name = "my icu"'), "device 'my icu'", "name must be")
    bad(ICU.replace('name = "icu"', "name = 3"), "name must be a string")


def test_all_problems_are_reported_at_once():
    err = bad('cpu_hz = 0\nsvc = "x"\n[ram]\nsize = 3\n', "3 problems")
    assert len(err.problems) == 3


# -- boards built in Python are validated the same way -------------------------

def test_python_board_validation():
    with pytest.raises(BoardError, match="overlaps RAM"):
        Board("b", ram_size=1 << 20, devices=(DeviceSpec("icu", "icu", 0x80000),)).validate()
    with pytest.raises(BoardError, match="unknown device kind 'gpio'"):
        Board("b", devices=(DeviceSpec("gpio", "g", 0x1400000),)).validate()
    with pytest.raises(BoardError, match="unknown key 'speed'"):
        Board("b", devices=(DeviceSpec("icu", "icu", 0x1400000, params={"speed": 1}),)
              ).validate()
    with pytest.raises(BoardError, match="ram base must be 0"):
        Board("b", ram_base=0x100).validate()
    with pytest.raises(BoardError, match="too many devices"):
        Board("b", devices=tuple(DeviceSpec("watchdog", f"w{i}", 0x2000000 + i * 0x100)
                                 for i in range(33))).validate()
    with pytest.raises(BoardError, match="board 'b': cpu_hz must be an integer"):
        Board("b", cpu_hz=1.5e8).validate()  # type: ignore[arg-type]
    err = pytest.raises(BoardError, Board("b", svc="x").validate, "my source").value
    assert str(err).startswith("my source: svc must be")


def test_kinds_fall_back_without_the_devices_package(monkeypatch):
    """While aemu.hw.devices cannot be imported, the four known kinds are used."""
    import sys
    monkeypatch.setitem(sys.modules, "aemu.hw.devices", None)   # import -> ImportError
    assert default_board().device("wdt").kind == "watchdog"
    err = bad('[[device]]\nkind = "gpio"\nname = "g"\nbase = 0x1400000\n',
              "unknown device kind 'gpio'", "icu, timer, uart, watchdog")
    assert len(err.problems) == 1
