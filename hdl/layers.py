"""Hardware for each IR op: input encoder, XNOR-popcount-threshold layer, K-input LUT layer, XNOR
head and group-sum head with argmax.

Each component is combinational logic plus optional pipeline registers. All registers load only
while ``en`` is 1 (the global pipeline enable of :class:`~lutnet.hdl.top.LutnetTop`), so a
stalled pipeline holds its data; with ``free_running=True`` they load on every clock and ``en``
is ignored (plain flip-flops without a clock enable: the stall-free top never stalls them).
Data registers have no reset: the valid bits, kept by the top, say which data are meaningful.
``latency`` is the number of register levels between ``i`` and ``o``; with ``en`` held at 1,
``o`` follows ``i`` by exactly ``latency`` cycles.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from lutnet import ir
from .options import register_count, registered_after
from .argmax import build_one_lut_argmax, one_lut_argmax_latency
from .popcount import (build_counter_count, build_group_count, build_popcounts, counter_latency,
                       group_count_depth, popcount_depth)

__all__ = ["EncoderComponent", "XnorLayerComponent", "XnorHeadComponent", "LutLayerComponent",
           "GroupSumHeadComponent", "lut_support", "lut_function", "class_bits"]


def class_bits(n_classes: int) -> int:
    """Width of a class index: ``max(1, ceil(log2(n_classes)))``.

    >>> [class_bits(n) for n in (2, 3, 4, 10, 16, 17)]
    [1, 2, 2, 4, 4, 5]
    """
    return max(1, (int(n_classes) - 1).bit_length())


def _check_kind(value, kind, what):
    if not isinstance(value, kind):
        raise TypeError(f"{what} must be an ir.{kind.__name__}, not {type(value).__name__}")


def _check_period(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                              or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
    return None if value is None else int(value)


def _output(m: Module, value, en, register: bool, name: str):
    """``value`` itself, or a register of it loaded while ``en``."""
    return _signal(m, value, en, True, name) if register else value


def _signal(m: Module, value, en, register: bool, name: str) -> Signal:
    """A signal driven by ``value``, through a register loaded while ``en`` if ``register``.

    Values used more than once go through a signal: Amaranth copies a shared expression once per
    use when it lowers a design.
    """
    sig = Signal(len(value), name=name, reset_less=True)
    if register:
        with m.If(en):
            m.d.sync += sig.eq(value)
    else:
        m.d.comb += sig.eq(value)
    return sig


def _drive(m: Module, port, value, en, register: bool):
    """Drive the output ``port`` from ``value``, through a register loaded while ``en`` if asked.

    The register is reset-less and has the port's name, so the Verilog port keeps that name.
    """
    m.d.comb += port.eq(_output(m, value, en, register, port.name))


class _Stage(wiring.Component):
    """A pipeline stage built from one IR object: ports ``en``, ``i`` (``n_in``), ``o`` (``n_out``),
    an optional output register loaded while ``en``, and ``latency`` (1 with that register)."""

    def __init__(self, node, kind, what: str, register: bool, free_running: bool = False):
        _check_kind(node, kind, what)
        self.ir = node
        self.register = bool(register)
        self.free_running = bool(free_running)
        self.latency = int(self.register)
        n_in, n_out = self._widths(node)
        super().__init__({"en": In(1), "i": In(n_in), "o": Out(n_out)})

    @staticmethod
    def _widths(node) -> tuple[int, int]:
        return node.n_in, node.n_out

    @property
    def _en(self):
        """The enable the registers load on: ``en``, or a constant 1 when free-running."""
        return Const(1, 1) if self.free_running else self.en


class EncoderComponent(_Stage):
    """Raw unsigned features to bits: ``o[f * levels + t] = i_f >= thresholds[f, t]``.

    Feature ``f`` is ``i[f * input_bits +: input_bits]``. A threshold of 0 is a constant 1 and one
    of ``2 ** input_bits`` a constant 0.

    Parameters
    ----------
    encoder : ir.Encoder
    register : bool
        Register the output bits.
    free_running : bool
        Registers load on every clock (``en`` is ignored).

    Attributes
    ----------
    en : In(1)
        Pipeline enable.
    i : In(n_features * input_bits)
        Raw features.
    o : Out(n_features * levels)
        Encoded bits.
    latency : int
        1 if ``register`` else 0 cycles.
    """

    def __init__(self, encoder: ir.Encoder, *, register: bool = True, free_running: bool = False):
        super().__init__(encoder, ir.Encoder, "encoder", register, free_running)

    @staticmethod
    def _widths(encoder) -> tuple[int, int]:
        return encoder.n_features * encoder.input_bits, encoder.n_out

    def elaborate(self, platform):
        m = Module()
        enc = self.ir
        b, full = enc.input_bits, 2 ** enc.input_bits
        thresholds = enc.thresholds.tolist()
        bits = []
        for f in range(enc.n_features):
            x = self.i[f * b:(f + 1) * b]
            for t in thresholds[f]:
                bits.append(Const(1, 1) if t == 0 else Const(0, 1) if t == full else x >= t)
        _drive(m, self.o, Cat(*bits), self._en, self.register)
        return m


class XnorLayerComponent(_Stage):
    """XNOR-popcount-threshold layer: ``o[j] = popcount(~(i ^ weights[j])) >= thresholds[j]``.

    Popcounts are balanced adder trees (see :mod:`lutnet.hdl.popcount`); a threshold of 0 is a
    constant 1 and one of ``n_in + 1`` a constant 0 (no tree is built for such a row).

    Parameters
    ----------
    layer : ir.XnorLayer
    register : bool
        Register the output bits.
    free_running : bool
        Registers load on every clock (``en`` is ignored).
    adder_levels_per_stage : int or None
        Register inside the adder trees every this many levels (never after the last level).
    share_subtrees : bool
        Build identical subtrees (same inputs, same weights) once for all rows.

    Attributes
    ----------
    en : In(1)
        Pipeline enable.
    i : In(n_in)
        Input bits.
    o : Out(n_out)
        Output bits.
    latency : int
        ``(ceil(log2(n_in)) - 1) // adder_levels_per_stage`` (0 for None), plus 1 if ``register``.
    """

    def __init__(self, layer: ir.XnorLayer, *, register: bool = True,
                 adder_levels_per_stage: int | None = None, share_subtrees: bool = True,
                 free_running: bool = False):
        super().__init__(layer, ir.XnorLayer, "layer", register, free_running)
        self.adder_levels_per_stage = _check_period(adder_levels_per_stage,
                                                    "adder_levels_per_stage")
        self.share_subtrees = bool(share_subtrees)
        self.tree_latency = register_count(popcount_depth(layer.n_in), self.adder_levels_per_stage)
        self.latency += self.tree_latency

    def elaborate(self, platform):
        m = Module()
        layer = self.ir
        thresholds = layer.thresholds.tolist()
        live = [j for j, t in enumerate(thresholds) if 0 < t <= layer.n_in]
        counts, latency = build_popcounts(
            m, self.i, layer.weights[live], en=self._en, levels_per_stage=self.adder_levels_per_stage,
            share=self.share_subtrees, name="sum")
        assert latency == self.tree_latency
        count_of = dict(zip(live, counts))
        bits = []
        for j, t in enumerate(thresholds):
            if t == 0:
                bits.append(Const(1, 1))
            elif t > layer.n_in:
                bits.append(Const(0, 1))
            else:
                bits.append(count_of[j] >= t)
        _drive(m, self.o, Cat(*bits), self._en, self.register)
        return m


def lut_support(inputs, table, constants=None) -> tuple[list[int], int]:
    """The inputs a LUT neuron really depends on, and its table over them.

    ``inputs`` is one neuron's (K,) input indices, ``table`` its (2**K,) bits. Repeated indices
    are merged, inputs the table ignores are dropped, and inputs found in ``constants`` (index ->
    0 or 1, bits known to be constant) are replaced by their value; returns
    ``(indices, table_int)`` with address bit ``k`` = input ``indices[k]`` and bit ``a`` of
    ``table_int`` the output at address ``a``. A constant neuron has no indices (``table_int``
    0 or 1).

    >>> lut_support([3, 5], [0, 1, 0, 1])      # out = x[3]: x[5] is ignored
    ([3], 2)
    >>> lut_support([2, 2], [0, 0, 0, 1])      # out = x[2] & x[2]
    ([2], 2)
    >>> lut_support([4, 1], [1, 1, 1, 1])
    ([], 1)
    >>> lut_support([4, 1], [0, 0, 0, 1], {1: 1})   # out = x[4] & 1
    ([4], 2)
    """
    constants = constants or {}
    inputs = [int(v) for v in inputs]
    table = np.asarray(table, dtype=bool)
    variables = sorted(set(inputs))
    # Truth table over the distinct variables: address bit v of a -> variable variables[v].
    position = {x: v for v, x in enumerate(variables)}
    a = np.arange(2 ** len(variables))
    address = np.zeros_like(a)
    for k, x in enumerate(inputs):
        address |= ((a >> position[x]) & 1) << k
    values = table[address]
    for v in reversed(range(len(variables))):
        lo = values.reshape(-1, 2, 2 ** v)      # [..., bit v, lower bits]
        if variables[v] in constants:
            values = lo[:, int(constants[variables[v]])].reshape(-1)
            del variables[v]
        elif (lo[:, 0] == lo[:, 1]).all():
            values = lo[:, 0].reshape(-1)
            del variables[v]
    return variables, int(sum(1 << i for i in np.flatnonzero(values).tolist()))


#: Address bits of the constant tables at the leaves of :func:`lut_function` (see there).
LUT_LEAF_BITS = 3


def lut_function(value: int, address: list):
    """The table ``value`` (bit ``a`` = the output at address ``a``) read at ``address`` (a list
    of 1-bit values, address bit ``k`` = ``address[k]``), as a tree of 2:1 multiplexers on the
    high address bits with constant tables of :data:`LUT_LEAF_BITS` address bits at the leaves;
    equal halves share one subtree, constant ones are constants, and a table that copies one
    input is that input.

    Why not one ``Const(value).bit_select(address)``: Yosys maps a shift of a constant by
    specialising a module per distinct constant, which took 56 of the 95 s of mapping MNIST's
    1,500-neuron layer to ECP5. With 8-entry leaves there are at most 256 distinct constants;
    the same layer maps in 33 s to 4,642 instead of 4,649 LUT4 (a single neuron of up to six
    inputs still maps to one LUT6 on a 6-LUT fabric).

    >>> from amaranth.hdl import Signal
    >>> a = [Signal(name=f"a{k}") for k in range(2)]
    >>> lut_function(0b1000, a).shape().width, lut_function(0b1111, a).value, lut_function(0b1010, a) is a[0]
    (1, 1, True)
    """
    n = len(address)
    if value in (0, (1 << (1 << n)) - 1):
        return Const(value & 1, 1)
    if n == 1:
        return address[0] if value == 0b10 else ~address[0]
    half = 1 << (n - 1)
    lo, hi = value & ((1 << half) - 1), value >> half
    if lo == hi:
        return lut_function(lo, address[:-1])
    if n <= LUT_LEAF_BITS:
        return Const(value, 1 << n).bit_select(Cat(*address), 1)
    return Mux(address[-1], lut_function(hi, address[:-1]), lut_function(lo, address[:-1]))


class LutLayerComponent(_Stage):
    """LUT layer: ``o[j] = tables[j][address]``, address bit ``k`` = ``i[inputs[j, k]]``.

    Each neuron is its table read at its inputs (:func:`lut_function`), a K-input function that
    synthesis maps to one K-input LUT (K <= 6 on a 6-LUT fabric). Repeated inputs and inputs a
    table ignores are removed first (:func:`lut_support`), so a constant neuron is a constant
    and a neuron that copies one input is a wire.

    Parameters
    ----------
    layer : ir.LutLayer
    register : bool
        Register the output bits.
    free_running : bool
        Registers load on every clock (``en`` is ignored).
    split_lut6 : bool
        Register every six-input neuron as two five-input halves and its sixth input, choosing
        after the register (one more cycle when the layer has K = 6).
    relay_inputs : bool
        Register every neuron's inputs in registers of its own, ``relay{j}`` for neuron ``j``
        (one more cycle; a bit read by several neurons has a relay in each), then its LUT.
    read : set of int, optional
        The outputs the next stage reads; the others are not built (0; with ``split_lut6`` they
        are, and synthesis removes them). Synthesis would remove them anyway, but not their
        relays, which it is told to keep.
    constants : dict, optional
        Inputs known to be constant (index -> 0 or 1), such as the constant neurons of a LUT
        layer before: the tables are specialised on them, so no neuron reads (or relays) one.

    Attributes
    ----------
    en : In(1)
        Pipeline enable.
    i : In(n_in)
        Input bits.
    o : Out(n_out)
        Output bits. A constant neuron's bit is its constant, not a register's output (which
        would hold the register's initial value for a cycle, so synthesis would keep it).
    latency : int
        1 if ``register`` else 0 cycles, + 1 with ``split_lut6`` on a K = 6 layer, + 1 with
        ``relay_inputs``.
    constant_outputs : dict
        The outputs that are constant (index -> value), given ``constants``.
    """

    def __init__(self, layer: ir.LutLayer, *, register: bool = True, free_running: bool = False,
                 split_lut6: bool = False, relay_inputs: bool = False, read: set | None = None,
                 constants: dict | None = None):
        super().__init__(layer, ir.LutLayer, "layer", register, free_running)
        if split_lut6 and relay_inputs:
            raise ValueError("relay_inputs and split_lut6 cannot be combined")
        self.split_lut6 = bool(split_lut6) and layer.k >= 6
        self.relay_inputs = bool(relay_inputs)
        self.read = None if read is None else frozenset(int(j) for j in read)
        self.latency += self.split_lut6 + self.relay_inputs
        self.constants = {int(k): int(v) for k, v in (constants or {}).items()}
        self.supports = [lut_support(inputs, table, self.constants)
                         for inputs, table in zip(layer.inputs, layer.tables)]
        self.constant_outputs = {j: value for j, (variables, value) in enumerate(self.supports)
                                 if not variables}

    def elaborate(self, platform):
        m = Module()
        if self.split_lut6:
            return self._elaborate_split(m)
        bits = []
        for j, (variables, value) in enumerate(self.supports):
            if (self.read is not None and j not in self.read) or not variables:
                bits.append(Const(0, 1))      # unread, or a constant (see below)
                continue
            address = [self.i[v] for v in variables]
            if self.relay_inputs:
                relay = _signal(m, Cat(*address), self._en, True, f"relay{j}")
                address = [relay[k] for k in range(len(address))]
            bits.append(lut_function(value, address))
        out = _output(m, Cat(*bits), self._en, self.register, "o")
        m.d.comb += self.o.eq(Cat(*(Const(self.constant_outputs[j], 1) if j in self.constant_outputs
                                    else out[j] for j in range(len(bits)))))
        return m

    def _elaborate_split(self, m: Module) -> Module:
        """``split_lut6``: a neuron of six inputs becomes two registered five-input halves (the
        table's halves) and its sixth input, registered too, choosing between them after the
        register; every other neuron goes through the same register whole. On a LUT4 fabric a
        six-input table is four LUT4s and two multiplexer levels whose output reaches its
        flip-flop over general routing; halves end in one multiplexer inside their slice."""
        layer, en = self.ir, self._en
        mid, picks, selects = [], [], {}
        for variables, value in self.supports:
            if len(variables) == 6:
                address = [self.i[v] for v in variables[:5]]
                lo = lut_function(value & 0xFFFF_FFFF, address)
                hi = lut_function(value >> 32, address)
                selects.setdefault(variables[5], len(selects))
                picks.append((len(mid), len(mid) + 1, variables[5]))
                mid += [lo, hi]
            else:
                picks.append((len(mid), None, None))
                mid.append(lut_function(value, [self.i[v] for v in variables]))
        sel_bits = [self.i[v] for v in selects]
        reg = _signal(m, Cat(*mid, *sel_bits), en, True, "halves")
        bits = [reg[a] if b is None else Mux(reg[len(mid) + selects[v]], reg[b], reg[a])
                for a, b, v in picks]
        _drive(m, self.o, Cat(*bits), en, self.register)
        return m


class _ArgmaxHead(wiring.Component):
    """What the two heads share: class scores (built by :meth:`_counts`), an optional score
    register, the argmax tree and the output layout.

    The argmax is a balanced tree of comparisons of adjacent candidates, keeping the left one
    when its score is ``>=`` the right one's, so ties go to the lowest index.
    """

    def __init__(self, head, *, tree_inputs: int, adder_levels_per_stage: int | None = None,
                 register_scores: bool = True, argmax_levels_per_stage: int | None = None,
                 register_comparisons: bool = False, register_output: bool = True,
                 share_subtrees: bool = True, free_running: bool = False, one_lut: bool = False,
                 relay_inputs: bool = False):
        self.ir = head
        self.one_lut = bool(one_lut)
        self.relay_inputs = bool(relay_inputs)
        self.free_running = bool(free_running)
        self.adder_levels_per_stage = _check_period(adder_levels_per_stage,
                                                    "adder_levels_per_stage")
        self.argmax_levels_per_stage = _check_period(argmax_levels_per_stage,
                                                     "argmax_levels_per_stage")
        self.register_scores = bool(register_scores)
        self.register_comparisons = bool(register_comparisons)
        self.register_output = bool(register_output)
        self.share_subtrees = bool(share_subtrees)
        self.class_bits = class_bits(head.n_classes)
        self.score_bits = head.score_bits
        self.tree_latency = self._tree_latency(tree_inputs)
        if self.one_lut:
            self.argmax_latency = one_lut_argmax_latency(head.n_classes, self.score_bits,
                                                        self.relay_inputs)
        else:
            argmax_depth = popcount_depth(head.n_classes)
            self.argmax_latency = (register_count(argmax_depth, self.argmax_levels_per_stage)
                                   + argmax_depth * self.register_comparisons)
        self.latency = (self.tree_latency + int(self.register_scores) + self.argmax_latency
                        + int(self.register_output))
        super().__init__({
            "en": In(1),
            "i": In(head.n_in),
            "o": Out(self.class_bits + head.n_classes * self.score_bits),
        })

    @property
    def _en(self):
        """The enable the registers load on: ``en``, or a constant 1 when free-running."""
        return Const(1, 1) if self.free_running else self.en

    def _tree_latency(self, tree_inputs: int) -> int:
        """Registers inside the tree that counts ``tree_inputs`` bits into a score."""
        return register_count(popcount_depth(tree_inputs), self.adder_levels_per_stage)

    def _counts(self, m: Module) -> list:
        """The class scores, each ``score_bits`` wide, after ``tree_latency`` registers."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        head, en = self.ir, self._en
        counts = self._counts(m)
        assert all(len(c) == self.score_bits for c in counts)
        scores = _signal(m, Cat(*counts), en, self.register_scores, "scores")
        n, w, cb = head.n_classes, self.score_bits, self.class_bits
        if self.one_lut:
            index, delayed, latency = build_one_lut_argmax(
                m, [scores[c * w:(c + 1) * w] for c in range(n)], en=en, name="argmax",
                relays=self.relay_inputs)
            assert latency == self.argmax_latency
            _drive(m, self.o, Cat(index, delayed), en, self.register_output)
            return m
        # Candidates (score, index); an index is a constant until its first comparison. Each
        # level is a signal, so the comparison feeding two muxes is built once.
        nodes = [(scores[c * w:(c + 1) * w], Const(c, cb)) for c in range(n)]
        depth = popcount_depth(n)
        for level in range(1, depth + 1):
            last = level == depth
            pairs = len(nodes) // 2
            ge = Signal(pairs, name=f"argmax_l{level}_ge")
            m.d.comb += ge.eq(Cat(*(nodes[2 * p][0] >= nodes[2 * p + 1][0] for p in range(pairs))))
            if self.register_comparisons:
                # The comparisons, the candidates they choose between and the scores all go
                # through one register, so the multiplexers read registers only.
                flat = Cat(ge, scores, *(v for node in nodes for v in node))
                reg = _signal(m, flat, en, True, f"argmax_l{level}_cmp")
                ge, scores, pos = reg[:pairs], reg[pairs:pairs + n * w], pairs + n * w
                widths = [(len(s), len(i)) for s, i in nodes]
                nodes = []
                for ws, wi in widths:
                    nodes.append((reg[pos:pos + ws], reg[pos + ws:pos + ws + wi]))
                    pos += ws + wi
            merged = []
            for p in range(pairs):
                (sa, ia), (sb, ib) = nodes[2 * p], nodes[2 * p + 1]
                keep_left = ge[p]
                merged.append((None if last else Mux(keep_left, sa, sb), Mux(keep_left, ia, ib)))
            if len(nodes) % 2:
                merged.append(nodes[-1])
            registered = registered_after(level, self.argmax_levels_per_stage, depth)
            if last:
                nodes = merged
                break
            flat = Cat(scores, *(v for node in merged for v in node))
            reg = _signal(m, flat, en, registered, f"argmax_l{level}")
            scores, pos, nodes = reg[:n * w], n * w, []
            for _ in merged:
                nodes.append((reg[pos:pos + w], reg[pos + w:pos + w + cb]))
                pos += w + cb
        (_, index), = nodes
        _drive(m, self.o, Cat(index, scores), en, self.register_output)
        return m


class XnorHeadComponent(_ArgmaxHead):
    """XNOR head: class scores ``popcount(~(i ^ weights[c]))`` and their argmax.

    The argmax is a balanced tree of comparisons of adjacent candidates, keeping the left one
    when its score is ``>=`` the right one's, so ties go to the lowest index.

    Parameters
    ----------
    head : ir.XnorHead
    adder_levels_per_stage : int or None
        Register inside the score adder trees every this many levels.
    register_scores : bool
        Register the scores before the argmax.
    argmax_levels_per_stage : int or None
        Register inside the argmax tree every this many levels (the scores are delayed alike).
    register_comparisons : bool
        Register every argmax level's comparisons (with the candidates and the scores) before
        its multiplexers: one more cycle per level, each stage a comparator or a multiplexer.
    register_output : bool
        Register ``o``.
    share_subtrees : bool
        Build identical adder subtrees once for all classes.
    free_running : bool
        Registers load on every clock (``en`` is ignored).
    one_lut : bool
        The argmax as :func:`~lutnet.hdl.argmax.build_one_lut_argmax` (every register one LUT4
        of registers; ``argmax_levels_per_stage`` and ``register_comparisons`` do not apply);
        the group-sum head counts with counters too (:class:`GroupSumHeadComponent`).
    relay_inputs : bool
        With ``one_lut``, the group-sum head's counters and the argmax's LUTs read relays of
        their own (:func:`~lutnet.hdl.argmax.build_one_lut_argmax` ``relays``).

    Attributes
    ----------
    en : In(1)
        Pipeline enable.
    i : In(n_in)
        Input bits.
    o : Out(class_bits + n_classes * score_bits)
        Class index at ``o[0 +: class_bits]``, score ``c`` at
        ``o[class_bits + c * score_bits +: score_bits]``; ``score_bits = n_in.bit_length()``.
    latency : int
        Adder-tree registers, + 1 if ``register_scores``, + argmax-tree registers
        (``(ceil(log2(n_classes)) - 1) // argmax_levels_per_stage``, + ``ceil(log2(n_classes))``
        if ``register_comparisons``), + 1 if ``register_output``.
    """

    def __init__(self, head: ir.XnorHead, **options):
        _check_kind(head, ir.XnorHead, "head")
        super().__init__(head, tree_inputs=head.n_in, **options)

    def _counts(self, m):
        counts, latency = build_popcounts(
            m, self.i, self.ir.weights, en=self._en, levels_per_stage=self.adder_levels_per_stage,
            share=self.share_subtrees, name="sum")
        assert latency == self.tree_latency
        return counts


class GroupSumHeadComponent(_ArgmaxHead):
    """Group-sum head: score ``c`` is the popcount of input bits ``i[c * g +: g]``
    (``g = n_in / n_classes``), then the same argmax as :class:`XnorHeadComponent`.

    Each group's popcount is :func:`~lutnet.hdl.popcount.build_group_count`: counts of 4-bit
    pieces in logic (one LUT4 per output bit), then a balanced tree of adders. With ``one_lut``
    it is :func:`~lutnet.hdl.popcount.build_counter_count` instead: stages of counters, every
    register one LUT4 of registers (with ``relay_inputs``, of relays of its own).

    Parameters
    ----------
    head : ir.GroupSumHead
    adder_levels_per_stage, register_scores, argmax_levels_per_stage, register_comparisons,
    register_output, share_subtrees, free_running, one_lut, relay_inputs
        As for :class:`XnorHeadComponent` (``share_subtrees`` has nothing to share here: the
        groups read different bits).
    orders : list of sequences of int, optional
        With ``one_lut``, class ``c``'s members in the order its first counters take them, four
        at a time (a permutation of ``range(g)``; :class:`~lutnet.hdl.top.LutnetTop` passes
        the members' order along a curve over the layout, so that a counter's inputs lie close).
    hops : sequence of int
        With ``one_lut`` and ``relay_inputs``, more registers before each counter stage's
        relays (:func:`~lutnet.hdl.popcount.build_counter_count`).

    Attributes
    ----------
    en, i, o, class_bits, score_bits
        As for :class:`XnorHeadComponent`, with ``score_bits = g.bit_length()``.
    latency : int
        ``(group_count_depth(g) - 1) // adder_levels_per_stage`` tree registers (0 for None;
        ``group_count_depth(g) = 1 + ceil(log2(ceil(g / 4)))`` levels for ``g > 1``), + 1 if
        ``register_scores``, + argmax-tree registers (as for :class:`XnorHeadComponent`), + 1 if
        ``register_output``. A group of 4 bits is one level, so no register goes in its tree
        (none goes after the last level). With ``one_lut`` the tree's registers are
        :func:`~lutnet.hdl.popcount.counter_latency` and the argmax's
        :func:`~lutnet.hdl.argmax.one_lut_argmax_latency`.
    """

    def __init__(self, head: ir.GroupSumHead, *, orders=None, hops=(), **options):
        _check_kind(head, ir.GroupSumHead, "head")
        self.hops = tuple(int(h) for h in hops)
        self.orders = None if orders is None else [list(map(int, o)) for o in orders]
        if self.orders is not None and len(self.orders) != head.n_classes:
            raise ValueError(f"orders: one per class ({head.n_classes}), not {len(self.orders)}")
        super().__init__(head, tree_inputs=head.group, **options)

    def _tree_latency(self, tree_inputs: int) -> int:
        if self.one_lut:
            return counter_latency(tree_inputs, self.relay_inputs, self.hops)
        return register_count(group_count_depth(tree_inputs), self.adder_levels_per_stage)

    def _counts(self, m):
        g = self.ir.group
        counts = []
        for c in range(self.ir.n_classes):
            if self.one_lut:
                count, latency = build_counter_count(
                    m, self.i[c * g:(c + 1) * g], en=self._en, relays=self.relay_inputs,
                    name=f"sum{c}", order=None if self.orders is None else self.orders[c],
                    hops=self.hops)
            else:
                count, latency = build_group_count(
                    m, self.i[c * g:(c + 1) * g], en=self._en,
                    levels_per_stage=self.adder_levels_per_stage, name=f"sum{c}")
            assert latency == self.tree_latency
            counts.append(count)
        return counts
