"""The ``lutnet`` command: parses arguments and calls library functions, nothing else."""
from __future__ import annotations

import argparse
import os
import sys


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {v}")
    return v


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
    t.add_argument("--hidden", type=_widths, default=(64, 64), help="hidden layer widths (default 64,64)")
    t.add_argument("--levels", type=_positive_int, default=1, help="input encoder levels: 1 = threshold, >1 = thermometer")
    t.add_argument("--binarization", default="deterministic", choices=["deterministic", "stochastic"])
    t.add_argument("--epochs", type=_positive_int, default=30)
    t.add_argument("--batch-size", type=_positive_int, default=None)
    t.add_argument("--lr", type=_positive_float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads (default: all cores)")
    t.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")

    b = sub.add_parser("build", help="generate Verilog and report LUT/FF use (Yosys)")
    b.add_argument("model", help="IR file, or a train directory holding model.npz")
    b.add_argument("-o", "--out", default=None, help="output directory (default: MODEL_DIR/build)")
    b.add_argument("--board", default="xc7", help="target from boards/ (default xc7: Xilinx 7-series LUT6)")
    b.add_argument("--layers-per-stage", type=_positive_int, default=1, help="pipeline register every N layers")
    b.add_argument("--adder-levels-per-stage", type=_positive_int, default=None, help="register every N adder-tree levels")
    b.add_argument("--no-synth", action="store_true", help="only write Verilog, skip Yosys")

    s = sub.add_parser("sim", help="check the RTL against the golden model on the test set")
    s.add_argument("build_dir", help="output directory of `lutnet build`")
    s.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    s.add_argument("--limit", type=_positive_int, default=None, help="only the first N test vectors")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--random-ready", action="store_true", help="toggle the output ready randomly (backpressure)")
    s.add_argument("-o", "--out", default=None, help="output directory (default: BUILD_DIR/sim-SIMULATOR)")

    r = sub.add_parser("report", help="print train/build/sim summaries found under directories")
    r.add_argument("paths", nargs="+")
    return p


def _train(a):
    from .train import TrainConfig, train

    overrides = {k: v for k, v in (("batch_size", a.batch_size), ("lr", a.lr), ("threads", a.threads)) if v is not None}
    config = TrainConfig(dataset=a.dataset, arch=a.arch, k=a.k, data_dir=a.data_dir, hidden=a.hidden, levels=a.levels,
                         binarization=a.binarization, epochs=a.epochs, seed=a.seed, **overrides)
    s = train(config, a.out, resume=a.resume)
    print(f"test accuracy {100 * s['test_accuracy']:.2f} % (golden model on the frozen IR), "
          f"{s['epochs']} epochs in {s['seconds']:.0f} s -> {os.path.join(a.out, 'model.npz')}")


def _build(a):
    from . import flow

    out = a.out or os.path.join(os.path.dirname(flow.resolve_model(a.model)) or ".", "build")
    pipeline = dict(layers_per_stage=a.layers_per_stage, adder_levels_per_stage=a.adder_levels_per_stage)
    s = flow.build(a.model, out, board=a.board, pipeline=pipeline, run_synth=not a.no_synth)
    figures = f"{s['luts']} LUT{s['lut_size']}, {s['ffs']} FF, {s['carry']} carry" if "luts" in s else "synthesis skipped"
    print(f"{figures}, latency {s['latency']} cycles -> {out}")


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

    print(report.render(report.collect(a.paths)))


def _user_errors() -> tuple:
    from .datasets import DataError
    from .ir import IRError
    from .report import ReportError
    from .sim.runner import SimulatorError
    from .synth import SynthError
    from .targets import TargetError
    from .train import ConfigError

    return (IRError, DataError, ReportError, SynthError, TargetError, SimulatorError, ConfigError,
            FileNotFoundError)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        {"train": _train, "build": _build, "sim": _sim, "report": _report}[args.command](args)
    except KeyboardInterrupt:
        print("lutnet: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        print(f"lutnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
