"""UART receiver and transmitter, 8N1, as Amaranth stream components.

Both count clock cycles per bit with one integer divisor, :func:`baud_divisor`
(``round(clk_hz / baud)``); a divisor whose baud rate is off by more than 2 % is refused, since
8N1 framing tolerates about 5 % between the two ends in all and the host has its own error.

>>> baud_divisor(12_000_000, 115_200)
104
>>> try:
...     baud_divisor(1_000_000, 300_000)
... except UartConfigError as e:
...     print(e)
300000 baud from a 1000000 Hz clock: divisor 3 is below the minimum of 4 cycles per bit
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartConfigError", "baud_divisor", "baud_error", "UartRx", "UartTx", "MAX_BAUD_ERROR",
           "MIN_DIVISOR"]

#: Largest accepted relative difference between the requested and the generated baud rate.
MAX_BAUD_ERROR = 0.02
#: Fewest clock cycles per bit: mid-bit sampling needs a half bit of at least two cycles.
MIN_DIVISOR = 4


class UartConfigError(ValueError):
    """A clock frequency and baud rate that no divisor serves; the message is one line."""


def baud_error(clk_hz: int, baud: int, divisor: int) -> float:
    """Relative difference between the generated (``clk_hz / divisor``) and requested baud rate."""
    return abs(clk_hz / divisor - baud) / baud


def baud_divisor(clk_hz, baud) -> int:
    """Clock cycles per bit, ``round(clk_hz / baud)``; raises :class:`UartConfigError` when the
    divisor is below :data:`MIN_DIVISOR` or its baud rate is off by more than 2 %."""
    for name, value in (("clock frequency", clk_hz), ("baud rate", baud)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UartConfigError(f"{name} must be a positive integer, not {value!r}")
    divisor = round(clk_hz / baud)
    if divisor < MIN_DIVISOR:
        raise UartConfigError(f"{baud} baud from a {clk_hz} Hz clock: divisor {divisor} is below the "
                              f"minimum of {MIN_DIVISOR} cycles per bit")
    err = baud_error(clk_hz, baud, divisor)
    if err > MAX_BAUD_ERROR:
        raise UartConfigError(f"{baud} baud from a {clk_hz} Hz clock: the nearest divisor {divisor} gives "
                              f"{clk_hz / divisor:.0f} baud, {100 * err:.1f} % off (at most "
                              f"{100 * MAX_BAUD_ERROR:.0f} % allowed)")
    return divisor


def _check_divisor(divisor) -> int:
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise UartConfigError(f"divisor must be an integer of at least {MIN_DIVISOR}, not {divisor!r}")
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver: two-flop synchroniser, start bit confirmed at mid-bit, data bits sampled at
    mid-bit (LSB first), stop bit checked.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`).

    Attributes
    ----------
    rx : In(1)
        The serial line (idle high), asynchronous to the clock.
    o_stream : Out(stream.Signature(8))
        Received bytes. The receiver holds one byte: a byte that completes while the previous one
        has not been taken is dropped and ``overrun`` pulses.
    framing_error : Out(1)
        One-cycle pulse when a stop bit reads 0; that byte is dropped and the receiver waits for
        the line to go idle (high) before looking for a start bit.
    overrun : Out(1)
        One-cycle pulse when a byte is dropped because ``o_stream`` was full.
    busy : Out(1)
        High from a start bit's falling edge until its stop bit is checked.
    """

    rx: In(1, init=1)
    o_stream: Out(stream.Signature(8))
    framing_error: Out(1)
    overrun: Out(1)
    busy: Out(1)

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(d))
        bits = Signal(range(9))
        shreg = Signal(8)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~rx):
                    # the sample point of each bit is the middle of the bit
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    with m.If(rx):   # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(d - 1), bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.busy.eq(1)
                with m.If(timer == 0):
                    with m.If(rx):
                        with m.If(self.o_stream.valid & ~self.o_stream.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o_stream.payload.eq(shreg), self.o_stream.valid.eq(1)]
                        # back to IDLE half a bit early, so that a slightly fast sender's next
                        # start bit is never missed
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: start bit, 8 data bits LSB first, one full stop bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`).

    Attributes
    ----------
    i_stream : In(stream.Signature(8))
        Bytes to send; ``ready`` is high only while the transmitter is idle, so one byte takes
        ``10 * divisor`` cycles from its transfer to the next ``ready``.
    tx : Out(1)
        The serial line, driven from a register (idle high).
    """

    i_stream: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        left = Signal(range(10))     # bits still to put on the line after the current one
        shreg = Signal(9)            # data bits then the stop bit
        busy = Signal()
        m.d.comb += self.i_stream.ready.eq(~busy)
        with m.If(~busy):
            with m.If(self.i_stream.valid):
                m.d.sync += [self.tx.eq(0), shreg.eq(Cat(self.i_stream.payload, Const(1, 1))),
                             left.eq(9), timer.eq(d - 1), busy.eq(1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(left != 0):
            m.d.sync += [self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), left.eq(left - 1), timer.eq(d - 1)]
        with m.Else():
            m.d.sync += busy.eq(0)   # the stop bit has lasted its full bit time
        return m
