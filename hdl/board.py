# amaranth: UnusedElaboratable=no
"""A board's top level: the network core (:class:`~lutnet.hdl.top.LutnetTop`) behind a UART.

Protocol (8N1, one divisor ``round(clk_hz / baud)``, see :mod:`lutnet.hdl.uart`):

* **Frame**: the host sends one byte per feature, feature 0 first; the feature's value is in the
  byte's low ``input_bits`` bits (higher bits are ignored). After the frame's last byte the sample
  enters the core.
* **Reply**: one byte per frame, the class index, in frame order. The board's LEDs (if any) show
  the last class in binary, bit ``i`` on LED ``i``.
* **Resynchronisation**: a line idle for ``resync_bytes`` byte times (10 bits each) while a
  frame is partly received drops that partial frame; so does a framing error or a receiver
  overrun. A host that opened the port in the middle of someone else's frame, or lost a byte,
  waits that long (or longer) before sending and is in step again. No byte value is reserved, so
  every 8-bit feature value can be sent.
* **Flow control**: there is none on the wire. Every result is sent (the core's ``o_stream.ready``
  is the transmitter's ``ready``, so the core stalls while a reply is on the line, and a stalled
  core holds the finished frame in its ``i_stream``); bytes arriving while both the frame buffer
  and the receiver's one-byte buffer are full would be lost. A stalled core holds bubbles too, so
  what the board can absorb is one reply on the wire, one result at the core's output, the frame
  buffer and the receiver's buffer: a host that keeps at most ``max_in_flight`` = 4 frames
  unanswered (written to ``board.json``) never loses one, whatever the baud rates. With two
  features or more per frame any number is safe (``max_in_flight`` is null): results come at
  most once per frame time, longer than the 10 bit times of a reply, so the core never stalls.

Power-on reset is internal (a counter from the FPGA's configuration-time register values), so the
Verilog module ``board_top`` has ports ``clk``, ``uart_rx``, ``uart_tx`` and ``leds`` only.
"""
from __future__ import annotations

import json
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, ClockSignal, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lutnet import ir
from .emit import _write
from .options import PipelineOptions
from .top import LutnetTop
from .uart import UartConfigError, UartRx, UartTx, baud_divisor, baud_error

__all__ = ["BoardError", "BoardTop", "generate_board", "board_description", "TOP_NAME", "VERILOG_FILE",
           "BOARD_FILE", "RESYNC_BYTES", "POR_CYCLES", "MAX_IN_FLIGHT", "check_fits"]

TOP_NAME = "board_top"
VERILOG_FILE = "board_top.v"
BOARD_FILE = "board.json"
#: Idle byte times that drop a partial frame (a USB-serial bridge can pause a few byte times
#: between its packets; a host that resynchronises simply waits longer than this).
RESYNC_BYTES = 16
#: Clock cycles the internal power-on reset lasts.
POR_CYCLES = 16
#: Frames a host may keep unanswered when a frame is one byte (see the module docstring).
MAX_IN_FLIGHT = 4
#: Bits of a byte on the wire: start, 8 data, stop.
BYTE_BITS = 10


class BoardError(ValueError):
    """The network (or the clock and baud rate) does not fit the board's UART protocol; one line."""


class BoardTop(wiring.Component):
    """The network core between a UART receiver (frames of one byte per feature) and a UART
    transmitter (one class byte per frame); see the module docstring for the protocol.

    Parameters
    ----------
    net : ir.Network
    divisor : int
        Clock cycles per UART bit.
    n_leds : int
        LEDs showing the last class in binary (0: no ``leds`` port).
    leds_active_low : bool
    options : PipelineOptions, optional
        The core's pipeline registers.
    resync_bytes : int
        Idle byte times that drop a partial frame.

    Attributes
    ----------
    clk : In(1)
    uart_rx : In(1)
    uart_tx : Out(1)
    leds : Out(n_leds), absent when ``n_leds == 0``
    core : LutnetTop
    """

    def __init__(self, net: ir.Network, *, divisor: int, n_leds: int = 0, leds_active_low: bool = False,
                 options: PipelineOptions | None = None, resync_bytes: int = RESYNC_BYTES):
        check_fits(net)
        if isinstance(n_leds, bool) or not isinstance(n_leds, int) or n_leds < 0:
            raise BoardError(f"n_leds must be a non-negative integer, not {n_leds!r}")
        if isinstance(resync_bytes, bool) or not isinstance(resync_bytes, int) or resync_bytes < 2:
            raise BoardError(f"resync_bytes must be an integer of at least 2, not {resync_bytes!r}")
        self.net = net
        self.core = LutnetTop(net, options=options)
        if self.core.latency == 0:
            raise BoardError("pipeline options place no register: the board top needs at least one "
                             "(e.g. register_output=True)")
        if self.core.options.always_ready:
            raise BoardError("an always_ready core has no backpressure, which the UART transmitter needs")
        self.divisor = divisor
        self.n_leds, self.leds_active_low, self.resync_bytes = n_leds, bool(leds_active_low), resync_bytes
        self.rx, self.tx = UartRx(divisor), UartTx(divisor)
        ports = {"clk": In(1), "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        if n_leds:
            ports["leds"] = Out(n_leds, init=(1 << n_leds) - 1 if leds_active_low else 0)
        super().__init__(ports)

    @property
    def resync_cycles(self) -> int:
        return self.resync_bytes * BYTE_BITS * self.divisor

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        # the power-on counter has no reset of its own: it starts from its configuration value
        m.domains.por = ClockDomain("por", reset_less=True)
        por = Signal(range(POR_CYCLES + 1))
        m.d.comb += [ClockSignal("sync").eq(self.clk), ClockSignal("por").eq(self.clk),
                     ResetSignal("sync").eq(por != POR_CYCLES)]
        with m.If(por != POR_CYCLES):
            m.d.por += por.eq(por + 1)

        m.submodules.core = core = self.core
        m.submodules.uart_rx = rx = self.rx
        m.submodules.uart_tx = tx = self.tx
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx)]

        # frame assembly: bytes shift in from the top, so feature 0 ends at the payload's low end
        f_bits, n = self.net.encoder.input_bits, self.net.encoder.n_features
        frame = Signal(n * f_bits)
        count = Signal(range(n))
        full = Signal()          # a whole frame waits in core.i_stream
        idle = Signal(range(self.resync_cycles + 1))
        m.d.comb += [core.i_stream.payload.eq(frame), core.i_stream.valid.eq(full),
                     rx.o_stream.ready.eq(~full)]
        with m.If(core.i_stream.valid & core.i_stream.ready):
            m.d.sync += full.eq(0)
        with m.If(rx.o_stream.valid & ~full):
            byte = rx.o_stream.payload[:f_bits]
            m.d.sync += frame.eq(Cat(frame[f_bits:], byte) if n > 1 else byte)
            with m.If(count == n - 1):
                m.d.sync += [count.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)

        with m.If(rx.busy | rx.o_stream.valid | (count == 0)):
            m.d.sync += idle.eq(0)
        with m.Elif(idle == self.resync_cycles):
            m.d.sync += [idle.eq(0), count.eq(0)]
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        with m.If(rx.framing_error | rx.overrun):
            m.d.sync += count.eq(0)

        # results: the class byte to the transmitter, which stalls the core while it is busy
        cls = core.o_stream.payload[:self.core.class_bits]
        m.d.comb += [tx.i_stream.payload.eq(cls), tx.i_stream.valid.eq(core.o_stream.valid),
                     core.o_stream.ready.eq(tx.i_stream.ready)]
        if self.n_leds:
            shown = Signal(self.n_leds)
            with m.If(core.o_stream.valid & core.o_stream.ready):
                m.d.sync += shown.eq(cls)
            m.d.comb += self.leds.eq(~shown if self.leds_active_low else shown)
        return m


