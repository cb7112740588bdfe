"""Per-stage and sliced Yosys synthesis (lutnet.synth) against the single-process flow.

Yosys runs on tiny random nets only (the whole file takes about a minute on 2 cores).

Tolerance: FF counts must match exactly. LUT counts may differ a little: a stage mapped as its
own top is the same module text as in the whole design (no optimization crosses the kept
hierarchy), but ABC's mapping depends on the order of the netlist's objects, which depends on
what else was in the Yosys process (its global auto-name counters); that moves a stage's count
by a few per cent either way. We allow 10 % per stage (at least 4 LUTs) and 4 % in total.
"""
import re

import numpy as np
import pytest

from lutnet import progress, synth, targets
from lutnet.hdl.emit import generate
from lutnet.hdl.top import LutnetTop
from lutnet.ir import LutLayer, Network, XnorLayer
from netgen import random_lut_layer, random_net

KEYS = ("luts", "ffs", "carry", "other")


def close(a, b, rel, at_least=0):
    return abs(a - b) <= max(at_least, rel * b)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    net = random_net(np.random.default_rng(7), features=8, input_bits=4, levels=2,
                     widths=[24, 16], classes=4)
    # no constant neurons (threshold 0 or n_in + 1): Yosys merges identical registers inside one
    # module, so two constant neurons in different slices would cost one FF more than unsliced
    layers = [XnorLayer(l.weights, np.clip(l.thresholds, 1, l.n_in)) for l in net.layers]
    net = Network(net.encoder, layers, net.head, meta=net.meta)
    target = targets.load("xc7")
    d = tmp_path_factory.mktemp("single")
    design = generate(net, d)
    single = synth.synthesize(d / "lutnet_top.v", design["top"], target, design["submodules"])
    staged = synth.synthesize_stages(LutnetTop(net), target, workers=2, slice_bits=10 ** 9)
    # layer0: 24 rows x 16 inputs, 8 rows per slice -> 3 slices; layer1: 16 x 24, 5 rows -> 4
    sliced = synth.synthesize_stages(LutnetTop(net), target, workers=2, slice_bits=130)
    return single, staged, sliced, design["latency"]


def test_per_stage_equals_single_process(runs):
    single, staged, _, latency = runs
    assert staged["synthesis"]["method"] == "per-stage" and staged["synthesis"]["slices"] == {}
    assert set(staged["layers"]) == set(single["layers"]) == {"encoder", "layer0", "layer1", "head"}
    for name, ref in single["layers"].items():
        got = staged["layers"][name]
        assert got["ffs"] == ref["ffs"], name
        assert got["carry"] == ref["carry"], (name, got, ref)
        # "other" is MUXF7/MUXF8: ABC trades them against LUTs, so they are compared with the LUTs
        assert close(got["luts"] + got["other"], ref["luts"] + ref["other"], 0.10, 4), (name, got, ref)
    assert staged["ffs"] == single["ffs"]
    assert close(staged["luts"], single["luts"], 0.04), (staged["luts"], single["luts"])
    # the totals are the stages plus the glue (valid bits, enable)
    glue = staged["synthesis"]["glue"]
    for k in KEYS:
        assert staged[k] == glue[k] + sum(l[k] for l in staged["layers"].values())
    assert glue["ffs"] == latency  # the valid shift register


def test_sliced_sums(runs):
    _, staged, sliced, _ = runs
    how = sliced["synthesis"]
    assert how["method"] == "sliced"
    assert {k: v["count"] for k, v in how["slices"].items()} == {"layer0": 3, "layer1": 4}
    assert how["slices"]["layer0"]["rows"] == [8, 8, 8] and how["slices"]["layer1"]["rows"] == [4] * 4
    for name in ("layer0", "layer1"):
        s, ref = sliced["layers"][name], staged["layers"][name]
        assert s["ffs"] == ref["ffs"] == sum(how["slices"][name]["ffs"])
        assert s["luts"] == sum(how["slices"][name]["luts"])
        # no sharing across slices: not fewer LUTs, up to the ABC noise described above
        assert s["luts"] >= 0.9 * ref["luts"], (name, s, ref)
    for name in ("encoder", "head"):
        assert sliced["layers"][name] == staged["layers"][name]
    assert sliced["ffs"] == staged["ffs"]


