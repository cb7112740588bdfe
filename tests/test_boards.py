"""Board files (lutnet.targets), the fit check, the Vivado project for Xilinx boards, and
`lutnet build --board` end to end on the iCEBreaker (real Yosys + nextpnr + icepack, tiny net)."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lutnet import flow, synth, targets, vivado
from lutnet.ir import Encoder, GroupSumHead, LutLayer, Network, XnorHead, XnorLayer
from test_cli import assert_user_error, lutnet

BOARDS = ("icebreaker", "ulx3s-85f", "arty-a7-35t")
PARTS = ("xc7", "xcup", "xcvu9p")

ICEBREAKER = (Path(targets.__file__).resolve().parents[1] / "boards" / "icebreaker.toml").read_text()


def test_every_shipped_target_loads():
    assert set(BOARDS + PARTS) <= set(targets.known())
    for name in targets.known():
        t = targets.load(name)
        assert t.name == name and t.vendor in ("lattice", "xilinx")
        assert t.lut_size == (4 if t.vendor == "lattice" else 6)
        assert t.capacity["luts"] > 0 and t.capacity["ffs"] >= t.capacity["luts"] and t.capacity["bram_kbits"] > 0
        assert t.has_pins == (name in BOARDS), name
        if t.has_pins:
            assert t.clock["hz"] > 0 and t.uart["baud"] == 115200 and t.uart["rx"] != t.uart["tx"]
            assert len(set(t.leds["pins"])) == len(t.leds["pins"]) > 0
        assert t.summary()["capacity"] == t.capacity


def test_board_pins_and_parts():
    ice = targets.load("icebreaker")
    assert (ice.device, ice.package, ice.clock["pin"], ice.clock["hz"]) == ("up5k", "sg48", "35", 12_000_000)
    assert (ice.uart["rx"], ice.uart["tx"], ice.leds["pins"], ice.leds["active_low"]) == ("6", "9", ["11", "37"], True)
    ulx = targets.load("ulx3s-85f")
    assert (ulx.device, ulx.package, ulx.speed_grade, ulx.clock["pin"]) == ("85k", "CABGA381", "6", "G2")
    assert (ulx.uart["rx"], ulx.uart["tx"], len(ulx.leds["pins"]), ulx.leds["active_low"]) == ("M1", "L4", 8, False)
    assert ulx.no_slice_rows == [10, 22, 34, 46] and targets.load("icebreaker").no_slice_rows == []
    arty = targets.load("arty-a7-35t")
    assert (arty.device, arty.clock["pin"], arty.clock["hz"]) == ("xc7a35ticsg324-1L", "E3", 100_000_000)
    assert (arty.uart["rx"], arty.uart["tx"], arty.leds["pins"]) == ("A9", "D10", ["H5", "J5", "T9", "T10"])
    vu9p = targets.load("xcvu9p")
    assert (vu9p.device, vu9p.capacity["luts"], vu9p.capacity["ffs"]) == ("xcvu9p-flga2104-2L-e", 1_182_240, 2_364_480)
    # the measured Xilinx mapping script is kept for the core targets
    for name in ("xc7", "xcup"):
        script = targets.load(name).synth_script("top")
        assert f"-family {name} -noiopad -nocarry" in script and "if,-K,6,-a;mfs2 -lut 6" in script


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s.replace('part = "iCE40UP5K"\n', ""), "missing field 'part'"),
    (lambda s: s.replace("lut_size = 4", 'lut_size = "4"'), "field 'lut_size' must be an integer, not str"),
    (lambda s: s.replace('vendor = "lattice"', 'vendor = "altera"'), "field 'vendor' is 'altera'"),
    (lambda s: s.replace('family = "ice40"', 'family = "ecp6"'), "field 'family' is 'ecp6'"),
    (lambda s: s.replace("lut_size = 4", "lut_size = 6"), "field 'lut_size' is 6"),
    (lambda s: s.replace("luts = 5280\n", ""), "missing field capacity.luts"),
    (lambda s: s.replace("hz = 12000000", 'hz = "12 MHz"'), "field clock.hz must be an integer"),
    (lambda s: s.replace("active_low = true", "active_low = 1"), "field leds.active_low must be a boolean"),
    (lambda s: s.replace('pins = ["11", "37"]', 'pins = [11, 37]'), "field leds.pins[0] must be a string"),
    (lambda s: s.replace("baud = 115200", "baud = 115200\nbuad = 9600"), "unknown field uart.buad"),
    (lambda s: s.split("[clock]")[0] + "[uart]" + s.split("[uart]")[1], "has [uart] but no [clock]"),
    (lambda s: s.replace('name = "icebreaker"', 'name = "other"'), "field 'name' is 'other'"),
    (lambda s: s + "\n[capacity\n", "board file"),
    (lambda s: s + '\n[fabric]\nno_slice_rows = [10, "22"]\n', "field fabric.no_slice_rows[1] must be an integer"),
    (lambda s: s + "\n[fabric]\nno_slice_rows = 10\n", "field fabric.no_slice_rows must be a list"),
])
def test_broken_board_file_names_the_field(tmp_path, edit, needle):
    (tmp_path / "icebreaker.toml").write_text(edit(ICEBREAKER))
    with pytest.raises(targets.TargetError) as e:
        targets.load("icebreaker", search_path=[tmp_path])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and str(tmp_path / "icebreaker.toml") in msg, msg


def test_user_board_folder_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "myboard.toml").write_text(ICEBREAKER.replace('name = "icebreaker"', 'name = "myboard"'))
    monkeypatch.setenv("LUTNET_BOARDS", str(tmp_path))
    assert "myboard" in targets.known() and "icebreaker" in targets.known()
    assert targets.load("myboard").clock["pin"] == "35"
    proc = lutnet("build", tmp_path / "missing.npz", "--board", "nope", env={"LUTNET_BOARDS": str(tmp_path)})
    assert proc.returncode == 2
    assert_user_error(proc, "lutnet build: error: unknown board 'nope' (known: ", "myboard", "icebreaker", "xc7")


def _xnor_net(rng, widths, features=16, classes=10, dataset="random"):
    enc = Encoder(np.sort(rng.integers(0, 17, size=(features, 2)), axis=1), 4)
    layers, n_in = [], enc.n_out
    for w in widths:
        layers.append(XnorLayer(rng.integers(0, 2, size=(w, n_in)), rng.integers(1, n_in + 1, size=w)))
        n_in = w
    return Network(enc, layers, XnorHead(rng.integers(0, 2, size=(classes, n_in))), meta={"dataset": dataset})


def test_estimate_grows_with_the_net():
    rng = np.random.default_rng(0)
    small, big = _xnor_net(rng, [16]), _xnor_net(rng, [256, 256])
    for k in (4, 6):
        assert 0 < synth.estimate_luts(small, k) < synth.estimate_luts(big, k)
    assert synth.estimate_luts(big, 4) > synth.estimate_luts(big, 6)
    # LUT layers: one LUT6 per neuron up to K = 6; K = 6 costs several LUT4
    lut = Network(Encoder(np.zeros((8, 1), int), 1),
                  [LutLayer(rng.integers(0, 8, size=(40, 6)), rng.integers(0, 2, size=(40, 64)), 8)],
                  GroupSumHead(40, 10))
    assert synth.estimate_luts(lut, 4) - synth.estimate_luts(lut, 6) >= 40 * 5


def test_lut_neuron_cost_from_the_truth_table():
    addr = np.arange(64)
    tables = np.stack([np.zeros(64, bool),                     # constant: no LUT
                       (addr & 0b101) == 0b101,                # two of six inputs: one LUT
                       addr == 63,                             # AND6: AND4 + a LUT4 for the rest
                       np.random.default_rng(0).integers(0, 2, 64).astype(bool)])  # random: 4 + 3
    layer = LutLayer(np.tile(np.arange(6), (4, 1)), tables, 6)
    assert synth.lut_neuron_luts(layer, 4).tolist() == [0, 1, 2, 7]
    assert synth.lut_neuron_luts(layer, 6).tolist() == [0, 1, 1, 1]


def test_fit_check_stops_before_synthesis(tmp_path):
    """128-64-64-10 XNOR (about 18 k LUT4) is over an iCE40UP5K: the build stops at once (no
    Yosys run) with estimated vs available and the ways out, and writes nothing."""
    rng = np.random.default_rng(1)
    net = _xnor_net(rng, [64, 64], features=64)
    net.save(tmp_path / "big.npz")
    proc = lutnet("build", tmp_path / "big.npz", "-o", tmp_path / "out", "--board", "icebreaker")
    assert proc.returncode == 2
    assert_user_error(proc, "does not fit icebreaker (iCE40UP5K)", "vs available 5280 LUT4", "--core-only",
                      "larger board (ulx3s-85f", "smaller net")
    est = int(re.search(r"estimated (\d+) vs", proc.stderr).group(1))
    assert est == synth.estimate_luts(net, 4) + synth.BOARD_TOP_LUTS[4] and est > 5280
    assert "synthesizing" not in proc.stdout and not (tmp_path / "out").exists()


def test_vivado_project_for_arty(tmp_path):
    rng = np.random.default_rng(2)
    _xnor_net(rng, [8], features=4, classes=3).save(tmp_path / "m.npz")
    s = flow.build(tmp_path / "m.npz", tmp_path / "b", board="arty-a7-35t", run_synth=False, log=lambda *_: None)
    assert s["vivado"] == {"tcl": "vivado/build.tcl", "xdc": "vivado/board.xdc"}
    assert s["fit"]["fits"] and s["fit"]["available_luts"] == 20_800 and s["fit"]["source"] == "ir-estimate"
    assert s["board_top"]["verilog"] == "board_top.v" and (tmp_path / "b" / "board_top.v").is_file()
    tcl = (tmp_path / "b" / s["vivado"]["tcl"]).read_text()
    xdc = (tmp_path / "b" / s["vivado"]["xdc"]).read_text()
    assert "create_project -force lutnet [file join $here project] -part xc7a35ticsg324-1L" in tcl
    assert "[file join $build {board_top.v}]" in tcl and "set_property top board_top" in tcl
    for step in ("launch_runs synth_1", "launch_runs impl_1 -to_step write_bitstream", "report_utilization",
                 "report_timing_summary", "board.xdc"):
        assert step in tcl, step
    assert "set_property -dict {PACKAGE_PIN E3 IOSTANDARD LVCMOS33} [get_ports {clk}]" in xdc
    assert "create_clock -name clk -period 10.000" in xdc
    assert "{PACKAGE_PIN A9 IOSTANDARD LVCMOS33} [get_ports {uart_rx}]" in xdc
    assert "{PACKAGE_PIN D10 IOSTANDARD LVCMOS33} [get_ports {uart_tx}]" in xdc
    for i, pin in enumerate(["H5", "J5", "T9", "T10"]):
        assert f"{{PACKAGE_PIN {pin} IOSTANDARD LVCMOS33}} [get_ports {{leds[{i}]}}]" in xdc
    # the board top's ports are exactly those the XDC constrains
    top = (tmp_path / "b" / "board_top.v").read_text()
    header = top[top.index("module board_top"):top.index(");", top.index("module board_top"))]
    assert re.search(r"input\s+clk", top) and "uart_rx" in header and "uart_tx" in header and "leds" in header
    with pytest.raises(targets.TargetError, match="Xilinx board"):
        vivado.xdc(targets.load("icebreaker"))


def _tiny_digits_net(rng) -> Network:
    """A few LUT neurons on the digits features (64 x 5 bit): enough for a real board build."""
    enc = Encoder(np.full((64, 1), 8), 5)
    layer = LutLayer(rng.integers(0, 64, size=(10, 4)), rng.integers(0, 2, size=(10, 16)), 64)
    return Network(enc, [layer], GroupSumHead(10, 10), meta={"dataset": "digits"})


def test_build_icebreaker_end_to_end(tmp_path):
    _tiny_digits_net(np.random.default_rng(3)).save(tmp_path / "m.npz")
    out = tmp_path / "ice"
    proc = lutnet("build", tmp_path / "m.npz", "-o", out, "--board", "icebreaker", "--verify", "4",
                  "--simulator", "icarus")
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["board"] == "icebreaker" and s["target"]["device"] == "up5k" and s["fit"]["fits"]
    pnr = s["pnr"]
    assert pnr["bitstream"] == "pnr/board_top.bin" and (out / pnr["bitstream"]).stat().st_size > 100_000
    assert pnr["fmax_mhz"] > 12 and pnr["timing_met"] and 0 < pnr["fmax_ratio"] < 1
    assert pnr["ceiling_mhz"] > pnr["fmax_mhz"]
    assert s["board_top"]["luts"] == pnr["luts"] > s["luts"] > 0 and pnr["ios"] == 5  # clk, uart_rx, uart_tx, 2 LEDs
    assert pnr["utilisation"]["ICESTORM_LC"][1] == s["target"]["capacity"]["luts"]
    assert set(s["logic_levels"]) == {"encoder", "layer0", "head"} and s["logic_levels"]["layer0"] == 1
    assert s["verify"]["vectors"] == 4 and s["verify"]["mismatches"] == 0 and s["verify"]["passed"]
    assert "Fmax" in proc.stdout and "verify (icarus): 4 frames" in proc.stdout


def test_build_ulx3s_stage_by_stage(tmp_path, monkeypatch):
    """The flow for large nets, forced on a tiny one: Yosys maps each stage for nextpnr, and the
    build's figures come from those runs (no second synthesis): per-stage counts of the placed
    netlist that add up to its total with the glue (UART, valid bits), and logic levels."""
    monkeypatch.setattr(flow, "STAGED_MIN_LUTS", 0)
    _tiny_digits_net(np.random.default_rng(3)).save(tmp_path / "m.npz")
    s = flow.build(tmp_path / "m.npz", tmp_path / "ulx", board="ulx3s-85f", log=lambda *_: None)
    how, pnr = s["synthesis"], s["pnr"]
    assert how["method"] == "per-stage" and set(s["layers"]) == {"encoder", "layer0", "head"}
    for k in ("luts", "ffs", "carry"):
        assert s[k] == pnr[k] == s["board_top"][k] == sum(c[k] for c in how["stage_counts"].values())
    assert s["layers"]["layer0"]["luts"] >= 1 and how["stage_counts"]["glue"]["luts"] > 20
    assert s["logic_levels"]["layer0"] == 1 and s["fit"] == {"estimated_luts": s["luts"], "available_luts": 83640,
                                                             "fits": True, "source": "yosys-board-top"}
    assert (tmp_path / "ulx" / pnr["bitstream"]).stat().st_size > 0 and 0 < pnr["fmax_ratio"] < 1
    # where the clock goes: the critical path ends in the stage it names, at its slowest arrival
    timing, critical = pnr["stage_timing"], pnr["critical_path"]
    assert {"layer0", "head", "glue"} <= set(timing) and pnr["critical_stage"] in timing
    assert timing[pnr["critical_stage"]]["worst_ns"] == pytest.approx(critical["total_ns"] - critical["setup_ns"],
                                                                      abs=0.002)


@pytest.mark.parametrize("staged", [False, True])
def test_fit_check_on_the_yosys_count_before_place_and_route(tmp_path, monkeypatch, staged):
    """A net the IR estimate lets through is checked again on Yosys's count (core + the board
    top's UART) before nextpnr runs: a user board file with a 130-LUT4 part (the IR estimate is
    patched to 0: the UART alone is estimated at 120) stops it there; in the flow for large nets
    too, whose Yosys runs are those of place and route."""
    if staged:
        monkeypatch.setattr(flow, "STAGED_MIN_LUTS", 0)
    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "small-ice.toml").write_text(
        ICEBREAKER.replace('name = "icebreaker"', 'name = "small-ice"').replace("luts = 5280", "luts = 130"))
    monkeypatch.setenv("LUTNET_BOARDS", str(tmp_path / "boards"))
    monkeypatch.setattr(synth, "estimate_luts", lambda net, lut_size: 0)
    _tiny_digits_net(np.random.default_rng(3)).save(tmp_path / "m.npz")
    with pytest.raises(targets.FitError) as e:
        flow.build(tmp_path / "m.npz", tmp_path / "out", board="small-ice", log=lambda *_: None)
    msg = str(e.value)
    assert "does not fit small-ice (iCE40UP5K)" in msg and "vs available 130 LUT4 (counted by Yosys)" in msg
    assert "larger board (icebreaker, ulx3s-85f)" in msg
    assert int(re.search(r"estimated (\d+) vs", msg).group(1)) > 130
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_verify_needs_a_board_top(tmp_path):
    _tiny_digits_net(np.random.default_rng(3)).save(tmp_path / "m.npz")
    for board, core_only, needle in (("xc7", False, "target xc7 has no pins (part only)"),
                                     ("icebreaker", True, "--core-only builds no board top")):
        with pytest.raises(flow.BuildError) as e:
            flow.build(tmp_path / "m.npz", tmp_path / "out", board=board, core_only=core_only, verify=3)
        assert needle in str(e.value) and "arty-a7-35t, icebreaker, ulx3s-85f" in str(e.value)
    assert not (tmp_path / "out").exists()
