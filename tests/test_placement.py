# amaranth: UnusedElaboratable=no
"""lutnet's own placement of the LUT layers on the ECP5 (`lutnet build --place`, lutnet.placement):
every neuron's LUT, flip-flop and relay registers locked in one tile where the net's layout puts
it, checked on the netlist nextpnr placed."""
import json
import re
from collections import Counter
from importlib import resources

import numpy as np
import pytest

from lutnet import flow, placement, targets
from lutnet.cli import main
from lutnet.hdl import LutnetTop, PipelineOptions
from lutnet.hdl.popcount import counter_stages
from lutnet.ir import Encoder, GroupSumHead, LutLayer, Network
from netgen import random_lut_layer, random_net

_TILE = re.compile(r"X(\d+)/Y(\d+)/")


def k4_net(seed=5, widths=(48, 36), classes=4) -> Network:
    """Two K = 4 LUT layers of 84 neurons in all: a square of 10 tiles, which reaches row 10 of
    the ECP5-85F (block RAM, no slices)."""
    rng = np.random.default_rng(seed)
    enc = Encoder(np.sort(rng.integers(0, 9, size=(8, 2)), axis=1), 3)
    layers, n_in = [], enc.n_out
    for w in widths:
        layers.append(random_lut_layer(rng, n_in, w, k=4))
        n_in = w
    return Network(enc, layers, GroupSumHead(n_in, classes), meta={"dataset": "random"})


#: The test net's counters are close enough to need no hops: these force some.
HOPS = (1, 0, 2)


def tile(cell):
    m = _TILE.match(cell["attributes"].get("BEL", ""))
    return (int(m[1]), int(m[2])) if m else None


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    d = tmp_path_factory.mktemp("place")
    net = k4_net()
    net.save(d / "model.npz")
    s = flow.build(d / "model.npz", d / "build", board="ulx3s-85f", core_only=True, place=True,
                   pipeline={"adder_levels_per_stage": 1, "head_hops": HOPS}, log=lambda *_: None)
    module = json.loads((d / "build" / "pnr" / "placed.json").read_text())["modules"]["lutnet_top"]
    return net, {**s, "_dir": d / "build"}, module


