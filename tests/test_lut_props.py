# amaranth: UnusedElaboratable=no
"""Property test: many random LUT/XNOR networks (K 2..6, depth 1..4, widths 1..60, both layer
orders, group-sum and XNOR heads, random pipeline options) simulated on Verilator against the
golden model, on random inputs with the extremes (0 and max), at full rate and with random
ready/valid gaps; the stall-free ones (free-running pipeline + credit buffer) also in a second
build whose output is held off for long stretches while the input keeps coming.

A Verilator build costs seconds of fixed overhead (verilate, make, link) however small the design,
so all the networks go into ONE build: :class:`SideBySide` puts one ``LutnetTop`` per network
side by side behind a single stream (a lazy fork in front, a lazy join behind, and valid-tracked
delay registers padding every core to the longest latency, so that it still takes one sample per
clock). To the unchanged bench (:mod:`lutnet.sim.bench`) it looks like a design with one-bit
features (every input payload bit) and one-bit "scores" (every output payload bit), so the bench
checks every class and score bit of every network on every vector.

Reproduce one failing net with ``netgen.random_mixed_net(np.random.default_rng([SEED, NET]))``
(the failure message names both); ``LUTNET_PROP_SEED`` picks another base seed.
"""
import os
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from lutnet import golden, ir
from lutnet.hdl.emit import DESIGN_FILE, TOP_NAME, VERILOG_FILE
from lutnet.hdl.options import PipelineOptions
from lutnet.hdl.top import LutnetTop
from lutnet.sim import runner
from netgen import random_mixed_net, random_pipeline_options

SEED = int(os.environ.get("LUTNET_PROP_SEED", "9"))
N_NETS = 40
N_VECTORS = 160


class SideBySide(wiring.Component):
    """Several :class:`LutnetTop` cores behind one stream; payloads are the cores' payloads
    concatenated (core 0 in the low bits).

    A transfer goes into every core at once (only when all are ready) and a result leaves when
    every core has one, so the cores never drift apart by a sample. Behind each core, registers
    with their own valid bits (advancing like the core's: when their output is empty or taken)
    bring it to the longest core latency, so at full rate all results arrive together.
    """

    def __init__(self, cores, hold: tuple[int, int] | None = None):
        """``hold=(low, period)``: in every ``period`` cycles the first ``low`` present no
        result (a consumer away for that long), whatever ``o_stream.ready`` says."""
        self.cores = list(cores)
        self.hold = hold
        self.latency = max(c.latency for c in self.cores)
        super().__init__({
            "i_stream": In(stream.Signature(sum(c.payload_in_bits for c in self.cores))),
            "o_stream": Out(stream.Signature(sum(c.payload_out_bits for c in self.cores))),
        })

    def elaborate(self, platform):
        m = Module()
        all_ready, all_valid = Signal(), Signal()
        away = Signal()
        if self.hold:
            low, period = self.hold
            phase = Signal(range(period))
            m.d.sync += phase.eq(Mux(phase == period - 1, 0, phase + 1))
            m.d.comb += away.eq(phase < low)
        readys, valids, outs = [], [], []
        lo_in = 0
        for k, core in enumerate(self.cores):
            m.submodules[f"net{k}"] = core
            m.d.comb += [core.i_stream.payload.eq(self.i_stream.payload[lo_in:lo_in + core.payload_in_bits]),
                         core.i_stream.valid.eq(self.i_stream.valid & all_ready)]
            lo_in += core.payload_in_bits
            readys.append(core.i_stream.ready)
            take = self.o_stream.ready & all_valid & ~away
            payload, valid, ready = core.o_stream.payload, core.o_stream.valid, core.o_stream.ready
            depth = self.latency - core.latency
            if depth:
                en = Signal(name=f"pad{k}_en")
                regs = [Signal(len(payload), name=f"pad{k}_data{i}") for i in range(depth)]
                bits = Signal(depth, name=f"pad{k}_valid")
                with m.If(en):
                    m.d.sync += [r.eq(src) for r, src in zip(regs, [payload] + regs[:-1])]
                    m.d.sync += bits.eq(Cat(valid, bits[:-1]))
                m.d.comb += [en.eq(~bits[-1] | take), ready.eq(en)]
                payload, valid = regs[-1], bits[-1]
            else:
                m.d.comb += ready.eq(take)
            valids.append(valid)
            outs.append(payload)
        m.d.comb += [all_ready.eq(Cat(*readys).all()), all_valid.eq(Cat(*valids).all()),
                     self.i_stream.ready.eq(all_ready), self.o_stream.valid.eq(all_valid & ~away),
                     self.o_stream.payload.eq(Cat(*outs))]
        return m


