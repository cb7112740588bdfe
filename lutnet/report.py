"""Collect the ``summary.json`` files of train, build and sim runs and print them as a table."""
from __future__ import annotations

import json
from pathlib import Path


class ReportError(ValueError):
    pass


def collect(paths) -> list[dict]:
    found = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p}: no such file or directory")
        if p.is_file():
            files = [p]
        else:  # skip hidden folders: temporary outputs of runs in progress
            files = [f for f in sorted(p.rglob("summary.json"))
                     if not any(part.startswith(".") for part in f.relative_to(p).parts)]
        for f in files:
            try:
                s = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ReportError(f"{f}: not a readable summary ({e})") from None
            s["_path"] = str(f.parent)
            found.append(s)
    if not found:
        raise ReportError(f"no summary.json under {', '.join(map(str, paths))}")
    return found


def pct(v):
    return "-" if v is None else f"{100 * v:.2f} %"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.1f}"
    return "-" if v is None else str(v)


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def render(summaries: list[dict]) -> str:
    out = []
    trains = [s for s in summaries if s.get("command") == "train"]
    builds = [s for s in summaries if s.get("command") == "build"]
    sims = [s for s in summaries if s.get("command") == "sim"]
    if trains:
        out.append("Training\n" + table(
            [[s["_path"], s.get("dataset"), s.get("network"), s.get("epochs"), pct(s.get("torch_test_accuracy")),
              pct(s.get("test_accuracy")), s.get("seconds")] for s in trains],
            ["run", "dataset", "network", "epochs", "torch acc", "golden acc", "seconds"]))
    for s in builds:
        rows = [[name, l["luts"], l["ffs"], l["carry"]] for name, l in s.get("layers", {}).items()]
        rows.append(["total", s.get("luts"), s.get("ffs"), s.get("carry")])
        out.append(f"Build {s['_path']}: {s.get('network')} on {s.get('board', 'no synthesis')}, "
                   f"latency {s.get('latency')} cycles\n" + table(rows, ["stage", f"LUT{s.get('lut_size', '')}", "FF", "carry"]))
    if sims:
        out.append("Simulation\n" + table(
            [[s["_path"], s["simulator"], s["vectors"], s["mismatches"], pct(s.get("golden_accuracy")),
              pct(s.get("rtl_accuracy")), s["seconds"]] for s in sims],
            ["run", "simulator", "vectors", "mismatches", "golden acc", "RTL acc", "seconds"]))
    return "\n\n".join(out)
