# amaranth: UnusedElaboratable=no
"""The whole network as one streaming component: one sample per clock, full backpressure.

(The first line stops Amaranth from warning about each submodule of a top that is never
elaborated; the top itself still warns.)
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from lutnet import ir, locality
from .layers import (EncoderComponent, GroupSumHeadComponent, LutLayerComponent, XnorHeadComponent,
                     XnorLayerComponent, class_bits, lut_support)
from .options import PipelineOptions

__all__ = ["LutnetTop", "CreditBuffer", "LAYER_COMPONENTS", "HEAD_COMPONENTS", "member_orders"]


class LutnetTop(wiring.Component):
    """Encoder -> layers (XNOR or LUT, in any order) -> head (XNOR or group-sum), as a stream
    pipeline.

    Every pipeline register (data, and a shift register of valid bits beside it) advances on
    one global enable ``en = ~o_stream.valid | o_stream.ready``, and ``i_stream.ready = en``:
    the pipeline moves whenever its output is empty or being taken, so it takes one sample per
    clock, never drops or duplicates one, and ``o_stream.valid`` comes from a register (it does
    not depend on ``o_stream.ready``). Reset clears the valid bits. With no register at all
    (every option off) the top is combinational and ``o_stream.valid = i_stream.valid``.

    With ``options.stall_free`` the pipeline never stalls: every stage register loads on every
    clock (``en`` is a constant 1, so synthesis makes plain flip-flops), the valid bits shift
    freely, and the results land in a :class:`CreditBuffer` that drives ``o_stream``. The input
    is ready while the samples accepted and not yet taken at the output are fewer than the
    buffer holds (a count in registers), so nothing is dropped and no combinational path runs
    from ``o_stream.ready`` into the pipeline; the buffer adds its ``latency`` (2 or 3)
    cycles.

    With ``options.always_ready`` the registers are free-running too but there is no buffer and
    no backpressure: both streams are ``always_ready`` (``ready`` is ``Const(1)``, not a port),
    every valid input is taken, and its result is valid for the one cycle ``latency`` cycles
    later.

    Submodules are named ``encoder``, ``layer0``, ``layer1``, ..., ``head``. Each layer and the
    head get the component of their IR kind (:data:`LAYER_COMPONENTS`, :data:`HEAD_COMPONENTS`);
    ``layers_per_stage`` counts layers of every kind alike. Another kind is a ``TypeError`` that
    names it.

    Parameters
    ----------
    net : ir.Network
    options : PipelineOptions, optional
        Register placement; the defaults register the encoder, each layer, the scores and the
        output.

    Attributes
    ----------
    i_stream : In(stream.Signature(n_features * input_bits))
        Raw features, feature ``f`` at ``payload[f * input_bits +: input_bits]``.
    o_stream : Out(stream.Signature(class_bits + n_classes * score_bits))
        Class index at ``payload[0 +: class_bits]``, score ``c`` at
        ``payload[class_bits + c * score_bits +: score_bits]``.
    latency : int
        Cycles from an accepted input to its output being valid, when never stalled.
    pipeline_latency : int
        The stages' registers alone (``latency`` less the stall-free buffer's cycles).
    buffer : CreditBuffer or None
        The stall-free output buffer (``CreditBuffer.for_pipeline``), else None.
    class_bits, score_bits, payload_in_bits, payload_out_bits : int
    encoder, layers, head
        The submodule components (``layers`` is a tuple).
    """

    def __init__(self, net: ir.Network, *, options: PipelineOptions | None = None):
        if not isinstance(net, ir.Network):
            raise TypeError(f"net must be an ir.Network, not {type(net).__name__}")
        if options is None:
            options = PipelineOptions()
        if not isinstance(options, PipelineOptions):
            raise TypeError(f"options must be a PipelineOptions, not {type(options).__name__}")
        self.net, self.options = net, options
        o = options
        self.encoder = EncoderComponent(net.encoder, register=o.register_encoder,
                                        free_running=o.free_running)
        # a LUT layer's constant neurons are folded into the LUT layer after it
        constants = _constants(net)
        self.layers = tuple(_layer_component(i, layer, o, _read_by(net.layers[i + 1:], constants[i + 1]),
                                             constants[i])
                            for i, layer in enumerate(net.layers))
        self.head = _head_component(net, o)
        self.class_bits = class_bits(net.n_classes)
        self.score_bits = net.head.score_bits
        self.payload_in_bits = net.encoder.n_features * net.encoder.input_bits
        self.payload_out_bits = self.class_bits + net.n_classes * self.score_bits
        assert self.payload_out_bits == len(self.head.o)
        self.pipeline_latency = sum(c.latency for c in self.stages().values())
        self.buffer = (CreditBuffer.for_pipeline(self.payload_out_bits, self.pipeline_latency)
                       if o.stall_free else None)
        self.latency = self.pipeline_latency + (self.buffer.latency if o.stall_free else 0)
        ready = {"always_ready": o.always_ready}
        super().__init__({
            "i_stream": In(stream.Signature(self.payload_in_bits, **ready)),
            "o_stream": Out(stream.Signature(self.payload_out_bits, **ready)),
        })

    def stages(self) -> dict:
        """Submodule name -> component, in data-flow order."""
        return {"encoder": self.encoder,
                **{f"layer{i}": layer for i, layer in enumerate(self.layers)},
                "head": self.head}

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        data = self.i_stream.payload
        for name, stage in self.stages().items():
            m.submodules[name] = stage
            m.d.comb += [stage.en.eq(en), stage.i.eq(data)]
            data = stage.o

        if self.options.stall_free:
            latency = self.pipeline_latency
            m.submodules.buffer = buf = self.buffer
            accept = Signal()
            m.d.comb += [en.eq(1), accept.eq(self.i_stream.valid & buf.ready),
                         self.i_stream.ready.eq(buf.ready), buf.i_valid.eq(self.i_stream.valid),
                         buf.w_payload.eq(data)]
            if latency:
                valid = Signal(latency)   # no enable: the pipeline never stalls
                m.d.sync += valid.eq(Cat(accept, valid[:-1]))
                m.d.comb += buf.w_valid.eq(valid[-1])
            else:
                m.d.comb += buf.w_valid.eq(accept)
            wiring.connect(m, buf.o_stream, wiring.flipped(self.o_stream))
            return m

        m.d.comb += self.o_stream.payload.eq(data)
        if self.latency:
            valid = Signal(self.latency)   # valid[k]: the data k + 1 registers deep are a sample
            with m.If(en):
                m.d.sync += valid.eq(Cat(self.i_stream.valid, valid[:-1]))
            m.d.comb += self.o_stream.valid.eq(valid[-1])
        else:
            m.d.comb += self.o_stream.valid.eq(self.i_stream.valid)
        if self.options.always_ready:
            m.d.comb += en.eq(1)
        else:
            m.d.comb += [
                en.eq(~self.o_stream.valid | self.o_stream.ready),
                self.i_stream.ready.eq(en),
            ]
        return m


#: IR layer kind -> component class.
LAYER_COMPONENTS = {ir.XnorLayer.kind: XnorLayerComponent, ir.LutLayer.kind: LutLayerComponent}
#: IR head kind -> component class.
HEAD_COMPONENTS = {ir.XnorHead.kind: XnorHeadComponent, ir.GroupSumHead.kind: GroupSumHeadComponent}


def _kind(value) -> str:
    return getattr(value, "kind", None) or type(value).__name__


def _constants(net: ir.Network) -> list:
    """For each layer and the head, the bits of its input known to be constant (index ->
    value): the constant neurons of a LUT layer before it, given the constants before that."""
    known, out = {}, []
    for layer in net.layers:
        out.append(known)
        known = {} if type(layer) is not ir.LutLayer else {
            j: value for j, (variables, value) in
            enumerate(lut_support(i, t, known) for i, t in zip(layer.inputs, layer.tables)) if not variables}
    return out + [known]


def _read_by(following, constants: dict) -> set | None:
    """The bits of a layer that the next layer reads, when it is a LUT layer (an XNOR layer or
    a head reads every bit: None); ``constants``: the layer's constant bits, which the next
    layer's tables are specialised on."""
    if not following or type(following[0]) is not ir.LutLayer:
        return None
    nxt = following[0]
    return {v for inputs, table in zip(nxt.inputs, nxt.tables)
            for v in lut_support(inputs, table, constants)[0]}


