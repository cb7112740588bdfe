"""A hardware probe for the Fmax target: how fast is a LUT layer's stage on ECP5 when its wiring is
local and its neurons are placed along that locality, not by nextpnr?

It takes the netlist of an ECP5 core build (`lutnet build ... --board ulx3s-85f --core-only`),
places it as the build did (seed 1), then locks every encoder flip-flop and every LUT neuron (its
LUT4 and its output flip-flop in one slice, so the LUT feeds the flip-flop directly) along a
serpentine of tiles in the order of their position in the network (bit j of n at j / n), and
places and routes again with only the rest left to nextpnr. Neurons whose flip-flop Yosys gave a
set/reset or enable input (part of the neuron's logic) are not locked. The locking is a BEL
attribute per cell in the Yosys JSON netlist.

Without --relays, four neurons share a tile (one per slice). With --relays every LUT input of a
locked neuron gets a flip-flop of its own in the neuron's tile (one neuron per tile), so a long
route is a stage of its own (register to register, no LUT) and the LUT reads from its own tile.
That is a timing probe only: the relays add a cycle per layer that the valid bits do not count,
so the core no longer computes the network.

It prints, for both runs, Fmax and the median and slowest register-input arrival of each stage
(lutnet.pnr.stage_timing), and the arrivals at the locked neurons (and relays) by how far (in
tiles) the flip-flop they read sits: the budget of 0.8 of the fabric ceiling is 2.16 ns.

    bench/local_wiring.py runs/mnist-k4 OUT
    lutnet build OUT -o OUT/ecp5 --board ulx3s-85f --core-only --adder-levels-per-stage 1 \\
        --argmax-levels-per-stage 1 --register-comparisons --stall-free
    bench/locked_placement.py OUT/ecp5 [--relays] [--width TILES]
"""
import argparse
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
BUDGET_NS = 2.16
#: Without relays: one neuron (LUT and flip-flop) per slice.
SHARED = ["SLICEA", "SLICEB", "SLICEC", "SLICED"]
#: With relays: the neuron in slice A's first pair, its relays, and up to three encoder bits.
NEURON, RELAYS, ENCODER = "SLICEA", ["SLICEA.FF1", "SLICEB.FF0", "SLICEB.FF1", "SLICEC.FF0"], \
    ["SLICEC.FF1", "SLICED.FF0", "SLICED.FF1"]
_BEL = re.compile(r"X(\d+)/Y(\d+)/SLICE")
_NO_BEL = re.compile(r"No Bel named 'X\d+/Y(\d+)/")


def nextpnr(work: Path, netlist: str, report: str, target) -> dict:
    """Place and route ``netlist`` as the build does; the report, or the error line."""
    args = ["--json", netlist, "--top", TOP, "--freq", "25", "--seed", str(pnr.SEED), "--report", report,
            "--detailed-timing-report", "--timing-allow-fail", "-q", "--out-of-context",
            f"--{target.device}", "--package", target.package]
    done = subprocess.run(pnr.tool_command("nextpnr-ecp5") + args, cwd=work, capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr + done.stdout).splitlines()
        errors = [line for line in lines if "ERROR" in line] or lines[-1:] or ["no output"]
        return {"error": errors[0]}
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
    {reason: count} of those that cannot; drops the lockable flip-flops' dangling CE/M nets."""
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
            # An unused enable (CEMUX "1") still names a net of its own, and nextpnr refuses two
            # flip-flops with different enable nets in one slice: drop the dangling ones.
            for p in ("CE", "M"):
                if p in conn and conn[p][0] not in driver:
                    del conn[p]
            items.append(((j + 0.5) / len(bits), ff, source and source[0]))
    return sorted(items), dict(skipped)


