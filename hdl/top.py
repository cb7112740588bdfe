# amaranth: UnusedElaboratable=no
"""The whole network as one streaming component: one sample per clock, full backpressure.

(The first line stops Amaranth from warning about each submodule of a top that is never
elaborated; the top itself still warns.)
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from lutnet import ir
from .layers import (EncoderComponent, GroupSumHeadComponent, LutLayerComponent, XnorHeadComponent,
                     XnorLayerComponent, class_bits)
from .options import PipelineOptions

__all__ = ["LutnetTop", "LAYER_COMPONENTS", "HEAD_COMPONENTS"]


class LutnetTop(wiring.Component):
    """Encoder -> layers (XNOR or LUT, in any order) -> head (XNOR or group-sum), as a stream
    pipeline.

    Every pipeline register (data, and a shift register of valid bits beside it) advances on
    one global enable ``en = ~o_stream.valid | o_stream.ready``, and ``i_stream.ready = en``:
    the pipeline moves whenever its output is empty or being taken, so it takes one sample per
    clock, never drops or duplicates one, and ``o_stream.valid`` comes from a register (it does
    not depend on ``o_stream.ready``). Reset clears the valid bits. With no register at all
    (every option off) the top is combinational and ``o_stream.valid = i_stream.valid``.

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
        self.encoder = EncoderComponent(net.encoder, register=o.register_encoder)
        self.layers = tuple(_layer_component(i, layer, o) for i, layer in enumerate(net.layers))
        self.head = _head_component(net.head, o)
        self.class_bits = class_bits(net.n_classes)
        self.score_bits = net.head.score_bits
        self.payload_in_bits = net.encoder.n_features * net.encoder.input_bits
        self.payload_out_bits = self.class_bits + net.n_classes * self.score_bits
        assert self.payload_out_bits == len(self.head.o)
        self.latency = sum(c.latency for c in self.stages().values())
        super().__init__({
            "i_stream": In(stream.Signature(self.payload_in_bits)),
            "o_stream": Out(stream.Signature(self.payload_out_bits)),
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
        m.d.comb += self.o_stream.payload.eq(data)

        if self.latency:
            valid = Signal(self.latency)   # valid[k]: the data k + 1 registers deep are a sample
            with m.If(en):
                m.d.sync += valid.eq(Cat(self.i_stream.valid, valid[:-1]))
            m.d.comb += self.o_stream.valid.eq(valid[-1])
        else:
            m.d.comb += self.o_stream.valid.eq(self.i_stream.valid)
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


def _layer_component(i: int, layer, o: PipelineOptions):
    register = o.layers_per_stage is not None and (i + 1) % o.layers_per_stage == 0
    if type(layer) is ir.XnorLayer:
        return XnorLayerComponent(layer, register=register,
                                  adder_levels_per_stage=o.adder_levels_per_stage,
                                  share_subtrees=o.share_subtrees)
    if type(layer) is ir.LutLayer:
        return LutLayerComponent(layer, register=register)
    raise TypeError(f"layer {i}: no hardware for layer kind {_kind(layer)!r} "
                    f"(supported: {', '.join(sorted(LAYER_COMPONENTS))})")


def _head_component(head, o: PipelineOptions):
    cls = {ir.XnorHead: XnorHeadComponent, ir.GroupSumHead: GroupSumHeadComponent}.get(type(head))
    if cls is None:
        raise TypeError(f"head: no hardware for head kind {_kind(head)!r} "
                        f"(supported: {', '.join(sorted(HEAD_COMPONENTS))})")
    return cls(head, adder_levels_per_stage=o.adder_levels_per_stage,
               register_scores=o.register_scores, argmax_levels_per_stage=o.argmax_levels_per_stage,
               register_output=o.register_output, share_subtrees=o.share_subtrees,
               register_comparisons=o.register_comparisons)
