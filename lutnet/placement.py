# amaranth: UnusedElaboratable=no
"""lutnet's own placement of a LUT-Net's layers on the ECP5 (``lutnet build --place``).

nextpnr places a LUT-Net like any netlist: a neuron's LUT lands near some of its inputs and far
from others, and a route of two to six tiles into a LUT costs 1.2-1.4 ns, against 0.83 ns for the
ceiling's register -> LUT -> register hop inside one tile. This module places the layers by the
layout the net was trained on (:mod:`lutnet.locality`) instead: every LUT neuron goes to a tile
near its position on a square of tiles (all layers on one square, one neuron a tile, assigned
with the least total displacement), with its relay registers
(``PipelineOptions.relay_inputs``) in the same tile. Each stage is then a route alone (a register
to a relay, short when the net was trained ``--local``) or a LUT reading registers in its own tile.
Encoder bits take the tiles' spare flip-flops, each among the neurons that read it (a bit that
its comparator's LUT loads is left to nextpnr, which keeps the two together). A group-sum
head built with one LUT between registers (``PipelineOptions.one_lut_head``) has its counters
placed the same way, a counter with its relays a tile, on the same square
(:func:`_head_counters`), and the hop registers that ``PipelineOptions.head_hops`` puts before
the counters' relays (:func:`head_hops` chooses how many) along the routes they split, then
moved for the shortest routes into and out of them (:func:`_lock_hops`). The
head's argmax, built with relays too (:func:`lutnet.hdl.argmax.build_one_lut_argmax`), has each
relay register in a tile of its own with the LUTs that read it, on the same square, near the
roots of the classes it compares (:func:`argmax_plan`), and its delay lines in free flip-flops
along their way (:func:`_lock_chains`). The output buffer and the glue are left to nextpnr.

The placement is a ``BEL`` attribute on each locked cell of the flat Yosys netlist, which
nextpnr-ecp5 honours. What cannot be locked is left to nextpnr and counted by reason:

- a neuron whose flip-flop Yosys gave a set/reset or an enable (part of the neuron's logic;
  the placement flow legalizes flip-flops to plain ones first, see :data:`PLAIN_FFS`);
- a neuron LUT that Yosys shares with another neuron: locked, such a LUT crashed
  nextpnr-ecp5 0.11's placer ("thrown Wasm exception"); its flip-flop is locked alone;
- bits that no register drives (an unregistered layer, a constant or copying neuron).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

import numpy as np
from scipy.optimize import linear_sum_assignment

from . import locality
from .ir import LutLayer, Network

__all__ = ["PLAIN_FFS", "PlacementError", "check_net", "drivers", "readers", "lock_layers", "no_slice_row"]

#: Yosys commands, between ``synth_ecp5 -run :map_ffs`` and ``-run map_ffs:``, that leave only
#: plain flip-flops (no synchronous set/reset, no enable): otherwise Yosys folds part of a
#: neuron's logic into its flip-flop's LSR input, and such a flip-flop cannot share a slice with
#: the neuron's LUT. Measured on layer1 of the local MNIST K = 4 net: LSR users 84 -> 0, LUT4
#: 490 -> 456.
PLAIN_FFS = "dfflegalize -cell $_DFF_?_ 01 -cell $_DFF_?P?_ r"

#: One tile of four slices (two LUT4s and two flip-flops each): the neuron's LUT and flip-flop in
#: slice A's first pair, its relays in the next four flip-flops, encoder bits in the last three.
NEURON = ("SLICEA.FF0", "SLICEA.K0")
RELAYS = ("SLICEA.FF1", "SLICEB.FF0", "SLICEB.FF1", "SLICEC.FF0")
SPARE = ("SLICEC.FF1", "SLICED.FF0", "SLICED.FF1")
#: First column and row of the square (the fabric's edge tiles hold I/O, not slices).
ORIGIN = 2

#: A counter of a one-LUT head (``PipelineOptions.one_lut_head`` with relays) has a tile of its
#: own: its output bits' LUT and flip-flop pairs, then its relays.
COUNTER_OUTPUTS = (("SLICEA.FF0", "SLICEA.K0"), ("SLICEA.FF1", "SLICEA.K1"), ("SLICEB.FF0", "SLICEB.K0"))
COUNTER_RELAYS = ("SLICEB.FF1", "SLICEC.FF0", "SLICEC.FF1", "SLICED.FF0")

_NO_BEL = re.compile(r"No Bel named 'X\d+/Y(\d+)/")
_RELAY = re.compile(r"relay(\d+)$")


class PlacementError(ValueError):
    """The net or the netlist cannot be placed this way (one line)."""


def no_slice_row(error: str) -> int | None:
    """The row nextpnr-ecp5 named in a "No Bel named 'X../Y../SLICE..'" error (a row of block
    RAM or DSP tiles, without slices), or None for any other error."""
    m = _NO_BEL.search(error)
    return int(m[1]) if m else None


def check_net(net: Network):
    """Raise :class:`PlacementError` unless every LUT layer fits one tile a neuron (K <= 4)."""
    luts = [layer for layer in net.layers if isinstance(layer, LutLayer)]
    if not luts:
        raise PlacementError("--place places LUT layers, and this net has none")
    wide = [i for i, layer in enumerate(net.layers) if isinstance(layer, LutLayer) and layer.k > len(RELAYS)]
    if wide:
        raise PlacementError(f"--place needs LUT neurons of at most {len(RELAYS)} inputs (one LUT4 a tile); "
                             f"layer{wide[0]} has K = {net.layers[wide[0]].k}")


def drivers(cells: dict) -> dict:
    """Net bit -> (cell, port) of the cell output driving it."""
    out = {}
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "output":
                out.update((b, (name, port)) for b in bits)
    return out


def readers(cells: dict) -> dict:
    """Net bit -> the cells reading it, once per input that does."""
    out = defaultdict(list)
    for name, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input":
                for b in bits:
                    out[b].append(name)
    return out


def _plain_ff(cells, driver, bit, skipped, what) -> str | None:
    """The TRELLIS_FF whose Q drives ``bit`` if it has no set/reset or enable in use, else None
    (counted in ``skipped``); drops its dangling CE/M nets (an unused enable still names a net of
    its own, and nextpnr refuses two flip-flops with different enable nets in one slice)."""
    if bit not in driver:                # a constant, or nothing reads it (Yosys removed it)
        skipped[f"{what}: constant or unread"] += 1
        return None
    ff, port = driver[bit]
    if cells[ff]["type"] != "TRELLIS_FF" or port != "Q":
        skipped[f"{what}: not driven by a flip-flop"] += 1
        return None
    conn, par = cells[ff]["connections"], cells[ff]["parameters"]
    if (str(par.get("CEMUX", "")).strip() != "1" and conn.get("CE", ["1"])[0] in driver) \
            or conn.get("LSR", ["0"])[0] in driver:
        skipped[f"{what}: enable or set/reset in use"] += 1
        return None
    for p in ("CE", "M"):
        if p in conn and conn[p][0] not in driver:
            del conn[p]
    return ff


#: The weights of a point's displacement from its layout position when the neurons, the head's
#: counters and the argmax's relay groups are assigned to tiles together (a counter's is 1). The
#: middle of the square is contested: the counters converge on it and push neurons away, which
#: lengthens the layers' routes, and the argmax's groups pushed out of it lengthen its own.
#: ``ROOT_WEIGHT`` is a class's last counters'. On the local MNIST core (``--place --always-ready
#: --hops``, the board clock as nextpnr's goal) the flip-flop-to-flip-flop routes over 11 tiles
#: (shorter ones arrive within the 2.16 ns budget but for 2 of 12,030) went from 230 to 84, the
#: longest from 20 to 16 tiles, and Fmax from 399.2 to 426.1 MHz, with weights 4 / 1.5 / 2
#: instead of 2 / 1 / 1, the roots on a ring (``ROOT_RING``) and room for the delay lines
#: (``CHAIN_ROOM``); 4 / 8 / 8 without the ring left a hole in the middle that the encoder's and
#: the layers' routes had to cross (378.2 MHz).
NEURON_WEIGHT = 4.0
ROOT_WEIGHT = 1.5
ARGMAX_WEIGHT = 2.0
#: The radius (a share of the square's side) of the ring the classes' roots are pinned to, in
#: class order, around the middle: every class reads every region, so without it all roots and
#: the whole argmax want the same few tiles. On the local MNIST core the argmax's relay groups
#: land 4.1 tiles from their points at the median, 8.1 at most (7.5 and 17.7 before), and the
#: routes between locked flip-flops over 11 tiles are 49 against 134 unpinned, 65 and 70 with
#: rings of 0.2 and 0.3, those over 14 tiles 1 against 21, 15 and 28 (``bench/layout_routes.py
#: BUILD --set ROOT_RING=0``). 0: not pinned.
ROOT_RING = 0.1
#: One tile left free for the argmax's delay lines for every this many of its relay groups, at
#: their points: the middle of the square is otherwise full to the last flip-flop, and a delay
#: line stepping towards its sink found its nearest free flip-flop 13-18 tiles away (415.8 MHz
#: without, 426.1 with, both with the board clock as nextpnr's goal). 0: none.
CHAIN_ROOM = 3


def _assign(points, side: int, per_tile: int, tiles=None, weights=None) -> list:
    """The tile (column, row) of each point (row, column in [0, 1)) on a square of ``side``
    tiles (or on the given ``tiles`` of it) holding ``per_tile`` points each: the assignment
    with the least total squared distance from each point to its tile's centre, times the
    point's weight (a point whose tile is taken moves as little as the others allow, where a
    greedy fill pushes the last ones far away)."""
    if not points:
        return []
    if tiles is None:
        tiles = [(x, y) for y in range(side) for x in range(side)]
    tiles = list(tiles) * per_tile
    centres = (np.array(tiles) + 0.5) / side
    at = np.array([(c, r) for r, c in points])
    cost = ((at[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    if weights is not None:
        cost *= np.asarray(weights, dtype=float)[:, None]
    rows, cols = linear_sum_assignment(cost)
    out = [None] * len(points)
    for r, c in zip(rows, cols):
        out[r] = tiles[c]
    return out


def _lut_of(cells, driver, read_by, ff, skipped, what) -> str | None:
    """The LUT4 loading flip-flop ``ff``, if it is one and feeds nothing else (else None; a
    shared one counted in ``skipped``, see the module docstring)."""
    lut = driver.get(cells[ff]["connections"]["DI"][0], (None,))[0]
    if lut is None or cells[lut]["type"] == "TRELLIS_FF":
        return None
    if cells[lut]["type"] != "LUT4" or len(read_by[cells[lut]["connections"]["Z"][0]]) > 1:
        skipped[f"{what} LUT shared or not a LUT4 (flip-flop locked alone)"] += 1
        return None
    return lut


def counter_plan(net: Network) -> list:
    """The counters of a one-LUT group-sum head (``PipelineOptions.one_lut_head``), as dicts:
    ``cls``, ``stage``, ``inputs`` (the stage's input bits it reads), ``first`` (the index of
    its first relay in the stage's relays), ``outputs`` (its bits among the stage's outputs),
    ``reads`` (per relay, what it reads: ``("member", head input bit)`` or ``("counter",
    index)``) and ``at`` (its position in the layout's unit square, row and column). Empty for
    other heads.

    The positions minimise the sum of the squared lengths of the routes into the counters, the
    head's members fixed at their layout positions (each counter at the mean of the counters and
    members it reads and of the counters that read it, relaxed until it settles): a class's
    counters converge on its root in steps of about equal length, where each counter at the
    centre of its inputs leaves the long steps to the stages after the first. The last stage's
    counters (each class's root) are pinned to a ring of radius :data:`ROOT_RING` around the
    middle, one point a class."""
    from .hdl.popcount import counter_stages
    from .hdl.top import member_orders

    head = net.head
    if head.kind != "group_sum":
        return []
    g = head.group
    pos = locality.net_positions(net)[-1]
    stages = counter_stages(g)
    plan = []
    for c, order in enumerate(member_orders(net)):
        made_by = [("member", c * g + int(i)) for i in order]
        for s, stage in enumerate(stages):
            keys = list(dict.fromkeys(inputs for inputs, _ in stage))
            nxt = [None] * len(stage)
            first = 0
            for key in keys:
                outs = [j for j, (inputs, _) in enumerate(stage) if inputs == key]
                for j in outs:
                    nxt[j] = ("counter", len(plan))
                plan.append({"cls": c, "stage": s, "inputs": key, "first": first, "outputs": outs,
                             "reads": [made_by[i] for i in key]})
                first += len(key)
            made_by = nxt
    if not plan:
        return []
    fixed = [[np.asarray(pos[x], dtype=float) for kind, x in k["reads"] if kind == "member"] for k in plan]
    neighbours = [[x for kind, x in k["reads"] if kind == "counter"] for k in plan]
    for n, k in enumerate(plan):
        for kind, x in k["reads"]:
            if kind == "counter":
                neighbours[x].append(n)
    at = np.array([np.mean(f, axis=0) if f else np.full(2, 0.5) for f in fixed])
    last, classes = max(k["stage"] for k in plan), max(k["cls"] for k in plan) + 1
    pinned = {n: 0.5 + ROOT_RING * np.array([np.sin(2 * np.pi * k["cls"] / classes),
                                             np.cos(2 * np.pi * k["cls"] / classes)])
              for n, k in enumerate(plan) if k["stage"] == last and classes > 1 and ROOT_RING > 0}
    for n, p in pinned.items():
        at[n] = p
    for _ in range(200):
        new = np.array([pinned[n] if n in pinned
                        else np.mean(fixed[n] + [at[j] for j in neighbours[n]], axis=0) if fixed[n] or neighbours[n]
                        else at[n] for n in range(len(at))])
        if np.abs(new - at).max() < 1e-4:
            break
        at = new
    for k, p in zip(plan, at):
        k["at"] = tuple(p)
    return plan


def argmax_plan(net: Network, plan: list) -> list:
    """The relay registers of the argmax of a one-LUT group-sum head built with relays
    (:func:`lutnet.hdl.argmax.one_lut_argmax_relay_groups`), as (signal name, position in the
    layout's unit square): the mean of the roots (the last counters, :func:`counter_plan`
    ``plan``) of the classes its bits depend on. Each takes a tile with the LUTs that read it;
    empty without counters."""
    from .hdl.argmax import one_lut_argmax_relay_groups

    if not plan:
        return []
    last = max(k["stage"] for k in plan)
    roots = {c: np.mean([k["at"] for k in plan if k["cls"] == c and k["stage"] == last], axis=0)
             for c in {k["cls"] for k in plan}}
    return [(name, tuple(np.mean([roots[c] for c in classes], axis=0)))
            for name, classes in one_lut_argmax_relay_groups(net.head.n_classes, net.head.score_bits)]


def _head_counters(module: dict, net: Network, prefix: str, driver, read_by, skipped) -> list:
    """:func:`counter_plan` with each counter's cells in the flat netlist ``module``:
    ``relays`` (flip-flops), ``pairs`` ((flip-flop, LUT or None) per output) and ``hop_ffs``
    (per relay, the flip-flops of its hop registers, first hop first), found as
    :func:`lutnet.hdl.popcount.build_counter_count` names them: relays in ``head.sum{c}_r{s}``,
    hops in ``head.sum{c}_h{s}_{k}``, outputs in ``head.sum{c}_s{s}`` (the last stage's in
    ``head.scores``)."""
    cells, names = module["cells"], module["netnames"]
    head = net.head
    if head.kind != "group_sum" or f"{prefix}head.sum0_r0" not in names:
        return []
    w = head.score_bits
    scores = names.get(f"{prefix}head.scores", {}).get("bits")
    plan = counter_plan(net)
    last = max(k["stage"] for k in plan)

    def bits(name):
        return names.get(f"{prefix}head.{name}", {}).get("bits", [])

    for k in plan:
        c, s, first, n = k["cls"], k["stage"], k["first"], len(k["inputs"])
        relay_bits = bits(f"sum{c}_r{s}")[first:first + n]
        out_bits = (bits(f"sum{c}_s{s}") if s < last
                    else [] if scores is None else scores[c * w:(c + 1) * w])
        hops = []
        while f"{prefix}head.sum{c}_h{s}_{len(hops)}" in names:
            hops.append(bits(f"sum{c}_h{s}_{len(hops)}")[first:first + n])
        k["relays"] = [_plain_ff(cells, driver, b, skipped, "head relay") for b in relay_bits]
        k["hop_ffs"] = [[_plain_ff(cells, driver, h[r], skipped, "head hop") for h in hops]
                        for r in range(n)]
        k["pairs"] = []
        for j in k["outputs"]:
            ff = _plain_ff(cells, driver, out_bits[j], skipped, "head counter") if j < len(out_bits) else None
            if ff is not None:
                k["pairs"].append((ff, _lut_of(cells, driver, read_by, ff, skipped, "head counter")))
    return plan


#: Tiles a head relay's route may cross (columns plus rows: a route's delay follows its Manhattan
#: length, and hops planned by the larger of the two let diagonal hops of 14-20 tiles through,
#: 2.2-2.5 ns) before ``--hops`` splits it. On the local MNIST core a
#: relay whose source is 6-8 tiles away arrives late 1 % of the time, 9-11 tiles away 2-11 %.
#: With the argmax placed by nextpnr, fewer and longer hops left it room near the counters
#: (284.1, 297.1, 332.2, 338.6 and 335.0 MHz for 8, 12, 16, 20 and 24 tiles); with the argmax
#: placed by lutnet too, 10 tiles beat 20 (398.4 against 333.3 MHz).
HOP_TILES = 10


#: The share of the square's tiles the neurons, counters and argmax groups take; the rest is room
#: for the encoder's bits, the hops and the delay lines near their points. Placed again on one
#: netlist of the local MNIST core (``bench/layout_routes.py BUILD --set TILE_FILL=...``, the
#: hops as built), the routes between locked flip-flops over 11 tiles are 29, 34, 49, 75 and 117
#: for 1.0, 0.9, 0.8, 0.7 and 0.6; but built so, a fuller square needs more hops: at 1.0 more
#: than it has free flip-flops (4,672 for 4,225), at 0.9 a hop stage more (latency 66 against
#: 64) and 461.9 against 466.9 MHz. A sparse one spreads the layers.
TILE_FILL = 0.8


def _layout_tiles(neuron_points: list, plan: list, n_encoder: int, argmax: list = ()):
    """The square's side and the tiles of the neurons, of the head's counters, of the argmax's
    relay groups and of the tiles left free for its delay lines (see :func:`lock_layers`)."""
    n, c, a = len(neuron_points), len(plan), len(argmax)
    room = [at for _, at in argmax][::CHAIN_ROOM] if CHAIN_ROOM else []
    side = max(math.ceil(math.sqrt((n + c + a) / TILE_FILL)), math.ceil(math.sqrt(n + c + a + len(room))),
               math.ceil(math.sqrt(n_encoder / len(SPARE))))
    last = max((k["stage"] for k in plan), default=0)
    tiles = _assign(list(neuron_points) + [k["at"] for k in plan] + [at for _, at in argmax] + room, side, 1,
                    weights=[NEURON_WEIGHT] * n + [ROOT_WEIGHT if k["stage"] == last else 1 for k in plan]
                    + [ARGMAX_WEIGHT] * (a + len(room)))
    return side, tiles[:n], tiles[n:n + c], tiles[n + c:n + c + a], tiles[n + c + a:]


def _sources(plan: list, counter_tiles: list, member_tile) -> list:
    """For each counter, the tile centre (x, y) of each input's source (a counter's tile, or
    ``member_tile(bit)`` of a head input bit), in the order of its relays."""
    return [[np.asarray(counter_tiles[x], dtype=float) + 0.5 if kind == "counter" else member_tile(x)
             for kind, x in k["reads"]] for k in plan]


def _hops_needed(plan: list, counter_tiles: list, sources: list, tiles: int) -> tuple:
    """Per counter stage, the hops its longest route into a relay needs, ``tiles`` a hop
    (columns plus rows)."""
    stages = max(k["stage"] for k in plan) + 1
    longest = [0.0] * stages
    for k, srcs, t in zip(plan, sources, counter_tiles):
        for src in srcs:
            longest[k["stage"]] = max(longest[k["stage"]], float(np.abs(src - (np.asarray(t) + 0.5)).sum()))
    return tuple(max(0, math.ceil(d / tiles) - 1) for d in longest)


def _lockable_neurons(net: Network, options) -> list:
    """(layer, neuron) of every neuron of the hardware that has a LUT and a register of its own."""
    from .hdl.top import LutnetTop

    top = LutnetTop(net, options=options)
    return [(i, j) for i, (layer, comp) in enumerate(zip(net.layers, top.layers))
            if isinstance(layer, LutLayer) and comp.register
            for j, (variables, _) in enumerate(comp.supports)
            if variables and (comp.read is None or j in comp.read)]


def head_hops(net: Network, options, tiles: int = HOP_TILES) -> tuple:
    """``PipelineOptions.head_hops`` for ``lutnet build --place --hops``: the hops each stage of
    a one-LUT group-sum head's counters needs so that no route crosses more than ``tiles`` tiles,
    from the tiles :func:`lock_layers` will give the counters and the neurons (computed from the
    net and ``options``, as it will place them); ``()`` for other heads."""
    plan = counter_plan(net)
    if not plan:
        return ()
    pos = locality.net_positions(net)
    neurons = _lockable_neurons(net, options)
    argmax = argmax_plan(net, plan) if options.relay_inputs else []
    side, neuron_tiles, counter_tiles, _, _ = _layout_tiles([tuple(pos[1 + i][j]) for i, j in neurons],
                                                            plan, net.encoder.n_out, argmax)
    return _hops_needed(plan, counter_tiles, _sources(plan, counter_tiles,
                                                      _member_tile(net, dict(zip(neurons, neuron_tiles)), pos, side)),
                        tiles)


def _member_tile(net: Network, tile_of: dict, pos, side: int):
    """The tile centre (x, y) of head input bit ``b``: its neuron's tile when the last layer's
    neuron ``b`` is placed, else its layout position on the square."""
    last = len(net.layers) - 1

    def tile(b):
        t = tile_of.get((last, b))
        return np.asarray(t, dtype=float) + 0.5 if t is not None else np.asarray(pos[-1][b][::-1]) * side
    return tile


def lock_layers(module: dict, net: Network, prefix: str = "", skip_rows=()) -> dict:
    """Lock the encoder's and every LUT layer's registers of the flat netlist ``module`` (Yosys
    JSON of the top, changed in place) where the net's layout puts them; returns what was done.

    ``prefix`` is the core's instance path in the flat netlist (``""`` for ``lutnet_top``,
    ``"core."`` in a board top). Neuron ``j`` of layer ``i`` is found by its output
    ``{prefix}layer{i}.o[j]`` and its relays ``{prefix}layer{i}.relay{j}``; encoder bit ``b`` by
    ``{prefix}encoder.o[b]``. Tiles start at (:data:`ORIGIN`, :data:`ORIGIN`) on a square of one
    neuron a tile, rows in ``skip_rows`` (without slices) left out; the neurons of all layers
    are assigned to tiles with the least total squared distance from their layout positions
    (:func:`_assign`), and then the encoder's bits to spare flip-flops with the least total
    squared distance from the mean of the tiles of the neurons that read them (their layout
    position if none does).
    """
    check_net(net)
    cells, names = module["cells"], module["netnames"]
    driver, read_by = drivers(cells), readers(cells)
    skipped = defaultdict(int)
    pos = locality.net_positions(net)
    relay_nets = defaultdict(dict)       # layer -> {neuron: relay bits}
    for name, entry in names.items():
        if not name.startswith(f"{prefix}layer"):
            continue
        stage, _, last = name[len(prefix):].partition(".")
        m = _RELAY.fullmatch(last)
        if m and stage[len("layer"):].isdigit():
            relay_nets[int(stage[len("layer"):])][int(m[1])] = entry["bits"]

    neurons, encoder = [], []            # (position, ff, lut, [relay ffs], (layer, j)) / (position, ff)
    for i, layer in enumerate(net.layers):
        if not isinstance(layer, LutLayer) or f"{prefix}layer{i}.o" not in names:
            continue
        for j, bit in enumerate(names[f"{prefix}layer{i}.o"]["bits"]):
            ff = _plain_ff(cells, driver, bit, skipped, "neuron")
            if ff is None:
                continue
            relays = [_plain_ff(cells, driver, b, skipped, "relay") for b in relay_nets[i].get(j, [])]
            lut = _lut_of(cells, driver, read_by, ff, skipped, "neuron")
            neurons.append((tuple(pos[1 + i][j]), ff, lut, [r for r in relays if r], (i, j)))
    if f"{prefix}encoder.o" in names:
        seen = set()                     # equal thresholds: Yosys keeps one flip-flop
        for b, bit in enumerate(names[f"{prefix}encoder.o"]["bits"]):
            if bit in seen:
                continue
            seen.add(bit)
            ff = _plain_ff(cells, driver, bit, skipped, "encoder bit")
            if ff is None:
                continue
            if _lut_of(cells, driver, read_by, ff, skipped, "encoder bit") is not None:
                # nextpnr-ecp5 keeps a LUT4 and the one flip-flop it loads together, where the
                # LUT goes: locked alone, 57 of the 62 such bits of the local digits core moved;
                # locked with its LUT, the comparators' inputs were too far (glue 2.57 ns)
                skipped["encoder bit: its comparator's LUT loads it (left to nextpnr)"] += 1
                continue
            encoder.append((tuple(pos[0][b]), ff))
    if not neurons:
        raise PlacementError("no LUT neuron of the netlist can be locked (are the layers registered, "
                             "with relays?)")

    # Neurons and the head's counters share the square (a neuron's displacement weighs more, see
    # NEURON_WEIGHT); the encoder's bits go into the neurons' spare flip-flops, the head's hops
    # into the flip-flops left, along their routes.
    plan = _head_counters(module, net, prefix, driver, read_by, skipped)
    argmax = argmax_plan(net, plan)     # a relayed argmax (--place), if the netlist has one
    if not any(f"{prefix}head.{name}" in names for name, _ in argmax):
        argmax = []
    side, neuron_tiles, counter_tiles, argmax_tiles, room = _layout_tiles([n[0] for n in neurons], plan,
                                                                          len(encoder), argmax)
    # the argmax's delay lines may take a margin of tiles beyond the square, right and below
    margin = max(2, side // 4) if argmax else 0
    rows = [y for y in range(ORIGIN, ORIGIN + side + margin + len(skip_rows)) if y not in set(skip_rows)]

    def xy(tile):
        return ORIGIN + tile[0], rows[tile[1]]

    def at(point):                      # a point of the square (tile units) on the fabric
        return ORIGIN + point[0], rows[min(int(point[1]), len(rows) - 1)] + point[1] % 1

    def bel(tile, slot):
        return "X{}/Y{}/".format(*xy(tile)) + slot

    all_tiles = [(x, y) for y in range(side) for x in range(side)]
    free = [t for t in all_tiles if t not in set(counter_tiles) | set(argmax_tiles) | set(room)]
    # an encoder bit goes where the neurons that read it are (the mean of their tiles), not to
    # its own layout position: its relays' routes are then as short as the readers' spread allows
    read_at = defaultdict(list)
    for (_, _, _, relays, _), t in zip(neurons, neuron_tiles):
        for relay in relays:
            src = driver.get(cells[relay]["connections"]["DI"][0], (None,))[0]
            read_at[src].append(((t[1] + 0.5) / side, (t[0] + 0.5) / side))
    points = [tuple(np.mean(read_at[ff], axis=0)) if read_at[ff] else p for p, ff in encoder]
    relays_locked, encoder_tiles = 0, _assign(points, side, len(SPARE), free)
    for k, t in zip(plan, counter_tiles):
        for (ff, lut), (ff_slot, lut_slot) in zip(k["pairs"], COUNTER_OUTPUTS):
            cells[ff]["attributes"]["BEL"] = bel(t, ff_slot)
            if lut is not None:
                cells[lut]["attributes"]["BEL"] = bel(t, lut_slot)
        for relay, slot in zip(k["relays"], COUNTER_RELAYS):
            if relay is not None:
                cells[relay]["attributes"]["BEL"] = bel(t, slot)
    for (_, ff, lut, relays, _), t in zip(neurons, neuron_tiles):
        cells[ff]["attributes"]["BEL"] = bel(t, NEURON[0])
        if lut is not None:
            cells[lut]["attributes"]["BEL"] = bel(t, NEURON[1])
        for relay, slot in zip(relays, RELAYS):
            cells[relay]["attributes"]["BEL"] = bel(t, slot)
            relays_locked += 1
    spare = defaultdict(int)             # tile -> spare flip-flops used
    for (_, ff), t in zip(encoder, encoder_tiles):
        cells[ff]["attributes"]["BEL"] = bel(t, SPARE[spare[t]])
        spare[t] += 1
    argmax_cells = _lock_argmax(cells, names, prefix, argmax, argmax_tiles, driver, read_by, skipped, bel)
    hops = _lock_hops(cells, plan, counter_tiles, _sources(
        plan, counter_tiles, _member_tile(net, {n[4]: t for n, t in zip(neurons, neuron_tiles)}, pos, side)),
        neuron_tiles, spare, [t for t in all_tiles if t not in set(argmax_tiles) | set(room)], bel, at)
    chained = 0
    if argmax:
        ends = [t for (name, _), t in zip(argmax, argmax_tiles) if name.startswith("relay_argmax_index")]
        slots = [bel((x, y), slot) for y in range(side + margin) for x in range(side + margin) for slot in TILE_FFS]
        chained = _lock_chains(cells, names, (f"{prefix}head.argmax", f"{prefix}head.o"), driver, read_by, slots,
                               skipped, np.mean([xy(t) for t in ends or argmax_tiles], axis=0),
                               {xy(t) for t in neuron_tiles})
    used = set(neuron_tiles) | set(encoder_tiles) | set(counter_tiles) | set(argmax_tiles)
    return {"neurons": len(neurons), "luts": sum(1 for n in neurons if n[2] is not None),
            "head_counters": len(plan), "argmax_groups": len(argmax), "argmax_cells": argmax_cells,
            "argmax_chained": chained,
            "head_registers": sum(sum(r is not None for r in k["relays"]) + len(k["pairs"]) for k in plan),
            "head_hops": hops, "relays": relays_locked, "encoder_bits": len(encoder), "tiles": len(used),
            "square": side, "skip_rows": sorted(skip_rows), "not_locked": dict(sorted(skipped.items()))}


#: A tile of the argmax: up to four LUTs reading one relay register, each LUT with its flip-flop
#: in a slice's first pair, the relays in the second flip-flops, then the first ones left.
ARGMAX_LUTS = tuple((f"SLICE{s}.FF0", f"SLICE{s}.K0") for s in "ABCD")
ARGMAX_RELAYS = tuple(f"SLICE{s}.FF1" for s in "ABCD")


def _lock_argmax(cells: dict, names: dict, prefix: str, argmax: list, tiles: list, driver, read_by,
                 skipped, bel) -> int:
    """Lock each relay register of the argmax (:func:`argmax_plan`) in its tile with the LUT4s
    that read it and their flip-flops; returns how many cells were locked."""
    ff_of_d = {cell["connections"]["DI"][0]: cell["connections"]["Q"][0]     # D bit -> its Q bit
               for cell in cells.values() if cell["type"] == "TRELLIS_FF"}
    locked = set()
    for (name, _), t in zip(argmax, tiles):
        bits = [b for b in names.get(f"{prefix}head.{name}", {}).get("bits", []) if isinstance(b, int)]
        relays = [ff for ff in (_plain_ff(cells, driver, b, skipped, "argmax relay") for b in bits) if ff]
        luts = list(dict.fromkeys(c for b in bits for c in read_by.get(b, []) if cells[c]["type"] == "LUT4"))
        pairs = []
        for lut in luts:
            z = cells[lut]["connections"]["Z"][0]
            ff = _plain_ff(cells, driver, ff_of_d[z], skipped, "argmax LUT flip-flop") \
                if len(read_by[z]) == 1 and z in ff_of_d else None
            pairs.append((lut, ff))
        if len(pairs) > len(ARGMAX_LUTS) or len(relays) > len(ARGMAX_RELAYS) + len(ARGMAX_LUTS) - len(pairs):
            skipped["argmax group: more cells than a tile"] += 1
            continue
        if any(c in locked for c in relays + [x for pair in pairs for x in pair if x]):
            skipped["argmax group: a cell in another group"] += 1
            continue
        slots = list(ARGMAX_RELAYS) + [ff for ff, _ in ARGMAX_LUTS[len(pairs):]]
        for (lut, ff), (ff_slot, lut_slot) in zip(pairs, ARGMAX_LUTS):
            cells[lut]["attributes"]["BEL"] = bel(t, lut_slot)
            locked.add(lut)
            if ff is not None:
                cells[ff]["attributes"]["BEL"] = bel(t, ff_slot)
                locked.add(ff)
        for relay, slot in zip(relays, slots):
            cells[relay]["attributes"]["BEL"] = bel(t, slot)
            locked.add(relay)
    return len(locked)


_XY = re.compile(r"X(\d+)/Y(\d+)/")
#: How much farther (tiles) than a free flip-flop outside the neurons' tiles one inside may be
#: for a delayed score on its way out to take it instead: kept out of them altogether, on the
#: local MNIST core some steps jumped 20 tiles to the first free flip-flop outside.
CROWDED_TILES = 3.0


def _lock_chains(cells: dict, names: dict, stems: tuple, driver, read_by, slots: list, skipped, end,
                 crowded: set) -> int:
    """Lock the copy registers (a flip-flop loading another's output) of the nets whose names
    start with one of ``stems`` that nextpnr would place: the argmax's delay lines and carried
    bits, and the head's output register. Each goes to the free flip-flop of ``slots`` (BEL
    names) nearest the point one step of the way from its predecessor (placed first; the chain
    starts at a locked cell) to the mean of its sinks (the locked cells its chain reaches),
    chains with sinks first. Chains that reach none (the delayed scores on their way out) head
    for the tile ``end`` (X, Y) where the index leaves the argmax, a tile a step at most, in
    flip-flops outside the ``crowded`` tiles (X, Y: the neurons'; there they slowed the layers'
    routes) unless none is within :data:`CROWDED_TILES` more. Returns how many were locked.
    (Assigned all at once with the least total squared distance from their share of the way, the
    delayed scores crowded the argmax's tiles and a few steps took 19 tiles; placed by nextpnr,
    some took 20-33 tiles on the MNIST core.)"""
    def at(cell):
        m = _XY.match(cells[cell]["attributes"].get("BEL", ""))
        return None if m is None else np.array([int(m[1]), int(m[2])], dtype=float)

    copies = set()
    for name, entry in names.items():
        if name.startswith(stems):
            for bit in entry["bits"]:
                ff, port = driver.get(bit, (None, None))
                if ff is not None and port == "Q" and cells[ff]["type"] == "TRELLIS_FF" \
                        and at(ff) is None and cells[ff]["connections"]["DI"][0] in driver \
                        and driver[cells[ff]["connections"]["DI"][0]][1] == "Q" \
                        and _plain_ff(cells, driver, bit, skipped, "argmax copy") is not None:
                    copies.add(ff)

    def back(ff):                        # (source position, copies before it) or None
        steps = 0
        while ff in copies:
            ff = driver[cells[ff]["connections"]["DI"][0]][0]
            steps += 1
        p = at(ff)
        return None if p is None else (p, steps)

    def forward(ff):                     # (mean sink position, fewest copies after it)
        sinks, frontier, steps, seen = [], [ff], 0, {ff}
        while frontier:
            nxt = []
            for f in frontier:
                for r in read_by[cells[f]["connections"]["Q"][0]]:
                    if r in copies and r not in seen:
                        seen.add(r)
                        nxt.append(r)
                    elif r not in copies and at(r) is not None:
                        sinks.append((at(r), steps + 1))
            frontier, steps = nxt, steps + 1
        if not sinks:                    # on its way out
            return end, steps, False
        return np.mean([p for p, _ in sinks], axis=0), min(k for _, k in sinks), True

    order = []
    for ff in sorted(copies):
        src = back(ff)
        if src is not None:
            order.append((src[1], ff, forward(ff)))
    taken = {c["attributes"]["BEL"] for c in cells.values() if "BEL" in c["attributes"]}
    free = [slot for slot in slots if slot not in taken]
    if not order or len(free) < len(order):
        return 0
    # step by step down the chains: each register goes to the free flip-flop nearest the point
    # one step of the way from its (placed) predecessor to its sink, so every step stays short
    centres = np.array([[int(m[1]), int(m[2])] for m in map(_XY.match, free)], dtype=float)
    barred = np.array([tuple(c) in crowded for c in centres.astype(int).tolist()], dtype=bool)
    used = np.zeros(len(free), dtype=bool)
    for _, ff, (sink, after, real) in sorted(order, key=lambda x: (not x[2][2], x[0], x[1])):
        pred = at(driver[cells[ff]["connections"]["DI"][0]][0])
        if pred is None:                 # its predecessor found no room either
            skipped["argmax copy: no free flip-flop"] += 1
            continue
        step = (sink - pred) / (after + 1)
        if not real:                     # at most a tile a step towards the end
            step /= max(1.0, float(np.abs(step).max()))
        target = pred + step
        d = np.sqrt(((centres - target) ** 2).sum(axis=1))
        if not real:
            d += CROWDED_TILES * barred
        d[used] = np.inf
        k = int(np.argmin(d))
        if not np.isfinite(d[k]):
            skipped["argmax copy: no free flip-flop"] += 1
            continue
        used[k] = True
        cells[ff]["attributes"]["BEL"] = free[k]
    return int(used.sum())


#: A counter's tile keeps one flip-flop free: a hop may take it.
COUNTER_SPARE = ("SLICED.FF1",)
#: All flip-flops of a tile nothing else uses.
TILE_FFS = tuple(f"SLICE{s}.FF{i}" for s in "ABCD" for i in (0, 1))


def _lock_hops(cells: dict, plan: list, counter_tiles: list, sources: list, neuron_tiles: list,
               spare: dict, all_tiles: list, bel, at) -> int:
    """Lock the hop registers of the head's relays (``hop_ffs``) in free flip-flops (spare ones
    of the neurons' tiles, the counters' last, and tiles nobody uses): first hop ``t`` of ``H``
    nearest the point ``(t + 1) / (H + 1)`` of the way from the relay's source to its counter
    (the least total squared distance), then :data:`HOP_SWEEPS` times each hop index again, the
    hops of all chains at once, for the least total :func:`_leg_cost` of the routes into and out
    of them on the fabric (``at``: a point of the square -> the fabric's column and row, rows
    without slices counted). Returns how many were locked."""
    points, ffs, chains = [], [], []     # chains: (source, [index in ffs or None], destination)
    for k, srcs, t in zip(plan, sources, counter_tiles):
        dst = np.asarray(t, dtype=float) + 0.5
        for chain, src in zip(k["hop_ffs"], srcs):
            members = []
            for h, ff in enumerate(chain):
                members.append(len(ffs) if ff is not None else None)
                if ff is not None:
                    points.append(src + (h + 1) / (len(chain) + 1) * (dst - src))
                    ffs.append(ff)
            if members and None not in members:
                chains.append((np.asarray(at(src)), members, np.asarray(at(dst))))
    if not ffs:
        return 0
    taken_tiles = set(neuron_tiles) | set(counter_tiles)
    slots = [(t, slot) for t in neuron_tiles for slot in SPARE[spare.get(t, 0):]]
    slots += [(t, slot) for t in counter_tiles for slot in COUNTER_SPARE]
    slots += [(t, slot) for t in all_tiles if t not in taken_tiles and not spare.get(t) for slot in TILE_FFS]
    if len(slots) < len(ffs):
        raise PlacementError(f"no room for the head's {len(ffs)} hop registers ({len(slots)} free flip-flops)")
    centres = np.array([t for t, _ in slots], dtype=float) + 0.5
    cost = ((np.array(points)[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    slot_of = np.empty(len(ffs), dtype=int)
    slot_of[rows] = cols
    fabric = np.array([at(c) for c in centres])
    for _ in range(HOP_SWEEPS):
        for h in range(max((len(m) for _, m, _ in chains), default=0)):
            moving = [(src, m, dst) for src, m, dst in chains if len(m) > h]
            idx = np.array([m[h] for _, m, _ in moving])
            before = np.array([src if h == 0 else fabric[slot_of[m[h - 1]]] for src, m, _ in moving])
            after = np.array([dst if h == len(m) - 1 else fabric[slot_of[m[h + 1]]] for _, m, dst in moving])
            free = np.ones(len(slots), dtype=bool)
            free[slot_of] = False
            free[slot_of[idx]] = True
            cand = np.flatnonzero(free)
            cost = _leg_cost(_tiles_apart(before, fabric[cand])) + _leg_cost(_tiles_apart(after, fabric[cand]))
            r, c = linear_sum_assignment(cost)
            slot_of[idx[r]] = cand[c]
    for i, ff in enumerate(ffs):
        t, slot = slots[slot_of[i]]
        cells[ff]["attributes"]["BEL"] = bel(t, slot)
    return len(ffs)


#: Sweeps of :func:`_lock_hops` over the hop indices, each placing one hop of every chain again.
HOP_SWEEPS = 3


#: On the ECP5-85F, a route between flip-flops over this many tiles (columns plus rows) is often
#: late for 0.8 of the fabric ceiling (``bench/locked_placement.py BUILD``, local MNIST core:
#: 1 of 10,520 routes of 0-11 tiles late, 11 of 219 of 12-14, 24 of 55 longer).
LATE_TILES = 11


def _tiles_apart(a, b):
    """Columns plus rows between each point of ``a`` (rows) and each of ``b`` (columns)."""
    return np.abs(a[:, None, 0] - b[None, :, 0]) + np.abs(a[:, None, 1] - b[None, :, 1])


def _leg_cost(tiles):
    """The cost of a route between flip-flops ``tiles`` long (columns plus rows): its square,
    and steeply more past :data:`LATE_TILES`."""
    return tiles ** 2 + 100.0 * np.maximum(tiles - LATE_TILES, 0) ** 2
