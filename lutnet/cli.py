"""The ``lutnet`` command: parses arguments and calls library functions, nothing else."""
from __future__ import annotations

import argparse
import os
import sys


def _int_at_least(low: int, what: str):
    """An argparse type: an integer of at least ``low``, else "must be WHAT, not ..."."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be {what}, not {v}")
        return v
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_count = _int_at_least(0, "a non-negative integer")


def _boards() -> list:
    from .targets import known

    return known()


def _widths(text: str) -> tuple:
    try:
        w = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 256,256, not {text!r}") from None
    if not w or min(w) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers such as 256,256, not {text!r}")
    return w


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="lutnet", description="Train binary neural networks and turn them into verified FPGA hardware.")
    p.add_argument("--version", action="version", version=f"lutnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a binarized network and freeze it to an IR file")
    t.add_argument("-o", "--out", required=True, help="output directory (checkpoints, model.npz, summary.json)")
    t.add_argument("--dataset", default="digits", choices=["digits", "mnist", "idx"])
    t.add_argument("--data-dir", default=None, help="directory of IDX files (default: $LUTNET_DATA, then download)")
    t.add_argument("--arch", default="bnn", choices=["bnn", "lut"],
                   help="bnn: binarized XNOR-popcount layers; lut: K-input LUT neurons with a group-sum head")
    t.add_argument("--k", type=int, default=6, help="inputs per LUT neuron, 2..6 (--arch lut)")
    t.add_argument("--wiring", default="random", choices=["random", "serial", "learned"],
                   help="LUT input wiring (--arch lut): fixed random (default), fixed serial, or learned while training")
    t.add_argument("--local", type=_positive_float, default=None, metavar="R",
                   help="--arch lut: every neuron reads only bits within R (a fraction of the layout's side, e.g. 0.1) "
                        "of its own position, so that placement can keep every route short")
    t.add_argument("--hidden", type=_widths, default=(64, 64), help="hidden layer widths (default 64,64)")
    t.add_argument("--levels", type=_positive_int, default=1, help="input encoder levels: 1 = threshold, >1 = thermometer")
    t.add_argument("--binarization", default="deterministic", choices=["deterministic", "stochastic"])
    t.add_argument("--epochs", type=_positive_int, default=30)
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: all cores)")
    t.add_argument("--device", default="auto", help="torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")

    d = sub.add_parser("distill", help="turn a trained binarized net into a LUT-Net, layer by layer")
    d.add_argument("teacher", help="train directory of a binarized net (model.npz, checkpoint.pt) or its IR file")
    d.add_argument("-o", "--out", required=True, help="output directory (model.npz, summary.json)")
    d.add_argument("--k", type=int, default=6, help="inputs per student LUT, 2..6 (default 6)")
    d.add_argument("--rule", default="weight", choices=["weight", "corr", "random"],
                   help="wiring: the teacher neuron's inputs of largest |w| (default), of largest correlation, or random")
    d.add_argument("--tree", action="store_true", help="two-level LUT tree per teacher neuron (K*K inputs -> K LUTs -> 1 LUT)")
    d.add_argument("--group", type=_positive_int, default=20, help="head LUTs per class (group-sum head, default 20)")
    d.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs on the labels (0 = none, default 10)")
    d.add_argument("--fixed-wiring", action="store_true", help="keep the distilled wiring while fine-tuning")
    d.add_argument("--local", type=_positive_float, default=None, metavar="R",
                   help="every student neuron reads only bits within R (a fraction of the layout's side, e.g. 0.1) "
                        "of its own position, so that placement can keep every route short")
    d.add_argument("--keep-xnor", type=int, default=0, metavar="N",
                   help="keep the teacher's first N layers as XNOR layers: a mixed XNOR-then-LUT net")
    d.add_argument("--lr", type=_positive_float, default=None)
    d.add_argument("--batch-size", type=_positive_int, default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default 1)")
    d.add_argument("--device", default="auto", help="fine-tuning device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    d.add_argument("--data-dir", default=None, help="IDX directory (default: the teacher's)")

    b = sub.add_parser("build", help="generate Verilog and report LUT/FF use (Yosys)")
    b.add_argument("model", help="IR file, or a train directory holding model.npz")
    b.add_argument("-o", "--out", default=None, help="output directory (default: MODEL_DIR/build)")
    b.add_argument("--board", default="xc7", metavar="NAME",
                   help=f"target board or part (default xc7: Xilinx 7-series LUT6); known: {', '.join(_boards())}; "
                        "more from board files in $LUTNET_BOARDS")
    b.add_argument("--core-only", action="store_true",
                   help="the network core only: no UART board top, no bitstream (Lattice: core place and route)")
    b.add_argument("--verify", type=_count, default=0, metavar="N",
                   help="simulate the board top over its UART on the first N test samples of the model's dataset")
    b.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"], help="for --verify")
    b.add_argument("--layers-per-stage", type=_positive_int, default=1, help="pipeline register every N layers")
    b.add_argument("--adder-levels-per-stage", type=_positive_int, default=None, help="register every N adder-tree levels")
    b.add_argument("--argmax-levels-per-stage", type=_positive_int, default=None, help="register every N argmax levels")
    b.add_argument("--register-comparisons", action="store_true",
                   help="register every argmax comparison before its selection (about one LUT level per stage)")
    b.add_argument("--stall-free", action="store_true",
                   help="free-running pipeline (no clock enables); backpressure taken by a credit-counted output buffer")
    b.add_argument("--always-ready", action="store_true",
                   help="free-running pipeline without backpressure (no ready ports: every result is "
                        "valid for one cycle, LogicNets-style); needs --core-only")
    b.add_argument("--split-lut6", action="store_true",
                   help="register 6-input LUT neurons as two 5-input halves + their 6th input (one more cycle per K=6 layer)")
    b.add_argument("--relays", action="store_true",
                   help="a register per LUT neuron input, so every stage is a route or one LUT "
                        "beside its inputs (one more cycle per LUT layer)")
    b.add_argument("--one-lut-head", action="store_true",
                   help="build the head with one LUT4 between registers: class counts as stages of "
                        "counters, argmax by 2-bit chunks (more cycles and LUTs, for the clock)")
    b.add_argument("--place", action="store_true",
                   help="ECP5: place the LUT layers by the net's layout, a neuron and its relays a tile, "
                        "and a group-sum head's counters among them (turns on --relays, --one-lut-head "
                        "and, without --always-ready, --stall-free); a core alone is routed for 0.8 of "
                        "the fabric ceiling")
    b.add_argument("--hops", type=_positive_int, nargs="?", const=True, default=False, metavar="TILES",
                   help="with --place: registers along the head counters' long routes, so that none "
                        "crosses more than TILES tiles (default 10, placement.HOP_TILES; more cycles)")
    b.add_argument("--no-synth", action="store_true", help="only write Verilog, skip Yosys")

    s = sub.add_parser("sim", help="check the RTL against the golden model on the test set")
    s.add_argument("build_dir", help="output directory of `lutnet build`")
    s.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    s.add_argument("--limit", type=_positive_int, default=None, help="only the first N test vectors")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--random-ready", action="store_true",
                   help="random input gaps and output ready (backpressure; input gaps only with --always-ready)")
    s.add_argument("-o", "--out", default=None, help="output directory (default: BUILD_DIR/sim-SIMULATOR)")

    c = sub.add_parser("classify", help="run the test set through a board over a serial port")
    c.add_argument("model", metavar="BUILD_DIR_OR_MODEL", help="board build directory (or train directory / IR file)")
    c.add_argument("--port", required=True, help="serial device (/dev/ttyUSB1, COM3) or pyserial URL")
    c.add_argument("--baud", type=_positive_int, default=None, help="baud rate (default: the build's, else 115200)")
    c.add_argument("--limit", type=_positive_int, default=None, help="only the first N test samples")
    c.add_argument("--timeout", type=_positive_float, default=2.0, help="seconds to wait for an answer (default 2)")
    c.add_argument("--data-dir", default=None)

    r = sub.add_parser("report", help="print train/distill/build/sim summaries found under directories")
    r.add_argument("paths", nargs="+")
    r.add_argument("-o", "--out", default=None,
                   help="also write report.md, report.html and PNG plots to this directory (default: print only)")
    return p


def _train(a):
    from .train import TrainConfig, train

    overrides = {k: v for k, v in (("batch_size", a.batch_size), ("lr", a.lr), ("threads", a.threads)) if v is not None}
    config = TrainConfig(dataset=a.dataset, arch=a.arch, k=a.k, wiring=a.wiring, local=a.local, device=a.device, data_dir=a.data_dir, hidden=a.hidden, levels=a.levels,
                         binarization=a.binarization, epochs=a.epochs, seed=a.seed, **overrides)
    s = train(config, a.out, resume=a.resume)
    print(f"test accuracy {100 * s['test_accuracy']:.2f} % (golden model on the frozen IR), "
          f"{s['epochs']} epochs in {s['seconds']:.0f} s -> {os.path.join(a.out, 'model.npz')}")


def _distill(a):
    from .distill import DistillConfig, distill

    overrides = {k: v for k, v in (("lr", a.lr), ("batch_size", a.batch_size), ("threads", a.threads)) if v is not None}
    config = DistillConfig(k=a.k, rule=a.rule, tree=a.tree, group=a.group, finetune_epochs=a.epochs,
                           learn_wiring=not a.fixed_wiring, local=a.local, keep_xnor=a.keep_xnor, seed=a.seed, device=a.device, data_dir=a.data_dir, **overrides)
    s = distill(a.teacher, a.out, config)
    print(f"teacher {100 * s['teacher']['test_accuracy']:.2f} % ({s['teacher']['network']}) -> student "
          f"{100 * s['test_accuracy']:.2f} % ({s['student']['luts']} LUT neurons) in {s['seconds']:.0f} s "
          f"-> {os.path.join(a.out, 'model.npz')}")


def _build(a):
    from . import flow

    out = a.out or os.path.join(os.path.dirname(flow.resolve_model(a.model)) or ".", "build")
    pipeline = dict(layers_per_stage=a.layers_per_stage, adder_levels_per_stage=a.adder_levels_per_stage,
                    register_comparisons=a.register_comparisons, stall_free=a.stall_free,
                    always_ready=a.always_ready, split_lut6=a.split_lut6, relay_inputs=a.relays,
                    one_lut_head=a.one_lut_head)
    if a.argmax_levels_per_stage is not None:
        pipeline["argmax_levels_per_stage"] = a.argmax_levels_per_stage
    s = flow.build(a.model, out, board=a.board, pipeline=pipeline, run_synth=not a.no_synth,
                   core_only=a.core_only, verify=a.verify, simulator=a.simulator, place=a.place,
                   hops=a.hops)
    figures = f"{s['luts']} LUT{s['lut_size']}, {s['ffs']} FF, {s['carry']} carry" if "luts" in s else "synthesis skipped"
    print(f"{figures}, latency {s['latency']} cycles -> {out}")
    pnr = s.get("pnr")
    if pnr and pnr.get("fmax_mhz") is not None:
        print(f"{s['board']}: Fmax {pnr['fmax_mhz']} MHz ({100 * pnr['fmax_ratio']:.0f} % of the fabric's "
              f"{pnr['ceiling_mhz']} MHz), bitstream {pnr.get('bitstream') or 'none (core only)'}")
    if "vivado" in s:
        print(f"{s['board']}: Vivado project script {os.path.join(out, s['vivado']['tcl'])} "
              f"(vivado -mode batch -source it)")
    v = s.get("verify")
    if v is not None:
        print(f"verify ({v['simulator']}): {v['vectors']} frames over the UART, {v['mismatches']} mismatches")
        for e in v["errors"]:
            print(f"lutnet build: {e}", file=sys.stderr)
        if v["mismatches"] or not v["passed"]:
            raise SystemExit(1)


def _sim(a):
    from . import flow

    s = flow.simulate(a.build_dir, simulator=a.simulator, limit=a.limit, data_dir=a.data_dir,
                      out_dir=a.out, random_ready=a.random_ready)
    print(f"{s['simulator']}: {s['vectors']} vectors, {s['mismatches']} mismatches, "
          f"RTL accuracy {100 * s['rtl_accuracy']:.2f} %, {s['seconds']:.1f} s")
    for e in s["errors"]:
        print(f"lutnet sim: {e}", file=sys.stderr)
    if s["mismatches"] or not s["passed"]:
        raise SystemExit(1)


def _report(a):
    from . import report

    if a.out:
        report.check_out_dir(a.out)   # refuse before the work, not after it
    summaries = report.collect(a.paths)
    print(report.render(summaries))
    if a.out:
        report.write(summaries, a.out)


def _classify(a):
    from .serial_host import SerialHostError, classify

    try:
        r = classify(a.port, a.model, limit=a.limit, baud=a.baud, timeout=a.timeout, data_dir=a.data_dir)
    except SerialHostError as e:
        print(f"lutnet classify: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{a.port}: {r['samples']} samples, {r['mismatches']} differ from the golden model, "
          f"accuracy {100 * r['accuracy']:.2f} %, {r['samples_per_second']:.0f} samples/s")
    if r["mismatches"]:
        raise SystemExit(1)


def _user_errors() -> tuple:
    from .datasets import DataError
    from .flow import BuildError
    from .hdl.board import BoardError
    from .pnr import PnrError
    from .placement import PlacementError
    from .distill import DistillError
    from .ir import IRError
    from .report import ReportError
    from .sim.runner import SimulatorError
    from .synth import SynthError
    from .targets import TargetError
    from .train import ConfigError

    return (IRError, DataError, DistillError, ReportError, SynthError, TargetError, SimulatorError, ConfigError,
            FileNotFoundError, BuildError, BoardError, PnrError, PlacementError)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        {"train": _train, "distill": _distill, "build": _build, "sim": _sim, "report": _report, "classify": _classify}[args.command](args)
    except KeyboardInterrupt:
        print("lutnet: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        print(f"lutnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