def add_relays(module: dict, driver: dict, items: list) -> dict:
    """A flip-flop between every flip-flop-driven LUT input of the locked neurons and its
    source; {lut: [relay cells]}."""
    cells = module["cells"]
    first = next(ff for _, ff, lut in items if lut)
    params, clk = dict(cells[first]["parameters"]), cells[first]["connections"]["CLK"]
    bit = 1 + max(b for c in cells.values() for bits in c["connections"].values() for b in bits
                  if isinstance(b, int))
    relays = {}
    for _, _, lut in items:
        if lut is None:
            continue
        relays[lut] = []
        for port in "ABCD":
            source = cells[lut]["connections"].get(port)
            if not source or driver.get(source[0], ("", ""))[1] != "Q":
                continue
            name = f"relay{bit}"
            cells[name] = {"hide_name": 0, "type": "TRELLIS_FF", "parameters": params,
                           # the LUT's source line: the relay counts in the neuron's stage
                           "attributes": {"src": cells[lut]["attributes"].get("src", "")},
                           "port_directions": {"CLK": "input", "M": "input", "LSR": "input", "Q": "output"},
                           "connections": {"CLK": clk, "M": source, "LSR": ["0"], "Q": [bit]}}
            module["netnames"][name] = {"hide_name": 0, "bits": [bit], "attributes": {}}
            cells[lut]["connections"][port] = [bit]
            relays[lut].append(name)
            bit += 1
    return relays


def serpentine(width: int, bad_rows: set):
    """Tiles in rows of ``width`` from (2, 2), each row the other way, skipping ``bad_rows``."""
    y, rows = 2, 0
    while True:
        if y not in bad_rows:
            row = [(x, y) for x in range(2, 2 + width)]
            yield from row[::-1] if rows % 2 else row
            rows += 1
        y += 1


def lock(cells: dict, items: list, relays: dict | None, width: int, bad_rows: set) -> int:
    """Set the BEL attributes; the number of tiles used."""
    tiles, used = serpentine(width, bad_rows), 0

    def bel(cell, where):
        cells[cell]["attributes"]["BEL"] = where

    if relays is None:
        for k, (_, ff, lut) in enumerate(items):
            if k % len(SHARED) == 0:
                (x, y), used = next(tiles), used + 1
            s = SHARED[k % len(SHARED)]
            bel(ff, f"X{x}/Y{y}/{s}.FF0")
            if lut:
                bel(lut, f"X{x}/Y{y}/{s}.K0")
        return used
    free = []
    for _, ff, lut in items:
        if lut is None:                 # an encoder flip-flop: a free slot of the current tile
            if not free:
                (x, y), used, free = next(tiles), used + 1, list(ENCODER)
            bel(ff, f"X{x}/Y{y}/{free.pop(0)}")
            continue
        (x, y), used, free = next(tiles), used + 1, list(ENCODER)
        bel(ff, f"X{x}/Y{y}/{NEURON}.FF0")
        bel(lut, f"X{x}/Y{y}/{NEURON}.K0")
        for relay, where in zip(relays[lut], RELAYS):
            bel(relay, f"X{x}/Y{y}/{where}")
    return used


def tile(cell: dict):
    m = _BEL.match(cell["attributes"].get("BEL", ""))
    return (int(m[1]), int(m[2])) if m else None


def distance(cells: dict, a: str, b: str) -> int:
    """Tiles between two cells (Manhattan), 99 when one is not locked."""
    ta, tb = tile(cells[a]), tile(cells[b])
    return abs(ta[0] - tb[0]) + abs(ta[1] - tb[1]) if ta and tb else 99


def table(title: str, groups: dict):
    print(f"{title}: count, median, slowest (ns), over {BUDGET_NS} ns")
    for key in sorted(groups):
        v = sorted(groups[key])
        over = sum(x > BUDGET_NS for x in v)
        print(f"  {key:2d}: {len(v):5d}  {statistics.median(v):.2f}  {v[-1]:.2f}  "
              f"{over} ({over / len(v):.0%})")


