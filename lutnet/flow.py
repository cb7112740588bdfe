"""The hardware half of the flow: IR -> Verilog + Yosys figures (build), RTL vs golden (sim).

Nothing here imports torch: both steps read only the IR file.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from . import datasets, golden, synth, targets
from .fsutil import atomic_dir, write_json
from .ir import IRError, Network

MODEL_FILE = "model.npz"


def resolve_model(path) -> Path:
    """A model is an IR file, or a directory holding ``model.npz`` (a train or build output)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise IRError(f"{path}: directory holds no {MODEL_FILE} (train first, or name the IR file)")
        return path / MODEL_FILE
    return path


def build(model, out_dir, *, board: str = "xc7", pipeline: dict | None = None, run_synth: bool = True,
          synth_jobs: int | None = None, slice_bits: int | None = None, log=print) -> dict:
    """Write ``lutnet_top.v``, ``design.json``, a copy of the IR and Yosys figures to ``out_dir``.

    Yosys maps each stage in its own process, at most ``synth_jobs`` at once, and layers of more
    than ``slice_bits`` weight bits in slices of neurons (see :func:`lutnet.synth.synthesize_stages`;
    the defaults come from ``$LUTNET_SYNTH_JOBS`` and ``$LUTNET_SYNTH_SLICE_BITS``)."""
    src = resolve_model(model)
    net = Network.load(src)
    target = targets.load(board)
    from .hdl.emit import PipelineOptions, generate

    pipeline = PipelineOptions(**(pipeline or {}))
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(src, tmp / MODEL_FILE)
        log(f"generating Verilog for {net.describe()}")
        design = generate(net, tmp, pipeline)
        summary = {"command": "build", "model": str(src), "network": net.describe(),
                   "verilog": "lutnet_top.v", "latency": design["latency"],
                   "meta": net.meta}
        if run_synth:
            from .hdl.top import LutnetTop

            log(f"synthesizing for {target.name} ({target.description}) with Yosys, stage by stage")
            report = synth.synthesize_stages(LutnetTop(net, options=pipeline), target,
                                             workers=synth_jobs, slice_bits=slice_bits, log=log)
            summary.update(board=target.name, luts=report["luts"], ffs=report["ffs"],
                           carry=report["carry"], lut_size=report["lut_size"], layers=report["layers"],
                           synthesis=report["synthesis"])
            how = report["synthesis"]
            if how["method"] == "sliced":
                cut = ", ".join(f"{k} in {v['count']}" for k, v in how["slices"].items())
                log(f"{report['luts']} LUT{report['lut_size']}, {report['ffs']} FFs: sum of {how['processes']} "
                    f"Yosys runs, sliced ({cut}): an upper bound (no sharing of adder subtrees across slices)")
            else:
                log(f"{report['luts']} LUT{report['lut_size']}, {report['ffs']} FFs: sum of "
                    f"{how['processes']} per-stage Yosys runs")
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / "summary.json", summary)
    return summary


def simulate(build_dir, *, simulator: str = "verilator", limit: int | None = None, data_dir=None,
             out_dir=None, random_ready: bool = False, log=print) -> dict:
    """Stream the model's test set through the RTL and compare with the golden model."""
    build_dir = Path(build_dir)
    if not (build_dir / "lutnet_top.v").is_file() or not (build_dir / "design.json").is_file():
        raise FileNotFoundError(f"{build_dir}: not a build directory (no lutnet_top.v/design.json); run `lutnet build` first")
    from .sim.runner import run as run_rtl

    net = Network.load(build_dir / MODEL_FILE)
    name = net.meta.get("dataset")
    if name is None:
        raise IRError(f"{build_dir / MODEL_FILE}: meta names no dataset to simulate")
    ds = datasets.load(name, data_dir if data_dir is not None else net.meta.get("data_dir"))
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive integer, not {limit}")
    x, y = ds.x_test[:limit], ds.y_test[:limit]
    expected = golden.run(net, x)
    out_dir = Path(out_dir) if out_dir else build_dir / f"sim-{simulator}"
    t0 = time.perf_counter()
    with atomic_dir(out_dir) as tmp:
        log(f"simulating {len(x)} test vectors on {simulator}")
        result = run_rtl(build_dir, x, expected.classes, expected.scores, simulator=simulator,
                         labels=y, random_ready=random_ready)
        summary = {"command": "sim", "simulator": simulator, "vectors": int(len(x)),
                   "mismatches": int(result["mismatches"]), "passed": bool(result["passed"]),
                   "errors": list(result.get("errors", [])),
                   "cycles": result.get("cycles"), "latency": result.get("measured_latency"),
                   "stream_seconds": result.get("seconds"),
                   "rtl_accuracy": result["rtl_accuracy"],
                   "golden_accuracy": float(np.mean(expected.classes == y)),
                   "first_mismatches": result.get("first_mismatches", []),
                   "seconds": round(time.perf_counter() - t0, 2)}
        write_json(tmp / "summary.json", summary)
    return summary
