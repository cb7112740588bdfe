# amaranth: UnusedElaboratable=no
"""The Amaranth hardware against the golden model, in Amaranth's own simulator.

(The first line keeps Amaranth from warning about tops built here only to read their widths.)

Every streaming test drives ``LutnetTop`` with a producer and a consumer testbench (random input
gaps, random output stalls), checks each result in order against ``golden.run`` and checks the
stream rules on the way: a stalled output holds still, ``o_stream.valid`` does not depend on
``o_stream.ready``, nothing is dropped or duplicated.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from lutnet import golden, ir, pnr
from lutnet.synth import run_yosys
from lutnet.hdl import (PORTS, EncoderComponent, LutnetTop, PipelineOptions, XnorHeadComponent,
                        XnorLayerComponent, class_bits, generate, to_verilog)
from lutnet.sim.payload import Design

# -- random networks ---------------------------------------------------------------------------

def _layer_thresholds(rng, n_in, n_out):
    """Mostly near the middle of the popcount's range (so bits vary), some constant 0 / n_in+1."""
    spread = max(1, int(np.sqrt(n_in)))
    t = rng.integers(max(0, n_in // 2 - spread), min(n_in + 1, n_in // 2 + spread + 1) + 1, n_out)
    kind = rng.random(n_out)
    t[kind < 0.1] = 0
    t[(kind >= 0.1) & (kind < 0.2)] = n_in + 1
    return np.clip(t, 0, n_in + 1)


def make_net(seed, *, widths=None, features=None, input_bits=None, levels=None, classes=None):
    """A random network: widths 1..40, 1..3 layers, encoder levels 1..3, some duplicate rows."""
    rng = np.random.default_rng(seed)
    input_bits = input_bits or int(rng.integers(1, 5))
    features = features or int(rng.integers(1, 9))
    levels = levels or int(rng.integers(1, 4))
    if widths is None:
        widths = [int(w) for w in rng.integers(1, 41, int(rng.integers(1, 4)))]
    classes = classes or int(rng.integers(2, 7))
    enc = ir.Encoder(rng.integers(0, 2 ** input_bits + 1, (features, levels)), input_bits)
    layers, n_in = [], enc.n_out
    for w in widths:
        weights = rng.integers(0, 2, (w, n_in)).astype(bool)
        if w > 2:
            weights[-1] = weights[0]       # identical rows share their whole tree
        layers.append(ir.XnorLayer(weights, _layer_thresholds(rng, n_in, w)))
        n_in = w
    head_w = rng.integers(0, 2, (classes, n_in)).astype(bool)
    if classes > 2:
        head_w[-1] = head_w[1]             # equal scores: ties go to the lowest index
    return ir.Network(enc, layers, ir.XnorHead(head_w))


def make_inputs(net, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2 ** net.encoder.input_bits, (n, net.encoder.n_features))


def pack(net, x):
    b = net.encoder.input_bits
    return [sum(int(v) << (f * b) for f, v in enumerate(row)) for row in x]


def unpack(top, payload):
    cb, sb = top.class_bits, top.score_bits
    scores = [(payload >> (cb + c * sb)) & ((1 << sb) - 1) for c in range(top.net.n_classes)]
    return payload & ((1 << cb) - 1), scores


def expected(net, x):
    res = golden.run(net, x)
    return [(int(c), [int(s) for s in row]) for c, row in zip(res.classes, res.scores)]


# -- simulation harness ------------------------------------------------------------------------

def _bench(top):
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.top = top
    sim = Simulator(m)
    sim.add_clock(1e-6)
    return sim, cd


def o_always_ready(top) -> bool:
    return top.o_stream.signature.always_ready


def stream(top, payloads, *, idle=0.0, stall=0.0, seed=0):
    """Send ``payloads`` through ``top``; returns the output payloads in order of arrival.

    ``idle``: chance of an idle cycle (valid low, junk payload) before each input; ``stall``:
    chance that ``o_stream.ready`` is low in a cycle (never, for an ``always_ready`` output,
    which has no ready).
    """
    always_ready = o_always_ready(top)
    rng_in, rng_out = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    i, o = top.i_stream, top.o_stream
    junk = (1 << len(i.payload)) - 1
    got = []
    limit = 200 + 30 * (len(payloads) + top.latency) * (1 + int(1 / max(1e-3, 1 - stall)))

    async def producer(ctx):
        for p in payloads:
            while rng_in.random() < idle:
                ctx.set(i.valid, 0)
                ctx.set(i.payload, int(rng_in.integers(0, junk + 1)))
                await ctx.tick()
            ctx.set(i.valid, 1)
            ctx.set(i.payload, p)
            if always_ready:
                await ctx.tick()
                continue
            while not (await ctx.tick().sample(i.ready))[2]:
                pass
        ctx.set(i.valid, 0)

    async def consumer(ctx):
        held, cycles = None, 0
        while len(got) < len(payloads):
            if always_ready:
                ready = 1
            else:
                ctx.set(o.ready, 0)
                v0 = ctx.get(o.valid)
                ctx.set(o.ready, 1)
                assert ctx.get(o.valid) == v0, "o_stream.valid depends on o_stream.ready"
                ready = int(rng_out.random() >= stall)
                ctx.set(o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(o.valid, o.payload)
            if held is not None:
                assert valid and payload == held, "a stalled output changed or went away"
            held = payload if valid and not ready else None
            if valid and ready:
                got.append(payload)
            cycles += 1
            assert cycles < limit, f"only {len(got)} of {len(payloads)} results after {cycles} cycles"
        if not always_ready:
            ctx.set(o.ready, 1)
        for _ in range(top.latency + 4):
            _, _, valid = await ctx.tick().sample(o.valid)
            assert not valid, "more results than inputs"

    sim, _ = _bench(top)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got


OPTIONS = {
    "default": PipelineOptions(),
    "comb": PipelineOptions(register_encoder=False, layers_per_stage=None, register_scores=False,
                            register_output=False),
    "deep": PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1),
    "every2": PipelineOptions(adder_levels_per_stage=2, layers_per_stage=2, register_scores=False,
                              share_subtrees=False),
    "sparse": PipelineOptions(register_encoder=False, layers_per_stage=3, argmax_levels_per_stage=2,
                              register_output=False, adder_levels_per_stage=3),
    "free": PipelineOptions(stall_free=True, adder_levels_per_stage=1, argmax_levels_per_stage=1,
                            register_comparisons=True),
    "free_comb": PipelineOptions(stall_free=True, register_encoder=False, layers_per_stage=None,
                                 register_scores=False, register_output=False),
    "always": PipelineOptions(always_ready=True, adder_levels_per_stage=1, argmax_levels_per_stage=1,
                              register_comparisons=True),
    "always_comb": PipelineOptions(always_ready=True, register_encoder=False, layers_per_stage=None,
                                   register_scores=False, register_output=False),
}

# (seed, options, idle, stall, samples)
STREAM_CASES = [
    (1, "default", 0.0, 0.0, 40),
    (2, "default", 0.3, 0.5, 60),
    (3, "comb", 0.2, 0.3, 60),
    (4, "comb", 0.0, 0.0, 30),
    (5, "deep", 0.4, 0.6, 60),
    (6, "deep", 0.0, 0.3, 60),
    (7, "every2", 0.3, 0.3, 60),
    (8, "every2", 0.1, 0.7, 50),
    (9, "sparse", 0.5, 0.5, 60),
    (10, "sparse", 0.0, 0.2, 60),
    (11, "default", 0.6, 0.1, 50),
    (12, "deep", 0.2, 0.9, 40),
    (13, "free", 0.0, 0.0, 40),
    (14, "free", 0.3, 0.5, 60),
    (15, "free", 0.0, 0.9, 40),
    (16, "free_comb", 0.2, 0.6, 40),
    (17, "always", 0.0, 0.0, 40),
    (18, "always", 0.5, 0.0, 60),
    (19, "always_comb", 0.3, 0.0, 40),
]


@pytest.mark.parametrize("seed,options,idle,stall,n", STREAM_CASES)
def test_stream_matches_golden(seed, options, idle, stall, n):
    net = make_net(seed)
    x = make_inputs(net, n, seed)
    top = LutnetTop(net, options=OPTIONS[options])
    got = stream(top, pack(net, x), idle=idle, stall=stall, seed=seed)
    assert [unpack(top, p) for p in got] == expected(net, x)


def random_options(rng):
    period = lambda: None if rng.random() < 0.4 else int(rng.integers(1, 4))
    flag = lambda: bool(rng.random() < 0.5)
    return PipelineOptions(register_encoder=flag(), layers_per_stage=period(),
                           adder_levels_per_stage=period(), register_scores=flag(),
                           argmax_levels_per_stage=period(), register_output=flag(),
                           share_subtrees=flag(), register_comparisons=flag())


@pytest.mark.parametrize("seed", range(200, 224))
def test_random_nets_random_options(seed):
    rng = np.random.default_rng(seed)
    net = make_net(seed)
    options = random_options(rng)
    x = make_inputs(net, 30, seed)
    top = LutnetTop(net, options=options)
    got = stream(top, pack(net, x), idle=float(rng.random() * 0.6), stall=float(rng.random() * 0.8),
                 seed=seed)
    assert [unpack(top, p) for p in got] == expected(net, x), options


EDGE_NETS = {
    # one input bit everywhere: depth-0 trees, 1-bit scores
    "tiny": dict(widths=[1], features=1, input_bits=1, levels=1, classes=2),
    # a single 16-bit feature; thermometer code of 3 levels
    "wide_feature": dict(widths=[5], features=1, input_bits=16, levels=3, classes=3),
    "three_layers": dict(widths=[40, 33, 17], features=8, input_bits=4, levels=3, classes=6),
    "odd_widths": dict(widths=[3, 7, 5], features=5, input_bits=2, levels=1, classes=5),
}


@pytest.mark.parametrize("name", sorted(EDGE_NETS))
@pytest.mark.parametrize("options", ["default", "deep", "comb", "free", "always"])
def test_edge_nets(name, options):
    net = make_net(100 + sorted(EDGE_NETS).index(name), **EDGE_NETS[name])
    x = make_inputs(net, 40, 5)
    top = LutnetTop(net, options=OPTIONS[options])
    got = stream(top, pack(net, x), idle=0.2, stall=0.4, seed=3)
    assert [unpack(top, p) for p in got] == expected(net, x)


def test_constant_layers_and_ties():
    """Thresholds 0 and n_in + 1 only (constant bits), then a head whose scores all tie."""
    rng = np.random.default_rng(0)
    enc = ir.Encoder(np.array([[0, 4, 8], [1, 2, 3]]), 3)   # 0 -> 1, 2**3 -> 0
    l0 = ir.XnorLayer(rng.integers(0, 2, (6, 6)), np.array([0, 7, 0, 7, 3, 0]))
    head = ir.XnorHead(np.ones((4, 6), dtype=bool))
    net = ir.Network(enc, [l0], head)
    x = make_inputs(net, 30, 1)
    for options in OPTIONS.values():
        top = LutnetTop(net, options=options)
        got = stream(top, pack(net, x), idle=0.3, stall=0.3, seed=2)
        assert [unpack(top, p) for p in got] == expected(net, x)
        assert all(c == 0 for c, _ in (unpack(top, p) for p in got))


@pytest.mark.parametrize("options", sorted(OPTIONS))
def test_throughput_and_latency(options):
    """Valid and ready always high: every input is taken at once and its result comes out
    exactly ``latency`` cycles later, one per clock."""
    net = make_net(21, widths=[30, 20])
    check_full_rate(LutnetTop(net, options=OPTIONS[options]), net, make_inputs(net, 25, 21))


def check_full_rate(top, net, x):
    """Stream ``x`` through ``top`` with valid and ready always high: input ``k`` is taken in
    cycle ``k``, its result is valid in cycle ``k + latency`` and equals the golden model's."""
    n, payloads = len(x), pack(net, x)
    i, o = top.i_stream, top.o_stream
    taken, results = [], []

    async def bench(ctx):
        if not o_always_ready(top):
            ctx.set(o.ready, 1)
        for cycle in range(n + top.latency + 3):
            ctx.set(i.valid, int(cycle < n))
            ctx.set(i.payload, payloads[cycle] if cycle < n else 0)
            _, _, iv, ir_, ov, op = await ctx.tick().sample(i.valid, i.ready, o.valid, o.payload)
            if iv and ir_:
                taken.append(cycle)
            if ov:
                results.append((cycle, op))

    sim, _ = _bench(top)
    sim.add_testbench(bench)
    sim.run()
    assert taken == list(range(n))
    assert [c for c, _ in results] == [k + top.latency for k in range(n)]
    assert [unpack(top, p) for _, p in results] == expected(net, x)


def test_latency_formula():
    net = make_net(3, widths=[40, 9], features=8, levels=3, classes=5)   # trees of depth 6, 6, 4
    top = LutnetTop(net, options=PipelineOptions(adder_levels_per_stage=2, argmax_levels_per_stage=1))
    # encoder 1, layer0 (6-1)//2 + 1, layer1 (6-1)//2 + 1, head (4-1)//2 + 1 + (3-1)//1 + 1
    assert [s.latency for s in top.stages().values()] == [1, 3, 3, 5]
    assert top.latency == 12
    assert LutnetTop(net, options=OPTIONS["comb"]).latency == 0


@pytest.mark.parametrize("stall_free", [False, True])
def test_reset_clears_valid(stall_free):
    """Fill the pipeline with the output stalled, reset: the pending samples are gone and the
    next ones come through alone."""
    net = make_net(31, widths=[12])
    top = LutnetTop(net, options=PipelineOptions(adder_levels_per_stage=1, stall_free=stall_free))
    assert top.latency >= 3
    k = top.latency + 2
    x = make_inputs(net, k + 6, 31)
    first, second = pack(net, x[:k]), pack(net, x[k:])
    i, o = top.i_stream, top.o_stream
    got = []
    sim, cd = _bench(top)

    async def bench(ctx):
        ctx.set(o.ready, 0)
        for p in first:
            ctx.set(i.valid, 1)
            ctx.set(i.payload, p)
            await ctx.tick()
        ctx.set(i.valid, 0)
        assert ctx.get(o.valid)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        assert not ctx.get(o.valid)
        ctx.set(o.ready, 1)
        for p in second + [None] * (top.latency + 3):
            ctx.set(i.valid, p is not None)
            ctx.set(i.payload, p or 0)
            _, _, ov, op = await ctx.tick().sample(o.valid, o.payload)
            if ov:
                got.append(op)

    sim.add_testbench(bench)
    sim.run()
    assert [unpack(top, p) for p in got] == expected(net, x[k:])


# -- components --------------------------------------------------------------------------------

def test_component_ports_and_latency():
    net = make_net(41, widths=[17], features=3, input_bits=5, levels=2, classes=10)
    enc = EncoderComponent(net.encoder, register=False)
    assert (len(enc.i), len(enc.o), enc.latency) == (15, 6, 0)
    layer = XnorLayerComponent(net.layers[0], adder_levels_per_stage=1)
    assert (len(layer.i), len(layer.o), layer.latency) == (6, 17, 3)   # depth 3: 2 inside + 1
    head = XnorHeadComponent(net.head, register_scores=False, register_output=False)
    assert (head.class_bits, head.score_bits, len(head.o), head.latency) == (4, 5, 4 + 50, 0)
    assert [class_bits(n) for n in (2, 3, 4, 5, 10, 16, 17)] == [1, 2, 2, 3, 4, 4, 5]


@pytest.mark.parametrize("make,message", [
    (lambda: LutnetTop("net"), "net must be an ir.Network, not str"),
    (lambda: LutnetTop(make_net(0), options={"layers_per_stage": 1}),
     "options must be a PipelineOptions, not dict"),
    (lambda: XnorLayerComponent(make_net(0).head), "layer must be an ir.XnorLayer, not XnorHead"),
    (lambda: EncoderComponent(make_net(0).layers[0]),
     "encoder must be an ir.Encoder, not XnorLayer"),
    (lambda: XnorHeadComponent(make_net(0).encoder), "head must be an ir.XnorHead, not Encoder"),
])
def test_constructor_type_errors(make, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        make()


# -- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"layers_per_stage": 0}, "layers_per_stage must be a positive integer or None, not 0"),
    ({"layers_per_stage": -1}, "layers_per_stage must be a positive integer or None, not -1"),
    ({"layers_per_stage": 1.5}, "layers_per_stage must be a positive integer or None, not 1.5"),
    ({"adder_levels_per_stage": 0},
     "adder_levels_per_stage must be a positive integer or None, not 0"),
    ({"adder_levels_per_stage": "2"},
     "adder_levels_per_stage must be a positive integer or None, not '2'"),
    ({"argmax_levels_per_stage": True},
     "argmax_levels_per_stage must be a positive integer or None, not True"),
    ({"register_output": 1}, "register_output must be a bool, not 1"),
    ({"share_subtrees": None}, "share_subtrees must be a bool, not None"),
])
def test_pipeline_options_errors(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        PipelineOptions(**kwargs)


def test_pipeline_options_round_trip():
    o = PipelineOptions(layers_per_stage=np.int64(2), adder_levels_per_stage=3)
    assert o.layers_per_stage == 2 and type(o.layers_per_stage) is int
    d = o.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert PipelineOptions.from_dict(d) == o
    with pytest.raises(ValueError, match="unknown pipeline options \\['bogus'\\]"):
        PipelineOptions.from_dict({"bogus": 1})
    with pytest.raises(Exception):
        o.layers_per_stage = 5   # frozen


# -- emitted Verilog and design.json -----------------------------------------------------------

def _module_header(text, name):
    start = text.index(f"module {name}(")
    return text[start:text.index(";", start)]


def test_generate_writes_verilog_and_design(tmp_path):
    net = make_net(51, widths=[9, 4], features=3, input_bits=3, levels=2, classes=3)
    options = PipelineOptions(adder_levels_per_stage=2)
    design = generate(net, tmp_path, options)
    text = (tmp_path / "lutnet_top.v").read_text()
    assert json.loads((tmp_path / "design.json").read_text()) == design
    assert design["top"] == "lutnet_top"
    assert (design["n_features"], design["input_bits"], design["n_classes"]) == (3, 3, 3)
    assert (design["class_bits"], design["score_bits"]) == (2, 3)
    assert design["payload_in_bits"] == 9
    assert design["payload_out_bits"] == 2 + 3 * 3
    assert design["latency"] == sum(design["submodule_latency"].values()) == 1 + 2 + 2 + 2
    assert design["pipeline"] == options.to_dict()
    assert design["submodules"] == {n: f"lutnet_top.{n}" for n in ("encoder", "layer0", "layer1", "head")}
    # exactly these ports, with these widths and directions
    header = _module_header(text, "lutnet_top")
    assert sorted(p.strip() for p in header[header.index("(") + 1:-1].split(",")) == sorted(PORTS)
    widths = {"i_stream__payload": 9, "o_stream__payload": 11}
    for port, direction in PORTS.items():
        width = widths.get(port, 1)
        decl = f"  {direction} [{width - 1}:0] {port};" if width > 1 else f"  {direction} {port};"
        assert decl in text, decl
    for module in design["submodules"].values():
        assert f"module \\{module} (" in text
    assert "src =" not in text        # no source paths: the same on every machine


def test_generate_is_deterministic(tmp_path):
    net = make_net(52, widths=[20, 11])
    options = PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1)
    generate(net, tmp_path / "a", options)
    saved = net.save(tmp_path / "net.npz")
    generate(ir.Network.load(saved), tmp_path / "b", options)
    for name in ("lutnet_top.v", "design.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # and in a fresh interpreter (no shared object ids or hash seeds)
    code = ("import sys; from lutnet import ir; from lutnet.hdl import generate, PipelineOptions; "
            "generate(ir.Network.load(sys.argv[1]), sys.argv[2], "
            "PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1)); "
            "assert 'torch' not in sys.modules, 'lutnet.hdl imported torch'")
    subprocess.run([sys.executable, "-c", code, str(saved), str(tmp_path / "c")], check=True,
                   env={**os.environ, "PYTHONHASHSEED": "123"}, timeout=300)
    assert (tmp_path / "a" / "lutnet_top.v").read_bytes() == (tmp_path / "c" / "lutnet_top.v").read_bytes()


def test_sharing_does_not_change_function():
    """share_subtrees only merges identical nodes: both settings give identical results, and
    sharing never builds more adders."""
    net = make_net(61, widths=[40, 40], features=8, levels=3)
    x = make_inputs(net, 30, 61)
    outs, adders = [], []
    for share in (True, False):
        top = LutnetTop(net, options=PipelineOptions(share_subtrees=share))
        outs.append(stream(top, pack(net, x), idle=0.1, stall=0.1, seed=61))
        adders.append(to_verilog(top).count(" + "))
    assert outs[0] == outs[1]
    assert [unpack(top, p) for p in outs[0]] == expected(net, x)
    assert adders[0] < adders[1]


def test_hdl_sources_do_not_import_torch():
    hdl = Path(__file__).resolve().parents[1] / "hdl"
    for path in hdl.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+torch", path.read_text(), re.M), path


# -- LUT layers and the group-sum head -----------------------------------------------------------

from lutnet.hdl import GroupSumHeadComponent, LutLayerComponent, lut_support  # noqa: E402
from lutnet.hdl.argmax import one_lut_argmax_latency  # noqa: E402
from lutnet.hdl.popcount import (build_counter_count, counter_latency, counter_stages,  # noqa: E402
                                 eval_counter_stages, group_count_depth)
from netgen import random_lut_layer, random_net  # noqa: E402
from onelut import lut_depth_violations  # noqa: E402


def make_lut_net(seed, *, all_lut=False):
    """A random mixed XNOR/LUT net (K 2..6) with a group-sum head; ``all_lut``: LUT layers only."""
    rng = np.random.default_rng([seed, 7])
    net = random_net(rng, input_bits=int(rng.integers(1, 5)), features=int(rng.integers(1, 9)),
                     classes=int(rng.integers(2, 7)), lut=True)
    if all_lut:
        layers, n_in = [], net.encoder.n_out
        for layer in net.layers:
            layers.append(random_lut_layer(rng, n_in, layer.n_out))
            n_in = layer.n_out
        net = ir.Network(net.encoder, layers, net.head)
    return net


@pytest.mark.parametrize("seed", range(300, 316))
def test_lut_nets_random_options(seed):
    rng = np.random.default_rng(seed)
    net = make_lut_net(seed, all_lut=seed % 4 == 0)
    assert any(isinstance(l, ir.LutLayer) for l in net.layers)
    options = random_options(rng)
    x = make_inputs(net, 30, seed)
    top = LutnetTop(net, options=options)
    got = stream(top, pack(net, x), idle=float(rng.random() * 0.6), stall=float(rng.random() * 0.8),
                 seed=seed)
    assert [unpack(top, p) for p in got] == expected(net, x), (net.describe(), options)


@pytest.mark.parametrize("options", sorted(OPTIONS))
def test_lut_then_xnor_and_every_k(options):
    """Every K from 1 to 6, a LUT layer before an XNOR layer, and degenerate tables (constant,
    a copy, repeated inputs) in a chain ending in a group-sum head whose scores tie."""
    rng = np.random.default_rng(77)
    enc = ir.Encoder(rng.integers(0, 9, (6, 2)), 3)
    layers, n_in = [], enc.n_out
    for k in range(1, 7):
        layer = random_lut_layer(rng, n_in, 12, k=k)
        tables = np.array(layer.tables)
        tables[0] = False
        tables[1] = np.arange(2 ** k) & 1            # a copy of input 0
        inputs = np.array(layer.inputs)
        inputs[2] = inputs[2, 0]                     # one input, repeated
        layers.append(ir.LutLayer(inputs, tables, n_in))
        n_in = 12
        if k == 3:
            layers.append(ir.XnorLayer(rng.integers(0, 2, (12, 12)), _layer_thresholds(rng, 12, 12)))
    net = ir.Network(enc, layers, ir.GroupSumHead(12, 4))
    x = make_inputs(net, 40, 77)
    top = LutnetTop(net, options=OPTIONS[options])
    assert [type(l).__name__ for l in top.layers].count("LutLayerComponent") == 6
    got = stream(top, pack(net, x), idle=0.2, stall=0.4, seed=77)
    assert [unpack(top, p) for p in got] == expected(net, x)


def test_group_sum_ties_go_to_the_lowest_index():
    enc = ir.Encoder(np.zeros((4, 1), dtype=int), 2)          # every bit a constant 1
    net = ir.Network(enc, [], ir.GroupSumHead(4, 2))
    x = make_inputs(net, 10, 0)
    top = LutnetTop(net)
    got = [unpack(top, p) for p in stream(top, pack(net, x), seed=1)]
    assert got == [(0, [2, 2])] * 10 == expected(net, x)


def test_lut_components_ports_and_latency():
    rng = np.random.default_rng(5)
    layer = random_lut_layer(rng, 20, 9, k=4)
    c = LutLayerComponent(layer)
    assert (len(c.i), len(c.o), c.latency) == (20, 9, 1)
    assert LutLayerComponent(layer, register=False).latency == 0
    head = GroupSumHeadComponent(ir.GroupSumHead(30, 3), adder_levels_per_stage=1)
    # groups of 10: 4-bit counts, then 2 adder levels -> 2 registers inside, + scores + output
    assert (head.class_bits, head.score_bits, len(head.o), head.latency) == (2, 4, 2 + 12, 4)
    net = make_lut_net(3)
    top = LutnetTop(net, options=PipelineOptions(layers_per_stage=2))
    assert all(l.latency == 0 for l in top.layers[0::2] if isinstance(l, LutLayerComponent))
    assert all(l.latency == 1 for l in top.layers[1::2] if isinstance(l, LutLayerComponent))


def test_lut_support():
    assert lut_support([3, 5], [0, 1, 0, 1]) == ([3], 0b10)
    assert lut_support([1, 2], [0, 1, 1, 0]) == ([1, 2], 0b0110)
    assert lut_support([2, 1], [0, 0, 1, 1]) == ([1], 0b10)          # out = x[1], address bit 1
    assert lut_support([4, 4, 4], [0] * 7 + [1]) == ([4], 0b10)
    assert lut_support([0], [1, 1]) == ([], 1)


@pytest.mark.parametrize("make,message", [
    (lambda: LutLayerComponent(make_net(0).layers[0]), "layer must be an ir.LutLayer, not XnorLayer"),
    (lambda: GroupSumHeadComponent(make_net(0).head),
     "head must be an ir.GroupSumHead, not XnorHead"),
])
def test_lut_constructor_type_errors(make, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        make()


class _Conv:
    kind = "conv"
    n_in = n_out = 3


class _Softmax:
    kind = "softmax"
    n_in, n_classes = 3, 2


def test_unsupported_kinds_are_named():
    net = make_lut_net(1)
    bad = ir.Network(net.encoder, net.layers, net.head)
    object.__setattr__(bad, "layers", net.layers[:1] + (_Conv(),))
    with pytest.raises(TypeError, match=r"^layer 1: no hardware for layer kind 'conv' \(supported: lut, xnor\)$"):
        LutnetTop(bad)
    bad = ir.Network(net.encoder, net.layers, net.head)
    object.__setattr__(bad, "head", _Softmax())
    with pytest.raises(TypeError, match=r"^head: no hardware for head kind 'softmax' \(supported: group_sum, xnor_head\)$"):
        LutnetTop(bad)


# -- pipelined group-sum head and argmax ---------------------------------------------------------

def pipelined_top(net, options):
    top = LutnetTop(net, options=options)
    assert top.head.register_comparisons == options.register_comparisons
    return top


def make_group_sum_net(seed, *, group=12, classes=7, k=6):
    """Encoder -> one LUT layer -> group-sum head with groups of ``group`` bits (tree depth 4
    for 12) over ``classes`` classes (argmax depth 3 for 7)."""
    rng = np.random.default_rng(seed)
    enc = ir.Encoder(rng.integers(0, 9, (6, 2)), 3)
    layer = random_lut_layer(rng, enc.n_out, group * classes, k=k)
    return ir.Network(enc, [layer], ir.GroupSumHead(group * classes, classes))


PIPELINED = {
    "deep": PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1),
    "deepest": PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1,
                               register_comparisons=True),
    "compare_only": PipelineOptions(register_scores=False, register_comparisons=True,
                                    register_output=False, layers_per_stage=None),
    "adder2": PipelineOptions(adder_levels_per_stage=2, register_comparisons=True,
                              argmax_levels_per_stage=2),
    "one_lut": PipelineOptions(one_lut_head=True),
    "one_lut_relays": PipelineOptions(one_lut_head=True, relay_inputs=True, stall_free=True,
                                      register_scores=False),
    "one_lut_hops": PipelineOptions(one_lut_head=True, relay_inputs=True, head_hops=(2, 0, 1)),
}


def test_group_sum_head_latency_grows_with_adder_levels():
    # groups of 16: 4-bit counts then 2 adder levels (3 levels); argmax depth 4
    head = ir.GroupSumHead(16 * 10, 10)
    assert [group_count_depth(n) for n in (16, 4, 5, 50)] == [3, 1, 2, 5]
    latency = {p: GroupSumHeadComponent(head, adder_levels_per_stage=p).latency
               for p in (None, 1, 2, 3, 4)}
    # registers inside the tree: (3 - 1) // p, plus the score and output registers
    assert latency == {None: 2, 1: 4, 2: 3, 3: 2, 4: 2}
    c = GroupSumHeadComponent(head, adder_levels_per_stage=1, argmax_levels_per_stage=1,
                              register_comparisons=True)
    assert (c.tree_latency, c.argmax_latency, c.latency) == (2, 3 + 4, 2 + 1 + 7 + 1)
    net = make_group_sum_net(1)
    tops = {name: pipelined_top(net, o) for name, o in PIPELINED.items()}
    # encoder 1 + layer 1 + head: tree (3-1)//1, scores 1, argmax (3-1)//1, output 1
    assert tops["deep"].latency == 1 + 1 + 2 + 1 + 2 + 1
    assert tops["deepest"].latency == tops["deep"].latency + 3
    assert tops["compare_only"].latency == 1 + 3
    assert tops["adder2"].head.latency == 1 + 1 + (1 + 3) + 1


@pytest.mark.parametrize("name", sorted(PIPELINED))
def test_pipelined_group_sum_head_at_full_rate(name):
    """Valid and ready always high: one sample per clock, each result exactly ``latency``
    cycles after its input, equal to the golden model."""
    net = make_group_sum_net(2)
    check_full_rate(pipelined_top(net, PIPELINED[name]), net, make_inputs(net, 30, 2))


@pytest.mark.parametrize("name,seed,idle,stall", [
    ("deep", 3, 0.3, 0.6), ("deepest", 4, 0.2, 0.5), ("deepest", 5, 0.0, 0.8),
    ("compare_only", 6, 0.4, 0.4), ("adder2", 7, 0.1, 0.7), ("one_lut", 8, 0.2, 0.6),
    ("one_lut_relays", 9, 0.3, 0.5), ("one_lut", 17, 0.0, 0.3), ("one_lut_hops", 10, 0.2, 0.5)])
def test_pipelined_group_sum_head_under_backpressure(name, seed, idle, stall):
    net = make_group_sum_net(seed, group=int(3 + seed), classes=int(2 + seed), k=int(2 + seed % 5))
    x = make_inputs(net, 50, seed)
    top = pipelined_top(net, PIPELINED[name])
    got = stream(top, pack(net, x), idle=idle, stall=stall, seed=seed)
    assert [unpack(top, p) for p in got] == expected(net, x)


@pytest.mark.parametrize("n", list(range(1, 70)) + [100, 200, 500])
def test_counter_stages_count(n):
    """Every stage's bits read at most four bits of the stage before, the last stage is the
    count's bits, and the count is exact (all ones, all zeros, random bits)."""
    stages = counter_stages(n)
    assert all(1 <= len(inputs) <= 4 for stage in stages for inputs, _ in stage)
    assert all(max(inputs) < (len(prev) if s else n) for s, (stage, prev) in
               enumerate(zip(stages, [None] + stages)) for inputs, _ in stage)
    assert len(stages[-1]) == n.bit_length() if stages else n <= 1
    rng = np.random.default_rng(n)
    bits = rng.random((400, n)) < rng.random((400, 1))
    bits[0], bits[1] = True, False
    assert (eval_counter_stages(stages, bits) == bits.sum(axis=1)).all()
    assert counter_latency(n, False) == max(0, len(stages) - 1)
    assert counter_latency(n, True) == max(0, len(stages) - 1) + len(stages)


def test_one_lut_head_latency_and_relays():
    head = ir.GroupSumHead(50 * 10, 10)
    plain = GroupSumHeadComponent(head, one_lut=True)
    relayed = GroupSumHeadComponent(head, one_lut=True, relay_inputs=True)
    assert len(counter_stages(50)) == 7
    assert (plain.tree_latency, relayed.tree_latency) == (6, 13)
    # relays: one more cycle before each of the 7 counter stages, and the argmax's stages twice
    # as long (15 -> 31 cycles)
    assert relayed.latency - plain.latency == 7 + 16
    assert plain.argmax_latency == one_lut_argmax_latency(10, 6)
    assert relayed.argmax_latency == one_lut_argmax_latency(10, 6, relays=True) == 31
    hopped = GroupSumHeadComponent(head, one_lut=True, relay_inputs=True, hops=(1, 0, 2))
    assert hopped.latency == relayed.latency + 3
    assert counter_latency(50, True, (1, 0, 2, 0, 0, 0, 0, 5)) == 13 + 3    # past the stages: ignored
    with pytest.raises(ValueError, match="^hops need relays$"):
        counter_latency(50, False, (1,))
    with pytest.raises(ValueError, match="^head_hops needs one_lut_head and relay_inputs$"):
        PipelineOptions(one_lut_head=True, head_hops=(1,))
    with pytest.raises(ValueError, match=r"^order must be a permutation of range\(5\)$"):
        build_counter_count(Module(), Signal(5), en=Const(1, 1), relays=False, name="s", order=[0, 1, 2, 3, 3])
    o = PipelineOptions(one_lut_head=True, relay_inputs=True, head_hops=[0, 2])
    assert o.head_hops == (0, 2) and PipelineOptions.from_dict(o.to_dict()) == o
    net = make_group_sum_net(3, group=9, classes=3, k=4)
    text = to_verilog(LutnetTop(net, options=PIPELINED["one_lut_relays"]))
    # a relay per counter input: 9 bits in the first stage of each class
    assert re.search(r"reg \[8:0\] \\?\S*sum0_r0", text), "no relays before the first counters"


@pytest.mark.parametrize("relays", [False, True])
def test_one_lut_head_has_one_lut_between_registers(relays, tmp_path):
    """Mapped to ECP5, every register of a one-LUT group-sum head loads one LUT4 of registers
    (or a register); the plain head's adders do not."""
    head = ir.GroupSumHead(13 * 5, 5)
    one = GroupSumHeadComponent(head, one_lut=True, relay_inputs=relays, free_running=True)
    assert lut_depth_violations(one, top="head", workdir=tmp_path / "one") == []
    if not relays:
        plain = GroupSumHeadComponent(head, adder_levels_per_stage=1, free_running=True)
        assert lut_depth_violations(plain, top="head", workdir=tmp_path / "plain")


class _TwinClasses(wiring.Component):
    """A one-LUT group-sum head with relays and hops whose two classes read the same bits (as
    two equal head members, merged by Yosys, would make them)."""

    def __init__(self):
        self.head = GroupSumHeadComponent(ir.GroupSumHead(2 * 5, 2), one_lut=True, relay_inputs=True,
                                          hops=(1,), free_running=True)
        super().__init__({"i": wiring.In(5), "o": wiring.Out(len(self.head.o))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.head = self.head
        r = Signal(5, reset_less=True)
        m.d.sync += r.eq(self.i)
        m.d.comb += [self.head.i.eq(Cat(r, r)), self.o.eq(self.head.o)]
        return m


def test_counter_relays_and_hops_kept_apart(tmp_path):
    """Synthesis keeps each class's counter relays and hops (as the neurons' relays), even when
    two classes read the same bits: otherwise one register would feed both classes' counters,
    wherever ``--place`` puts them."""
    (tmp_path / "twin.v").write_text(verilog.convert(_TwinClasses(), name="twin"))
    run_yosys(f"read_verilog twin.v\n{pnr.synth_script('ecp5', 'twin', 'twin.json')}", tmp_path, name="twin")
    module = json.loads((tmp_path / "twin.json").read_text())["modules"]["twin"]
    q = {c["connections"]["Q"][0]: name for name, c in module["cells"].items() if c["type"] == "TRELLIS_FF"}
    for kind in ("r0", "h0_0"):
        ffs = [{q[b] for b in module["netnames"][f"head.sum{c}_{kind}"]["bits"] if b in q} for c in (0, 1)]
        assert len(ffs[0]) == len(ffs[1]) == 5 and not ffs[0] & ffs[1], (kind, ffs)


def test_registered_comparisons_keep_ties_and_xnor_heads():
    """Register_comparisons on an XNOR head, and on tied scores (the lowest index wins)."""
    net = make_net(51, widths=[20], classes=9)
    top = pipelined_top(net, PipelineOptions(register_comparisons=True, argmax_levels_per_stage=1))
    assert top.head.argmax_latency == 4 + 3
    x = make_inputs(net, 40, 51)
    assert [unpack(top, p) for p in stream(top, pack(net, x), idle=0.2, stall=0.5, seed=4)] \
        == expected(net, x)
    enc = ir.Encoder(np.zeros((6, 1), dtype=int), 2)          # every bit a constant 1
    net = ir.Network(enc, [], ir.GroupSumHead(6, 3))
    top = pipelined_top(net, PipelineOptions(register_comparisons=True))
    x = make_inputs(net, 10, 0)
    assert [unpack(top, p) for p in stream(top, pack(net, x), seed=1)] == [(0, [2, 2, 2])] * 10


def test_register_comparisons_option():
    o = PipelineOptions(register_comparisons=True)
    assert PipelineOptions.from_dict(o.to_dict()) == o
    assert PipelineOptions().register_comparisons is False
    with pytest.raises(ValueError, match="^register_comparisons must be a bool, not 1$"):
        PipelineOptions(register_comparisons=1)


# -- stall-free pipeline: the credit buffer ----------------------------------------------------

from lutnet.hdl.top import CreditBuffer  # noqa: E402


def run_credit_buffer(latency, n, *, offer, take, seed=0, width=8, banks=None):
    """Drive a :class:`CreditBuffer` behind a model of a free-running pipeline of ``latency``
    cycles (results are the sample numbers). ``offer(cycle, rng)`` / ``take(cycle, rng)`` say
    whether the producer offers a sample / the consumer is ready. Checks every cycle that
    ``ready`` and ``o_stream.valid`` do not depend combinationally on ``i_valid`` /
    ``o_stream.ready``, that a stalled output holds, and that at most ``credits`` samples are in
    flight. ``banks`` forces a bank count (else :meth:`CreditBuffer.for_pipeline` picks).
    Returns (dut, results in order of arrival, accept cycles, take cycles)."""
    dut = CreditBuffer.for_pipeline(width, latency)
    if banks is not None:
        dut = CreditBuffer(width, credits=CreditBuffer.credits_for(latency, 1 + banks), banks=banks)
    rng = np.random.default_rng(seed)
    got, accepted, taken = [], [], []

    async def bench(ctx):
        pipe = [None] * latency
        sent, held = 0, None
        for cycle in range(40 * (n + latency) + 200):
            if len(got) == n:
                break
            iv, ready_out = sent < n and offer(cycle, rng), take(cycle, rng)
            ctx.set(dut.w_valid, (pipe[-1] if latency else None) is not None)
            ctx.set(dut.w_payload, (pipe[-1] or 0) if latency else 0)
            for a, b in ((0, 1), (1, 0)):
                ctx.set(dut.i_valid, a)
                ctx.set(dut.o_stream.ready, b)
                first = (ctx.get(dut.ready), ctx.get(dut.o_stream.valid))
                ctx.set(dut.i_valid, b)
                ctx.set(dut.o_stream.ready, a)
                assert (ctx.get(dut.ready), ctx.get(dut.o_stream.valid)) == first, \
                    "ready or valid is combinational"
            ctx.set(dut.i_valid, iv)
            ctx.set(dut.o_stream.ready, ready_out)
            ready, valid, payload = (ctx.get(dut.ready), ctx.get(dut.o_stream.valid),
                                     ctx.get(dut.o_stream.payload))
            if held is not None:
                assert valid and payload == held, "a stalled output changed or went away"
            held = payload if valid and not ready_out else None
            if valid and ready_out:
                got.append(payload)
                taken.append(cycle)
            accept = iv and ready
            if accept:
                accepted.append(cycle)
            assert len(accepted) - len(got) <= dut.credits
            if not latency:   # the pipeline is a wire: the result arrives with the sample
                ctx.set(dut.w_valid, accept)
                ctx.set(dut.w_payload, sent % (1 << width))
            pipe = [sent % (1 << width) if accept else None] + pipe[:-1]
            sent += accept
            await ctx.tick()

    sim, _ = _bench(dut)
    sim.add_testbench(bench)
    sim.run()
    return dut, got, accepted, taken


@pytest.mark.parametrize("latency,banks", [(0, None), (1, None), (5, None), (13, None), (17, None),
                                           (2, 2), (30, 2)])
def test_credit_buffer_full_rate(latency, banks):
    """Ready always 1 at the output: one sample per clock in, one per clock out, the pipeline's
    and the buffer's latency apart, and the input never waits."""
    n = 60
    dut, got, accepted, taken = run_credit_buffer(latency, n, offer=lambda c, r: True,
                                                  take=lambda c, r: True, banks=banks)
    assert got == list(range(n))
    assert accepted == list(range(n))
    assert taken == [c + latency + dut.latency for c in range(n)]


@pytest.mark.parametrize("latency,banks", [(0, None), (3, None), (13, None), (20, None), (4, 2)])
def test_credit_buffer_long_stall_loses_nothing(latency, banks):
    """The consumer holds ready low for long stretches while the producer keeps offering:
    the input stops when the credits run out, and nothing is lost, repeated or reordered."""
    n = 150
    stall = lambda c, r: (c // 37) % 3 == 2     # ready low 74 cycles, then high 37
    dut, got, accepted, taken = run_credit_buffer(latency, n, offer=lambda c, r: True, take=stall,
                                                  banks=banks)
    assert got == [i % 256 for i in range(n)]
    # while the output is stalled the input takes exactly `credits` samples, then waits
    in_first_stall = [c for c in accepted if c < 74]
    assert len(in_first_stall) == dut.credits


@pytest.mark.parametrize("seed", range(6))
def test_credit_buffer_random_gaps(seed):
    latency = [0, 2, 7, 16, 3, 19][seed]
    n = 120
    _, got, _, _ = run_credit_buffer(latency, n, offer=lambda c, r: r.random() < 0.7,
                                     take=lambda c, r: r.random() < [0.5, 0.2, 0.8, 0.4, 0.6, 0.7][seed],
                                     seed=seed, banks=2 if seed == 4 else None)
    assert got == [i % 256 for i in range(n)]


def test_credit_buffer_sizes_and_errors():
    assert CreditBuffer.credits_for(13, 2) == 17
    small, large = CreditBuffer.for_pipeline(8, 13), CreditBuffer.for_pipeline(8, 17)
    assert (small.banks, small.credits, small.depth, small.latency) == (1, 17, 16, 2)
    assert (large.banks, large.credits, large.depth, large.latency) == (2, 22, 16, 3)
    assert CreditBuffer(8, credits=18).depth == 32      # credits - 1 words, a power of two
    assert CreditBuffer(8, credits=2).depth == 2
    with pytest.raises(ValueError, match="^credits must be a positive integer, not 0$"):
        CreditBuffer(8, credits=0)
    with pytest.raises(ValueError, match="^width must be a positive integer, not True$"):
        CreditBuffer(True, credits=4)
    with pytest.raises(ValueError, match="^banks must be 1 or 2, not 3$"):
        CreditBuffer(8, credits=4, banks=3)


def test_stall_free_top_has_no_enables():
    """Stall-free: the stages' registers load on every clock (no ``en`` in their logic), the
    top's latency counts the buffer, and the option round-trips."""
    net = make_net(41, widths=[10])
    free = LutnetTop(net, options=PipelineOptions(stall_free=True))
    plain = LutnetTop(net, options=PipelineOptions())
    assert free.pipeline_latency == plain.latency
    assert free.latency == plain.latency + free.buffer.latency == plain.latency + 2
    text = to_verilog(free)
    body = lambda text, name: text[text.index(f"module \\{name} ("):].split("endmodule")[0]
    for name in free.stages():
        assert "if (en)" not in body(text, f"lutnet_top.{name}"), name
    assert "if (en)" in body(to_verilog(plain), "lutnet_top.encoder")
    o = PipelineOptions(stall_free=True)
    assert PipelineOptions.from_dict(o.to_dict()) == o and PipelineOptions().stall_free is False
    with pytest.raises(ValueError, match="^stall_free must be a bool, not 1$"):
        PipelineOptions(stall_free=1)


def test_always_ready_top_has_no_ready_ports_and_no_enables(tmp_path):
    """always_ready: free-running stages (no ``en``), no buffer (the latency is the stages'),
    no ready port in the Verilog or design.json, and the option round-trips and refuses
    stall_free."""
    net = make_net(42, widths=[10])
    top = LutnetTop(net, options=PipelineOptions(always_ready=True))
    assert top.buffer is None and top.latency == LutnetTop(net).latency
    text = to_verilog(top)
    for name in top.stages():
        body = text[text.index(f"module \\lutnet_top.{name} ("):].split("endmodule")[0]
        assert "if (en)" not in body, name
    design = generate(net, tmp_path, PipelineOptions(always_ready=True))
    header = _module_header((tmp_path / "lutnet_top.v").read_text(), "lutnet_top")
    names = sorted(p.strip() for p in header[header.index("(") + 1:-1].split(","))
    assert names == sorted(design["ports"]) == sorted(p for p in PORTS if not p.endswith("__ready"))
    assert Design.load(tmp_path / "design.json").ports == tuple(p for p in PORTS if not p.endswith("__ready"))
    o = PipelineOptions(always_ready=True)
    assert PipelineOptions.from_dict(o.to_dict()) == o and o.free_running
    with pytest.raises(ValueError, match="^always_ready and stall_free cannot be combined"):
        PipelineOptions(always_ready=True, stall_free=True)


def test_stall_free_top_long_stalls():
    """The whole net, stall-free, with the consumer away for many cycles at a time."""
    net = make_net(43, widths=[24, 16])
    top = LutnetTop(net, options=OPTIONS["free"])
    x = make_inputs(net, 80, 43)
    got = stream(top, pack(net, x), idle=0.0, stall=0.97, seed=43)
    assert [unpack(top, p) for p in got] == expected(net, x)


@pytest.mark.parametrize("seed,stall_free", [(62, False), (63, True), (64, True)])
def test_relay_inputs_match_golden(seed, stall_free):
    """A relay register per LUT neuron input (constant, copying and repeated-input neurons
    included) computes the same, one cycle later per LUT layer; XNOR layers are untouched."""
    net = make_lut_net(seed)
    rng = np.random.default_rng(seed)
    layers = []
    for layer in net.layers:
        if isinstance(layer, ir.LutLayer) and layer.n_out >= 3:
            tables, inputs = layer.tables.copy(), layer.inputs.copy()
            tables[0] = 0                                          # a constant
            tables[1] = np.arange(2 ** layer.k) & 1                # a copy of its first input
            inputs[2, -1] = inputs[2, 0]                           # a repeated input
            layer = ir.LutLayer(inputs, tables, layer.n_in)
        layers.append(layer)
    net = ir.Network(net.encoder, layers, net.head)
    n_lut = sum(isinstance(layer, ir.LutLayer) for layer in layers)
    assert n_lut >= 1
    base = PipelineOptions(stall_free=stall_free, adder_levels_per_stage=1,
                           layers_per_stage=int(rng.integers(1, 3)))
    relay = PipelineOptions(**{**base.to_dict(), "relay_inputs": True})
    top = LutnetTop(net, options=relay)
    assert top.pipeline_latency == LutnetTop(net, options=base).pipeline_latency + n_lut
    x = make_inputs(net, 60, seed)
    got = stream(top, pack(net, x), idle=0.2, stall=0.5, seed=seed)
    assert [unpack(top, p) for p in got] == expected(net, x)


def test_relay_inputs_are_per_neuron_registers():
    """Each non-constant neuron reads a register of its own holding exactly its distinct inputs."""
    layer = ir.LutLayer(np.array([[0, 1], [1, 1], [2, 0]]),
                        np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]]), 3)
    component = LutLayerComponent(layer, relay_inputs=True)
    assert component.latency == 2
    text = verilog.convert(component, name="layer")
    assert re.findall(r"reg \[(\d+):0\] relay(\d+)\b", text) == [("1", "0"), ("1", "2")]
    assert "relay1" not in text                                    # neuron 1 is a constant
    with pytest.raises(ValueError, match="cannot be combined"):
        PipelineOptions(relay_inputs=True, split_lut6=True)


def test_unread_neurons_are_not_built():
    """A LUT layer builds only the neurons the next LUT layer reads (an input its table ignores
    does not count); before an XNOR layer or the head, all of them."""
    enc = ir.Encoder(np.array([[1], [2], [3]]), 2)
    first = ir.LutLayer(np.array([[0, 1], [1, 2], [0, 2], [2, 1]]), np.tile([0, 1, 1, 0], (4, 1)), 3)
    # neuron 0 reads bits 0 and 2; neuron 1 reads bit 3 twice and bit 1 not at all (a copy of bit 3)
    second = ir.LutLayer(np.array([[0, 2], [3, 1]]), np.array([[0, 1, 1, 0], [0, 1, 0, 1]]), 4)
    net = ir.Network(enc, [first, second], ir.GroupSumHead(2, 2))
    top = LutnetTop(net, options=PipelineOptions(relay_inputs=True))
    assert top.layers[0].read == {0, 2, 3} and top.layers[1].read is None
    text = verilog.convert(top.layers[0], name="layer")
    assert sorted(re.findall(r"reg \[1:0\] relay(\d+)\b", text)) == ["0", "2", "3"]
    x = make_inputs(net, 30, 5)
    assert [unpack(top, p) for p in stream(top, pack(net, x), idle=0.1, stall=0.2, seed=5)] == expected(net, x)


@pytest.mark.parametrize("relays", [False, True])
def test_constant_neurons_are_folded(relays):
    """A LUT layer's constant neurons are constants, not registers, and the LUT layer after it
    is specialised on them: no neuron reads (or relays) a constant bit; the result is unchanged
    (also two layers down: a neuron made constant by constants is folded in turn)."""
    enc = ir.Encoder(np.array([[1], [2], [3]]), 2)
    # neurons 0 and 1 are constant 1 and 0; neuron 2 = x0 ^ x1, neuron 3 = x2
    first = ir.LutLayer(np.array([[0, 1], [1, 2], [0, 1], [2, 2]]),
                        np.array([[1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]), 3)
    # neuron 0 = b0 & b2 (b0 = 1: a copy of b2), neuron 1 = b1 | b3 (b1 = 0: a copy of b3),
    # neuron 2 = b0 & b1 (constant 0)
    second = ir.LutLayer(np.array([[0, 2], [1, 3], [0, 1]]),
                         np.array([[0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 0, 1]]), 4)
    third = ir.LutLayer(np.array([[2, 0], [1, 2]]), np.array([[0, 1, 1, 0], [0, 1, 1, 1]]), 3)
    net = ir.Network(enc, [first, second, third], ir.GroupSumHead(2, 2))
    top = LutnetTop(net, options=PipelineOptions(relay_inputs=relays))
    assert [c.constant_outputs for c in top.layers] == [{0: 1, 1: 0}, {2: 0}, {}]
    assert [c.constants for c in top.layers] == [{}, {0: 1, 1: 0}, {2: 0}]
    assert [c.supports for c in top.layers[1:]] == [[([2], 2), ([3], 2), ([], 0)],
                                                    [([0], 2), ([1], 2)]]
    text = verilog.convert(top.layers[0], name="layer")
    assert re.search(r"assign o = \{ \S+ ?\[3:2\], 2'h1 \}", text)    # bits 0, 1: constants
    x = make_inputs(net, 30, 6)
    assert [unpack(top, p) for p in stream(top, pack(net, x), idle=0.1, stall=0.3, seed=6)] == expected(net, x)


@pytest.mark.parametrize("stall_free", [False, True])
def test_split_lut6_matches_golden(stall_free):
    """K = 6 layers with every neuron split into registered halves (plus constant, copying and
    smaller neurons from lut_support) compute the same; one more cycle per K = 6 layer only."""
    net = make_lut_net(61, all_lut=True)
    assert net.layers[0].n_out >= 3
    rng = np.random.default_rng(61)
    layers, n_in = [], net.encoder.n_out
    for j, layer in enumerate(net.layers):
        new = random_lut_layer(rng, n_in, layer.n_out, k=6 if j == 0 else 4)
        tables, inputs = new.tables.copy(), new.inputs.copy()
        if j == 0 and layer.n_out >= 3:
            tables[0] = 1                              # a constant
            tables[1] = np.arange(64) >> 5 & 1         # a copy of input 5
            inputs[2, 3] = inputs[2, 4]                # five distinct inputs
        layers.append(ir.LutLayer(inputs, tables, n_in))
        n_in = layer.n_out
    net = ir.Network(net.encoder, layers, net.head)
    base = PipelineOptions(stall_free=stall_free, adder_levels_per_stage=1)
    split = PipelineOptions(**{**base.to_dict(), "split_lut6": True})
    top = LutnetTop(net, options=split)
    assert top.latency == LutnetTop(net, options=base).latency + 1
    assert [s.latency for s in top.layers] == [2] + [1] * (len(layers) - 1)
    x = make_inputs(net, 60, 61)
    got = stream(top, pack(net, x), idle=0.2, stall=0.4, seed=61)
    assert [unpack(top, p) for p in got] == expected(net, x)


@pytest.mark.parametrize("module", ["lutnet.hdl.popcount", "lutnet.hdl.options", "lutnet.hdl.layers",
                                    "lutnet.hdl.top", "lutnet.hdl.argmax"])
def test_doctests(module):
    """The hdl package's doctests (``--doctest-modules`` collects ``lutnet/`` and ``tests/``
    only: ``hdl/`` is installed as ``lutnet.hdl`` from its own folder)."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
