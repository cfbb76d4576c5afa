"""The UART (docs/board.md, "UART0").

Transmit: a byte written to DATA goes to the host back-end at once; the
transmitter is then busy (STATUS.TXE = 0) for ``10 * cpu_hz // baud`` cycles
counted from the end of the writing instruction (see the timing convention in
timer.py and docs/board.md), after which a scheduled callback sets TXE again.

Receive: the machine hands host input to :meth:`receive`, which takes what
fits in the 16-byte FIFO and says how much it took; the machine keeps the rest
and offers it again later, so with that flow control no byte is lost.  A caller
that cannot hold bytes back passes ``drop_excess=True``: what does not fit is
dropped and STATUS.OVR set.

State: ``ctrl``, ``baud`` (the BAUD register), ``rx_fifo`` (bytearray, oldest
first), ``ovr`` (bool), ``tx_busy_until`` (the cycle TXE comes back, 0 while
the transmitter is idle).
"""
from __future__ import annotations

from typing import ClassVar, Protocol

from aemu.hw.device import DeviceContext, TimerHandle
from aemu.hw.devices._regs import Reg, RegisterDevice
from aemu.savevm.vmstate import VMStateDescription, boolean, buffer, u16, u32, u64

STATUS_TXE = 1 << 0
REG_STATUS = 0x02
STATUS_RXA = 1 << 1
STATUS_OVR = 1 << 2
CTRL_TXIE = 1 << 0
CTRL_RXIE = 1 << 1
CTRL_MASK = CTRL_TXIE | CTRL_RXIE
FIFO_SIZE = 16
BITS_PER_BYTE = 10            # start, 8 data, stop


class TxBackend(Protocol):
    def write(self, data: bytes) -> None: ...


def _tx_done_armed(uart: "Uart") -> bool:
    # The TX-ready callback armed while TXIE was on stays armed when TXIE goes
    # off before the byte is out (the BSP's tx_pump does that after its last
    # byte); post_load cannot tell that from CTRL, so this subsection says so.
    return uart._handle is not None and not uart.ctrl & CTRL_TXIE


def _uart_pre_load(uart: "Uart", version: int) -> None:
    uart._load_tx_done = False


def _uart_tx_done_loaded(uart: "Uart", version: int) -> None:
    uart._load_tx_done = True


def _uart_post_load(uart: "Uart", version: int) -> None:
    uart.rx_fifo = bytearray(uart.rx_fifo)
    uart.post_load()
    if getattr(uart, "_load_tx_done", False) and uart._handle is None and uart._tx_busy():
        uart._handle = uart.ctx.schedule(uart.tx_busy_until, uart._tx_done)
    uart._load_tx_done = False


UART_VMSD = VMStateDescription(
    "cr16-uart", version=1, minimum_version=1,
    fields=[u16("ctrl"), u16("baud"), u32("rx_len"), buffer("rx_fifo", size_field="rx_len"),
            boolean("ovr"), u64("tx_busy_until")],
    subsections=[VMStateDescription("cr16-uart/tx-done", version=1, minimum_version=1,
                                    needed=_tx_done_armed, post_load=_uart_tx_done_loaded)],
    pre_load=_uart_pre_load,
    post_load=_uart_post_load)


