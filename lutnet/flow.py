"""The hardware half of the flow: IR -> Verilog + Yosys figures (build), RTL vs golden (sim).

Nothing here imports torch: both steps read only the IR file.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np

from . import datasets, golden, synth, targets, vivado
from .fsutil import atomic_dir, write_json
from .ir import IRError, Network
from .pnr import STAGED_MIN_LUTS

MODEL_FILE = "model.npz"


def resolve_model(path) -> Path:
    """A model is an IR file, or a directory holding ``model.npz`` (a train or build output)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise IRError(f"{path}: directory holds no {MODEL_FILE} (train first, or name the IR file)")
        return path / MODEL_FILE
    return path


class BuildError(ValueError):
    """A build request that cannot be carried out (options that do not go together); one line."""


def _dataset_sample(net: Network, n: int, data_dir=None, where: str = "model"):
    """The first ``n`` test samples of the model's dataset and the golden model's classes."""
    name = net.meta.get("dataset")
    if name is None:
        raise IRError(f"{where}: meta names no dataset to verify on")
    ds = datasets.load(name, data_dir if data_dir is not None else net.meta.get("data_dir"))
    x = ds.x_test[:n]
    return x, golden.run(net, x).classes


def _fit(target, estimated: int, source: str) -> dict:
    return {"estimated_luts": int(estimated), "available_luts": int(target.capacity["luts"]),
            "fits": bool(estimated <= target.capacity["luts"]), "source": source}


def pipeline_options(pipeline: dict | None, place: bool = False):
    """The build's :class:`~lutnet.hdl.options.PipelineOptions`: ``pipeline`` (a dict of its
    fields), and with ``place`` relays, a one-LUT head and a free-running pipeline (behind the
    credit buffer, ``stall_free``, unless ``pipeline`` asks for ``always_ready``). A bad option is
    a :class:`BuildError`.

    >>> o = pipeline_options({"always_ready": True}, place=True)
    >>> o.relay_inputs, o.one_lut_head, o.stall_free, o.always_ready
    (True, True, False, True)
    >>> pipeline_options({}, place=True).stall_free
    True
    """
    from .hdl.options import PipelineOptions

    pipeline = dict(pipeline or {})
    if place:
        pipeline.update(relay_inputs=True, one_lut_head=True,
                        **({} if pipeline.get("always_ready") else {"stall_free": True}))
    try:
        return PipelineOptions(**pipeline)
    except ValueError as e:
        raise BuildError(f"pipeline options: {e}") from None


