"""Collect the ``summary.json`` files of train, distill, build and sim runs; print them as text, or
write a Markdown + HTML report with plots (:func:`write`).

Runs are linked to each other by what they hold, not by where they lie: a build belongs to the
train (or distill) run whose ``model.npz`` it copied (same resolved path or same bytes), a sim to
the build directory it lies in, and a distilled LUT-Net to its teacher through the distill
summary's ``teacher.path``.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from pathlib import Path

import numpy as np

from .fsutil import atomic_dir, write_json
from .synth import stage_order

MODEL_FILE = "model.npz"
REPORT_MARKER = "report.json"   # what makes a directory "a previous report" that may be replaced


class ReportError(ValueError):
    pass


# -- collecting and linking ----------------------------------------------------------------------

def collect(paths) -> list[dict]:
    """Every ``summary.json`` under ``paths`` (files or directories), each with ``_path`` (the
    directory as the user named it) and ``_dir`` (the same, absolute and resolved)."""
    found, seen = [], set()
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p}: no such file or directory")
        if p.is_file():
            files = [p]
        else:  # skip hidden folders: temporary outputs of runs in progress
            files = [f for f in sorted(p.rglob("summary.json"))
                     if not any(part.startswith(".") for part in f.relative_to(p).parts)]
        for f in files:
            if f.resolve() in seen:   # overlapping paths (runs runs/mnist) name a run once
                continue
            seen.add(f.resolve())
            try:
                s = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ReportError(f"{f}: not a readable summary ({e})") from None
            if not isinstance(s, dict):
                raise ReportError(f"{f}: not a readable summary (a JSON {type(s).__name__}, not an object)")
            s["_path"] = str(f.parent)
            s["_dir"] = str(f.parent.resolve())
            found.append(s)
    if not found:
        raise ReportError(f"no summary.json under {', '.join(map(str, paths))}")
    return found


def _model_path(ref, base=None) -> Path | None:
    """A model reference (IR file, or directory holding model.npz), absolute; relative references
    are tried against the current directory, then against ``base``."""
    if not ref:
        return None
    ref = Path(ref)
    candidates = [ref] if ref.is_absolute() else [Path.cwd() / ref] + ([Path(base) / ref] if base else [])
    for c in candidates:
        if c.is_dir():
            c = c / MODEL_FILE
        if c.is_file():
            return c.resolve()
    return None


class _Identity:
    """Same model = same resolved path or same bytes (a build holds a copy of its model)."""

    def __init__(self):
        self._hashes = {}

    def digest(self, path: Path | None):
        if path is None:
            return None
        if path not in self._hashes:
            try:
                self._hashes[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                self._hashes[path] = None
        return self._hashes[path]

    def same(self, a: Path | None, b: Path | None) -> bool:
        if a is None or b is None:
            return False
        return a == b or (self.digest(a) is not None and self.digest(a) == self.digest(b))


def _build_model_files(b: dict) -> list[Path]:
    files = [_model_path(b.get("model"), b["_dir"]), _model_path(Path(b["_dir"]) / MODEL_FILE)]
    return [f for f in files if f is not None]


def form(network: str | None) -> str:
    """"XNOR", "LUT" or "mixed" from a network description such as ``... -> lut200 -> head10``."""
    kinds = set(re.findall(r"-> (xnor|lut)\d+", network or ""))
    return {frozenset({"xnor"}): "XNOR", frozenset({"lut"}): "LUT"}.get(frozenset(kinds), "mixed" if kinds else "-")


def accuracy_of(build: dict):
    """The accuracy of a build's network: RTL accuracy of a sim over the whole test set when there
    is one, else the golden model's accuracy recorded at training (equal when the sim passes)."""
    meta = build.get("meta") or {}
    for s in build.get("_sims", []):
        if s.get("rtl_accuracy") is not None and s.get("vectors") == meta.get("test_samples"):
            return s["rtl_accuracy"]
    return meta.get("test_accuracy")