def check_fits(net) -> None:
    """Raise :class:`BoardError` unless the net's features and classes fit one byte each."""
    if not isinstance(net, ir.Network):
        raise TypeError(f"net must be an ir.Network, not {type(net).__name__}")
    bits = net.encoder.input_bits
    if bits > 8:
        raise BoardError(f"net input is {bits}-bit features; the UART framing carries at most 8 bits per feature")
    if net.n_classes > 256:
        raise BoardError(f"net has {net.n_classes} classes; the UART reply carries a class index in one byte (at most 256)")


def board_description(top: BoardTop, clk_hz: int, baud: int) -> dict:
    """The contents of ``board.json`` for ``top``."""
    net, core = top.net, top.core
    n = net.encoder.n_features
    return {
        "top": TOP_NAME,
        "verilog": VERILOG_FILE,
        "ports": {"clk": "input", "uart_rx": "input", "uart_tx": "output",
                  **({"leds": "output"} if top.n_leds else {})},
        "clk_hz": clk_hz,
        "baud": baud,
        "divisor": top.divisor,
        "baud_actual": clk_hz / top.divisor,
        "baud_error": baud_error(clk_hz, baud, top.divisor),
        "n_leds": top.n_leds,
        "leds_active_low": top.leds_active_low,
        "frame": {
            "format": "8N1",
            "bytes": n,
            "feature_bits": net.encoder.input_bits,
            "byte": "feature value in the low feature_bits bits, feature 0 first",
            "reply": "one byte per frame: the class index",
            "resync_idle_bytes": top.resync_bytes,
            "resync_idle_cycles": top.resync_cycles,
            "max_in_flight": MAX_IN_FLIGHT if n == 1 else None,
        },
        "n_features": n,
        "input_bits": net.encoder.input_bits,
        "n_classes": net.n_classes,
        "class_bits": core.class_bits,
        "latency": core.latency,
        "por_cycles": POR_CYCLES,
        "pipeline": core.options.to_dict(),
    }


def generate_board(net: ir.Network, out_dir, *, clk_hz: int, baud: int, n_leds: int,
                   leds_active_low: bool = False, options: PipelineOptions | dict | None = None,
                   resync_bytes: int = RESYNC_BYTES) -> dict:
    """Write ``board_top.v`` (module ``board_top``) and ``board.json`` into ``out_dir``; return the
    ``board.json`` dict.

    Raises :class:`BoardError` when the net's features are wider than 8 bits, it has more than
    256 classes, or no UART divisor gives ``baud`` from ``clk_hz`` within 2 %.
    """
    if isinstance(options, dict):
        options = PipelineOptions.from_dict(options)
    check_fits(net)
    try:
        divisor = baud_divisor(clk_hz, baud)
    except UartConfigError as e:
        raise BoardError(str(e)) from None
    top = BoardTop(net, divisor=divisor, n_leds=n_leds, leds_active_low=leds_active_low, options=options,
                   resync_bytes=resync_bytes)
    text = verilog.convert(top, name=TOP_NAME, emit_src=False)
    description = board_description(top, clk_hz, baud)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir / VERILOG_FILE, text)
    _write(out_dir / BOARD_FILE, json.dumps(description, indent=2, sort_keys=True) + "\n")
    return description
