"""`lutnet report`: tables from synthetic summaries, the Pareto front, XNOR-vs-LUT pairing, the
written Markdown/HTML/PNG report, and a confusion matrix of a real (tiny) trained network."""
import base64
import json
import re
import shutil

import numpy as np
import pytest

from lutnet import datasets, golden, report
from lutnet.ir import Network
from lutnet.train import TrainConfig, train
from test_cli import assert_user_error, lutnet

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_summary(d, s):
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps(s))
    return d


def train_summary(network, acc, seconds=12.5, torch_acc=None, dataset="digits"):
    return {"command": "train", "finished": True, "dataset": dataset, "network": network, "epochs": 3,
            "test_accuracy": acc, "torch_test_accuracy": torch_acc if torch_acc is not None else acc,
            "test_samples": 359, "seconds": seconds, "model": "model.npz"}


def build_summary(model, network, layers, acc, *, board="xc7", seconds=40.0, pnr=None, dataset="digits", **extra):
    s = {"command": "build", "model": str(model), "network": network, "verilog": "lutnet_top.v", "latency": 5,
         "meta": {"dataset": dataset, "test_accuracy": acc, "test_samples": 359}, "board": board, "lut_size": 6,
         "layers": {k: {"luts": v[0], "ffs": v[1], "carry": 0} for k, v in layers.items()},
         "luts": sum(v[0] for v in layers.values()) + 1, "ffs": sum(v[1] for v in layers.values()) + 5,
         "carry": 0, "seconds": seconds}
    if pnr:
        s["pnr"] = pnr
    return {**s, **extra}


XNOR_NET = "64x5b->64 (T=1) -> xnor64 -> xnor64 -> head10"
LUT_NET = "64x5b->64 (T=1) -> lut200 -> lut100 -> head10"
XNOR_LAYERS = {"head": (1185, 144), "encoder": (64, 64), "layer1": (4252, 64), "layer0": (4422, 64)}
LUT_LAYERS = {"encoder": (64, 64), "layer0": (190, 200), "layer1": (98, 100), "head": (120, 40)}


@pytest.fixture
def runs(tmp_path):
    """A teacher (XNOR) train run with a board build + sim, and a distilled LUT-Net with a build."""
    teacher = write_summary(tmp_path / "teacher", train_summary(XNOR_NET, 0.86, seconds=30.0, torch_acc=0.87))
    (teacher / "model.npz").write_bytes(b"teacher bytes")
    tb = write_summary(teacher / "build", build_summary(
        teacher / "model.npz", XNOR_NET, XNOR_LAYERS, 0.86, board="icebreaker", seconds=321.0,
        pnr={"luts": 9000, "ffs": 400, "fmax_mhz": 55.25, "ceiling_mhz": 250.0, "fmax_ratio": 0.221},
        fit={"estimated_luts": 9100, "available_luts": 5280, "fits": False},
        verify={"simulator": "verilator", "vectors": 20, "mismatches": 0, "passed": True}))
    (tb / "model.npz").write_bytes(b"teacher bytes")
    write_summary(tb / "sim-verilator", {"command": "sim", "simulator": "verilator", "vectors": 359, "mismatches": 0,
                                         "passed": True, "errors": [], "rtl_accuracy": 0.86, "golden_accuracy": 0.86,
                                         "seconds": 8.4})
    student = write_summary(tmp_path / "student", {
        "command": "distill", "model": "model.npz", "seconds": 12.0,
        "teacher": {"path": str(teacher), "arch": "bnn", "test_accuracy": 0.86, "network": XNOR_NET},
        "student": {"network": LUT_NET, "test_accuracy": 0.84},
        "steps": [{"step": 0, "teacher_accuracy": 0.86, "student_accuracy": 0.84, "seconds": 12.0}]})
    (student / "model.npz").write_bytes(b"student bytes")
    # built elsewhere, found only through the bytes of its model copy
    sb = write_summary(tmp_path / "elsewhere" / "sb", build_summary(
        "/nonexistent/student/model.npz", LUT_NET, LUT_LAYERS, 0.84, board="icebreaker", seconds=20.0,
        logic_levels={"encoder": 1, "layer0": 2, "layer1": 2, "head": 5}))
    (sb / "model.npz").write_bytes(b"student bytes")
    return tmp_path