def compare(builds: list[dict], labels: list[str] | None = None) -> dict:
    """The same figures for several builds side by side: per stage (encoder, layer0.., head,
    total) the LUTs and FFs of each, and each network's form (XNOR/LUT) and accuracy.

    Returns ``{"columns": [{label, path, network, form, board, lut_size, accuracy}], "stages": [...],
    "luts": {stage: [per column]}, "ffs": {stage: [per column]}, "lut_ratio": {stage: last / first}}``
    (missing figures are None; ``lut_ratio`` only for exactly two builds)."""
    labels = labels or [b.get("_path") or b.get("model") or f"build {i}" for i, b in enumerate(builds)]
    if len(labels) != len(builds):
        raise ValueError(f"{len(labels)} labels for {len(builds)} builds")
    stages = sorted({name for b in builds for name in (b.get("layers") or {})}, key=stage_order) + ["total"]
    luts, ffs = {}, {}
    for st in stages:
        luts[st] = [(b.get("luts") if st == "total" else (b.get("layers") or {}).get(st, {}).get("luts")) for b in builds]
        ffs[st] = [(b.get("ffs") if st == "total" else (b.get("layers") or {}).get(st, {}).get("ffs")) for b in builds]
    out = {"columns": [{"label": lab, "path": b.get("_path"), "network": b.get("network"), "form": form(b.get("network")),
                        "board": b.get("board"), "lut_size": b.get("lut_size"), "accuracy": accuracy_of(b)}
                       for lab, b in zip(labels, builds)],
           "stages": stages, "luts": luts, "ffs": ffs}
    if len(builds) == 2:
        out["lut_ratio"] = {st: (v[1] / v[0] if v[0] and v[1] is not None else None) for st, v in luts.items()}
    return out


def pareto_front(points) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point beats: none costs at most as much
    with at least the same accuracy and is strictly better in one. Sorted by cost.

    >>> pareto_front([(10, 0.9), (5, 0.8), (20, 0.85), (5, 0.7)])
    [1, 0]
    """
    pts = [(float(c), float(a)) for c, a in points]
    front = [i for i, (c, a) in enumerate(pts)
             if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in pts)]
    return sorted(front, key=lambda i: (pts[i][0], -pts[i][1]))


def confusion_matrix(predicted, labels, n_classes: int) -> np.ndarray:
    """``m[true, predicted]`` counts."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return m


def analyse(summaries: list[dict], *, confusion: bool = False, log=print) -> dict:
    """Link the summaries: models (train/distill runs, or builds of a model not trained here), each
    with its builds and their sims; the Pareto front; the comparison of all builds; XNOR-vs-LUT
    pairs of distilled networks. ``confusion=True`` also runs the golden model of each model's
    network over its test set (``"confusion"`` or ``"confusion_error"`` per model)."""
    ident = _Identity()
    runs = [s for s in summaries if s.get("command") in ("train", "distill")]
    builds = [s for s in summaries if s.get("command") == "build"]
    sims = [s for s in summaries if s.get("command") == "sim"]
    for b in builds:
        b["_sims"] = [s for s in sims if Path(s["_dir"]).parent == Path(b["_dir"])]
    models = []
    for r in runs:
        file = _model_path(Path(r["_dir"]) / r.get("model", MODEL_FILE))
        models.append({"name": r["_path"], "kind": r["command"], "run": r, "model_file": file, "builds": []})
    for b in builds:
        files = _build_model_files(b)
        runs_only = [m for m in models if m["kind"] != "build"]
        owner = next((m for m in runs_only if any(ident.same(f, m["model_file"]) for f in files)), None)
        if owner is None:  # the model file is gone or was replaced: the default build folder says whose
            owner = next((m for m in runs_only if Path(b["_dir"]).parent == Path(m["run"]["_dir"])), None)
        if owner is None:  # a model trained elsewhere: builds of the same bytes share one entry
            owner = next((m for m in models if m["kind"] == "build" and any(ident.same(f, m["model_file"]) for f in files)), None)
        if owner is None:
            owner = {"name": b.get("model") or b["_path"], "kind": "build", "run": None,
                     "model_file": files[0] if files else None, "builds": []}
            models.append(owner)
        owner["builds"].append(b)

    pairs = []
    for m in models:
        if m["kind"] != "distill":
            continue
        teacher_ref = (m["run"].get("teacher") or {}).get("path")
        teacher_file = _model_path(teacher_ref, m["run"]["_dir"])
        teachers = [b for b in builds if any(ident.same(f, teacher_file) for f in _build_model_files(b))]
        if teacher_file is None:  # the teacher moved (or its path was relative elsewhere): same network and accuracy
            t = m["run"].get("teacher") or {}
            teachers = [b for b in builds if t.get("network") and b.get("network") == t["network"]
                        and t.get("test_accuracy") is not None
                        and (b.get("meta") or {}).get("test_accuracy") == t["test_accuracy"]]
        for s in m["builds"]:
            t = next((t for t in teachers if t.get("board") == s.get("board")), teachers[0] if teachers else None)
            if t is not None:
                pairs.append({"distill": m["name"], "teacher": t["_path"], "student": s["_path"],
                              **compare([t, s], ["teacher", "distilled student"])})

    synthesized = [b for b in builds if b.get("luts") is not None]
    scored = [b for b in synthesized if accuracy_of(b) is not None]
    dataset = lambda b: (b.get("meta") or {}).get("dataset") or "-"
    # accuracies on different datasets do not compare, nor do LUT4 and LUT6 counts
    kind = lambda b: (dataset(b), b.get("lut_size"))
    on_front = set()
    for key in {kind(b) for b in scored}:
        group = [b for b in scored if kind(b) == key]
        on_front.update(group[i]["_path"] for i in pareto_front([(b["luts"], accuracy_of(b)) for b in group]))
    pareto = {"points": [{"build": b["_path"], "network": b.get("network"), "board": b.get("board"),
                          "dataset": dataset(b), "lut_size": b.get("lut_size"), "luts": b["luts"],
                          "accuracy": accuracy_of(b), "front": b["_path"] in on_front} for b in scored],
              "front": [b["_path"] for b in sorted(scored, key=lambda b: b["luts"]) if b["_path"] in on_front]}

    if confusion:
        datasets_cache = {}
        for m in models:
            _confusion(m, datasets_cache, log)
    return {"models": models, "builds": builds, "sims": sims, "pareto": pareto,
            "comparison": compare(synthesized) if len(synthesized) >= 2 else None, "pairs": pairs}


