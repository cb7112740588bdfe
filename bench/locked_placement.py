"""A hardware probe for the Fmax target: how fast is a LUT layer's stage on ECP5 when its wiring is
local and its neurons are placed along that locality, not by nextpnr?

It takes the netlist of an ECP5 core build (`lutnet build ... --board ulx3s-85f --core-only`), places
it once as the build did (seed 1) to learn which tiles hold slices, then locks every encoder
flip-flop and every LUT neuron (its LUT4 and its output flip-flop in one slice, so the LUT feeds
the flip-flop directly; one neuron per slice, four per tile) along a serpentine of tiles in the
order of their position in the network (bit j of n at j / n), and places and routes again with
only the rest left to nextpnr.
Neurons whose flip-flop Yosys gave a set/reset or enable input (part of the neuron's logic) are not
locked. The locking is a BEL attribute per cell in the Yosys JSON netlist.

It prints, for both runs, Fmax and the median and slowest register-input arrival of each stage
(lutnet.pnr.stage_timing), and for the locked neurons their arrival by how far (in tiles) the
farthest of their inputs' flip-flops sits: the budget of 0.8 of the fabric ceiling is 2.16 ns.

    bench/local_wiring.py runs/mnist-k4 OUT
    lutnet build OUT -o OUT/ecp5 --board ulx3s-85f --core-only --adder-levels-per-stage 1 \\
        --argmax-levels-per-stage 1 --register-comparisons --stall-free
    bench/locked_placement.py OUT/ecp5 [WIDTH]      (tiles a row, default 26)
"""
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from lutnet import pnr, targets

TOP = "lutnet_top"
STAGE_NETS = ("encoder.o", "layer0.o", "layer1.o", "layer2.o", "layer3.o")
#: One LUT and flip-flop pair of each of a tile's four slices: placed in the slices' second pairs
#: too (8 a tile), many neurons were refused by nextpnr ("Bel ... is not valid for cell ...").
SLOTS = [("A", 0), ("B", 0), ("C", 0), ("D", 0)]
BUDGET_NS = 2.16
_BEL = re.compile(r"X(\d+)/Y(\d+)/SLICE")


def nextpnr(work: Path, netlist: str, report: str, target, *extra) -> dict:
    args = ["--json", netlist, "--top", TOP, "--freq", "25", "--seed", str(pnr.SEED), "--report", report,
            "--detailed-timing-report", "--timing-allow-fail", "-q", "--out-of-context",
            f"--{target.device}", "--package", target.package, *extra]
    done = subprocess.run(pnr.tool_command("nextpnr-ecp5") + args, cwd=work, capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr + done.stdout).splitlines()   # SystemExit still removes the temporary folder
        sys.exit("nextpnr-ecp5 failed: " + next((line for line in lines if "ERROR" in line),
                                                lines[-1] if lines else "no output"))
    return json.loads((work / report).read_text())


def drivers(module: dict) -> dict:
    """Net bit -> (cell, port) of the cell output driving it."""
    out = {}
    for name, cell in module["cells"].items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                out.update((b, (name, port)) for b in bits)
    return out


def lockable(module: dict, driver: dict):
    """[(position, ff, lut or None)] of the stage outputs' flip-flops that can be locked, and
    {reason: count} of those that cannot."""
    cells, items, skipped = module["cells"], [], defaultdict(int)
    for net in STAGE_NETS:
        if net not in module["netnames"]:
            continue
        bits = module["netnames"][net]["bits"]
        for j, bit in enumerate(bits):
            ff, port = driver.get(bit, (None, None))
            if ff is None or cells[ff]["type"] != "TRELLIS_FF" or port != "Q":
                skipped[f"{net}: unused or not a flip-flop"] += 1
                continue
            conn, par = cells[ff]["connections"], cells[ff]["parameters"]
            if (par.get("CEMUX", "").strip() != "1" and conn.get("CE", ["1"])[0] in driver) \
                    or conn.get("LSR", ["0"])[0] in driver:
                skipped[f"{net}: enable or set/reset in use"] += 1
                continue
            source = driver.get(conn.get("DI", [None])[0])
            if source is not None and cells[source[0]]["type"] != "LUT4":
                skipped[f"{net}: fed by a {cells[source[0]]['type']}"] += 1
                continue
            items.append(((j + 0.5) / len(bits), ff, source and source[0]))
    return sorted(items), dict(skipped)