def test_pareto_front_is_the_undominated_points():
    pts = [(100, 0.90), (50, 0.80), (200, 0.85), (50, 0.70), (300, 0.95), (100, 0.90)]
    # (200, .85) is beaten by (100, .90); (50, .70) by (50, .80); the duplicate (100, .90) stays
    assert report.pareto_front(pts) == [1, 0, 5, 4]
    assert report.pareto_front([]) == []
    assert report.pareto_front([(7, 0.1)]) == [0]
    rng = np.random.default_rng(1)
    pts = [tuple(p) for p in rng.random((40, 2))]
    front = report.pareto_front(pts)
    for i, (c, a) in enumerate(pts):   # every other point is beaten by a front point
        if i not in front:
            assert any(pts[j][0] <= c and pts[j][1] >= a for j in front)
    assert [pts[i][1] for i in front] == sorted(pts[i][1] for i in front)  # accuracy rises with cost


def test_compare_gives_per_stage_figures_and_the_ratio():
    a = build_summary("a", XNOR_NET, XNOR_LAYERS, 0.86)
    b = build_summary("b", LUT_NET, LUT_LAYERS, 0.84)
    c = report.compare([a, b], ["XNOR", "LUT"])
    assert c["stages"] == ["encoder", "layer0", "layer1", "head", "total"]
    assert c["luts"]["layer0"] == [4422, 190] and c["ffs"]["layer1"] == [64, 100]
    assert c["luts"]["total"] == [a["luts"], b["luts"]] and c["ffs"]["total"] == [a["ffs"], b["ffs"]]
    assert [col["form"] for col in c["columns"]] == ["XNOR", "LUT"]
    assert [col["accuracy"] for col in c["columns"]] == [0.86, 0.84]
    assert c["lut_ratio"]["layer0"] == pytest.approx(190 / 4422)
    three = report.compare([a, b, a])
    assert "lut_ratio" not in three and three["luts"]["head"] == [1185, 120, 1185]
    assert report.form("8x1b->8 (T=1) -> xnor4 -> lut8 -> head2") == "mixed"


def test_text_report_numbers_and_xnor_lut_pairing(runs):
    summaries = report.collect([runs, runs / "teacher"])   # overlapping paths: each run once
    assert len(summaries) == 5
    data = report.analyse(summaries)
    (pair,) = data["pairs"]
    assert pair["teacher"].endswith("teacher/build") and pair["student"].endswith("elsewhere/sb")
    assert pair["luts"]["layer0"] == [4422, 190] and pair["ffs"]["head"] == [144, 40]
    assert [c["accuracy"] for c in pair["columns"]] == [0.86, 0.84]  # teacher: RTL over the whole test set
    student = next(m for m in data["models"] if m["kind"] == "distill")
    assert [b["_path"] for b in student["builds"]] == [pair["student"]]
    text = report.render(summaries)
    assert "binarized (XNOR) form and distilled LUT form" in text
    row = next(l for l in text.splitlines() if l.startswith("layer0") and "4422" in l and "190" in l)
    assert "0.043" in row                                 # 190 / 4422 LUTs
    hardware = sorted(re.split(r"\s{2,}", l.strip()) for l in text.splitlines() if l.startswith("icebreaker"))
    assert hardware == [  # board, part, latency, backpressure (not recorded by these builds), P&R
        # LUT/FF, Fmax, ceiling, ratio, fits, board check, build time; "-" where the build did no
        # place and route
        ["icebreaker", "-", "5 cycles", "-", "-", "-", "-", "-", "-", "-", "20.0 s"],
        ["icebreaker", "-", "5 cycles", "-", "9000/400", "55.2 MHz", "250.0 MHz", "0.22", "NO (9100/5280 LUTs)",
         "passed (20 vectors)", "321.0 s"]]
    assert "30.0 s" in text and "87.00 %" in text                           # training time, torch accuracy
    rows = [l.split() for l in text.splitlines()]
    assert ["head", "120", "40", "0", "5"] in rows and ["total", "473", "409", "0", "5"] in rows  # logic levels
    assert ["head", "1185", "144", "0"] in rows                              # the teacher's build: none measured
    assert "Where the clock goes" not in text                               # no per-stage timing recorded