def test_place_locks_each_neuron_with_its_relays(placed):
    net, s, module = placed
    cells, names = module["cells"], module["netnames"]
    driver = {b: (c, p) for c, cell in cells.items() for p, bits in cell["connections"].items()
              if cell["port_directions"].get(p) == "output" for b in bits}
    p = s["pnr"]["placement"]
    # row 10 of the 85F holds block RAM (the board file says so): no cell was locked in it
    assert 10 in p["skip_rows"] and not any(tile(c) and tile(c)[1] in p["skip_rows"] for c in cells.values())
    # routed for 0.8 of the fabric ceiling, the late nets ripped up
    assert s["pnr"]["ripup"] and s["pnr"]["target_mhz"] == round(flow.PLACE_GOAL * s["pnr"]["ceiling_mhz"], 1)
    # --place turned on the relays and the free-running pipeline
    top = LutnetTop(net, options=PipelineOptions(adder_levels_per_stage=1, relay_inputs=True,
                                                 stall_free=True, one_lut_head=True, head_hops=HOPS))
    assert s["latency"] == top.latency
    checked, seen = 0, set()
    for i, layer in enumerate(net.layers):
        for j, bit in enumerate(names[f"layer{i}.o"]["bits"]):
            variables, _ = top.layers[i].supports[j]     # constants of the layer before folded
            if len(variables) < 2 or bit not in driver:
                continue                      # a constant or a copy (no LUT of its own), or unread
            ff = driver[bit][0]
            lut = driver[cells[ff]["connections"]["DI"][0]][0]
            assert cells[ff]["type"] == "TRELLIS_FF" and cells[lut]["type"] == "LUT4"
            here = tile(cells[ff])
            assert here is not None and tile(cells[lut]) == here, (i, j)
            # one relay per distinct input, kept apart from other neurons' relays of the same bit,
            # in the neuron's tile; the LUT reads nothing else
            bits = [b for b in names[f"layer{i}.relay{j}"]["bits"] if b in driver]   # others: constant
            relays = {driver[b][0] for b in bits}
            assert len(relays) == len(bits) and not relays & seen
            seen |= relays
            sources = {driver[cells[lut]["connections"][port][0]][0] for port in "ABCD"
                       if cells[lut]["connections"].get(port, ["0"])[0] in driver}
            assert sources and sources <= relays
            assert all(cells[r]["type"] == "TRELLIS_FF" and tile(cells[r]) == here for r in relays)
            checked += 1
    assert checked >= 70 and p["luts"] >= checked and p["relays"] >= 2 * checked
    # one neuron a tile, encoder bits in spare flip-flops
    neuron_tiles = Counter(tile(c) for name, c in cells.items()
                           if c["attributes"].get("BEL", "").endswith(placement.NEURON[1]))
    assert max(neuron_tiles.values()) == 1
    # ... those that their comparator's LUT4 alone loads left to nextpnr, which keeps the two
    # together wherever the LUT goes
    encoder = {driver[b][0] for b in names["encoder.o"]["bits"] if b in driver}
    read_by = placement.readers(cells)
    comparators = {ff for ff in encoder if (lut := driver.get(cells[ff]["connections"]["DI"][0], (None,))[0])
                   and cells[lut]["type"] == "LUT4" and len(read_by[cells[lut]["connections"]["Z"][0]]) == 1}
    assert comparators and not any("BEL" in cells[ff]["attributes"] for ff in comparators)
    assert p["not_locked"]["encoder bit: its comparator's LUT loads it (left to nextpnr)"] == len(comparators)
    encoder -= comparators
    assert p["encoder_bits"] == len(encoder) >= 3
    assert all(cells[ff]["attributes"]["BEL"].split("/")[-1] in placement.SPARE for ff in encoder)
    # ... among the neurons that read them: within 2.5 tiles of the mean of their relays' tiles
    # (at their layout positions, 3-7 tiles on this randomly wired net; the argmax's tiles, which
    # take no encoder bits, push a few out)
    readers = {ff: [] for ff in encoder}
    for name, c in cells.items():
        src = driver.get(c["connections"].get("DI", [None])[0], (None,))[0] if c["type"] == "TRELLIS_FF" else None
        if src in readers:
            readers[src].append(tile(c))
    off = [max(abs(np.subtract(tile(cells[ff]), np.mean(r, axis=0)))) for ff, r in readers.items() if r]
    assert len(off) >= 3 and max(off) <= 2.5, sorted(off)
    # the head's counters, a tile each: every output's LUT in its flip-flop's tile, reading only
    # relays of that tile
    stages = counter_stages(net.head.group)
    assert p["head_counters"] == net.n_classes * sum(len({i for i, _ in st}) for st in stages)
    outputs = [b for name, e in names.items() if re.fullmatch(r"head\.(sum\d+_s\d+|scores)", name)
               for b in e["bits"] if b in driver]
    counted = 0
    for b in outputs:
        ff = driver[b][0]
        lut = driver.get(cells[ff]["connections"]["DI"][0], (None,))[0]
        here = tile(cells[ff])
        assert cells[ff]["attributes"]["BEL"].split("/")[-1] in {f for f, _ in placement.COUNTER_OUTPUTS}, b
        if lut is None or cells[lut]["type"] != "LUT4":
            continue                          # a pass-through: the relay loads it directly
        assert tile(cells[lut]) == here
        sources = [driver[cells[lut]["connections"][port][0]][0] for port in "ABCD"
                   if cells[lut]["connections"].get(port, ["0"])[0] in driver]
        assert sources and all(cells[r]["type"] == "TRELLIS_FF" and tile(cells[r]) == here for r in sources)
        counted += 1
    assert counted >= 2 * net.n_classes
    # the hops: locked in flip-flops nothing else uses, each chain on the way from its source to
    # its relay (no hop farther from either end than the two ends are apart)
    chains = 0
    for name, e in names.items():
        m = re.fullmatch(r"head\.sum(\d+)_h(\d+)_0", name)
        if not m:
            continue
        c, stage = m[1], int(m[2])
        relay_bits = names[f"head.sum{c}_r{stage}"]["bits"]
        for r, b in enumerate(e["bits"]):
            if b not in driver:
                continue                      # a constant member
            chain = [driver[names[f"head.sum{c}_h{stage}_{k}"]["bits"][r]][0] for k in range(HOPS[stage])]
            source = driver[cells[chain[0]]["connections"]["DI"][0]][0]
            relay = driver[relay_bits[r]][0]
            ends = [tile(cells[source]), tile(cells[relay])]
            span = max(abs(ends[0][0] - ends[1][0]), abs(ends[0][1] - ends[1][1]))
            for hop in chain:
                at = tile(cells[hop])
                assert at is not None and all(max(abs(at[0] - e[0]), abs(at[1] - e[1])) <= span + 1 for e in ends)
            chains += 1
    assert chains >= net.n_classes and p["head_hops"] >= chains
    # the argmax, relayed: each relay register in one tile with the LUT4s that read it and their
    # flip-flops, every such LUT reading only that relay register
    luts_reading = {}
    for name, c in cells.items():
        if c["type"] == "LUT4":
            for port in "ABCD":
                for bit in c["connections"].get(port, []):
                    luts_reading.setdefault(bit, set()).add(name)
    groups = 0
    for name, e in names.items():
        if not re.fullmatch(r"head\.relay_argmax_[a-z0-9_]*_\d+", name):
            continue
        bits = [b for b in e["bits"] if b in driver]
        if not bits:
            continue                          # constant
        relays = {driver[b][0] for b in bits}
        here = {tile(cells[r]) for r in relays}
        assert len(here) == 1 and None not in here, name
        luts = set().union(*(luts_reading.get(b, set()) for b in bits))
        assert luts, name
        for lut in luts:
            assert tile(cells[lut]) in here, (name, lut)
            sources = {driver[cells[lut]["connections"][port][0]][0] for port in "ABCD"
                       if cells[lut]["connections"].get(port, ["0"])[0] in driver}
            assert sources <= relays, (name, lut)
            ff = next((f for f, c in cells.items() if c["type"] == "TRELLIS_FF"
                       and c["connections"]["DI"][0] == cells[lut]["connections"]["Z"][0]), None)
            assert ff is not None and tile(cells[ff]) in here, (name, lut)
        groups += 1
    planned = placement.argmax_plan(net, placement.counter_plan(net))
    assert p["argmax_groups"] == len(planned) and groups >= 0.9 * len(planned) > 0
    # the argmax's delay lines and the head's output register, locked step by step along their
    # way (on their way out, outside the neurons' tiles): most steps short
    layer_tiles = {tile(cells[driver[b][0]]) for i in range(len(net.layers))
                   for b in names[f"layer{i}.o"]["bits"] if b in driver}
    steps = []
    for name, e in names.items():
        if not name.startswith(("head.argmax", "head.o")):
            continue
        for b in e["bits"]:
            ff = driver.get(b, (None,))[0]
            if ff is None or cells[ff]["type"] != "TRELLIS_FF" or cells[ff]["connections"]["DI"][0] not in driver:
                continue
            pred, port = driver[cells[ff]["connections"]["DI"][0]]
            if port == "Q" and tile(cells[ff]) and tile(cells[pred]):
                assert not name.startswith("head.o") or tile(cells[ff]) not in layer_tiles, name
                steps.append(max(abs(np.subtract(tile(cells[ff]), tile(cells[pred])))))
    assert p["argmax_chained"] > 0 and len(steps) >= p["argmax_chained"] // 2
    assert np.median(steps) <= 2 and np.mean(np.array(steps) <= 4) >= 0.8, sorted(steps)
    bels = [c["attributes"]["BEL"] for c in cells.values() if "BEL" in c["attributes"]]
    assert len(bels) == len(set(bels))       # no two cells in one place


