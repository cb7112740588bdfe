# amaranth: UnusedElaboratable=no
"""The one-LUT4-per-register argmax (``lutnet.hdl.argmax``): bit-exact in Amaranth's simulator
against numpy's argmax (first maximum), latency as documented, and one LUT4 between registers
once mapped to ECP5 (``onelut``)."""

import json

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, ClockDomain, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from lutnet import pnr
from lutnet.hdl.argmax import build_one_lut_argmax, one_lut_argmax_latency
from lutnet.synth import run_yosys
from onelut import lut_depth_violations, netlist_violations


class ArgmaxTop(wiring.Component):
    """``i`` (the scores, class ``c`` at ``i[c * w +: w]``) -> the argmax -> ``o`` (index, then
    the delayed scores). ``registered``: scores and outputs go through registers, so that every
    path of the argmax starts and ends at one (the onelut check); otherwise ``o`` is the argmax's
    own outputs, ``latency`` cycles after ``i``. ``free_running``: ``en`` is a constant 1.
    ``relays``: every LUT reads relays of its own."""

    def __init__(self, n, w, *, registered=False, free_running=False, relays=False):
        self.n, self.w, self.registered, self.free_running = n, w, registered, free_running
        self.relays = relays
        self.class_bits = max(1, (n - 1).bit_length())
        self.latency = one_lut_argmax_latency(n, w, relays) + 2 * registered
        super().__init__({"en": In(1), "i": In(n * w), "o": Out(self.class_bits + n * w)})

    def elaborate(self, platform):
        m = Module()
        en = Const(1, 1) if self.free_running else self.en
        scores = self.i
        if self.registered:
            scores = Signal(len(self.i), reset_less=True)
            with m.If(en):
                m.d.sync += scores.eq(self.i)
        w = self.w
        index, delayed, latency = build_one_lut_argmax(
            m, [scores[c * w:(c + 1) * w] for c in range(self.n)], en=en, name="argmax",
            relays=self.relays)
        assert latency == self.latency - 2 * self.registered
        assert len(index) == self.class_bits and len(delayed) == self.n * w
        out = Cat(index, delayed)
        if self.registered:
            o = Signal(len(out), reset_less=True)
            with m.If(en):
                m.d.sync += o.eq(out)
            out = o
        m.d.comb += self.o.eq(out)
        return m


def score_vectors(rng, count, n, w):
    """Random score vectors, most with ties: full range, two values, all equal, several maxima."""
    top = (1 << w) - 1
    out = np.empty((count, n), dtype=np.int64)
    for k in range(count):
        kind = k % 4
        if kind == 0:
            out[k] = rng.integers(0, top + 1, n)
        elif kind == 1:
            out[k] = rng.choice(rng.integers(0, top + 1, 2), n)
        elif kind == 2:
            out[k] = rng.integers(0, top + 1)
        else:
            out[k] = rng.integers(0, top + 1, n)
            out[k][rng.random(n) < 0.4] = out[k].max()
    return out


def run(n, w, vectors, enables, *, registered=False, relays=False):
    """Feed ``vectors[k]`` with ``en = enables[k]`` in cycle ``k``; check every cycle's output
    against a model of ``latency`` registers that shift while ``en``."""
    top = ArgmaxTop(n, w, registered=registered, relays=relays)
    m = Module()
    m.domains.sync = ClockDomain("sync")
    m.submodules.top = top
    sim = Simulator(m)
    sim.add_clock(1e-6)
    cb, mask = top.class_bits, (1 << w) - 1
    checked = []

    async def bench(ctx):
        pipe = [None] * top.latency
        for vec, en in zip(vectors, enables):
            ctx.set(top.i, sum(int(s) << (c * w) for c, s in enumerate(vec)))
            ctx.set(top.en, int(en))
            want = pipe[-1] if pipe else vec
            if want is not None:
                o = ctx.get(top.o)
                got = [(o >> (cb + c * w)) & mask for c in range(n)]
                assert got == list(want), f"delayed scores {got}, want {list(want)}"
                assert o & ((1 << cb) - 1) == int(np.argmax(want)), \
                    f"index {o & ((1 << cb) - 1)} for scores {list(want)}"
                checked.append(1)
            await ctx.tick()
            if en and pipe:
                pipe = [vec] + pipe[:-1]

    sim.add_testbench(bench)
    sim.run()
    return len(checked)


