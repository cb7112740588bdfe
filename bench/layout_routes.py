#!/usr/bin/env python3
"""Lutnet's placement of a `lutnet build --place` core, again, without place and route: how far
the head's counters and the argmax's relay groups land from their points, and how many routes
between locked flip-flops are longer than 11 tiles (columns plus rows; on ECP5 the shorter ones
arrive within 0.8 of the fabric ceiling's period, the longer ones often do not), by the net that
carries them. `--set NAME=VALUE` changes a constant of lutnet.placement first (NEURON_WEIGHT,
ROOT_WEIGHT, ARGMAX_WEIGHT, ROOT_RING, TILE_FILL, CHAIN_ROOM, CROWDED_TILES, HOP_SWEEPS,
LATE_TILES), so layouts can be compared on one netlist in seconds (the hops the netlist has stay
as they were built).

    bench/layout_routes.py BUILD [--set ROOT_RING=0.2 ...]
"""
import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from lutnet import locality, placement
from lutnet.ir import Network

TOP = "lutnet_top"
LONG = placement.LATE_TILES            # read before --set changes it
_XY = re.compile(r"X(\d+)/Y(\d+)/")


def displacement(net: Network, side: int, items: list, tiles: list) -> str:
    """Median and largest distance (tiles, columns plus rows) from each point to its tile."""
    d = [abs(at[1] * side - (t[0] + 0.5)) + abs(at[0] * side - (t[1] + 0.5)) for at, t in zip(items, tiles)]
    return f"{np.median(d):.1f} / {max(d):.1f}" if d else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="an ECP5 `lutnet build --core-only --place` folder")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a constant of lutnet.placement to change first")
    a = parser.parse_args()
    netlist, summary = a.build / "pnr" / f"{TOP}.json", a.build / "summary.json"
    if not netlist.is_file() or not summary.is_file() or not (summary_pnr := json.loads(
            summary.read_text()).get("pnr") or {}).get("placement"):
        sys.exit(f"{a.build}: not a `lutnet build --place --core-only` build (no pnr/{TOP}.json or placement)")
    for item in a.set:
        name, _, value = item.partition("=")
        if not hasattr(placement, name) or not value:
            sys.exit(f"--set {item}: lutnet.placement has no constant {name!r} (or no value given)")
        setattr(placement, name, type(getattr(placement, name))(float(value)))
    net = Network.load(a.build / "model.npz")
    module = json.loads(netlist.read_text())["modules"][TOP]
    info = placement.lock_layers(module, net, skip_rows=summary_pnr["placement"]["skip_rows"])

    plan = placement.counter_plan(net)
    pos = locality.net_positions(net)
    cells, names = module["cells"], module["netnames"]
    driver = placement.drivers(cells)

    def tile(cell):
        m = _XY.match(cells[cell]["attributes"].get("BEL", ""))
        return (int(m[1]), int(m[2])) if m else None

    name_of = {}
    for name, entry in names.items():
        for b in entry["bits"]:
            if isinstance(b, int) and not name.startswith("$"):
                name_of.setdefault(b, name)
    lengths, kinds = [], Counter()
    for cell_name, cell in cells.items():
        if cell["type"] != "TRELLIS_FF":
            continue
        src = driver.get(cell["connections"]["DI"][0], (None,))[0]
        if src is None or cells[src]["type"] != "TRELLIS_FF" or tile(src) is None or tile(cell_name) is None:
            continue
        (x0, y0), (x1, y1) = tile(src), tile(cell_name)
        lengths.append(abs(x0 - x1) + abs(y0 - y1))
        if lengths[-1] > LONG:
            kinds[re.sub(r"\d+", "#", name_of.get(cells[src]["connections"]["Q"][0], "?").split("[")[0])] += 1
    lengths = np.array(lengths)
    print(f"square {info['square']} tiles; {len(lengths)} routes between locked flip-flops, "
          f"{(lengths > LONG).sum()} over {LONG} tiles, {(lengths > 14).sum()} over 14, the longest {lengths.max()}")
    print("over 11 tiles, by the net that carries them: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    if plan:                            # where the layout put the counters and argmax groups
        side, _, counter_tiles, argmax_tiles, _ = placement._layout_tiles(
            [tuple(pos[1 + i][j]) for i, j in placement._lockable_neurons(net, _options(a.build))],
            plan, net.encoder.n_out, placement.argmax_plan(net, plan))
        print(f"from their points (tiles, median / largest): counters "
              f"{displacement(net, side, [k['at'] for k in plan], counter_tiles)}, argmax groups "
              f"{displacement(net, side, [at for _, at in placement.argmax_plan(net, plan)], argmax_tiles)}")


def _options(build: Path):
    from lutnet.hdl import PipelineOptions

    design = json.loads((build / "design.json").read_text())
    return PipelineOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in design["pipeline"].items()})


if __name__ == "__main__":
    main()