def _confusion(model: dict, cache: dict, log) -> None:
    from . import datasets, golden
    from .ir import IRError, Network

    files = [f for b in model["builds"] for f in _build_model_files(b)] + [model["model_file"]]
    file = next((f for f in files if f is not None), None)
    if file is None:
        model["confusion_error"] = "no model.npz found"
        return
    try:
        net = Network.load(file)
        name = net.meta.get("dataset")
        if name is None:
            raise IRError(f"{file}: meta names no dataset")
        key = (name, net.meta.get("data_dir"))
        if key not in cache:
            cache[key] = datasets.load(*key)
        ds = cache[key]
        log(f"confusion matrix of {model['name']}: golden model over {len(ds.x_test)} {name} test samples")
        model["confusion"] = confusion_matrix(golden.predict(net, ds.x_test), ds.y_test, net.n_classes)
        model["confusion_source"] = str(file)
    except (OSError, ValueError) as e:  # DataError and IRError are ValueErrors
        model["confusion_error"] = f"dataset or model could not be loaded: {e}".splitlines()[0]


# -- the document: blocks rendered to text, Markdown or HTML -------------------------------------

def pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.1f}"
    return "-" if v is None else str(v)


def _unit(v, unit, digits=1):
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _slug(text: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:80] or "x"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _stage_table(b: dict) -> tuple:
    """Per stage LUTs, FFs, carry cells, and the logic levels where the build measured them."""
    levels = b.get("logic_levels") or {}
    header = ["stage", f"LUT{b.get('lut_size', '')}", "FF", "carry"] + (["logic levels"] if levels else [])
    rows = [[name, l.get("luts"), l.get("ffs"), l.get("carry")] + ([levels.get(name)] if levels else [])
            for name, l in sorted((b.get("layers") or {}).items(), key=lambda kv: stage_order(kv[0]))]
    total = ["total", b.get("luts"), b.get("ffs"), b.get("carry")]
    return ("table", header, rows + [total + ([max(levels.values(), default=None)] if levels else [])])


HARDWARE_HEADER = ["board", "part", "latency", "backpressure", "P&R LUT/FF", "Fmax", "fabric ceiling",
                   "Fmax/ceiling", "fits", "board check", "build time"]


def backpressure(pipeline: dict | None) -> str | None:
    """How the build's core takes backpressure, from its pipeline options (None if unknown).

    >>> backpressure({"always_ready": True}), backpressure({"stall_free": True}), backpressure({})
    ('none (always ready)', 'credit buffer', 'ready/valid')
    """
    if pipeline is None:
        return None
    if pipeline.get("always_ready"):
        return "none (always ready)"
    return "credit buffer" if pipeline.get("stall_free") else "ready/valid"