def test_one_slice_is_the_unsliced_layer():
    layer = XnorLayer(np.eye(5, 7, dtype=bool), np.arange(5))
    assert synth.plan_slices(layer.n_out, synth.layer_cost(layer), 35) == [(0, 5)]
    assert synth.plan_slices(512, 512 * 784, 65536) == [(round(k * 512 / 7), round((k + 1) * 512 / 7)) for k in range(7)]
    assert synth.plan_slices(3, 3000, 1) == [(0, 1), (1, 2), (2, 3)]  # at least one row


def test_slice_layer_ir():
    rng = np.random.default_rng(0)
    x = XnorLayer(rng.integers(0, 2, size=(10, 6)), rng.integers(0, 7, size=10))
    s = synth.slice_layer(x, 3, 7)
    assert s.n_in == 6 and s.n_out == 4
    assert (s.weights == x.weights[3:7]).all() and (s.thresholds == x.thresholds[3:7]).all()
    lut = random_lut_layer(rng, 9, 12, k=3)
    s = synth.slice_layer(lut, 0, 5)
    assert isinstance(s, LutLayer) and s.n_in == 9 and s.n_out == 5 and s.k == 3
    assert (s.inputs == lut.inputs[:5]).all() and (s.tables == lut.tables[:5]).all()
    assert synth.layer_cost(x) == 60 and synth.layer_cost(lut) == 12 * 3


def test_yosys_error_is_named(tmp_path):
    (tmp_path / "broken.v").write_text("module broken(input a, output y);\n  assign y = a &;\nendmodule\n")
    with pytest.raises(synth.SynthError) as e:
        synth._stat(tmp_path, ["broken.v"], "broken", targets.load("xc7"), what="broken")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("yosys (broken) failed: broken.v:2: ERROR: syntax error")
    assert "see " not in msg  # nothing that points into a deleted folder


def test_yosys_progress_names_the_pass(tmp_path, monkeypatch):
    # a progress line every PROGRESS_SECONDS (here 0.1 s) with the seconds so far and the pass the
    # log has reached; none without a log callback
    assert synth.yosys_step("") is None
    assert synth.yosys_step("2.1. Executing HIERARCHY pass.\n2.46.12. Executing ABC9 pass (map).\n") == "ABC9 pass"
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.1)
    net = random_net(np.random.default_rng(0), features=4, input_bits=2, levels=1, widths=[24], classes=3, lut=True)
    generate(net, tmp_path)
    lines = []
    synth._stat(tmp_path, ["lutnet_top.v"], "lutnet_top", targets.load("icebreaker"), what="core", log=lines.append)
    assert lines and all(re.fullmatch(r"  yosys \(core\): \d+ s(, [A-Z0-9_]+ pass)?", l) for l in lines), lines
    assert any(l.endswith(" pass") for l in lines), lines


def test_out_of_memory_message():
    log = "-- Running command `abc` --\nERROR: Out of memory: cannot allocate 1048576 bytes\n"
    msg = synth._failure_message(log, 1)
    assert msg.startswith("yosys ran out of memory (YoWASP is 32-bit WebAssembly, at most 4 GiB): ERROR: Out of memory")
    assert "LUTNET_SYNTH_SLICE_BITS" in msg
    msg = synth._failure_message("Error: failed to run main module\nCaused by: memory allocation of 64 bytes failed\n", 134)
    assert "ran out of memory" in msg
    assert synth._failure_message("5.1. Executing ABC pass\nsomething odd happened\n", 3) == "yosys failed: something odd happened"


