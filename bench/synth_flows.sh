#!/usr/bin/env bash
# Stock synth_xilinx (ABC9) against lutnet's xc7 flow (ABC with an area script) on the digits
# 64-64 binarized net, both in one Yosys process on the whole design: wall time and LUT counts.
#   bench/synth_flows.sh [WORK_DIR]      (default runs/synth-flows)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/synth-flows}
BIN=.venv/bin
$BIN/lutnet train -o "$W/net" --hidden 64,64 --levels 1 --epochs 5
$BIN/lutnet build "$W/net" -o "$W/rtl" --no-synth
$BIN/python - "$W/rtl" <<'PY'
import json, sys, time
from pathlib import Path
from lutnet import synth, targets
rtl = Path(sys.argv[1])
ours = targets.load("xc7").synth_script("lutnet_top")
flows = {"stock synth_xilinx (ABC9)": "synth_xilinx -top lutnet_top -family xc7 -noiopad", "lutnet xc7 flow": ours}
for name, script in flows.items():
    t0 = time.perf_counter()
    synth.run_yosys(f"read_verilog lutnet_top.v\n{script}\ntee -q -o stat.json stat -json", rtl, "bench")
    stat = json.loads((rtl / "stat.json").read_text())
    modules = {m.lstrip("\\") for m in stat["modules"]}
    print(f"{name}: {time.perf_counter() - t0:.0f} s, {synth.classify(stat['design']['num_cells_by_type'], modules)}")
PY