def _hardware_row(b: dict) -> list:
    """Board, Fmax and the fabric ratio; "-" where the build did no place and route."""
    pnr, target = b.get("pnr") or {}, b.get("target") or {}
    return [target.get("name") or b.get("board") or "no synthesis", target.get("part"),
            f"{b['latency']} cycles" if b.get("latency") is not None else None, backpressure(b.get("pipeline")),
            f"{pnr['luts']}/{pnr.get('ffs', '-')}" if pnr.get("luts") is not None else None,
            _unit(pnr.get("fmax_mhz"), " MHz"), _unit(pnr.get("ceiling_mhz"), " MHz"),
            _unit(pnr.get("fmax_ratio"), "", 2), _fits(b.get("fit")), _verified(b.get("verify")),
            _unit(b.get("seconds"), " s")]


def _timing_blocks(pnr: dict) -> list:
    """Where the clock goes: per stage, its register inputs and their median and slowest
    arrival, the Fmax bound that slowest arrival sets (setup times not counted) and its ratio to
    the fabric ceiling; the stage of the critical path is marked."""
    ceiling, critical = pnr.get("ceiling_mhz"), pnr.get("critical_stage")
    rows = []
    for name, t in sorted(pnr["stage_timing"].items(), key=lambda kv: stage_order(kv[0])):
        bound = 1000 / t["worst_ns"] if t.get("worst_ns") else None
        rows.append([name + (" (critical path)" if name == critical else ""), t.get("endpoints"),
                     _unit(t.get("median_ns"), " ns", 2), _unit(t.get("worst_ns"), " ns", 2), _unit(bound, " MHz"),
                     _unit(bound / ceiling if bound and ceiling else None, "", 2)])
    return [("p", "Where the clock goes (nextpnr's routed timing): the paths into each stage's registers. The "
                  "slowest arrival bounds the Fmax that stage alone would allow (setup times are not counted: 0 ns "
                  "on ECP5 data inputs, about 0.4 ns on set/reset). \"glue\" is the rest: valid bits, UART, the "
                  "output register."),
            ("table", ["stage", "register inputs", "median arrival", "slowest arrival", "Fmax bound",
                       "bound / ceiling"], rows)]


def _placement_text(p: dict) -> str:
    """What ``lutnet build --place`` locked (``pnr.placement``), in one paragraph."""
    missed = "; ".join(f"{why}: {n}" for why, n in p.get("not_locked", {}).items()) or "none"
    return (f"Placed by lutnet (--place): {p['neurons']} LUT neurons ({p['luts']} with their LUT) and "
            f"{p['relays']} relays locked one neuron a tile"
            + (f", {p['head_counters']} counters of the head ({p['head_registers']} registers) a tile each "
               "among them" + (f", and {p['head_hops']} hop registers along their longest routes"
                               if p.get("head_hops") else "") if p.get("head_counters") else "")
            + f" on {p['tiles']} tiles (a square of {p['square']}), "
            f"{p['encoder_bits']} encoder bits in the tiles' spare flip-flops; rows without slices left out: "
            f"{', '.join(map(str, p.get('skip_rows', []))) or 'none'}. Not locked: {missed}.")


def _fits(fit):
    if not fit or fit.get("fits") is None:
        return None
    return f"{'yes' if fit['fits'] else 'NO'} ({fit.get('estimated_luts')}/{fit.get('available_luts')} LUTs)"


def _verified(v):
    if not v:
        return None
    return (f"passed ({v.get('vectors')} vectors)" if v.get("passed")
            else f"FAILED ({v.get('mismatches')} mismatches of {v.get('vectors')})")


def _column_names(c: dict, pair: bool) -> list[str]:
    if pair:
        return ["XNOR", "LUT"]
    return [chr(ord("A") + i) if i < 26 else f"#{i}" for i in range(len(c["columns"]))]