class Uart(RegisterDevice):
    kind: ClassVar[str] = "uart"
    vmsd: ClassVar[VMStateDescription] = UART_VMSD

    @property
    def rx_len(self) -> int:
        """Bytes in the receive FIFO (saved before the FIFO itself)."""
        return len(self.rx_fifo)

    @rx_len.setter
    def rx_len(self, value: int) -> None:
        pass                         # follows from rx_fifo

    def __init__(self, name: str, base: int, ctx: DeviceContext, *, irq_rx: int, irq_tx: int,
                 baud: int = 115200) -> None:
        super().__init__(name, base, ctx)
        if not isinstance(baud, int) or baud < 0 or baud % 100 or baud // 100 > 0xFFFF:
            raise ValueError(f"{name}: baud {baud!r} must be a multiple of 100 from 0 "
                             f"(infinitely fast) to 6553500")
        self.reset_baud = baud // 100
        self._rx_line = ctx.irq(irq_rx)
        self._tx_line = ctx.irq(irq_tx)
        self._backend: TxBackend | None = None
        self._handle: TimerHandle | None = None
        self._warned_busy = False
        self._init_registers([
            (Reg("DATA", 0x00), self._r_data, self._w_data),
            (Reg("STATUS", REG_STATUS, access="R"), self._r_status, None),
            (Reg("CTRL", 0x04), self._r_ctrl, self._w_ctrl),
            (Reg("BAUD", 0x06), self._r_baud, self._w_baud),
        ])
        self._clear()
        self._update_irqs()

    def _clear(self) -> None:
        self.ctrl = 0
        self.baud = self.reset_baud
        self.rx_fifo = bytearray()
        self.ovr = False
        self.tx_busy_until = 0

    # -- host side ------------------------------------------------------------------
    def attach(self, backend: TxBackend | None) -> None:
        """Where transmitted bytes go (``backend.write(bytes)``); None discards them."""
        self._backend = backend

    def rx_space(self) -> int:
        """How many more bytes the receive FIFO takes."""
        return FIFO_SIZE - len(self.rx_fifo)

    def receive(self, data: bytes, *, drop_excess: bool = False) -> int:
        """Put host input into the receive FIFO; returns how many bytes it took.
        With ``drop_excess`` the bytes that do not fit are lost (STATUS.OVR)."""
        self._generation += 1
        fifo = self.rx_fifo
        taken = min(len(data), FIFO_SIZE - len(fifo))
        if taken:
            fifo += data[:taken]
        if drop_excess and taken < len(data):
            self.ovr = True
        if taken:
            self._update_irqs()
        return taken

    def tx_cycles(self) -> int:
        """Cycles the transmitter stays busy per byte at the current BAUD (0: no wait)."""
        baud = self.baud
        return self.ctx.cpu_hz * BITS_PER_BYTE // (baud * 100) if baud else 0

    # -- transmitter -------------------------------------------------------------------
    # The transmitter is busy while now() < tx_busy_until.  Only a TX interrupt
    # needs a callback at the moment it frees up; a polling guest reads TXE
    # from the core's shadow, so plain output costs no timer (and no slice cut)
    # per byte.
    def _tx_busy(self) -> bool:
        return bool(self.tx_busy_until) and self.ctx.now() < self.tx_busy_until

    def _arm_tx_done(self) -> None:
        if self._handle is None and self.ctrl & CTRL_TXIE and self._tx_busy():
            self._handle = self.ctx.schedule(self.tx_busy_until, self._tx_done)

    def _tx_done(self) -> None:
        self._handle = None
        self.tx_busy_until = 0
        self._update_irqs()

    def _update_irqs(self) -> None:
        ctrl = self.ctrl
        self._rx_line.set(bool(ctrl & CTRL_RXIE and self.rx_fifo))
        self._tx_line.set(bool(ctrl & CTRL_TXIE and not self._tx_busy()))
        self._update_shadow()

    def _update_shadow(self) -> None:
        """STATUS is what firmware polls: let the CPU core answer its reads
        (TXE coming back at tx_busy_until included), except while OVR is set,
        since reading STATUS then has a side effect."""
        if self.ovr:
            self.ctx.shadow(self, REG_STATUS, 2, None)
            return
        rxa = STATUS_RXA if self.rx_fifo else 0
        if self._tx_busy():
            self.ctx.shadow(self, REG_STATUS, 2, rxa | STATUS_TXE, before=rxa,
                            at_cycle=self.tx_busy_until)
        else:
            self.ctx.shadow(self, REG_STATUS, 2, rxa | STATUS_TXE)

    # -- registers --------------------------------------------------------------------
    def _r_data(self) -> int:
        fifo = self.rx_fifo
        if not fifo:
            return 0
        byte = fifo.pop(0)
        if not fifo:
            self._update_irqs()
        return byte

    def _w_data(self, value: int) -> None:
        if self._tx_busy():
            if not self._warned_busy:
                self._warned_busy = True
                self.ctx.warn(f"{self.name}: DATA written while the transmitter is busy "
                              f"(STATUS.TXE = 0): byte {value & 0xFF:#04x} dropped "
                              f"(said once)")
            return
        backend = self._backend
        if backend is not None:
            backend.write(bytes((value & 0xFF,)))
        cycles = self.tx_cycles()
        if cycles:
            self.tx_busy_until = self.ctx.now() + 1 + cycles
            self._arm_tx_done()
            self._update_irqs()

    def _r_status(self) -> int:
        status = 0 if self._tx_busy() else STATUS_TXE
        if self.rx_fifo:
            status |= STATUS_RXA
        if self.ovr:
            status |= STATUS_OVR
            self.ovr = False
            self._update_shadow()
        return status

    def _r_ctrl(self) -> int:
        return self.ctrl

    def _w_ctrl(self, value: int) -> None:
        self.ctrl = value & CTRL_MASK
        self._arm_tx_done()
        self._update_irqs()

    def _r_baud(self) -> int:
        return self.baud

    def _w_baud(self, value: int) -> None:
        self.baud = value

    # -- reset and restore --------------------------------------------------------------
    def reset(self) -> None:
        self._cancel()
        self._clear()
        self._update_irqs()

    def post_load(self) -> None:
        """After the state attributes were restored: re-arm TX-ready, set the lines."""
        self._cancel()
        self._arm_tx_done()
        self._update_irqs()
