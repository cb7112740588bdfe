"""A hardware probe for the Fmax target: how fast is a LUT layer's stage on ECP5 when the net is
trained local (`--local R`, lutnet.locality) and its neurons are placed where the layout puts them,
not by nextpnr?

It takes the netlist of an ECP5 core build (`lutnet build ... --board ulx3s-85f --core-only`),
places it as the build did (seed 1), then locks every encoder flip-flop and every LUT neuron (its
LUT4 and its output flip-flop in one slice, so the LUT feeds the flip-flop directly) at the tile
its position in the layout maps to, on a square of tiles, and places and routes again with only
the rest left to nextpnr. A neuron whose flip-flop Yosys gave a set/reset or enable input (part of
the neuron's logic) is not locked, nor the LUT of a neuron that Yosys shares with another (the
flip-flop alone is; locked, such a LUT crashes nextpnr-ecp5 0.11's placer). The locking is a BEL
attribute per cell in the Yosys JSON netlist.

PER_TILE neurons share a tile on average (two per slice at most), and each LUT reads its inputs
straight from the previous layer's flip-flops. (The design this probe led to, a relay flip-flop per
LUT input in the neuron's tile and one neuron a tile, is `lutnet build --place`.)

It prints, for both runs, Fmax and the median and slowest register-input arrival of each stage
(lutnet.pnr.stage_timing), and the arrivals at the locked neurons by how far (in tiles) their
farthest input sits: the budget of 0.8 of the fabric ceiling is 2.16 ns. A `--place` build is
measured as it was placed (how many register inputs per stage are over the budget too), and
`--seeds N` places and routes its locked netlist again with nextpnr seeds 1..N, and counts the
locked cells that nextpnr placed elsewhere (seed 1).

    lutnet distill runs/mnist-1500 -o OUT --k 4 --group 50 --local 0.1
    lutnet build OUT -o OUT/ecp5 --board ulx3s-85f --core-only --adder-levels-per-stage 1 \\
        --argmax-levels-per-stage 1 --register-comparisons --stall-free
    bench/locked_placement.py OUT/ecp5 [--per-tile N]
    bench/locked_placement.py PLACE_BUILD [--seeds N]
"""
import argparse
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from lutnet import locality, placement, pnr, targets
from lutnet.ir import Network

TOP = "lutnet_top"
STAGE_NETS = ("encoder.o", "layer0.o", "layer1.o", "layer2.o", "layer3.o")
BUDGET_NS = 2.16
#: Up to two neurons (LUT and flip-flop) a slice.
SHARED = ["SLICEA", "SLICEB", "SLICEC", "SLICED"]
_BEL = re.compile(r"X(\d+)/Y(\d+)/SLICE")
_NO_BEL = re.compile(r"No Bel named 'X\d+/Y(\d+)/")


def nextpnr(work: Path, netlist: str, report: str, target, seed: int = pnr.SEED, goal: float = 25,
            ripup: bool = False, write: str | None = None) -> dict:
    """Place and route ``netlist`` as the build does (with ``seed``, the timing ``goal`` in MHz and
    ``ripup``, see ``lutnet.flow.PLACE_GOAL``; the placed netlist written to ``write``, if given);
    the report, or the error line."""
    args = ["--json", netlist, "--top", TOP, "--freq", f"{goal:g}", "--seed", str(seed), "--report", report,
            "--detailed-timing-report", "--timing-allow-fail", "-q", "--out-of-context",
            f"--{target.device}", "--package", target.package] + (["--tmg-ripup"] if ripup else []) \
        + (["--write", write] if write else [])
    if getattr(target, "speed_grade", ""):
        args += ["--speed", str(target.speed_grade)]
    done = subprocess.run(pnr.tool_command("nextpnr-ecp5") + args, cwd=work, capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr + done.stdout).splitlines()
        errors = [" ".join(lines[i:i + 2]) for i, line in enumerate(lines) if "ERROR" in line] or lines[-1:] or ["no output"]
        return {"error": errors[0], "tail": lines[-8:]}
    return json.loads((work / report).read_text())