def _comparison_blocks(c: dict, with_ratio: bool, image: str | None = None) -> list:
    cols = c["columns"]
    names = _column_names(c, with_ratio)
    blocks = [("list", [f"{n}: {col['label']}{'' if col['path'] in (None, col['label']) else ' ' + col['path']}"
                        f" - {col['network']} on {col['board']} ({col['form']} form)" for n, col in zip(names, cols)])]
    header = ["stage"]
    for n, col in zip(names, cols):
        header += [f"{n} LUT{col['lut_size'] or ''}", f"{n} FF"]
    if with_ratio:
        header.append("LUT / XNOR LUTs")
    rows = []
    for st in c["stages"]:
        row = [st]
        for i in range(len(cols)):
            row += [c["luts"][st][i], c["ffs"][st][i]]
        if with_ratio:
            r = c["lut_ratio"][st]
            row.append("-" if r is None else f"{r:.3f}")
        rows.append(row)
    acc = ["accuracy"]
    for col in cols:
        acc += [pct(col["accuracy"]), ""]
    rows.append(acc + ([""] if with_ratio else []))
    blocks.append(("table", header, rows))
    if image:
        blocks.append(("img", image, "LUTs per stage of " + ", ".join(names)))
    return blocks


def document(data: dict, plots: dict | None = None) -> list:
    """The report as blocks: ("h", level, text), ("p", text), ("list", items), ("table", header,
    rows), ("img", file, alt). ``plots`` maps keys ("pareto", ("cost", build path), ("timing",
    build path), ("confusion", model name)) to image file names; without it the document has no
    images."""
    plots = plots or {}
    blocks = [("h", 1, "lutnet report")]
    runs = [m["run"] for m in data["models"] if m["kind"] == "train"]
    distills = [m["run"] for m in data["models"] if m["kind"] == "distill"]
    if runs:
        blocks += [("h", 2, "Training"), ("table", ["run", "dataset", "network", "epochs", "torch acc", "golden acc", "seconds"],
                   [[s["_path"], s.get("dataset"), s.get("network"), s.get("epochs"), pct(s.get("torch_test_accuracy")),
                     pct(s.get("test_accuracy")), s.get("seconds")] for s in runs])]
    if distills:
        blocks += [("h", 2, "Distillation"), ("table", ["run", "teacher", "teacher acc", "student", "student acc", "seconds"],
                   [[s["_path"], (s.get("teacher") or {}).get("path"), pct((s.get("teacher") or {}).get("test_accuracy")),
                     (s.get("student") or {}).get("network"), pct((s.get("student") or {}).get("test_accuracy")),
                     _distill_seconds(s)] for s in distills])]

    for m in data["models"]:
        r = m["run"] or {}
        first = m["builds"][0] if m["builds"] else {}
        network = r.get("network") or (r.get("student") or {}).get("network") or first.get("network")
        dataset = r.get("dataset") or (first.get("meta") or {}).get("dataset")
        blocks += [("h", 2, f"Model {m['name']}"),
                   ("p", f"{network} ({form(network)} form) on {dataset or 'an unknown dataset'}, "
                         f"{'from `lutnet ' + m['kind'] + '`' if m['run'] else 'trained elsewhere (no summary found)'}")]
        blocks.append(("table", ["figure", "value"], _model_rows(m)))
        if "confusion" in m:
            cm = m["confusion"]
            blocks.append(("p", f"Confusion matrix of the golden model over {int(cm.sum())} test samples "
                                f"(rows: true class, columns: predicted), accuracy {pct(np.trace(cm) / max(1, cm.sum()))}."))
            if ("confusion", m["name"]) in plots:
                blocks.append(("img", plots[("confusion", m["name"])], f"confusion matrix of {m['name']}"))
        elif "confusion_error" in m:
            blocks.append(("p", f"No confusion matrix: {m['confusion_error']}."))
        for b in m["builds"]:
            blocks.append(("h", 3, f"Build {b['_path']}"))
            if b.get("luts") is None:
                blocks.append(("p", "Verilog only (built with --no-synth): no LUT or FF counts."))
            else:
                blocks.append(_stage_table(b))
            blocks.append(("table", HARDWARE_HEADER, [_hardware_row(b)]))
            if (b.get("pnr") or {}).get("placement"):
                blocks.append(("p", _placement_text(b["pnr"]["placement"])))
            if (b.get("pnr") or {}).get("stage_timing"):
                blocks += _timing_blocks(b["pnr"])
                if ("timing", b["_path"]) in plots:
                    blocks.append(("img", plots[("timing", b["_path"])], f"where the clock goes in {b['_path']}"))
            if ("cost", b["_path"]) in plots:
                blocks.append(("img", plots[("cost", b["_path"])], f"LUTs and FFs per stage of {b['_path']}"))

    if data["sims"]:
        blocks += [("h", 2, "Simulation"), ("table", ["run", "simulator", "vectors", "mismatches", "golden acc", "RTL acc", "seconds"],
                   [[s["_path"], s.get("simulator"), s.get("vectors"), s.get("mismatches"), pct(s.get("golden_accuracy")),
                     pct(s.get("rtl_accuracy")), s.get("seconds")] for s in data["sims"]])]

    if data["pairs"]:
        blocks.append(("h", 2, "The same network: binarized (XNOR) form and distilled LUT form"))
        for p in data["pairs"]:
            blocks.append(("p", f"{p['distill']} distilled {p['teacher']} (XNOR form) into {p['student']} (LUT form)."))
            blocks += _comparison_blocks(p, with_ratio=True, image=plots.get(("pair", p["student"])))
    if data["comparison"]:
        blocks.append(("h", 2, "All builds side by side"))
        blocks += _comparison_blocks(data["comparison"], with_ratio=False, image=plots.get("comparison"))

    points = data["pareto"]["points"]
    if points:
        blocks += [("h", 2, "Accuracy against LUTs"),
                   ("p", "Builds on the Pareto front (no other build on the same dataset and LUT size has at least "
                         "the accuracy for at most the LUTs) are marked."),
                   ("table", ["build", "network", "dataset", "board", "LUTs", "accuracy", "Pareto front"],
                    [[p["build"], p["network"], p["dataset"], p["board"], _luts(p), pct(p["accuracy"]),
                      "yes" if p["front"] else ""]
                     for p in sorted(points, key=lambda p: (p["dataset"], p["lut_size"] or 0, p["luts"]))])]
        if "pareto" in plots:
            blocks.append(("img", plots["pareto"], "accuracy against LUTs, with the Pareto front"))
    return blocks