def test_head_hops_follow_the_distances():
    """--place --hops asks for hops where a stage's routes are longer than HOP_TILES, counted in
    tiles crossed (Manhattan: a diagonal of 8 by 8 tiles is 16 tiles of wire): more on a wide
    net whose classes spread over a large square, none when a hop may be as long as the square."""
    plan = [{"stage": 0}]
    assert placement._hops_needed(plan, [(0, 0)], [[np.array([8.5, 8.5])]], 10) == (1,)
    assert placement._hops_needed(plan, [(0, 0)], [[np.array([8.5, 0.5])]], 10) == (0,)
    options = PipelineOptions(relay_inputs=True, stall_free=True, one_lut_head=True)
    net = k4_net()
    small = placement.head_hops(net, options)
    assert len(small) == len(counter_stages(net.head.group))
    assert placement.head_hops(net, options, tiles=1000) == (0,) * len(small)
    wide = k4_net(widths=(900, 600), classes=10)
    hops = placement.head_hops(wide, options)
    assert len(hops) == len(counter_stages(60)) and sum(hops) > sum(small)
    # shorter routes need more hops
    short = placement.head_hops(wide, options, tiles=8)
    assert all(a >= b for a, b in zip(short, hops)) and sum(short) > sum(hops)


def test_hops_placed_for_their_longest_route(monkeypatch):
    """A chain of two hops over 22 tiles, with free flip-flops only 5, 11 and 18 tiles along:
    each hop nearest its point (7.8 and 15.2 tiles along) gives routes of 5, 13 and 4 tiles, and
    the 13-tile one is often late; placed again for the routes into and out of each hop, none is
    over 11 tiles."""
    def legs():
        cells = {"h0": {"attributes": {}}, "h1": {"attributes": {}}}
        n = placement._lock_hops(cells, [{"hop_ffs": [["h0", "h1"]]}], [(22, 0)], [[np.array([0.5, 0.5])]],
                                 [(0, 0)], {}, [(5, 0), (11, 0), (18, 0)],
                                 lambda t, slot: f"X{t[0] + 2}/Y{t[1] + 2}/{slot}",
                                 lambda p: (2 + p[0], 2 + p[1]))
        xs = [2] + [tile(cells[h])[0] for h in ("h0", "h1")] + [24]
        assert n == 2
        return list(np.diff(xs))

    assert legs() == [11, 7, 4]
    monkeypatch.setattr(placement, "HOP_SWEEPS", 0)
    assert legs() == [5, 13, 4]