SIZES = [(n, w) for n in (1, 2, 3, 5, 10, 16) for w in (1, 2, 3, 6, 7)]


@pytest.mark.parametrize("n, w", SIZES)
def test_pipelined_matches_numpy(n, w):
    """A new vector every cycle; the index and scores come out ``latency`` cycles later."""
    rng = np.random.default_rng([n, w, 0])
    vectors = score_vectors(rng, 48, n, w)
    latency = one_lut_argmax_latency(n, w)
    assert run(n, w, vectors, [1] * len(vectors)) == len(vectors) - latency


@pytest.mark.parametrize("n, w", [(1, 3), (2, 1), (3, 2), (2, 6), (5, 3), (10, 6), (16, 7)])
def test_relays_match_numpy(n, w):
    """With relays (two cycles a stage): the same results, ``2 L + 1`` cycles later."""
    rng = np.random.default_rng([n, w, 2])
    vectors = score_vectors(rng, 48 + 2 * one_lut_argmax_latency(n, w), n, w)
    latency = one_lut_argmax_latency(n, w, relays=True)
    assert latency == (2 * one_lut_argmax_latency(n, w) + 1 if n > 1 else 0)
    assert run(n, w, vectors, [1] * len(vectors), relays=True) == len(vectors) - latency


@pytest.mark.parametrize("n, w, relays", [(2, 1, False), (3, 2, False), (5, 3, False), (10, 6, False),
                                          (16, 7, False), (3, 2, True), (10, 6, True)])
def test_enable_holds(n, w, relays):
    """With ``en`` toggling at random, registers hold while it is 0 (the model shifts only on 1)."""
    rng = np.random.default_rng([n, w, 1])
    vectors = score_vectors(rng, 64 + 3 * one_lut_argmax_latency(n, w, relays), n, w)
    enables = rng.random(len(vectors)) < 0.6
    assert run(n, w, vectors, enables, relays=relays) > 10


def test_registered_wrapper_latency():
    """The wrapper the onelut check maps computes the same thing, two cycles later."""
    rng = np.random.default_rng(7)
    vectors = score_vectors(rng, 40, 5, 3)
    assert run(5, 3, vectors, [1] * 40, registered=True) == 40 - (8 + 2)


def test_latency_table():
    table = {(n, w): one_lut_argmax_latency(n, w) for n in (1, 2, 10) for w in (1, 2, 3, 6)}
    assert table == {(1, 1): 0, (1, 2): 0, (1, 3): 0, (1, 6): 0,
                     (2, 1): 0, (2, 2): 1, (2, 3): 2, (2, 6): 3,
                     (10, 1): 3, (10, 2): 4, (10, 3): 11, (10, 6): 15}


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_bad_sizes(bad):
    with pytest.raises(ValueError, match="n_classes must be a positive integer"):
        one_lut_argmax_latency(bad, 3)
    with pytest.raises(ValueError, match="score_bits must be a positive integer"):
        one_lut_argmax_latency(3, bad)


def test_bad_scores():
    m = Module()
    with pytest.raises(ValueError, match="same positive width"):
        build_one_lut_argmax(m, [Signal(3), Signal(4)], en=Const(1, 1), name="a")
    with pytest.raises(ValueError, match="non-empty"):
        build_one_lut_argmax(m, [], en=Const(1, 1), name="a")


# -- one LUT4 between registers on ECP5 ------------------------------------------------------

@pytest.mark.parametrize("n, w", [(10, 6), (5, 3), (16, 2)])
def test_one_lut4_between_registers(n, w, tmp_path):
    top = ArgmaxTop(n, w, registered=True, free_running=True)
    assert lut_depth_violations(top, top="argmax_top", workdir=tmp_path) == []