def _distill_seconds(s: dict):
    if s.get("seconds") is not None:
        return s["seconds"]
    steps = [st.get("seconds") for st in s.get("steps") or [] if st.get("seconds") is not None]
    return sum(steps) if steps else None


def _model_rows(m: dict) -> list[list]:
    r = m["run"] or {}
    student = r.get("student") or {}
    golden_acc = r.get("test_accuracy", student.get("test_accuracy"))
    if golden_acc is None:
        golden_acc = next(((b.get("meta") or {}).get("test_accuracy") for b in m["builds"]
                           if (b.get("meta") or {}).get("test_accuracy") is not None), None)
    rows = [["torch accuracy", pct(r.get("torch_test_accuracy", student.get("torch_test_accuracy")))],
            ["golden accuracy", pct(golden_acc)]]
    sims = [s for b in m["builds"] for s in b.get("_sims", [])]
    if sims:
        rows += [[f"RTL accuracy ({s.get('simulator')}, {s.get('vectors')} vectors, {s.get('mismatches')} mismatches)",
                  pct(s.get("rtl_accuracy"))] for s in sims]
    else:
        rows.append(["RTL accuracy", "-"])
    rows.append(["training time", _unit(r.get("seconds") if m["kind"] == "train" else _distill_seconds(r) if r else None, " s")])
    rows += [[f"build time ({b['_path']})", _unit(b.get("seconds"), " s")] for b in m["builds"]]
    return rows


def to_text(blocks: list) -> str:
    out, para = [], []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            if para:
                out.append("\n".join(para))
            para = [blk[2] if blk[1] > 1 else blk[2].upper()]
        elif kind == "p":
            para.append(blk[1])
        elif kind == "list":
            para += [f"  {item}" for item in blk[1]]
        elif kind == "table":
            para.append(table(blk[2], blk[1]))
    if para:
        out.append("\n".join(para))
    return "\n\n".join(out)


def _md_cell(v) -> str:
    return _fmt(v).replace("|", "\\|")


def to_markdown(blocks: list) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            out.append("#" * blk[1] + " " + blk[2])
        elif kind == "p":
            out.append(blk[1])
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in blk[1]))
        elif kind == "table":
            header, rows = blk[1], blk[2]
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |",
                     "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{blk[2]}]({blk[1]})")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.2em .6em}