def test_roots_on_a_ring_and_room_for_the_delay_lines(monkeypatch):
    """Every class reads every region, so all roots would converge on the middle: each class's
    last counters are pinned to their own point of a ring around it, and the layout leaves free
    tiles among the argmax's groups for its delay lines."""
    net = k4_net(widths=(900, 600), classes=10)
    plan = placement.counter_plan(net)
    last = max(k["stage"] for k in plan)
    roots = {k["cls"]: np.asarray(k["at"]) for k in plan if k["stage"] == last}
    assert len(roots) == 10
    for c, at in roots.items():
        assert np.linalg.norm(at - 0.5) == pytest.approx(placement.ROOT_RING)
    assert min(np.linalg.norm(roots[a] - roots[b]) for a in roots for b in roots if a < b) > 0.05
    # the counters between the members and a root still sit at the mean of what they read
    inner = [k for k in plan if k["stage"] < last]
    assert all(0 <= x <= 1 for k in inner for x in k["at"])

    argmax = placement.argmax_plan(net, plan)
    neurons = [tuple(p) for p in np.random.default_rng(0).random((1500, 2))]
    side, neuron_tiles, counter_tiles, argmax_tiles, room = placement._layout_tiles(neurons, plan, 784, argmax)
    assert len(room) == len(argmax[::placement.CHAIN_ROOM]) > 0
    taken = neuron_tiles + counter_tiles + argmax_tiles + room
    assert len(set(taken)) == len(taken)                  # one thing a tile
    assert side * side * placement.TILE_FILL >= len(neuron_tiles) + len(counter_tiles) + len(argmax_tiles)
    # a square with no share left free (here exactly full: 47 x 47 tiles) still gives every point
    # and every free tile a tile of its own
    monkeypatch.setattr(placement, "TILE_FILL", 1.0)
    *_, argmax_tiles, room = placement._layout_tiles(neurons[:1470], plan, 784, argmax)
    assert None not in argmax_tiles + room and len(room) > 0
    middle = np.mean(argmax_tiles, axis=0)
    spread = np.median([np.abs(np.subtract(t, middle)).sum() for t in argmax_tiles])
    assert np.median([np.abs(np.subtract(t, middle)).sum() for t in room]) <= spread + 2