def _layer_component(i: int, layer, o: PipelineOptions, read: set | None = None,
                     constants: dict | None = None):
    register = o.layers_per_stage is not None and (i + 1) % o.layers_per_stage == 0
    if type(layer) is ir.XnorLayer:
        return XnorLayerComponent(layer, register=register,
                                  adder_levels_per_stage=o.adder_levels_per_stage,
                                  share_subtrees=o.share_subtrees, free_running=o.free_running)
    if type(layer) is ir.LutLayer:
        return LutLayerComponent(layer, register=register, free_running=o.free_running,
                                 split_lut6=o.split_lut6, relay_inputs=o.relay_inputs, read=read,
                                 constants=constants)
    raise TypeError(f"layer {i}: no hardware for layer kind {_kind(layer)!r} "
                    f"(supported: {', '.join(sorted(LAYER_COMPONENTS))})")


def member_orders(net: ir.Network) -> list:
    """Per class of a group-sum head, its members in the order a Hilbert curve over the net's
    layout (:mod:`lutnet.locality`) visits them: the order its first counters take them in."""
    head = net.head
    pos = locality.net_positions(net)[-1]
    g = head.group
    return [locality.curve_order(pos[c * g:(c + 1) * g]) for c in range(head.n_classes)]


def _head_component(net: ir.Network, o: PipelineOptions):
    head = net.head
    cls = {ir.XnorHead: XnorHeadComponent, ir.GroupSumHead: GroupSumHeadComponent}.get(type(head))
    if cls is None:
        raise TypeError(f"head: no hardware for head kind {_kind(head)!r} "
                        f"(supported: {', '.join(sorted(HEAD_COMPONENTS))})")
    extra = ({"orders": member_orders(net), "hops": o.head_hops}
             if cls is GroupSumHeadComponent and o.one_lut_head else {})
    return cls(head, **extra, adder_levels_per_stage=o.adder_levels_per_stage,
               register_scores=o.register_scores, argmax_levels_per_stage=o.argmax_levels_per_stage,
               register_output=o.register_output, share_subtrees=o.share_subtrees,
               register_comparisons=o.register_comparisons, free_running=o.free_running,
               one_lut=o.one_lut_head, relay_inputs=o.relay_inputs)