td{text-align:right}td:first-child{text-align:left}th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;display:block;margin:.5em 0 1.5em}h2{border-bottom:1px solid #ddd;margin-top:2em}"""


def to_html(blocks: list, images: dict | None = None) -> str:
    """``images`` maps image file names to PNG bytes, embedded as data URIs (self-contained page);
    an image not in it is referenced by name."""
    images = images or {}
    e = html.escape
    body = []
    for blk in blocks:
        kind = blk[0]
        if kind == "h":
            body.append(f"<h{blk[1]}>{e(blk[2])}</h{blk[1]}>")
        elif kind == "p":
            body.append(f"<p>{e(blk[1])}</p>")
        elif kind == "list":
            body.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in blk[1]) + "</ul>")
        elif kind == "table":
            rows = "".join("<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in r) + "</tr>" for r in blk[2])
            body.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in blk[1]) + f"</tr>{rows}</table>")
        elif kind == "img":
            name, alt = blk[1], blk[2]
            src = (f"data:image/png;base64,{base64.b64encode(images[name]).decode('ascii')}" if name in images else e(name))
            body.append(f'<img src="{src}" alt="{e(alt)}" title="{e(name)}">')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>lutnet report</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def render(summaries: list[dict]) -> str:
    """The text report (no plots, no confusion matrices)."""
    return to_text(document(analyse(summaries)))


# -- plots and the written report -----------------------------------------------------------------

def _figure(w=6.4, h=4.0):
    from matplotlib.figure import Figure  # the object API: no pyplot, no display, Agg when saved

    return Figure(figsize=(w, h), layout="constrained")


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def plot_costs(build: dict) -> bytes:
    """LUTs and FFs per stage of one build, side by side."""
    stages = sorted(build.get("layers") or {}, key=stage_order)
    fig = _figure(8, 3.5)
    for ax, key, colour in zip(fig.subplots(1, 2), ("luts", "ffs"), ("tab:blue", "tab:orange")):
        values = [build["layers"][s].get(key) or 0 for s in stages]
        bars = ax.bar(stages, values, color=colour)
        ax.bar_label(bars, fontsize=8)
        ax.set_title(f"{'LUT' + str(build.get('lut_size', '')) if key == 'luts' else 'FF'} per stage")
        ax.tick_params(axis="x", labelrotation=30)
    fig.suptitle(f"{build['_path']} ({build.get('board')})", fontsize=10)
    return _png(fig)


def plot_timing(build: dict) -> bytes:
    """Where the clock goes: per stage, the median and the slowest arrival at its registers,
    against the fabric ceiling's period and the period at 0.8 of the ceiling."""
    pnr = build["pnr"]
    timing = sorted(pnr["stage_timing"].items(), key=lambda kv: stage_order(kv[0]))
    names = [name for name, _ in timing][::-1]   # data flow from the top down
    fig = _figure(7, 0.45 * len(names) + 2.0)
    ax = fig.subplots()
    ax.barh(names, [t["worst_ns"] for _, t in timing][::-1], color="tab:red", label="slowest arrival")
    ax.barh(names, [t["median_ns"] for _, t in timing][::-1], color="tab:blue", label="median arrival")
    if pnr.get("ceiling_mhz"):
        period = 1000 / pnr["ceiling_mhz"]
        ax.axvline(period, color="black", linestyle=":", label=f"ceiling period {period:.2f} ns")
        ax.axvline(period / 0.8, color="black", linestyle="--", label=f"0.8 x ceiling: {period / 0.8:.2f} ns")
    ax.set_xlabel("ns from the clock edge")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    ax.set_title(f"{build['_path']}: where the clock goes ({pnr.get('fmax_mhz')} MHz)", fontsize=10)
    return _png(fig)


def plot_comparison(c: dict, names: list[str]) -> bytes:
    """LUTs per stage of the compared builds as grouped bars (log scale: stages differ by 100x)."""
    stages = c["stages"]
    fig = _figure(8, 3.8)
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [c["luts"][st][i] or 0 for st in stages]
        bars = ax.bar([k + (i - (len(names) - 1) / 2) * width for k in range(len(stages))], values, width, label=name)
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(range(len(stages)), stages)
    if any(c["luts"][st][i] for st in stages for i in range(len(names))):
        ax.set_yscale("log")
    ax.set_ylabel("LUTs")
    ax.legend(fontsize=7)
    return _png(fig)


def _luts(point: dict) -> str:
    """``2,318 LUT4``, or the bare count when the LUT size is unknown."""
    return f"{point['luts']:,} LUT{point['lut_size']}" if point.get("lut_size") else f"{point['luts']:,}"