TIMED_PNR = {"luts": 300, "ffs": 500, "fmax_mhz": 300.0, "ceiling_mhz": 500.0, "fmax_ratio": 0.6,
             "critical_stage": "head",
             "stage_timing": {"glue": {"endpoints": 3, "median_ns": 1.5, "worst_ns": 2.0},
                              "head": {"endpoints": 40, "median_ns": 2.25, "worst_ns": 3.125},
                              "layer0": {"endpoints": 20, "median_ns": 1.75, "worst_ns": 2.5}}}


def test_where_the_clock_goes(tmp_path):
    write_summary(tmp_path / "b", build_summary("/x/model.npz", LUT_NET, LUT_LAYERS, 0.84, board="ulx3s-85f",
                                                pnr=TIMED_PNR))
    text = report.render(report.collect([tmp_path]))
    assert "Where the clock goes" in text
    rows = [re.split(r"\s{2,}", l.strip()) for l in text.splitlines()]
    timing = [r for r in rows if r[0] in ("layer0", "head (critical path)", "glue") and len(r) == 6]
    assert timing == [  # data-flow order; the bound is 1000 / slowest arrival, and its ratio to the ceiling
        ["layer0", "20", "1.75 ns", "2.50 ns", "400.0 MHz", "0.80"],
        ["head (critical path)", "40", "2.25 ns", "3.12 ns", "320.0 MHz", "0.64"],
        ["glue", "3", "1.50 ns", "2.00 ns", "500.0 MHz", "1.00"]]
    assert "Placed by lutnet" not in text


def test_placement_paragraph(tmp_path):
    placement = {"neurons": 98, "luts": 95, "relays": 366, "encoder_bits": 62, "tiles": 98, "square": 10,
                 "skip_rows": [10], "not_locked": {"neuron: constant or unread": 6}}
    write_summary(tmp_path / "b", build_summary("/x/model.npz", LUT_NET, LUT_LAYERS, 0.84, board="ulx3s-85f",
                                                pnr={**TIMED_PNR, "placement": placement}))
    text = " ".join(report.render(report.collect([tmp_path])).split())
    assert ("Placed by lutnet (--place): 98 LUT neurons (95 with their LUT) and 366 relays locked one neuron a "
            "tile on 98 tiles (a square of 10), 62 encoder bits in the tiles' spare flip-flops; rows without "
            "slices left out: 10. Not locked: neuron: constant or unread: 6.") in text


def test_pairing_falls_back_to_the_path_and_all_builds_are_compared(runs):
    """A distill run whose teacher path is relative to the distill folder; a third build that is
    paired with nothing still appears in the comparison of all builds and on the Pareto plot."""
    s = json.loads((runs / "student" / "summary.json").read_text())
    s["teacher"]["path"] = "../teacher/model.npz"
    (runs / "student" / "summary.json").write_text(json.dumps(s))
    write_summary(runs / "other", build_summary("/x/model.npz", XNOR_NET, XNOR_LAYERS, 0.80, seconds=1.0))
    data = report.analyse(report.collect([runs]))
    assert len(data["pairs"]) == 1
    assert len(data["comparison"]["columns"]) == 3
    pts = {p["build"].split("/")[-1]: p for p in data["pareto"]["points"]}
    # "other" costs what the teacher costs at lower accuracy: dominated
    assert pts["other"]["front"] is False and pts["build"]["front"] and pts["sb"]["front"]
    # a LUT4 build is not compared with LUT6 builds: on its own front, however many LUTs
    write_summary(runs / "lut4", build_summary("/x/model.npz", XNOR_NET, XNOR_LAYERS, 0.50, lut_size=4,
                                               luts=10 ** 6))
    pts = {p["build"].split("/")[-1]: p for p in report.analyse(report.collect([runs]))["pareto"]["points"]}
    assert pts["lut4"]["front"] and pts["lut4"]["lut_size"] == 4 and pts["other"]["front"] is False