def build(model, out_dir, *, board: str = "xc7", pipeline: dict | None = None, run_synth: bool = True,
          core_only: bool = False, verify: int = 0, simulator: str = "verilator", data_dir=None,
          synth_jobs: int | None = None, slice_bits: int | None = None, place: bool = False,
          hops: bool | int = False, log=print) -> dict:
    """Write ``lutnet_top.v``, ``design.json``, a copy of the IR and Yosys figures to ``out_dir``.

    Yosys maps each stage in its own process, at most ``synth_jobs`` at once, and layers of more
    than ``slice_bits`` weight bits in slices of neurons (see :func:`lutnet.synth.synthesize_stages`;
    the defaults come from ``$LUTNET_SYNTH_JOBS`` and ``$LUTNET_SYNTH_SLICE_BITS``).

    ``board`` names a target (:func:`lutnet.targets.load`). On a board with pins (unless
    ``core_only``) the build also writes ``board_top.v`` (the core behind a UART) and ``board.json``;
    then, for a Lattice board, places and routes it with nextpnr (``pnr/``: bitstream, Fmax, the
    fabric's ceiling Fmax; the figures are those of the placed netlist, whose per-stage Yosys runs
    are the build's only synthesis), for a Xilinx board writes a Vivado project script (``vivado/``).
    Before any place and route the design must fit the part: an estimate from the IR (before
    Yosys) and the Yosys count (before nextpnr) are checked against the board file's capacity
    (:class:`lutnet.targets.FitError`). Part-only targets only report the fit. ``verify`` > 0
    simulates the board top on that many test samples of the model's dataset
    (:func:`lutnet.sim.board_runner.verify_board`) and records the result under ``verify``.

    ``place`` (ECP5): lutnet places the LUT layers itself by the net's layout
    (:func:`lutnet.placement.lock_layers`), with a relay register per neuron input, a
    free-running pipeline and a one-LUT head (``relay_inputs``, ``one_lut_head`` and, unless
    ``pipeline`` asks for ``always_ready``, ``stall_free`` are turned on), and a group-sum
    head's counters with them; nextpnr places the rest. Summary ``pnr.placement`` says what was
    locked. ``hops`` (with ``place``; a number of tiles, or True for
    :data:`lutnet.placement.HOP_TILES`): the head's counter stages get the hop registers that
    keep their routes within ``hops`` tiles (:func:`lutnet.placement.head_hops`), unless
    ``pipeline`` names ``head_hops``.
    """
    target = targets.load(board)
    src = resolve_model(model)
    net = Network.load(src)
    from .hdl.emit import generate

    if verify < 0:
        raise BuildError(f"--verify must be a non-negative number of samples, not {verify}")
    with_board = target.has_pins and not core_only
    if verify and not with_board:
        why = "--core-only builds no board top" if core_only else f"target {target.name} has no pins (part only)"
        raise BuildError(f"--verify simulates the board top, but {why}; pick a board with pins "
                         f"({', '.join(n for n in targets.known() if targets.load(n).has_pins)})")
    sample = _dataset_sample(net, verify, data_dir, str(src)) if verify else None
    pipeline = pipeline_options(pipeline, place)
    if pipeline.always_ready and with_board:
        raise BuildError("--always-ready builds a core without backpressure, which the board top's UART "
                         "cannot serve: add --core-only")
    if not isinstance(hops, int) or (hops < 1 and hops is not False):
        raise BuildError(f"--hops must be a positive number of tiles, not {hops!r}")
    if hops and not place:
        raise BuildError("--hops splits the routes of lutnet's placement: it needs --place")
    if place:
        from .placement import HOP_TILES, check_net, head_hops

        hops = HOP_TILES if hops is True else hops
        if target.family != "ecp5":
            raise BuildError(f"--place places LUT layers on the ECP5 only; {target.name} is {target.family} "
                             f"(ECP5 boards: {', '.join(n for n in targets.known() if targets.load(n).family == 'ecp5')})")
        if not run_synth:
            raise BuildError("--place needs synthesis (drop --no-synth)")
        check_net(net)
        if hops and not pipeline.head_hops:
            chosen = head_hops(net, pipeline, hops)
            pipeline = dataclasses.replace(pipeline, head_hops=chosen)
            log(f"head counter stages get {', '.join(map(str, chosen)) or 'no'} hop registers before their "
                f"relays (routes over {hops} tiles)")
    lattice = target.vendor == "lattice"
    t0 = time.perf_counter()

    # the cheap check first: minutes of Yosys and nextpnr are not spent on a net that cannot fit
    overhead = synth.BOARD_TOP_LUTS[target.lut_size] if with_board else 0
    estimate = synth.estimate_luts(net, target.lut_size) + overhead
    fit = _fit(target, estimate, "ir-estimate")
    if not fit["fits"]:
        if with_board and run_synth:
            raise targets.FitError.make(target, estimate, "estimated from the network")
        log(f"warning: an estimated {estimate} LUT{target.lut_size} exceed the {fit['available_luts']} of "
            f"{target.part} ({target.name})")

    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(src, tmp / MODEL_FILE)
        log(f"generating Verilog for {net.describe()}")
        design = generate(net, tmp, pipeline)
        summary = {"command": "build", "model": str(src), "network": net.describe(),
                   "verilog": "lutnet_top.v", "latency": design["latency"], "pipeline": design["pipeline"],
                   "meta": net.meta, "board": target.name, "target": target.summary()}
        if with_board:
            from .hdl.board import generate_board

            info = generate_board(net, tmp, clk_hz=target.clock["hz"], baud=target.uart["baud"],
                                  n_leds=target.n_leds, leds_active_low=bool(target.leds and target.leds["active_low"]),
                                  options=pipeline)
            summary["board_top"] = {"verilog": info["verilog"], "description": "board.json"}
            log(f"board top for {target.description}: UART {target.uart['baud']} baud, {target.n_leds} LEDs")
        # a large design on a Lattice part is mapped stage by stage for nextpnr (one flat WebAssembly
        # Yosys cannot hold it), and those runs give the build's figures; a small one is mapped flat
        # for nextpnr (fewer LUTs: constants cross stage boundaries) and per stage for the figures.
        # The board top's frame buffer counts as logic here.
        frame_bits = net.encoder.n_features * net.encoder.input_bits if with_board else 0
        staged = lattice and estimate + frame_bits >= STAGED_MIN_LUTS
        if run_synth and not staged:
            from .hdl.top import LutnetTop

            log(f"synthesizing for {target.name} ({target.description}) with Yosys, stage by stage")
            report = synth.synthesize_stages(LutnetTop(net, options=pipeline), target,
                                             workers=synth_jobs, slice_bits=slice_bits, log=log)
            summary.update(luts=report["luts"], ffs=report["ffs"], carry=report["carry"],
                           lut_size=report["lut_size"], layers=report["layers"],
                           logic_levels=report["logic_levels"], synthesis=report["synthesis"])
            how = report["synthesis"]
            if how["method"] == "sliced":
                cut = ", ".join(f"{k} in {v['count']}" for k, v in how["slices"].items())
                log(f"{report['luts']} LUT{report['lut_size']}, {report['ffs']} FFs: sum of {how['processes']} "
                    f"Yosys runs, sliced ({cut}): an upper bound (no sharing of adder subtrees across slices)")
            else:
                log(f"{report['luts']} LUT{report['lut_size']}, {report['ffs']} FFs: sum of "
                    f"{how['processes']} per-stage Yosys runs")
            log("logic levels per stage: " + ", ".join(f"{k} {v}" for k, v in report["logic_levels"].items()))
            fit = _fit(target, report["luts"] + overhead, "yosys-core" + ("+uart-estimate" if overhead else ""))
            if with_board and not lattice:
                try:
                    top_counts = synth.count_cells(tmp / "board_top.v", "board_top", target, log=log)
                    summary["board_top"].update(top_counts)
                    fit = _fit(target, top_counts["luts"], "yosys-board-top")
                except synth.SynthError as e:
                    # the whole board top in one 4 GiB WebAssembly Yosys: too large for big nets,
                    # whose core figures (above, per stage) still stand
                    if "out of memory" not in str(e):
                        raise
                    summary["board_top"]["note"] = f"not synthesized whole: {e}"
                    log("board top too large for one Yosys process; fit from the core count + UART estimate")
            if not fit["fits"] and with_board:
                raise targets.FitError.make(target, fit["estimated_luts"], "counted by Yosys")
            if with_board and not lattice:
                summary["vivado"] = vivado.write_project(tmp, target, [info["verilog"]], n_leds=target.n_leds)
                log(f"Vivado project script: {summary['vivado']['tcl']} (run: vivado -mode batch -source "
                    f"{summary['vivado']['tcl']})")
        if run_synth and lattice and (fit["fits"] or staged):
            summary["pnr"], fit = _lattice_pnr(tmp, target, with_board, staged, synth_jobs, log,
                                               net if place else None)
            if staged:
                # the placed design's figures: with a board top, its UART and frame buffer are in
                # the glue (cells are named after nets, so they do not split from the core's glue)
                how = summary["pnr"]["synthesis"]
                summary.update({k: summary["pnr"][k] for k in ("luts", "ffs", "carry")}, lut_size=target.lut_size,
                               layers={k: v for k, v in how["stage_counts"].items() if k != "glue"},
                               logic_levels=how["logic_levels"], synthesis=how)
            if with_board:
                summary["board_top"].update({k: summary["pnr"][k] for k in ("luts", "ffs", "carry")})
        elif run_synth and lattice:
            log(f"place and route skipped: the core needs {fit['estimated_luts']} LUT4, {target.part} has "
                f"{fit['available_luts']}")
            summary["pnr"] = None
        elif with_board and not lattice and not run_synth:
            summary["vivado"] = vivado.write_project(tmp, target, [info["verilog"]], n_leds=target.n_leds)
        summary["fit"] = fit
        if not fit["fits"]:
            log(f"warning: {fit['estimated_luts']} LUT{target.lut_size} ({fit['source']}) exceed the "
                f"{fit['available_luts']} of {target.part}")
        if sample is not None:
            from .sim.board_runner import verify_board

            x, expected = sample
            log(f"verifying the board top on {len(x)} test samples over the simulated UART ({simulator})")
            result = verify_board(tmp, x, expected, simulator=simulator, log=log)
            result.pop("got_classes", None)
            summary["verify"] = result
            log(f"verify: {result['vectors']} frames, {result['mismatches']} mismatches, "
                f"{'passed' if result['passed'] else 'FAILED'}")
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        write_json(tmp / "summary.json", summary)
    return summary