def plot_pareto(pareto: dict) -> bytes:
    """Accuracy against LUTs of every build, the Pareto front as a line, each point labelled."""
    pts = pareto["points"]
    fig = _figure(7, 4.5)
    ax = fig.subplots()
    colours = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:brown"]
    for k, (name, size) in enumerate(sorted({(p["dataset"], p["lut_size"] or 0) for p in pts})):
        group = [p for p in pts if (p["dataset"], p["lut_size"] or 0) == (name, size)]
        name = f"{name} LUT{size}" if size else name
        colour = colours[k % len(colours)]
        ax.scatter([p["luts"] for p in group], [100 * p["accuracy"] for p in group], zorder=3, color=colour,
                   marker="o", label=f"{name} builds")
        front = sorted((p for p in group if p["front"]), key=lambda p: p["luts"])
        ax.step([p["luts"] for p in front], [100 * p["accuracy"] for p in front], where="post", color=colour,
                alpha=0.6, label=f"{name} Pareto front")
    for p in pts:
        ax.annotate(p["build"], (p["luts"], 100 * p["accuracy"]), fontsize=6, xytext=(4, -10),
                    textcoords="offset points", annotation_clip=False)
    ax.margins(x=0.25, y=0.1)
    luts = [p["luts"] for p in pts if p["luts"] > 0]
    if luts and max(luts) > 20 * min(luts):
        ax.set_xscale("log")
    ax.set_xlabel("LUTs")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return _png(fig)


def plot_confusion(cm: np.ndarray, title: str) -> bytes:
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    n = len(cm)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def check_out_dir(out_dir) -> Path:
    """Refuse to replace anything but a previous report."""
    out = Path(out_dir)
    if out.exists():
        marker = out / REPORT_MARKER
        try:
            ok = out.is_dir() and json.loads(marker.read_text()).get("command") == "report"
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise ReportError(f"{out}: exists and is not a previous lutnet report (no {REPORT_MARKER}); "
                              f"name a new or report directory with -o")
    return out


def write(summaries: list[dict], out_dir, *, log=print) -> dict:
    """Write ``report.md``, ``report.html`` (plots embedded), the PNG plots and ``report.json``
    (the figures, and the marker that lets a later report replace this one) to ``out_dir``,
    atomically. Returns the contents of ``report.json``."""
    out = check_out_dir(out_dir)
    data = analyse(summaries, confusion=True, log=log)
    images, plots, taken = {}, {}, set()
    for b in data["builds"]:
        if b.get("layers"):
            name = f"{_slug('cost ' + b['_path'], taken)}.png"
            images[name], plots[("cost", b["_path"])] = plot_costs(b), name
        if (b.get("pnr") or {}).get("stage_timing"):
            name = f"{_slug('timing ' + b['_path'], taken)}.png"
            images[name], plots[("timing", b["_path"])] = plot_timing(b), name
    for m in data["models"]:
        if "confusion" in m:
            name = f"{_slug('confusion ' + m['name'], taken)}.png"
            images[name] = plot_confusion(m["confusion"], f"{m['name']}: golden model, test set")
            plots[("confusion", m["name"])] = name
    for p in data["pairs"]:
        name = f"{_slug('pair ' + p['student'], taken)}.png"
        images[name], plots[("pair", p["student"])] = plot_comparison(p, _column_names(p, True)), name
    if data["comparison"]:
        c = data["comparison"]
        images["comparison.png"], plots["comparison"] = plot_comparison(c, _column_names(c, False)), "comparison.png"
    if data["pareto"]["points"]:
        images["pareto.png"], plots["pareto"] = plot_pareto(data["pareto"]), "pareto.png"
    blocks = document(data, plots)
    record = {"command": "report", "sources": sorted({s["_path"] for s in summaries}),
              "files": ["report.md", "report.html", *sorted(images)],
              "pareto": data["pareto"], "comparison": data["comparison"], "pairs": data["pairs"],
              "confusion": {m["name"]: m["confusion"].tolist() for m in data["models"] if "confusion" in m},
              "confusion_errors": {m["name"]: m["confusion_error"] for m in data["models"] if "confusion_error" in m}}
    with atomic_dir(out) as tmp:
        for name, png in images.items():
            (tmp / name).write_bytes(png)
        (tmp / "report.md").write_text(to_markdown(blocks))
        (tmp / "report.html").write_text(to_html(blocks, images))
        write_json(tmp / REPORT_MARKER, record)
    log(f"report with {len(images)} plots -> {out / 'report.html'}")
    return record