def input_bits(net, x):
    """(N, F) raw features -> (N, F * input_bits) payload bits, LSB first (the port layout)."""
    b = net.encoder.input_bits
    return ((x[:, :, None] >> np.arange(b)) & 1).reshape(len(x), -1)


def output_bits(core, result):
    """Golden classes and scores -> (N, payload_out_bits) payload bits, LSB first."""
    cls = (result.classes[:, None] >> np.arange(core.class_bits)) & 1
    sc = ((result.scores[:, :, None] >> np.arange(core.score_bits)) & 1).reshape(len(cls), -1)
    return np.concatenate([cls, sc], axis=1)


def random_vectors(rng, net, n):
    """Random raw inputs with rows of all zeros, all max and a random 0/max mix first."""
    top = 2 ** net.encoder.input_bits - 1
    x = rng.integers(0, top + 1, size=(n, net.encoder.n_features))
    x[0], x[1] = 0, top
    x[2:6] = rng.integers(0, 2, size=(4, net.encoder.n_features)) * top
    return x


def make_case(seed, k):
    """Net ``k`` of the base seed: (net, options, inputs); depth and layer order cycle through
    all combinations so every run covers them, the rest is random."""
    rng = np.random.default_rng([seed, k])
    orders = ["xnor-lut", "lut-xnor", "lut", "any"]
    net = random_mixed_net(rng, depth=k % 4 + 1, order=orders[(k // 4) % 4],
                           head=["group_sum", "xnor"][(k // 16 + k) % 2])
    options = random_pipeline_options(rng)
    # drawn apart, so the other options and the vectors stay those of the seed
    extra = np.random.default_rng([seed, k, 1]).random(3) < 0.5
    options = PipelineOptions(**{**options.to_dict(), "stall_free": bool(extra[0]),
                                 "split_lut6": bool(extra[1]),
                                 "relay_inputs": bool(extra[2] and not extra[1]),
                                 "one_lut_head": bool(np.random.default_rng([seed, k, 2]).random() < 0.5)})
    if options.one_lut_head and options.relay_inputs:
        hops = np.random.default_rng([seed, k, 3]).integers(0, 2, 3)
        options = PipelineOptions(**{**options.to_dict(), "head_hops": tuple(int(h) for h in hops)})
    if LutnetTop(net, options=options).latency == 0:
        options = PipelineOptions(**{**options.to_dict(), "register_output": True})
    return net, options, random_vectors(rng, net, N_VECTORS)


def flip_one_table_bit(net, x):
    """A copy of ``net`` with one LUT table bit flipped such that the golden model's output on
    ``x`` changes, or None when no single flip of the first 200 tried shows."""
    want = golden.run(net, x)
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, ir.LutLayer):
            continue
        for flat in range(min(layer.tables.size, 200)):
            tables = layer.tables.copy()
            tables.flat[flat] ^= 1
            layers = list(net.layers)
            layers[i] = ir.LutLayer(layer.inputs, tables, layer.n_in)
            bad = ir.Network(net.encoder, layers, net.head, meta=net.meta)
            got = golden.run(bad, x)
            if (got.classes != want.classes).any() or (got.scores != want.scores).any():
                return bad, f"layer {i} table bit {np.unravel_index(flat, tables.shape)}"
    return None


def write_design(folder, top: SideBySide):
    """Verilog and design.json of the side-by-side top, described as one-bit features/scores."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / VERILOG_FILE).write_text(verilog.convert(top, name=TOP_NAME))
    n_in, n_out = len(top.i_stream.payload), len(top.o_stream.payload)
    (folder / DESIGN_FILE).write_text(json.dumps({
        "top": TOP_NAME, "verilog": VERILOG_FILE, "n_features": n_in, "input_bits": 1,
        "n_classes": n_out, "class_bits": 0, "score_bits": 1, "latency": top.latency,
        "payload_in_bits": n_in, "payload_out_bits": n_out}))


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory):
    """All random nets in one design; the RTL of one LUT net has one table bit flipped (its
    expected bits ``bad_expected`` come from the unflipped net, for the negative test)."""
    if runner.available("verilator"):
        pytest.skip(runner.available("verilator"))
    nets, cores, xs, flipped = [], [], [], None
    for k in range(N_NETS):
        net, options, x = make_case(SEED, k)
        rtl_net = net
        if flipped is None and any(isinstance(l, ir.LutLayer) for l in net.layers):
            found = flip_one_table_bit(net, x)
            if found:
                rtl_net, what = found
                flipped = SimpleNamespace(k=k, what=what, expected=output_bits(
                    LutnetTop(net, options=options), golden.run(net, x)))
        nets.append(SimpleNamespace(net=rtl_net, options=options, x=x))
        cores.append(LutnetTop(rtl_net, options=options))
        xs.append(x)
    assert flipped is not None, "no LUT net whose output a single table bit changes"
    top = SideBySide(cores)
    folder = tmp_path_factory.mktemp("side-by-side")
    write_design(folder, top)
    x_bits = np.concatenate([input_bits(n.net, n.x) for n in nets], axis=1)
    expected = [output_bits(c, golden.run(n.net, n.x)) for c, n in zip(cores, nets)]
    offsets = np.cumsum([0] + [c.payload_out_bits for c in cores])
    bad_expected = list(expected)
    bad_expected[flipped.k] = flipped.expected
    return SimpleNamespace(dir=folder, nets=nets, cores=cores, x=x_bits, offsets=offsets,
                           expected=np.concatenate(expected, axis=1), flipped=flipped,
                           bad_expected=np.concatenate(bad_expected, axis=1), latency=top.latency,
                           build=tmp_path_factory.mktemp("sim-build"))


#: Output held off 48 cycles in every 64 (longer than any stall-free core's credits).
HOLD = (48, 64)


@pytest.fixture(scope="module")
def held_stall_free(tmp_path_factory):
    """The stall-free nets side by side, their output held off for long stretches."""
    if runner.available("verilator"):
        pytest.skip(runner.available("verilator"))
    # a dozen keeps the extra Verilator build short; they cover every depth and layer order
    picked = [k for k in range(N_NETS) if make_case(SEED, k)[1].stall_free][:12]
    nets = [SimpleNamespace(net=net, options=options, x=x)
            for net, options, x in (make_case(SEED, k) for k in picked)]
    cores = [LutnetTop(n.net, options=n.options) for n in nets]
    top = SideBySide(cores, hold=HOLD)
    folder = tmp_path_factory.mktemp("held")
    write_design(folder, top)
    return SimpleNamespace(dir=folder, nets=nets, cores=cores, picked=picked, latency=top.latency,
                           x=np.concatenate([input_bits(n.net, n.x) for n in nets], axis=1),
                           offsets=np.cumsum([0] + [c.payload_out_bits for c in cores]),
                           expected=np.concatenate([output_bits(c, golden.run(n.net, n.x))
                                                    for c, n in zip(cores, nets)], axis=1),
                           build=tmp_path_factory.mktemp("held-build"))


def simulate(d, expected, random_ready):
    """Run the bench on the side-by-side design; return the runner's result dict."""
    return runner.run(d.dir, d.x, np.zeros(len(d.x), dtype=np.int64), expected, "verilator",
                      build_dir=d.build, random_ready=random_ready, seed=SEED)


def check(d, r):
    """Fail naming every net whose bits differ in the reported mismatches, with its seed,
    IR, options, input and expected/got class and scores."""
    if r["passed"]:
        return
    lines = [f"{r['mismatches']} of {r['vectors']} vectors differ; protocol errors: {r['errors']}"]
    for m in r["first_mismatches"]:
        want, got = np.array(m["expected"]["scores"]), np.array(m["got"]["scores"])
        for k in sorted(set(np.searchsorted(d.offsets, np.flatnonzero(want != got), side="right") - 1)):
            core, n = d.cores[k], d.nets[k]
            lo, hi = d.offsets[k], d.offsets[k + 1]
            decode = lambda bits: (int(bits[:core.class_bits] @ (1 << np.arange(core.class_bits))),
                                   (bits[core.class_bits:].reshape(-1, core.score_bits)
                                    @ (1 << np.arange(core.score_bits))).tolist())
            case = d.picked[k] if hasattr(d, "picked") else k
            lines.append(f"net {k} (seed [{SEED}, {case}]; {n.net.describe()}; {n.options}) vector "
                         f"{m['index']} input {n.x[m['index']].tolist()}: expected class/scores "
                         f"{decode(want[lo:hi])}, got {decode(got[lo:hi])}")
    raise AssertionError("\n".join(lines))


def test_nets_cover_the_space(side_by_side):
    d = side_by_side
    nets = [n.net for n in d.nets]
    luts = [l for net in nets for l in net.layers if isinstance(l, ir.LutLayer)]
    assert len(nets) >= 30
    assert {l.k for l in luts} == {2, 3, 4, 5, 6}
    assert {len(net.layers) for net in nets} == {1, 2, 3, 4}
    assert {type(net.head) for net in nets} == {ir.GroupSumHead, ir.XnorHead}
    kinds = [[type(l) for l in net.layers] for net in nets]
    assert [ir.XnorLayer, ir.LutLayer] in [k[i:i + 2] for k in kinds for i in range(len(k) - 1)]
    assert [ir.LutLayer, ir.XnorLayer] in [k[i:i + 2] for k in kinds for i in range(len(k) - 1)]
    widths = [w for net in nets for w in net.widths()[1:]]
    assert min(widths) <= 5 and max(widths) >= 50
    lat = {c.latency for c in d.cores}
    assert len(lat) >= 3   # the padding is exercised
    assert any(layer.split_lut6 for c in d.cores for layer in c.layers
               if isinstance(layer.ir, ir.LutLayer))   # some K = 6 layer is split
    for name in ("register_encoder", "register_scores", "register_output", "share_subtrees", "register_comparisons",
                 "stall_free", "split_lut6", "relay_inputs", "one_lut_head"):
        assert {getattr(n.options, name) for n in d.nets} == {False, True}, name
    assert any(any(n.options.head_hops) and isinstance(n.net.head, ir.GroupSumHead) for n in d.nets)
    for name in ("layers_per_stage", "adder_levels_per_stage", "argmax_levels_per_stage"):
        assert {getattr(n.options, name) for n in d.nets} >= {None, 1, 2}, name


def test_random_nets_match_golden_at_full_rate(side_by_side):
    d = side_by_side
    r = simulate(d, d.expected, random_ready=False)
    check(d, r)
    assert (r["vectors"], r["mismatches"], r["measured_latency"]) == (N_VECTORS, 0, d.latency)
    assert r["cycles"] == N_VECTORS + d.latency   # every core takes one sample per clock
    assert r["build_seconds"] > 0   # a fresh build, not a cached one


def test_random_nets_match_golden_with_random_ready(side_by_side):
    d = side_by_side
    r = simulate(d, d.expected, random_ready=True)
    check(d, r)
    assert (r["test"], r["vectors"], r["mismatches"]) == ("stream_backpressure", N_VECTORS, 0)
    assert r["cycles"] > N_VECTORS + d.latency   # there were gaps and stalls


def test_a_flipped_table_bit_is_reported(side_by_side):
    """The RTL of net ``flipped.k`` has one LUT table bit flipped: checked against the golden
    model of the unflipped net, the check must fail and name that net (and only it)."""
    d = side_by_side
    r = simulate(d, d.bad_expected, random_ready=True)
    differ = int((d.bad_expected != d.expected).any(axis=1).sum())
    assert differ > 0 and not r["passed"] and r["mismatches"] == differ and not r["errors"]
    with pytest.raises(AssertionError) as e:
        check(d, r)
    named = [line.split()[1] for line in str(e.value).splitlines()[1:]]
    assert named and set(named) == {str(d.flipped.k)}, (d.flipped.what, str(e.value))
    assert f"seed [{SEED}, {d.flipped.k}]" in str(e.value)


def test_stall_free_nets_lose_nothing_while_the_output_is_held(held_stall_free):
    """Every stall-free core keeps taking inputs while its output is held off (48 of every 64
    cycles) until its credits run out; every result still arrives once, in order, and right."""
    d = held_stall_free
    assert len(d.cores) == 12 and {len(n.net.layers) for n in d.nets} == {1, 2, 3, 4}
    # every core's credits (pipeline latency + 4) run out inside one hold
    assert max(c.pipeline_latency for c in d.cores) + 4 < HOLD[0]
    r = simulate(d, d.expected, random_ready=True)
    check(d, r)
    assert (r["vectors"], r["mismatches"]) == (N_VECTORS, 0)
    # held 3/4 of the time: far more cycles than vectors, but no deadlock and no loss
    assert r["cycles"] > 3 * N_VECTORS
