"""The user's flow through the `lutnet` command: train -> build -> sim (both simulators) -> report."""
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lutnet import datasets, golden
from lutnet.ir import Network
from test_cli import lutnet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("flow") / "digits"
    proc = lutnet("train", "-o", run, "--hidden", "24,16", "--levels", "2", "--epochs", "8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = lutnet("build", run)  # default output: RUN/build
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def test_train_summary_and_ir(digits_run):
    s = json.loads((digits_run / "summary.json").read_text())
    net = Network.load(digits_run / "model.npz")
    ds = datasets.load("digits")
    assert s["command"] == "train" and s["network"] == net.describe()
    assert s["test_accuracy"] == pytest.approx(np.mean(golden.predict(net, ds.x_test) == ds.y_test), abs=0)
    assert s["test_accuracy"] >= 0.80 and s["epochs"] == 8 and s["seconds"] > 0


def test_build_reports_luts_per_layer(digits_run):
    build = digits_run / "build"
    s = json.loads((build / "summary.json").read_text())
    assert (build / s["verilog"]).is_file() and s["board"] == "xc7" and s["lut_size"] == 6
    assert set(s["layers"]) == {"encoder", "layer0", "layer1", "head"}
    assert all(l["luts"] > 0 for l in s["layers"].values())
    assert s["luts"] >= sum(l["luts"] for l in s["layers"].values())
    # every pipeline register is counted: encoder 2*64 bits, layers 24 + 16 bits, and the head
    assert s["layers"]["layer0"]["ffs"] == 24 and s["layers"]["layer1"]["ffs"] == 16
    assert s["ffs"] >= 128 + 24 + 16


def test_build_reports_target_fit_and_logic_levels(digits_run):
    s = json.loads((digits_run / "build" / "summary.json").read_text())
    assert s["target"]["name"] == "xc7" and s["target"]["capacity"]["luts"] == 133_800
    assert s["fit"] == {"estimated_luts": s["luts"], "available_luts": 133_800, "fits": True, "source": "yosys-core"}
    # every stage has logic between its registers: at least one LUT level, and a popcount of
    # 128 inputs needs more than one LUT6 level
    assert set(s["logic_levels"]) == set(s["layers"]) and min(s["logic_levels"].values()) >= 1
    assert s["logic_levels"]["layer0"] >= 2
    assert "pnr" not in s and "vivado" not in s and "board_top" not in s
    # the pipeline options, as in design.json: the default core takes backpressure by ready/valid
    design = json.loads((digits_run / "build" / "design.json").read_text())
    assert s["pipeline"] == design["pipeline"] and s["pipeline"]["always_ready"] is False


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_sim_matches_golden_on_the_whole_test_set(digits_run, simulator):
    build = digits_run / "build"
    args = ["--random-ready"] if simulator == "icarus" else []
    proc = lutnet("sim", build, "--simulator", simulator, *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((build / f"sim-{simulator}" / "summary.json").read_text())
    train = json.loads((digits_run / "summary.json").read_text())
    assert s["vectors"] == len(datasets.load("digits").x_test) and s["mismatches"] == 0 and s["passed"]
    assert s["rtl_accuracy"] == train["test_accuracy"]


def test_report_prints_every_stage(digits_run):
    lutnet("sim", digits_run / "build", "--limit", "20")
    proc = lutnet("report", digits_run)
    assert proc.returncode == 0, proc.stderr
    for needle in ("Training", "layer0", "LUT6", "total", "verilator", "golden acc", "ready/valid"):
        assert needle in proc.stdout


def test_sim_fails_loudly_on_a_wrong_design(digits_run, tmp_path):
    """A build whose Verilog does not compute the IR's function must fail `lutnet sim`."""
    bad = tmp_path / "bad"
    proc = lutnet("build", digits_run, "-o", bad, "--no-synth")
    assert proc.returncode == 0, proc.stderr
    net = Network.load(bad / "model.npz")
    # The IR beside the Verilog now disagrees with it: invert every head weight.
    head = type(net.head)(weights=np.logical_not(net.head.weights))
    Network(net.encoder, net.layers, head, meta=net.meta).save(bad / "model.npz")
    proc = lutnet("sim", bad, "--limit", "30", "--simulator", "icarus")
    assert proc.returncode != 0
    s = json.loads((bad / "sim-icarus" / "summary.json").read_text())
    assert s["mismatches"] > 0 and s["first_mismatches"]


def test_non_editable_install_finds_generators_benches_and_boards(tmp_path):
    wheel_dir = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", wheel_dir, ROOT], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = wheel_dir.glob("lutnet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("lutnet/hdl/emit.py", "lutnet/sim/bench.py", "lutnet/sim/runner.py", "lutnet/boards/xc7.toml",
                   "lutnet/golden.py", "lutnet/cli.py"):
        assert needed in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import lutnet, lutnet.hdl.emit, lutnet.sim.bench, lutnet.targets as t; "
            "print(lutnet.__file__); print(t.known())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(site)) and "'xc7'" in proc.stdout


def test_lut_net_flow(tmp_path):
    """A LUT-Net through the same commands: about one LUT6 per neuron, RTL == golden.

    Measured: 63 LUTs for layer0's 60 neurons (57 LUT6 and a few small LUTs), the same with a
    single Yosys process; the bound allows Yosys's rounding of 10 %."""
    run = tmp_path / "lut"
    proc = lutnet("train", "-o", run, "--arch", "lut", "--k", "6", "--hidden", "60,30", "--levels", "2", "--epochs", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = lutnet("build", run)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads((run / "build" / "summary.json").read_text())
    assert 0 < s["layers"]["layer0"]["luts"] <= 66 and 0 < s["layers"]["layer1"]["luts"] <= 33
    proc = lutnet("sim", run / "build")
    assert proc.returncode == 0, proc.stderr[-2000:]
    sim = json.loads((run / "build" / "sim-verilator" / "summary.json").read_text())
    train = json.loads((run / "summary.json").read_text())
    assert sim["mismatches"] == 0 and sim["rtl_accuracy"] == train["test_accuracy"]