def lockable(module: dict, driver: dict):
    """[(stage net, bit, ff, lut or None)] of the stage outputs' flip-flops that can be locked, and
    {reason: count} of those that cannot; drops the lockable flip-flops' dangling CE/M nets."""
    cells, items, skipped = module["cells"], [], defaultdict(int)
    readers = placement.readers(cells)
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
            if source is not None and len(readers[cells[source[0]]["connections"]["Z"][0]]) > 1:
                # a LUT Yosys shares between neurons (or uses elsewhere): locked next to one of its
                # flip-flops, it crashes nextpnr-ecp5 0.11's placer; the flip-flop is locked alone
                source = None
            # An unused enable (CEMUX "1") still names a net of its own, and nextpnr refuses two
            # flip-flops with different enable nets in one slice: drop the dangling ones.
            for p in ("CE", "M"):
                if p in conn and conn[p][0] not in driver:
                    del conn[p]
            items.append((net, j, ff, source and source[0]))
    return items, dict(skipped)


def grid_lock(cells: dict, items: list, per_tile: int, bad_rows: set) -> int:
    """Lock every item at the tile its 2-D position (lutnet.locality) maps to on a square of tiles
    from (2, 2) holding ``per_tile`` items each on average; an item whose tile is full takes the
    nearest one with room. The number of tiles used."""
    side = math.ceil(math.sqrt(len(items) / per_tile))
    rows = [y for y in range(2, 2 + 2 * side + len(bad_rows) + 40) if y not in bad_rows]
    # slots: (flip-flop BEL, LUT BEL or None)
    shared = [(f"{s}.FF{half}", f"{s}.K{half}") for half in "01" for s in SHARED]
    slots = {"neuron": shared, "encoder": shared}
    fill = defaultdict(list)           # tile -> slots taken

    def free(ix, iy, kind):
        for ring in range(4 * side):
            ring_tiles = [(ix + dx, iy + dy) for dx in range(-ring, ring + 1) for dy in range(-ring, ring + 1)
                          if max(abs(dx), abs(dy)) == ring and ix + dx >= 0 and iy + dy >= 0]
            for t in sorted(ring_tiles, key=lambda t: abs(t[0] - ix) + abs(t[1] - iy)):
                left = [s for s in slots[kind] if s not in fill[t]]
                if left:
                    fill[t].append(left[0])
                    return t, left[0]
        raise RuntimeError("no free tile")

    for (r, c), ff, lut in items:
        (ix, iy), (ff_bel, lut_bel) = free(min(side - 1, int(c * side)), min(side - 1, int(r * side)),
                                           "neuron" if lut else "encoder")
        x, y = 2 + ix, rows[iy]
        cells[ff]["attributes"]["BEL"] = f"X{x}/Y{y}/{ff_bel}"
        if lut:
            cells[lut]["attributes"]["BEL"] = f"X{x}/Y{y}/{lut_bel}"
    return len(fill)


def grid_positions(build: Path, items: list) -> list:
    """[(position, ff, lut)]: the items placed by the build's model (lutnet.locality.chain)."""
    summary = json.loads((build / "summary.json").read_text())
    net = Network.load(summary["model"])
    widths = [layer.n_out for layer in net.layers]
    pos = locality.chain(net.encoder.n_features, net.encoder.levels, widths,
                         net.n_classes if net.head.kind == "group_sum" else None)
    out = []
    for stage, j, ff, lut in items:
        p = pos[0] if stage == "encoder.o" else pos[1 + int(stage[len("layer"):-len(".o")])]
        out.append((tuple(p[j]), ff, lut))
    return out


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


_HEAD_ROUTE = re.compile(r"head\.sum\d+_[rh]\d+")