class CreditBuffer(wiring.Component):
    """The output end of a free-running pipeline: a buffer for its results and the credits that
    keep the buffer from overflowing.

    A sample costs a credit when it is accepted at the input (``i_valid & ready``) and returns it
    one cycle after its result is taken at ``o_stream``; ``ready`` says a credit is left. The
    results arrive on ``w_valid``/``w_payload`` (no ready: the pipeline cannot wait) a fixed
    number of cycles after their acceptance; with ``credits >= credits_for(that number)`` the
    input takes one sample per clock while ``o_stream.ready`` stays 1, and while it is 0 at most
    ``credits`` samples are in flight, all of which the memory holds (``credits - 1`` words
    suffice: one result is always in the output register by then).

    Built for a LUT4 fabric: every register's next value is one function of at most five
    registers and ports (one LUT4, or two and the slice's PFU multiplexer), except one bit of
    ``held``, of six. ``ready``, ``o_stream.valid`` and ``o_stream.payload`` are registers.
    The two counts are thermometer codes (bit ``i`` = "more than ``i``"), each bit updated
    from its two neighbours; where the code itself implies an input (a full credit count means
    every lower bit is 1, an empty output register means at most one result held), that input
    is left out. The results wait in a memory with a write port and an asynchronous read port
    (ECP5 distributed RAM of 16 words, Xilinx LUTRAM) whose pointers are binary counters
    incremented in logic (bit ``i`` a function of ``i + 1`` bits, one LUT4, not a carry chain):
    4 flip-flops on the load and write enables, which also drive the output register and the
    RAM, where rings of 16 (each bit a 2:1 choice) put 16 on them. More than 16 words would
    put a multiplexer behind the RAM, so then the results alternate between two banks, each
    read every clock into a register, and the output register picks one of those two
    (``banks=2``, one more cycle of latency).

    Parameters
    ----------
    width : int
        Payload bits.
    credits : int
        Samples in flight at most (accepted, not yet taken); at least 1.
    banks : int
        1 or 2 memory banks (see above).

    Attributes
    ----------
    i_valid : In(1)
        A sample is offered at the input; it is accepted when ``ready`` too.
    ready : Out(1)
        A credit is left (a register).
    w_valid : In(1)
        A result arrives this cycle.
    w_payload : In(width)
    o_stream : Out(stream.Signature(width))
        The results in arrival order; ``valid`` and ``payload`` are registers.
    latency : int
        Cycles from ``w_valid`` to the result on ``o_stream``: 2 (memory write, output register),
        3 with two banks (a bank register between).
    depth : int
        Words per bank: ``credits - 1`` (split over the banks) rounded up to a power of two.
    """

    #: Words of one ECP5 distributed RAM (TRELLIS_DPR16X4): deeper needs a read multiplexer.
    LUTRAM_WORDS = 16

    @staticmethod
    def credits_for(latency: int, buffer_latency: int) -> int:
        """Credits for full rate behind a pipeline of ``latency`` cycles: a sample holds its credit
        for ``latency + buffer_latency`` cycles, and one more until it is counted back.

        >>> CreditBuffer.credits_for(13, 2)
        17
        """
        return latency + buffer_latency + 2

    @classmethod
    def for_pipeline(cls, width: int, latency: int) -> "CreditBuffer":
        """The buffer for full rate behind a pipeline of ``latency`` cycles: one bank while the
        words fit one distributed RAM, else two.

        >>> [(b.banks, b.credits, b.depth) for b in (CreditBuffer.for_pipeline(8, n) for n in (13, 14))]
        [(1, 17, 16), (2, 19, 16)]
        """
        credits = cls.credits_for(latency, 2)
        if credits - 1 <= cls.LUTRAM_WORDS:
            return cls(width, credits=credits, banks=1)
        return cls(width, credits=cls.credits_for(latency, 3), banks=2)

    def __init__(self, width: int, *, credits: int, banks: int = 1):
        if isinstance(credits, bool) or not isinstance(credits, int) or credits < 1:
            raise ValueError(f"credits must be a positive integer, not {credits!r}")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if banks not in (1, 2) or isinstance(banks, bool):
            raise ValueError(f"banks must be 1 or 2, not {banks!r}")
        self.width, self.credits, self.banks = width, credits, banks
        self.latency = 1 + banks
        words = -(-(credits - 1) // banks)
        self.depth = 1 << max(1, (words - 1).bit_length())
        super().__init__({
            "i_valid": In(1), "ready": Out(1),
            "w_valid": In(1), "w_payload": In(width),
            "o_stream": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        o, n = self.o_stream, self.credits

        # Credits in flight (thermometer), counted back one cycle after the take (`took`, a
        # register), so no bit depends on o_stream.ready. Below the top bit the accept is
        # i_valid alone: when it differs (not ready) every bit below the top is 1 and stays 1.
        in_flight, took = Signal(n, name="in_flight"), Signal(name="took")
        m.d.sync += took.eq(o.valid & o.ready)
        accept = self.i_valid & ~in_flight[-1]
        nxt = [_step(in_flight, i, self.i_valid if i < n - 1 else accept, took) for i in range(n)]
        m.d.sync += in_flight.eq(Cat(*nxt))
        m.d.comb += self.ready.eq(~in_flight[-1])

        # Results in the memory or the output register (thermometer), counted once readable:
        # a cycle after the write, two with banks (the bank register reads it a cycle later).
        arrived = self.w_valid
        if self.banks == 2:
            arrived = Signal(name="arrived")
            m.d.sync += arrived.eq(self.w_valid)
        # With the output register empty at most one is held, so above bit 1 the take is
        # o_stream.ready alone.
        held, held_next = Signal(n, name="held"), Signal(n, name="held_next")
        take = o.valid & o.ready
        m.d.comb += held_next.eq(Cat(*(_step(held, i, arrived, take if i < 2 else o.ready)
                                        for i in range(n))))
        m.d.sync += held.eq(held_next)
        # `fill`: the output register is empty and a result is held (so it is
        # ``held[0] & ~o.valid``, a cycle late), and the load is a function of three bits:
        # fill, or a second result held while the first is taken. `fill` is next 1 when a result
        # arrives while the output register is empty and not filling, or holds the only result
        # and is taken: five inputs, where ``held_next[0] & ~valid_next`` has six.
        fill, load, valid_next = Signal(name="fill"), Signal(name="load"), Signal(name="valid_next")
        m.d.comb += [load.eq(fill | (held[1] & o.ready)),
                     valid_next.eq(fill | (o.valid & (held[1] | ~o.ready)))]
        m.d.sync += [o.valid.eq(valid_next),
                     fill.eq(~fill & arrived & (~o.valid | (~held[1] & o.ready)))]

        k = (self.depth - 1).bit_length()
        w_ptr = Signal(k, name="w_ptr")
        payload = Signal(self.width, reset_less=True)
        m.d.comb += o.payload.eq(payload)
        if self.banks == 1:
            r_ptr = Signal(k, name="r_ptr")
            m.submodules.memory = memory = Memory(shape=self.width, depth=self.depth, init=[])
            wr, rd = memory.write_port(), memory.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(w_ptr), wr.data.eq(self.w_payload),
                         wr.en.eq(self.w_valid), rd.addr.eq(r_ptr)]
            with m.If(self.w_valid):
                m.d.sync += w_ptr.eq(_increment(w_ptr))
            with m.If(load):
                m.d.sync += [payload.eq(rd.data), r_ptr.eq(_increment(r_ptr))]
            return m

        # Two banks: result j goes to bank j % 2 at the pointer's address for j // 2; each bank
        # is read into its register every clock at its own read pointer (which moves on as the
        # output register takes from that bank, so the next result of the bank is in the
        # register two cycles later, when the bank's turn comes again), and the output register
        # takes one of the two.
        w_bank, r_bank = Signal(name="w_bank"), Signal(name="r_bank")
        with m.If(self.w_valid):
            m.d.sync += w_bank.eq(~w_bank)
            with m.If(w_bank):
                m.d.sync += w_ptr.eq(_increment(w_ptr))
        with m.If(load):
            m.d.sync += r_bank.eq(~r_bank)
        heads = []
        for b in range(2):
            r_ptr = Signal(k, name=f"r_ptr{b}")
            with m.If(load & (r_bank == b)):
                m.d.sync += r_ptr.eq(_increment(r_ptr))
            m.submodules[f"bank{b}"] = memory = Memory(shape=self.width, depth=self.depth, init=[])
            wr, rd = memory.write_port(), memory.read_port(domain="comb")
            m.d.comb += [wr.addr.eq(w_ptr), wr.data.eq(self.w_payload),
                         wr.en.eq(self.w_valid & (w_bank == b)), rd.addr.eq(r_ptr)]
            head = Signal(self.width, name=f"bank{b}_head", reset_less=True)
            m.d.sync += head.eq(rd.data)
            heads.append(head)
        with m.If(load):
            m.d.sync += payload.eq(Mux(r_bank, heads[1], heads[0]))
        return m


def _increment(count):
    """``count + 1`` (wrapping) as logic: bit ``i`` flips when every bit below is 1, a function
    of ``i + 1`` bits (one LUT4 up to 4 bits), where an adder would go on a carry chain."""
    return Cat(*(count[i] ^ (count[:i].all() if i else 1) for i in range(len(count))))


def _step(count, i: int, inc, dec):
    """Bit ``i`` of the thermometer code ``count`` after adding ``inc`` and subtracting ``dec``."""
    n = len(count)
    below = Const(1, 1) if i == 0 else count[i - 1]
    above = Const(0, 1) if i == n - 1 else count[i + 1]
    return above | (count[i] & ~(dec & ~inc)) | (below & inc & ~dec)