def test_placed_neurons_fit_the_budget(placed):
    """A neuron's LUT reads registers in its own tile: every locked neuron's flip-flop is reached
    within 0.8 of the fabric ceiling's period (nextpnr's routed timing, seed 1)."""
    _, s, module = placed
    p = s["pnr"]
    assert {"layer0", "layer1", "head"} <= set(p["stage_timing"])
    budget = 1000 / (0.8 * p["ceiling_mhz"])
    report = json.loads((s["_dir"] / "pnr" / "report.json").read_text())
    # (a counter's first output takes the neuron's slot: both are here)
    neuron_ffs = {name for name, c in module["cells"].items()
                  if c["attributes"].get("BEL", "").endswith(placement.NEURON[0])}
    assert len(neuron_ffs) >= 70 + s["pnr"]["placement"]["head_counters"]
    arrivals = [end["delay"][1] for net in report["detailed_net_timings"] for end in net["endpoints"]
                if end["cell"] in neuron_ffs]
    assert len(arrivals) >= 70 and max(arrivals) <= budget, (max(arrivals), budget)


@pytest.mark.parametrize("args, message", [
    (["--board", "icebreaker"], "--place places LUT layers on the ECP5 only; icebreaker is ice40"),
    (["--board", "ulx3s-85f", "--no-synth"], "--place needs synthesis"),
    (["--board", "ulx3s-85f", "--split-lut6"], "pipeline options: relay_inputs and split_lut6 cannot be combined"),
])
def test_place_errors(tmp_path, capsys, args, message):
    net = k4_net()
    net.save(tmp_path / "model.npz")
    assert main(["build", str(tmp_path / "model.npz"), "-o", str(tmp_path / "b"), "--core-only", "--place",
                 *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_hops_need_place(tmp_path, capsys):
    k4_net().save(tmp_path / "model.npz")
    assert main(["build", str(tmp_path / "model.npz"), "-o", str(tmp_path / "b"), "--core-only",
                 "--board", "ulx3s-85f", "--hops"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--hops splits the routes of lutnet's placement: it needs --place" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_place_refuses_nets_it_cannot_place():
    rng = np.random.default_rng(1)
    enc = Encoder(np.sort(rng.integers(0, 9, size=(8, 1)), axis=1), 3)
    net = Network(enc, [random_lut_layer(rng, 8, 6, k=6)], GroupSumHead(6, 2))
    with pytest.raises(placement.PlacementError, match="at most 4 inputs.*layer0 has K = 6"):
        placement.check_net(net)
    xnor = random_net(rng, features=4, input_bits=2, levels=1, widths=[6], classes=2)
    with pytest.raises(placement.PlacementError, match="this net has none"):
        placement.check_net(xnor)


def test_rows_without_slices_learned_from_nextpnr(tmp_path, monkeypatch):
    """A board file that does not name its part's rows without slices: nextpnr names each row a
    lock falls in, and the cells are locked again without it."""
    board = (resources.files("lutnet.boards") / "ulx3s-85f.toml").read_text()
    board = board.split("[fabric]")[0].replace('name = "ulx3s-85f"', 'name = "ulx3s-plain"')
    (tmp_path / "ulx3s-plain.toml").write_text(board)
    monkeypatch.setenv("LUTNET_BOARDS", str(tmp_path))
    assert targets.load("ulx3s-plain").no_slice_rows == []
    net = k4_net()
    net.save(tmp_path / "model.npz")
    lines = []
    s = flow.build(tmp_path / "model.npz", tmp_path / "build", board="ulx3s-plain", core_only=True, place=True,
                   pipeline={"adder_levels_per_stage": 1}, log=lines.append)
    assert 10 in s["pnr"]["placement"]["skip_rows"] and s["pnr"]["fmax_mhz"]
    assert any("row 10 has no slices; locking again without it" in line for line in lines)


def test_no_slice_row():
    error = "nextpnr-ecp5 (place and route) failed: ERROR: No Bel named 'X7/Y22/SLICEA.FF0' located for cell 'x'"
    assert placement.no_slice_row(error) == 22
    assert placement.no_slice_row("ERROR: Max frequency not met") is None