def arrivals(report: dict, module: dict, driver: dict) -> tuple[dict, dict, dict, dict]:
    """Arrivals at the locked neurons by the distance of their farthest input, and at the relay
    flip-flops (`lutnet build --place`: Q net named ``layerN.relayJ``), at the head counters'
    relays and hops (``head.sumC_rS``, ``head.sumC_hS_K``) and at every locked flip-flop that
    loads another's output (a route alone: these, the argmax's relays and delay lines) by that
    of their source."""
    cells = module["cells"]
    relay_bits = {b for name, net in module["netnames"].items() if ".relay" in name for b in net["bits"]}
    head_bits = {b for name, net in module["netnames"].items() if _HEAD_ROUTE.match(name) for b in net["bits"]}
    neurons, relays, head, routes = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for net in report["detailed_net_timings"]:
        for end in net["endpoints"]:
            name, arrival = end["cell"], end["delay"][1]
            cell = cells.get(name, {})
            if end["port"] not in ("DI", "M") or "BEL" not in cell.get("attributes", {}):
                continue
            # nextpnr feeds a flip-flop that no LUT of its slice drives through M; in the Yosys
            # netlist its data input is DI either way
            source = driver.get(cell["connections"]["DI"][0], (None,))[0]
            if source is None:
                continue
            if cells[source]["type"] == "TRELLIS_FF":
                routes[min(distance(cells, source, name), 30) // 3 * 3].append(arrival)
            if cell["connections"]["Q"][0] in relay_bits:
                relays[min(distance(cells, source, name), 30) // 3 * 3].append(arrival)
            elif cell["connections"]["Q"][0] in head_bits:
                head[min(distance(cells, source, name), 30) // 3 * 3].append(arrival)
            elif cells[source]["type"] == "LUT4":
                inputs = [driver.get(cells[source]["connections"].get(p, [None])[0]) for p in "ABCD"]
                far = max((distance(cells, s[0], name) for s in inputs if s), default=0)
                neurons[min(far, 12)].append(arrival)
    return neurons, relays, head, routes


def late_by_stage(report: dict) -> dict:
    """Per stage (the first part of a cell's name; ``glue`` for the top's own), how many
    register inputs arrive later than the budget, and how many there are."""
    late, total = defaultdict(int), defaultdict(int)
    for net in report["detailed_net_timings"]:
        for end in net["endpoints"]:
            stage = end["cell"].split(".")[0] if "." in end["cell"] else "glue"
            total[stage] += 1
            late[stage] += end["delay"][-1] > BUDGET_NS
    return {s: (late[s], total[s]) for s in sorted(total)}


def moved(placed: Path, routed: Path) -> Counter:
    """The cells locked in ``placed`` (a ``BEL`` attribute) that nextpnr's ``routed`` netlist has
    elsewhere (``NEXTPNR_BEL``), by net name with the numbers as #: nextpnr-ecp5 keeps a LUT4 and
    the one flip-flop it loads together where the LUT goes, whatever the flip-flop's BEL says."""
    cells = json.loads(placed.read_text())["modules"][TOP]["cells"]
    final = next(iter(json.loads(routed.read_text())["modules"].values()))["cells"]
    return Counter(re.sub(r"\d+", "#", name.split("_TRELLIS")[0]) for name, cell in cells.items()
                   if "BEL" in cell["attributes"]
                   and final[name]["attributes"].get("NEXTPNR_BEL") != cell["attributes"]["BEL"])


def seeds(build: Path, work: Path, n: int, target, goal: float, ripup: bool):
    """Place and route the build's locked netlist again with seeds 1..n, the timing ``goal`` (MHz)
    and ``ripup``: Fmax for each, and the median (nextpnr's placement of the cells lutnet leaves
    to it moves Fmax by +-10 %)."""
    shutil.copy(build / "pnr" / "placed.json", work / "placed.json")
    fmax = []
    for seed in range(1, n + 1):
        report = nextpnr(work, "placed.json", f"seed{seed}.json", target, seed, goal, ripup,
                         write="routed.json" if seed == 1 else None)
        if "error" in report:
            sys.exit(f"nextpnr-ecp5 failed (seed {seed}): {report['error']}")
        fmax.append(report["fmax"]["clk"]["achieved"])
        if seed == 1:
            print("locked cells that nextpnr placed elsewhere (seed 1): "
                  + (", ".join(f"{k} {v}" for k, v in moved(work / "placed.json", work / "routed.json").most_common())
                     or "none"))
    print(f"Fmax with seeds 1-{n}, goal {goal:g} MHz{', rip-up' if ripup else ''} (MHz): "
          f"{', '.join(f'{f:.1f}' for f in fmax)}; median "
          f"{statistics.median(fmax):.1f}, best {max(fmax):.1f} (seed {fmax.index(max(fmax)) + 1})")


def probe(build: Path, work: Path, per_tile: int, n_seeds: int = 0, goal: float | None = None,
          ripup: bool | None = None):
    if not (build / "pnr" / f"{TOP}.json").is_file() or not (build / "summary.json").is_file():
        sys.exit(f"{build}: not a `lutnet build --core-only` ECP5 build (no summary.json, pnr/{TOP}.json)")
    summary = json.loads((build / "summary.json").read_text())
    target = targets.load(summary["board"])
    if target.family != "ecp5":
        sys.exit(f"{build}: an ECP5 build is needed, not {target.family}")
    placed = build / "pnr" / "placed.json"
    if placed.is_file():
        # a `lutnet build --place` build: its own placement, measured as it is
        module = json.loads(placed.read_text())["modules"][TOP]
        report = json.loads((build / "pnr" / "report.json").read_text())
        print(f"lutnet build --place: {summary['pnr']['placement']}")
        stages = summary["pnr"]["stage_timing"]
        print(f"Fmax {summary['pnr']['fmax_mhz']} MHz; median/slowest arrival (ns): "
              + ", ".join(f"{s} {v['median_ns']:.2f}/{v['worst_ns']:.2f}" for s, v in stages.items()))
        print(f"register inputs over {BUDGET_NS} ns: "
              + ", ".join(f"{s} {late}/{total}" for s, (late, total) in late_by_stage(report).items()))
        if n_seeds:
            pnr_result = summary["pnr"]
            seeds(build, work, n_seeds, target, pnr_result["target_mhz"] if goal is None else goal,
                  pnr_result.get("ripup", False) if ripup is None else ripup)
    else:
        module, report = lock_and_place(build, work, per_tile, target)
    neurons, relays, head, routes = arrivals(report, module, placement.drivers(module["cells"]))
    table("locked neurons by their farthest input (tiles; 12: 12 or more, or not locked)", neurons)
    if relays:
        table("relays by the distance of their source (tiles, in threes: 3 is 3-5; 30: 30 or more, "
              "or not locked)", relays)
    if head:
        table("the head counters' relays and hops by the distance of their source (as above)", head)
    if routes:
        table("every route from a flip-flop to a flip-flop by its length (as above)", routes)


def lock_and_place(build: Path, work: Path, per_tile: int, target) -> tuple[dict, dict]:
    """Place the build's netlist as it is, then with its neurons locked PER_TILE a tile; print
    both runs' figures, return the locked netlist's top module and its nextpnr report."""
    for name in (f"{TOP}.json", f"{TOP}.v"):
        shutil.copy(build / "pnr" / name, work / name)
    spans = pnr.module_lines(work, [f"{TOP}.v"])
    runs = {"nextpnr places all": nextpnr(work, f"{TOP}.json", "free.json", target)}
    if "error" in runs["nextpnr places all"]:
        sys.exit(f"nextpnr-ecp5 failed: {runs['nextpnr places all']['error']}")

    d = json.loads((work / f"{TOP}.json").read_text())
    module = d["modules"][TOP]
    cells, driver = module["cells"], placement.drivers(module["cells"])
    items, skipped = lockable(module, driver)
    items = grid_positions(build, items)
    bad_rows = set()
    while True:
        used = grid_lock(cells, items, per_tile, bad_rows)
        (work / "locked.json").write_text(json.dumps(d))
        report = nextpnr(work, "locked.json", "locked_report.json", target)
        row = _NO_BEL.search(report.get("error", ""))
        if row is None or len(bad_rows) >= 20:
            break
        bad_rows.add(int(row[1]))       # a row of block RAM or DSP tiles: no slices
    if "error" in report:
        sys.exit(f"nextpnr-ecp5 failed: {report['error']} {report.get('tail')}")
    runs["neurons locked"] = report
    print(f"locked {len(items)} flip-flops ({sum(1 for i in items if i[2])} with their LUT) on {used} tiles, "
          f"{per_tile} a tile (rows without slices: {sorted(bad_rows)}); not locked: {skipped}")
    for name, run in runs.items():
        stages, critical = pnr.stage_timing(run, module, spans, TOP)
        figures = ", ".join(f"{s} {v['median_ns']:.2f}/{v['worst_ns']:.2f}" for s, v in stages.items())
        print(f"{name}: Fmax {run['fmax']['clk']['achieved']:.1f} MHz, critical {critical}; "
              f"median/slowest arrival (ns): {figures}")
    return module, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="an ECP5 `lutnet build --core-only` folder; with --place, "
                                                 "its own placement is measured")
    parser.add_argument("--per-tile", type=int, default=4, choices=range(1, 9), metavar="N",
                        help="neurons a tile on average, 1..8 (default 4)")
    parser.add_argument("--seeds", type=int, default=0, metavar="N",
                        help="a --place build: place and route it again with nextpnr seeds 1..N")
    parser.add_argument("--goal", type=float, metavar="MHZ",
                        help="with --seeds: nextpnr's timing goal (default: the build's)")
    parser.add_argument("--ripup", action=argparse.BooleanOptionalAction,
                        help="with --seeds: nextpnr's timing-driven rip-up (default: as the build)")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="locked-") as tmp:
        probe(a.build, Path(tmp), a.per_tile, a.seeds, a.goal, a.ripup)


if __name__ == "__main__":
    main()