#: The timing goal of a core placed by lutnet (``--place --core-only``), as a share of the fabric
#: ceiling: the issue's target. nextpnr's router then rips up and routes again the nets that miss
#: it (``--tmg-ripup``): on the local MNIST core 462.3 against 426.1 MHz with the board clock
#: (25 MHz) as the goal, before the hops were placed for their routes (466.9 MHz now); the
#: digits core was above the goal already (473.9 MHz). A goal out of reach (475 MHz and more on
#: that MNIST core) left the routes as they were.
PLACE_GOAL = 0.8


def _lattice_pnr(tmp: Path, target, with_board: bool, staged: bool, workers: int | None,
                 log, place_net: Network | None = None) -> tuple[dict, dict]:
    """Synthesize (flat, or stage by stage if ``staged``: then with per-stage counts of the placed
    netlist and logic levels, see :func:`lutnet.pnr.place_and_route`), then place and route on a
    Lattice part (``tmp/pnr``): the board top with its pins, or the core alone; plus the fabric's
    ceiling Fmax on the same part and the ratio to it. Returns the result and the fit check on
    the Yosys count, made before nextpnr: a board top that does not fit is a FitError, a core is
    only not placed. ``place_net``: lock its LUT layers where its layout puts them
    (:func:`lutnet.placement.lock_layers`)."""
    from . import pnr
    from .placement import lock_layers

    work = tmp / "pnr"
    top, verilog = ("board_top", "board_top.v") if with_board else ("lutnet_top", "lutnet_top.v")
    core = "board_top.core" if with_board else top
    stages = pnr.child_modules(tmp / verilog, core) if staged else None
    fit = {}

    def check(counts):
        fit.update(_fit(target, counts["luts"], "yosys-board-top" if with_board else "yosys-core"))
        if fit["fits"]:
            return None
        if with_board:
            raise targets.FitError.make(target, counts["luts"], "counted by Yosys")
        return f"the core needs {counts['luts']} LUT4, {target.part} has {fit['available_luts']}"

    log(f"place and route of {top} on {target.part} ({target.device}/{target.package}) with nextpnr"
        + (f" (Yosys stage by stage: {len(stages)} stages + glue)" if stages else ""))
    place = None
    if place_net is not None:
        prefix = core[len(top) + 1:] + "." if core != top else ""

        def place(module, skip_rows):
            return lock_layers(module, place_net, prefix, skip_rows)

    ceiling = goal = None
    if place is not None and not with_board:
        # a core placed by lutnet is routed for PLACE_GOAL of the ceiling, the late nets ripped up
        log("fabric ceiling: register -> LUT4 -> register on the same part")
        ceiling = pnr.fabric_ceiling(target, work, board_pins=False, log=log)
        goal = round(PLACE_GOAL * ceiling, 1)
    result = pnr.place_and_route(work, [tmp / verilog], top, target, board_pins=with_board, stages=stages,
                                 workers=workers, check=check, stage_parent=core, place=place,
                                 freq_mhz=goal, ripup=goal is not None, log=log)
    if "placement" in result:
        p = result["placement"]
        log(f"locked {p['neurons']} neurons ({p['luts']} with their LUT, {p['relays']} relays), "
            f"{p['head_counters']} head counters ({p['head_registers']} registers, {p['head_hops']} hops), "
            f"{p['argmax_groups']} argmax relay groups ({p['argmax_cells']} cells, {p['argmax_chained']} delay "
            f"registers) and "
            f"{p['encoder_bits']} encoder bits on {p['tiles']} tiles; not locked: {p['not_locked'] or 'none'}")
    if stages:
        how = result["synthesis"]
        log(f"{result['luts']} LUT{target.lut_size}, {result['ffs']} FFs in the placed netlist; per stage: "
            + ", ".join(f"{k} {v['luts']}" for k, v in how["stage_counts"].items()))
        log("logic levels per stage: " + ", ".join(f"{k} {v}" for k, v in how["logic_levels"].items()))
    if result.get("bitstream"):
        result["bitstream"] = f"pnr/{result['bitstream']}"
    if result.get("fmax_mhz") is not None:
        if ceiling is None:
            log("fabric ceiling: register -> LUT4 -> register on the same part")
            ceiling = pnr.fabric_ceiling(target, work, board_pins=with_board, log=log)
        result["ceiling_mhz"] = ceiling
        result["fmax_ratio"] = round(result["fmax_mhz"] / ceiling, 3)
        log(f"Fmax {result['fmax_mhz']} MHz = {100 * result['fmax_ratio']:.0f} % of the fabric ceiling "
            f"{ceiling} MHz; bitstream {result.get('bitstream')}")
        if result.get("stage_timing"):
            log("slowest register input per stage (arrival, ns): " + ", ".join(
                f"{k} {t['worst_ns']:.2f}" + (" (critical path)" if k == result["critical_stage"] else "")
                for k, t in result["stage_timing"].items()))
    else:
        result["ceiling_mhz"], result["fmax_ratio"] = None, None
    return result, fit


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
                         labels=y, random_ready=random_ready, log=log)
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