def probe(build: Path, work: Path, width: int, with_relays: bool):
    if not (build / "pnr" / f"{TOP}.json").is_file() or not (build / "summary.json").is_file():
        sys.exit(f"{build}: not a `lutnet build --core-only` ECP5 build (no summary.json, pnr/{TOP}.json)")
    target = targets.load(json.loads((build / "summary.json").read_text())["board"])
    if target.family != "ecp5":
        sys.exit(f"{build}: an ECP5 build is needed, not {target.family}")
    for name in (f"{TOP}.json", f"{TOP}.v"):
        shutil.copy(build / "pnr" / name, work / name)
    spans = pnr.module_lines(work, [f"{TOP}.v"])
    runs = {"nextpnr places all": nextpnr(work, f"{TOP}.json", "free.json", target)}
    if "error" in runs["nextpnr places all"]:
        sys.exit(f"nextpnr-ecp5 failed: {runs['nextpnr places all']['error']}")

    d = json.loads((work / f"{TOP}.json").read_text())
    module = d["modules"][TOP]
    cells, driver = module["cells"], drivers(module)
    items, skipped = lockable(module, driver)
    relays = add_relays(module, driver, items) if with_relays else None
    bad_rows = set()
    while True:
        used = lock(cells, items, relays, width, bad_rows)
        (work / "locked.json").write_text(json.dumps(d))
        report = nextpnr(work, "locked.json", "locked_report.json", target)
        row = _NO_BEL.search(report.get("error", ""))
        if row is None or len(bad_rows) >= 20:
            break
        bad_rows.add(int(row[1]))       # a row of block RAM or DSP tiles: no slices
    if "error" in report:
        sys.exit(f"nextpnr-ecp5 failed: {report['error']}")
    runs["neurons locked"] = report
    print(f"locked {len(items)} flip-flops ({sum(1 for i in items if i[2])} with their LUT"
          f"{f', {sum(map(len, relays.values()))} relays' if relays else ''}) on {used} tiles, "
          f"{width} a row (rows without slices: {sorted(bad_rows)}); not locked: {skipped}")
    for name, report in runs.items():
        stages, critical = pnr.stage_timing(report, module, spans, TOP)
        figures = ", ".join(f"{s} {v['median_ns']:.2f}/{v['worst_ns']:.2f}" for s, v in stages.items())
        print(f"{name}: Fmax {report['fmax']['clk']['achieved']:.1f} MHz, critical {critical}; "
              f"median/slowest arrival (ns): {figures}")

    neurons, relay_routes = defaultdict(list), defaultdict(list)
    for net in runs["neurons locked"]["detailed_net_timings"]:
        for end in net["endpoints"]:
            name, arrival = end["cell"], end["delay"][1]
            if relays and name in cells and name.startswith("relay"):
                source = driver[cells[name]["connections"]["M"][0]][0]
                relay_routes[min(distance(cells, source, name), 30) // 3 * 3].append(arrival)
            elif end["port"] == "DI" and "BEL" in cells.get(name, {}).get("attributes", {}):
                lut = driver.get(cells[name]["connections"]["DI"][0], (None,))[0]
                if lut is None:
                    continue
                sources = [driver.get(cells[lut]["connections"].get(p, [None])[0]) for p in "ABCD"]
                far = max((distance(cells, s[0], name) for s in sources if s), default=0)
                neurons[min(far, 12)].append(arrival)
    table("locked neurons by their farthest input (tiles; 12: 12 or more, or not locked)", neurons)
    if relays:
        table("relays by the distance of their source (tiles, in threes: 3 is 3-5; 30: 30 or more, "
              "or not locked)", relay_routes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="an ECP5 `lutnet build --core-only` folder")
    parser.add_argument("--relays", action="store_true",
                        help="a flip-flop per LUT input, in the neuron's tile")
    parser.add_argument("--width", type=int, help="tiles a row (default 26, 40 with --relays)")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locked-") as tmp:
        probe(a.build, Path(tmp), a.width or (40 if a.relays else 26), a.relays)


if __name__ == "__main__":
    main()