def test_logic_levels_count_luts_between_registers(tmp_path):
    """r1 <= a ^ rot(a) (one LUT), r2 <= r1 + 3 (an 8-bit add: two LUT6 levels with -nocarry),
    q <= r2 & rot(r2) (one LUT): the longest register-to-register path is 2 LUT6, not the 7 cells
    of the whole chain that Yosys's ltp reports when it walks through the flip-flops."""
    (tmp_path / "t.v").write_text(
        "module t(input clk, input [7:0] a, output reg [7:0] q);\n  reg [7:0] r1, r2;\n"
        "  always @(posedge clk) begin r1 <= a ^ {a[6:0], a[7]}; r2 <= r1 + 8'd3; q <= r2 & {r2[0], r2[7:1]}; end\n"
        "endmodule\n")
    counts = synth.count_cells(tmp_path / "t.v", "t", targets.load("xc7"))
    assert counts["levels"] == 2 and counts["ffs"] == 24 and counts["luts"] > 8


def test_logic_levels_of_a_netlist():
    """a -> L1 -> L2 -> FF -> L3 -> y, plus L4 fed by a constant and L2: the longest path between
    registers and ports is 3 cells (a -> L1 -> L2 -> L4 -> y); the flip-flop and the clock buffer
    are no level."""
    def cell(t, ins, outs):
        return {"type": t, "port_directions": {**{p: "input" for p in ins}, **{p: "output" for p in outs}},
                "connections": {**ins, **outs}}
    netlist = {"modules": {"m": {"cells": {
        "l1": cell("LUT4", {"A": [2], "B": [3]}, {"Z": [10]}),
        "l2": cell("LUT4", {"A": [10]}, {"Z": [11]}),
        "ff": cell("TRELLIS_FF", {"DI": [11], "CLK": [20]}, {"Q": [12]}),
        "bufg": cell("BUFG", {"I": [4]}, {"O": [20]}),
        "l3": cell("LUT4", {"A": [12]}, {"Z": [13]}),
        "l4": cell("LUT4", {"A": ["1"], "B": [11]}, {"Z": [14]}),
    }}}}
    assert synth.logic_levels(netlist, "m") == 3
    del netlist["modules"]["m"]["cells"]["l4"]
    assert synth.logic_levels(netlist, "m") == 2
    assert synth.logic_levels({"modules": {"e": {"cells": {}}}}, "e") == 0
    with pytest.raises(synth.SynthError, match="no module 'x'"):
        synth.logic_levels(netlist, "x")


def test_staged_synthesis_reports_logic_levels(runs):
    _, staged, sliced, _ = runs
    levels = staged["logic_levels"]
    assert set(levels) == {"encoder", "layer0", "layer1", "head"} and min(levels.values()) >= 1
    # a 16-input popcount and its threshold do not fit one LUT6
    assert levels["layer0"] >= 2
    # slices of a layer are side by side: the layer is as deep as its deepest slice, which has the
    # same neurons' logic (ABC's mapping may move it by one level)
    for name in levels:
        assert 1 <= sliced["logic_levels"][name] <= levels[name] + 1


def test_always_ready_glue_is_the_valid_bits_alone():
    """An always_ready top (no ready ports, free-running stages) synthesizes stage by stage; its
    glue is the valid shift register and nothing else: no enable, no ready logic."""
    from lutnet.hdl import PipelineOptions

    net = random_net(np.random.default_rng(3), features=4, input_bits=2, levels=1, widths=[8], classes=3)
    top = LutnetTop(net, options=PipelineOptions(always_ready=True))
    report = synth.synthesize_stages(top, targets.load("xc7"), workers=2)
    glue = report["synthesis"]["glue"]
    assert (glue["ffs"], glue["luts"], glue["carry"]) == (top.latency, 0, 0), glue
    assert set(report["layers"]) == {"encoder", "layer0", "head"}