def test_written_report_embeds_every_plot(runs, tmp_path):
    out = tmp_path / "rep"
    # a third build, placed and routed on ECP5 with per-stage timing: its own timing plot
    write_summary(runs / "timed", build_summary("/x/model.npz", LUT_NET, LUT_LAYERS, 0.84, board="ulx3s-85f",
                                                pnr=TIMED_PNR))
    record = report.write(report.collect([runs]), out, log=lambda m: None)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f for f in record["files"] if f.endswith(".png"))
    assert {"pareto.png", "comparison.png"} <= set(pngs) and sum(p.startswith("pair-") for p in pngs) == 1
    timing = [p for p in pngs if p.startswith("timing-")]
    assert sum(p.startswith("cost-") for p in pngs) == 3 and len(timing) == 1 and "timed" in timing[0]
    for p in pngs:
        assert (out / p).read_bytes().startswith(PNG_MAGIC)
    page = (out / "report.html").read_text()
    embedded = [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]
    assert sorted(embedded) == sorted((out / p).read_bytes() for p in pngs)
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    md = (out / "report.md").read_text()
    assert all(f"]({p})" in md for p in pngs)
    assert "| layer0 | 4422 | 64 | 190 | 200 |" in md
    # the fake model files are no networks: the report says so instead of failing
    assert "No confusion matrix" in md and record["confusion_errors"]
    # a second report replaces the first; anything else is refused
    report.write(report.collect([runs]), out, log=lambda m: None)
    with pytest.raises(report.ReportError, match="not a previous lutnet report"):
        report.write(report.collect([runs]), runs / "teacher", log=lambda m: None)
    assert (runs / "teacher" / "summary.json").is_file() and not (runs / "teacher" / "report.md").exists()


def test_cli_report_errors_are_one_line(runs, tmp_path):
    (runs / "broken").mkdir()
    (runs / "broken" / "summary.json").write_text("{not json")
    assert_user_error(lutnet("report", runs), "broken", "not a readable summary")
    shutil.rmtree(runs / "broken")
    assert_user_error(lutnet("report", runs, "-o", runs / "teacher"), "not a previous lutnet report")
    proc = lutnet("report", runs, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "Model" in proc.stdout and (tmp_path / "out" / "report.html").is_file()


def test_confusion_matrix_of_a_trained_net(tmp_path):
    run = tmp_path / "run"
    s = train(TrainConfig(epochs=1, hidden=(16,), train_limit=400), run, progress=False)
    data = report.analyse(report.collect([run]), confusion=True, log=lambda m: None)
    (model,) = data["models"]
    cm = model["confusion"]
    ds = datasets.load("digits")
    assert cm.shape == (10, 10) and cm.sum() == len(ds.y_test)
    assert np.array_equal(cm.sum(axis=1), np.bincount(ds.y_test, minlength=10))   # rows: true classes
    predicted = golden.predict(Network.load(run / "model.npz"), ds.x_test)
    assert np.array_equal(cm.sum(axis=0), np.bincount(predicted, minlength=10))   # columns: predictions
    assert np.trace(cm) / cm.sum() == pytest.approx(s["test_accuracy"])
    text = report.to_text(report.document(data))
    assert f"accuracy {100 * s['test_accuracy']:.2f} %" in text


def test_a_moved_teacher_is_found_by_network_and_accuracy(runs):
    s = json.loads((runs / "student" / "summary.json").read_text())
    s["teacher"]["path"] = "/gone/teacher"
    (runs / "student" / "summary.json").write_text(json.dumps(s))
    (pair,) = report.analyse(report.collect([runs]))["pairs"]
    assert pair["teacher"].endswith("teacher/build")
    s["teacher"]["test_accuracy"] = 0.5   # another net of the same shape: no pairing
    (runs / "student" / "summary.json").write_text(json.dumps(s))
    assert report.analyse(report.collect([runs]))["pairs"] == []