def serpentine(valid: set, x0: int, y0: int, width: int, count: int) -> list:
    """``count`` tiles of ``valid`` in rows of ``width`` from (x0, y0), each row the other way."""
    tiles, rows = [], 0
    for y in range(y0, max(t[1] for t in valid) + 1):
        row = [(x, y) for x in range(x0, x0 + width) if (x, y) in valid]
        if row:
            tiles += row[::-1] if rows % 2 else row
            rows += 1
        if len(tiles) >= count:
            return tiles[:count]
    sys.exit(f"not enough tiles in rows of {width} from ({x0}, {y0})")


def tile(cell: dict):
    m = _BEL.match(cell["attributes"].get("BEL") or cell["attributes"].get("NEXTPNR_BEL", ""))
    return (int(m[1]), int(m[2])) if m else None


def main():
    build, width = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 26
    with tempfile.TemporaryDirectory(prefix="locked-") as tmp:
        probe(build, Path(tmp), width)


def probe(build: Path, work: Path, width: int):
    if not (build / "pnr" / f"{TOP}.json").is_file() or not (build / "summary.json").is_file():
        sys.exit(f"{build}: not a `lutnet build --core-only` ECP5 build (no summary.json, pnr/{TOP}.json)")
    summary = json.loads((build / "summary.json").read_text())
    target = targets.load(summary["board"])
    if target.family != "ecp5":
        sys.exit(f"{build}: an ECP5 build is needed, not {target.family}")
    src = build / "pnr"
    for name in (f"{TOP}.json", f"{TOP}.v"):
        shutil.copy(src / name, work / name)
    spans = pnr.module_lines(work, [f"{TOP}.v"])
    d = json.loads((work / f"{TOP}.json").read_text())
    module = d["modules"][TOP]
    driver = drivers(module)

    runs = {"nextpnr places all": nextpnr(work, f"{TOP}.json", "free.json", target, "--write", "placed.json")}
    placed = json.loads((work / "placed.json").read_text())["modules"]
    valid = {t for c in next(iter(placed.values()))["cells"].values() if (t := tile(c))}
    xs, ys = {x for x, _ in valid}, {y for _, y in valid}
    valid = {(x, y) for x in xs for y in ys}     # every column and row nextpnr used slices in

    items, skipped = lockable(module, driver)
    tiles = serpentine(valid, min(xs), min(ys), width, -(-len(items) // len(SLOTS)))
    places = [(t, s) for t in tiles for s in SLOTS]
    cells = module["cells"]
    for (_, ff, lut), ((x, y), (s, k)) in zip(items, places):
        cells[ff]["attributes"]["BEL"] = f"X{x}/Y{y}/SLICE{s}.FF{k}"
        if lut:
            cells[lut]["attributes"]["BEL"] = f"X{x}/Y{y}/SLICE{s}.K{k}"
    print(f"locked {len(items)} flip-flops ({sum(1 for i in items if i[2])} with their LUT) on {len(tiles)} "
          f"tiles, {width} a row; not locked: {skipped}")
    (work / "locked.json").write_text(json.dumps(d))
    runs["neurons locked"] = nextpnr(work, "locked.json", "locked_report.json", target)

    for name, report in runs.items():
        stages, critical = pnr.stage_timing(report, module, spans, TOP)
        figures = ", ".join(f"{s} {v['median_ns']:.2f}/{v['worst_ns']:.2f}" for s, v in stages.items())
        print(f"{name}: Fmax {report['fmax']['clk']['achieved']:.1f} MHz, critical {critical}; "
              f"median/slowest arrival (ns): {figures}")

    # locked neurons: arrival at the flip-flop by the distance of the farthest input flip-flop
    by_distance = defaultdict(list)
    for net in runs["neurons locked"]["detailed_net_timings"]:
        for end in net["endpoints"]:
            ff = end["cell"]
            if end["port"] != "DI" or "BEL" not in cells.get(ff, {}).get("attributes", {}):
                continue
            lut = driver.get(cells[ff]["connections"]["DI"][0], (None,))[0]
            if lut is None:
                continue
            far = 0
            for port in "ABCD":
                source = driver.get(cells[lut]["connections"].get(port, [None])[0])
                if source is not None:
                    at, here = tile(cells[source[0]]), tile(cells[ff])
                    far = max(far, abs(at[0] - here[0]) + abs(at[1] - here[1]) if at else 99)
            by_distance[min(far, 12)].append(end["delay"][1])
    print(f"locked neurons, farthest input (tiles; 12 = 12 or more, or not locked) -> arrival (ns): "
          f"count, median, slowest, share over {BUDGET_NS} ns")
    for far in sorted(by_distance):
        v = sorted(by_distance[far])
        print(f"  {far:2d}: {len(v):5d}  {statistics.median(v):.2f}  {v[-1]:.2f}  "
              f"{sum(x > BUDGET_NS for x in v) / len(v):.0%}")


if __name__ == "__main__":
    main()
