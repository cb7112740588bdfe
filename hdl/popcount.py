"""XNOR-popcount as balanced adder trees, one per weight row, built level by level.

Inputs and weights are constant-folded: ``~(x ^ w)`` is ``x[i]`` where ``w[i] = 1`` and ``~x[i]``
where ``w[i] = 0``. Each row's popcount is a balanced pairwise tree: level ``k`` adds adjacent
pairs of level ``k - 1`` (an odd last node passes through), each adder only as wide as its largest
possible sum. All rows of a layer cover the same input ranges at the same nodes, so a node is fully
described by its input range and the weight bits over it; with ``share=True`` a node needed by
several rows (same range, same weight bits) is built once. That does not change the function of
any row, only the number of adders (the same merge a synthesis tool's CSE would make later), and
it makes generation fast: the work is per distinct node, found with numpy, not per row and bit.

Everything is deterministic: nodes are created in order of level, column, then sorted key.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Signal, Value

from .options import register_count, registered_after

__all__ = ["popcount_depth", "build_popcounts", "group_count_depth", "build_group_count",
           "counter_stages", "eval_counter_stages", "counter_latency", "build_counter_count"]


def popcount_depth(n_in: int) -> int:
    """Adder levels of a balanced tree over ``n_in`` bits: ``ceil(log2(n_in))``.

    >>> [popcount_depth(n) for n in (1, 2, 3, 4, 5, 784)]
    [0, 1, 2, 2, 3, 10]
    """
    return (int(n_in) - 1).bit_length()


def build_popcounts(m: Module, x: Value, weights: np.ndarray, *, en: Value,
                    levels_per_stage: int | None, share: bool, name: str):
    """Build ``popcount(~(x ^ weights[r]))`` for every row ``r``.

    Parameters
    ----------
    m : Module
        Module that receives the logic and the pipeline registers.
    x : Value
        Input bits, ``weights.shape[1]`` wide.
    weights : (rows, n_in) bool array
    en : Value
        Pipeline enable: the tree's registers load only while it is 1.
    levels_per_stage : int or None
        Register every this many adder levels (never after the last level); None for none.
    share : bool
        Build each distinct subtree once (see the module docstring).
    name : str
        Prefix of the names of the level signals (``{name}_l{level}``).

    Returns
    -------
    (counts, latency)
        ``counts[r]`` is row ``r``'s count, ``n_in.bit_length()`` bits wide (rows with identical
        weights may get the very same value); ``latency`` is the number of register levels.
    """
    weights = np.asarray(weights, dtype=bool)
    rows, n_in = weights.shape
    depth = popcount_depth(n_in)
    if rows == 0:
        return [], register_count(depth, levels_per_stage)
    # Every level lives in signals: Amaranth copies a shared expression once per use when it
    # lowers a design, so nodes used by several parents must be signals, not expressions.
    nx = Signal(n_in, name=f"{name}_nx")
    if not weights.all():
        m.d.comb += nx.eq(~x)
    # Per column (an input range): ids (rows,) index vals (the distinct nodes, as Values);
    # every node of a column has the same maximum count, hence the same width.
    ids = [weights[:, i].astype(np.int64) for i in range(n_in)]
    vals = [[nx[i], x[i]] for i in range(n_in)]
    maxes = [1] * n_in
    latency = 0
    for level in range(1, depth + 1):
        new_ids, new_vals, new_maxes = [], [], []
        for p in range(0, len(ids) - 1, 2):
            left, right = ids[p], ids[p + 1]
            top = maxes[p] + maxes[p + 1]
            # Amaranth's a + b is one bit wider than the wider operand; keep what can be reached.
            truncate = top.bit_length() < max(maxes[p], maxes[p + 1]).bit_length() + 1
            if share:
                base = len(vals[p + 1])
                keys, inverse = np.unique(left * base + right, return_inverse=True)
                pairs = zip((keys // base).tolist(), (keys % base).tolist())
            else:
                inverse = np.arange(rows)
                pairs = zip(left.tolist(), right.tolist())
            lvals, rvals = vals[p], vals[p + 1]
            if truncate:
                width = top.bit_length()
                column = [(lvals[a] + rvals[b])[:width] for a, b in pairs]
            else:
                column = [lvals[a] + rvals[b] for a, b in pairs]
            new_ids.append(inverse.reshape(rows))
            new_vals.append(column)
            new_maxes.append(top)
        if len(ids) % 2:
            new_ids.append(ids[-1])
            new_vals.append(vals[-1])
            new_maxes.append(maxes[-1])
        registered = registered_after(level, levels_per_stage, depth)
        ids, maxes = new_ids, new_maxes
        vals = _level(m, new_vals, [t.bit_length() for t in maxes], en, registered,
                      f"{name}_l{level}")
        latency += registered
    (root_ids,), (root_vals,) = ids, vals
    return [root_vals[i] for i in root_ids.tolist()], latency


#: Widest signal a level is put into (RTLIL refuses wires of 64k bits or more).
_CHUNK_BITS = 8192


def _level(m: Module, vals: list, widths: list, en: Value, register: bool, name: str) -> list:
    """Put every node of a level into signals of at most ``_CHUNK_BITS`` bits, through
    registers loaded while ``en`` if ``register``; return the nodes as slices of them, in the
    same nesting. ``widths[p]`` is the width of every node of column ``p``."""
    chunks = [[]]      # lists of (value, width)
    used = 0
    for column, w in zip(vals, widths):
        for v in column:
            if used + w > _CHUNK_BITS and chunks[-1]:
                chunks.append([])
                used = 0
            chunks[-1].append((v, w))
            used += w
    slices = []
    for k, chunk in enumerate(chunks):
        sig = Signal(sum(w for _, w in chunk), reset_less=True,
                     name=name if len(chunks) == 1 else f"{name}_{k}")
        value = Cat(*(v for v, _ in chunk))
        if register:
            with m.If(en):
                m.d.sync += sig.eq(value)
        else:
            m.d.comb += sig.eq(value)
        pos = 0
        for _, w in chunk:
            slices.append(sig[pos:pos + w])
            pos += w
    it = iter(slices)
    return [[next(it) for _ in column] for column in vals]


def group_count_depth(n_in: int) -> int:
    """Levels of :func:`build_group_count` over ``n_in`` bits: one of 4-bit popcounts, then
    ``ceil(log2(ceil(n_in / 4)))`` adder levels.

    >>> [group_count_depth(n) for n in (1, 2, 4, 5, 8, 50)]
    [0, 1, 1, 2, 2, 5]
    """
    n_in = int(n_in)
    return 0 if n_in <= 1 else 1 + popcount_depth(-(-n_in // 4))


def _popcount4(bits: list) -> Value:
    """The count of up to four bits as logic (each output bit its truth table over the four
    inputs, one LUT4), not as adders, which synthesis would put on carry chains.

    The tables are constants read at the bits, as the LUT neurons are: written as XOR/AND
    terms instead, the same count came out wrong in Verilator 5.048 (Amaranth's simulator
    and Icarus agreed with the golden model; ``tests/test_lut_props.py``, seed [9, 23])."""
    n = len(bits)
    if n == 1:
        return bits[0]
    address = Cat(*bits)
    return Cat(*(Const(sum((bin(a).count("1") >> k & 1) << a for a in range(1 << n)), 1 << n)
                 .bit_select(address, 1) for k in range(n.bit_length())))


def build_group_count(m: Module, x: Value, *, en: Value, levels_per_stage: int | None,
                      name: str):
    """``popcount(x)`` as a tree whose first level counts 4-bit groups in logic (one LUT4 per
    output bit) and whose next levels add pairs, each adder only as wide as its largest sum.

    The first level replaces two adder levels of :func:`build_popcounts` (whose first two
    levels add 1-bit and then 2-bit numbers) by one LUT level, with no register between.

    Parameters
    ----------
    m, en, levels_per_stage, name
        As for :func:`build_popcounts`; a register goes after every ``levels_per_stage``-th
        level (never after the last), the levels being named ``{name}_l{level}``.
    x : Value
        The bits to count.

    Returns
    -------
    (count, latency)
        ``count`` is ``len(x).bit_length()`` bits wide; ``latency`` the number of registers.
    """
    n_in = len(x)
    depth = group_count_depth(n_in)
    if depth == 0:
        return x[:1] if n_in else Const(0, 1), 0
    nodes = [_popcount4([x[i] for i in range(p, min(p + 4, n_in))]) for p in range(0, n_in, 4)]
    maxes = [min(4, n_in - p) for p in range(0, n_in, 4)]
    latency = 0
    for level in range(1, depth + 1):
        if level > 1:
            new_nodes, new_maxes = [], []
            for p in range(0, len(nodes) - 1, 2):
                top = maxes[p] + maxes[p + 1]
                new_nodes.append((nodes[p] + nodes[p + 1])[:top.bit_length()])
                new_maxes.append(top)
            if len(nodes) % 2:
                new_nodes.append(nodes[-1])
                new_maxes.append(maxes[-1])
            nodes, maxes = new_nodes, new_maxes
        registered = registered_after(level, levels_per_stage, depth)
        nodes = [v for (v,) in _level(m, [[v] for v in nodes], [t.bit_length() for t in maxes], en,
                                      registered, f"{name}_l{level}")]
        latency += registered
    (count,) = nodes
    return count, latency


def counter_stages(n_in: int) -> list:
    """A count of ``n_in`` bits as stages of counters, each output bit a function of at most
    four bits of the stage before (one LUT4 between registers), with no adder anywhere.

    The bits are kept in columns by weight. In a stage every column's bits are taken in order
    into counters: four or three bits of the column give their count (three or two bits, of
    this weight and the next ones); two left over are counted together with up to two bits of
    the next column (``a + b + 2 (c + d)``, three bits); one left over is passed on. A stage
    is therefore a register per output bit, each reading at most four registers. Bits of
    weight ``n_in.bit_length()`` or more are dropped: the count never reaches them, so it is
    exact modulo that power of two. The stages end when no column holds more than one bit.

    Returns
    -------
    list of stages
        Stage ``s`` is a list of ``(inputs, table)``, one per output bit: ``inputs`` index the
        bits of stage ``s - 1`` (the ``n_in`` input bits for the first stage), ``table`` is the
        truth table over them (bit ``a`` of ``table`` is the output at address ``a``, input
        ``k`` being address bit ``k``). The last stage's bits are the count, least significant
        first, ``n_in.bit_length()`` of them (an empty list for ``n_in <= 1``: the count is the
        input itself).

    >>> [len(counter_stages(n)) for n in (1, 2, 4, 5, 10, 16, 50, 100)]
    [0, 1, 1, 3, 4, 5, 7, 9]
    """
    n_in = int(n_in)
    width = n_in.bit_length()
    if n_in <= 1:
        return []
    columns = [list(range(n_in))] + [[] for _ in range(width - 1)]
    stages = []
    while max(len(c) for c in columns) > 1:
        stage, new = [], [[] for _ in range(width)]

        def counter(inputs, weights):
            top = sum(1 << w for w in weights)
            for j in range(top.bit_length()):
                if base + j >= width:
                    break
                table = sum((sum(((a >> k) & 1) << w for k, w in enumerate(weights)) >> j & 1) << a
                            for a in range(1 << len(inputs)))
                new[base + j].append(len(stage))
                stage.append((tuple(inputs), table))

        left = [list(c) for c in columns]
        for base in range(width):
            bits = left[base]
            while len(bits) >= 3:
                take, bits = bits[:4], bits[4:]
                counter(take, [0] * len(take))
            if len(bits) == 2:
                nxt = left[base + 1][:2] if base + 1 < width else []
                if base + 1 < width:
                    left[base + 1] = left[base + 1][len(nxt):]
                counter(bits + nxt, [0, 0] + [1] * len(nxt))
            elif len(bits) == 1:
                new[base].append(len(stage))
                stage.append(((bits[0],), 0b10))
        stages.append(stage)
        columns = new
    # Every column holds one bit now: order the last stage as the count's bits.
    order = [c[0] for c in columns if c]
    assert len(order) == width, columns
    stages[-1] = [stages[-1][i] for i in order]
    return stages


def eval_counter_stages(stages: list, bits: np.ndarray) -> np.ndarray:
    """Run :func:`counter_stages` on ``bits`` (samples, n_in) of 0/1; the counts (samples,)."""
    values = np.asarray(bits, dtype=np.int64)
    for stage in stages:
        out = np.zeros((len(values), len(stage)), dtype=np.int64)
        for j, (inputs, table) in enumerate(stage):
            address = sum(values[:, i] << k for k, i in enumerate(inputs))
            out[:, j] = (table >> address) & 1
        values = out
    return (values << np.arange(values.shape[1])).sum(axis=1) if stages else values[:, 0]


def counter_latency(n_in: int, relays: bool, hops=()) -> int:
    """Registers inside :func:`build_counter_count` over ``n_in`` bits: one after every stage
    but the last, with ``relays`` one more in front of every stage, and the ``hops``."""
    stages = len(counter_stages(n_in))
    return max(0, stages - 1) + stages * bool(relays) + sum(_hops(hops, stages, relays))


def _hops(hops, stages: int, relays: bool) -> list:
    """``hops`` (a sequence of non-negative ints, one per stage, missing ones 0) for ``stages``
    stages; only relays have hops."""
    hops = [int(h) for h in hops]
    if any(h < 0 for h in hops):
        raise ValueError(f"hops must be non-negative, not {hops}")
    if any(hops) and not relays:
        raise ValueError("hops need relays")
    return (hops + [0] * stages)[:stages]


def build_counter_count(m: Module, x: Value, *, en: Value, relays: bool, name: str,
                        order=None, hops=()):
    """``popcount(x)`` as the counter stages of :func:`counter_stages`: a register after
    every stage but the last (whose bits, one LUT4 of registers each, the caller registers).

    Parameters
    ----------
    m, en, name
        As for :func:`build_group_count`; stage ``s`` is the register ``{name}_s{s}``.
    relays : bool
        Every counter first copies its inputs into registers of its own (``{name}_r{s}``), so
        that it reads only registers beside it once placed so.
    order : sequence of int, optional
        The order in which the bits are taken into the first counters (a permutation of
        ``range(len(x))``): the count does not depend on it, the wiring does.
    hops : sequence of int
        With ``relays``, ``hops[s]`` more registers before stage ``s``'s relays
        (``{name}_h{s}_{k}``, ``k = 0`` first), laid out as the relays: a route too long for one
        cycle is split into ``hops[s] + 1`` once they are placed along it.

    Returns
    -------
    (count, latency)
        ``count`` is ``len(x).bit_length()`` bits wide, ``latency`` :func:`counter_latency`.
    """
    n_in = len(x)
    order = list(range(n_in)) if order is None else [int(i) for i in order]
    if sorted(order) != list(range(n_in)):
        raise ValueError(f"order must be a permutation of range({n_in})")
    bits = [x[i] for i in order]
    stages = counter_stages(n_in)
    hops = _hops(hops, len(stages), relays)
    if not stages:
        return (bits[0] if bits else Const(0, 1)), 0
    for s, stage in enumerate(stages):
        if relays:
            # One relay per counter input; the bits a pass-through copies get one too.
            # (A counter's output bits share their inputs; every bit is some counter's input.)
            counters = list(dict.fromkeys(inputs for inputs, _ in stage))
            wanted = [i for inputs in counters for i in inputs]
            value = Cat(*(bits[i] for i in wanted))
            for k in range(hops[s]):
                hop = Signal(len(wanted), name=f"{name}_h{s}_{k}", reset_less=True)
                with m.If(en):
                    m.d.sync += hop.eq(value)
                value = hop
            relay = Signal(len(wanted), name=f"{name}_r{s}", reset_less=True)
            with m.If(en):
                m.d.sync += relay.eq(value)
            it = iter(range(len(wanted)))
            relayed = {inputs: [relay[next(it)] for _ in inputs] for inputs in counters}
            outs = [_table(table, relayed[inputs]) for inputs, table in stage]
        else:
            outs = [_table(table, [bits[i] for i in inputs]) for inputs, table in stage]
        if s == len(stages) - 1:
            return Cat(*outs), counter_latency(n_in, relays, hops)
        reg = Signal(len(outs), name=f"{name}_s{s}", reset_less=True)
        with m.If(en):
            m.d.sync += reg.eq(Cat(*outs))
        bits = [reg[j] for j in range(len(outs))]


def _table(table: int, address: list) -> Value:
    """Truth table ``table`` read at ``address`` (a constant read at the bits, as the LUT
    neurons are); a copy for the one-input identity."""
    if len(address) == 1 and table == 0b10:
        return address[0]
    return Const(table, 1 << len(address)).bit_select(Cat(*address), 1)