@pytest.mark.parametrize("n, w", [(10, 6), (5, 2), (4, 1)])
def test_relays_feed_every_lut(n, w, tmp_path):
    """With relays, mapped to ECP5 as the build maps it (relays kept apart): one LUT4 between
    registers, and every LUT4 of the argmax reads only relay registers (``relay_*``)."""
    top = ArgmaxTop(n, w, registered=True, free_running=True, relays=True)
    text = verilog.convert(top, name="argmax_top")
    (tmp_path / "argmax_top.v").write_text(text)
    run_yosys(f"read_verilog argmax_top.v\n{pnr.synth_script('ecp5', 'argmax_top', 'argmax_top.json')}",
              tmp_path, name="relays")
    netlist = json.loads((tmp_path / "argmax_top.json").read_text())
    assert netlist_violations(netlist, "argmax_top") == []
    module = netlist["modules"]["argmax_top"]
    relay_bits = {b for name, net in module["netnames"].items() if name.split(".")[-1].startswith("relay_")
                  for b in net["bits"]}
    luts = [c for c in module["cells"].values() if c["type"] == "LUT4"]
    assert len(luts) > n, len(luts)
    wrong = [c for c in luts for port in "ABCD" for b in c["connections"].get(port, [])
             if isinstance(b, int) and b not in relay_bits]
    assert wrong == [], f"{len(wrong)} LUT4 inputs not from relays"


class Compare(wiring.Component):
    """Registered ``a >= b`` of two registered ``w``-bit values."""

    def __init__(self, w):
        self.w = w
        super().__init__({"i": In(2 * w), "o": Out(1)})

    def elaborate(self, platform):
        m = Module()
        r = Signal(2 * self.w, reset_less=True)
        ge = Signal(reset_less=True, name="ge")
        m.d.sync += [r.eq(self.i), ge.eq(r[:self.w] >= r[self.w:])]
        m.d.comb += self.o.eq(ge)
        return m


def test_checker_catches_wide_compare(tmp_path):
    """A 6-bit comparison reads 12 register bits: more than one LUT4, so ``ge`` is named."""
    found = lut_depth_violations(Compare(6), top="cmp", workdir=tmp_path / "six")
    assert len(found) == 1 and found[0].startswith("ge"), found
    # Four inputs (2-bit a >= b) fit one LUT4.
    assert lut_depth_violations(Compare(2), top="cmp", workdir=tmp_path / "two") == []


def _cell(kind, outputs, **conns):
    return {"type": kind,
            "port_directions": {p: "output" if p in outputs else "input" for p in conns},
            "connections": {p: list(v) for p, v in conns.items()}}


def test_netlist_rules():
    """Hand-made netlist: port -> FF, LUT4 of FF/port/constant -> FF pass; LUT4 -> LUT4 -> FF,
    PFUMX -> FF and an undriven D fail, each named by its register."""
    ff = lambda d, q: _cell("TRELLIS_FF", ("Q",), DI=[d], Q=[q], CLK=[1])
    cells = {
        "r0": ff(2, 10), "r1": ff(3, 11),
        "l_ok": _cell("LUT4", ("Z",), A=[10], B=[11], C=[2], D=["0"], Z=[20]), "r_ok": ff(20, 12),
        "l_deep": _cell("LUT4", ("Z",), A=[20], B=[11], C=["1"], D=["0"], Z=[21]),
        "r_deep": ff(21, 13),
        "mux": _cell("PFUMX", ("Z",), ALUT=[10], BLUT=[11], C0=[2], Z=[22]), "r_mux": ff(22, 14),
        "r_none": ff(30, 15),
    }
    names = {f"q{k}": {"bits": [b], "hide_name": 0} for k, b in enumerate(range(10, 16))}
    netlist = {"modules": {"t": {"ports": {"clk": {"direction": "input", "bits": [1]},
                                           "i": {"direction": "input", "bits": [2, 3]}},
                                 "cells": cells, "netnames": names}}}
    found = netlist_violations(netlist, "t")
    assert [f.split(":")[0] for f in found] == ["q3", "q4", "q5"], found
    assert "reads LUT4 l_ok" in found[0] and "PFUMX" in found[1] and "undriven" in found[2]
    with pytest.raises(ValueError, match="no module 'x'"):
        netlist_violations(netlist, "x")
