# amaranth: UnusedElaboratable=no
"""Argmax over class scores with one LUT4 between registers (the ``one_lut_head`` pipeline).

The argmax is the same balanced tree of pairwise comparisons as the plain head's (adjacent
candidates, the left one kept when its score is ``>=`` the right one's, so ties go to the lowest
index), pipelined so that every register's next value is a function of at most four register
bits: one LUT4 on a LUT4 fabric (ECP5, iCE40), whatever the score width.

One tree level with ``w``-bit scores (``w >= 3``):

* chunk stage: the scores are cut into 2-bit chunks; per chunk a verdict (``gt``, ``eq``) of the
  four bits, except the lowest chunk, which gives ``ge`` directly;
* combine stages, ``ceil(log2(ceil(w / 2)))`` of them: adjacent verdicts merge two at a time,
  ``gt = gt_hi | eq_hi & gt_lo``, ``eq = eq_hi & eq_lo`` and, with the lowest, ``ge = gt_hi |
  eq_hi & ge_lo``, until one ``ge`` per pair is left;
* mux stage: ``Mux(ge, a, b)`` per bit of the winner's score and index (a LUT3), while the
  candidates wait in delay registers; an odd last candidate goes through delay registers.

Narrow scores need fewer stages: with ``w = 1`` the winner's score is ``a | b`` and an index bit
``Mux(a | ~b, ia, ib)`` (four inputs), one stage per level; with ``w = 2`` the winner's score bits
are functions of the four score bits, one stage per level, and the indices follow one stage
behind, multiplexed by the registered ``ge``. The last level's index is left combinational (one
LUT4 per bit, the caller registers it).

Ten classes of 6 bits between registered ports, ``synth_ecp5 -dff`` and nextpnr-ecp5 (one
seed): latency 15, 127 LUT4, 1,365 FF (most of them the scores' delay), 435 MHz. (Comparing all
pairs at once was tried: latency 6 but 360 LUT4 and 269 MHz, each score bit feeding nine
comparators.)

Indices start as constants, and index bits that are constant stay constants (a first-level
winner's index is ``Cat(~ge, 2p >> 1)``), so only index bits that vary are registered.

Every register is reset-less and loads while ``en``; pass ``Const(1, 1)`` for a free-running
pipeline (with a real enable each register needs a clock enable, as ``synth_ecp5`` gives by
default, to stay one LUT4 deep).

With ``relays`` every LUT reads registers of its own, as a ``relay_inputs`` LUT layer's neurons
do: before each stage's register, the inputs of each LUT (of each set of LUTs reading the same
bits, such as a chunk's ``gt`` and ``eq``) go through a relay register ``relay_{stage}_{k}``,
and the bits a stage only carries through one plain register, so every stage takes two cycles;
the last index bits read relays too (one more cycle). A stage is then a route alone (a register
to a relay) or a LUT reading registers that can sit in its tile, which is what ``lutnet build
--place`` locks (:mod:`lutnet.placement`).
"""
from __future__ import annotations

import numbers

from amaranth.hdl import Cat, Const, Module, Signal, Value

__all__ = ["one_lut_argmax_latency", "build_one_lut_argmax", "one_lut_argmax_relay_groups"]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _compare_stages(score_bits: int) -> int:
    """Stages of one ``w``-bit ``ge`` (``w >= 3``): the chunk stage and the combine stages."""
    return 1 + ((score_bits + 1) // 2 - 1).bit_length()


def one_lut_argmax_latency(n_classes: int, score_bits: int, relays: bool = False) -> int:
    """Register levels between the scores and the index of :func:`build_one_lut_argmax`.

    Tree (the default), with ``D = ceil(log2(n_classes))`` levels: 0 for one class; ``D - 1``
    for 1-bit scores; ``D`` for 2-bit scores; otherwise ``D * C + D - 1``, where
    ``C = 1 + ceil(log2(ceil(w / 2)))`` stages make one comparison and one more multiplexes
    between levels. With ``relays``, ``2 L + 1`` for the ``L`` above (two cycles a stage and
    the last index's relays), 0 for one class.

    >>> [one_lut_argmax_latency(10, w) for w in (1, 2, 3, 4, 5, 6, 7, 8, 9)]
    [3, 4, 11, 11, 15, 15, 15, 15, 19]
    >>> [one_lut_argmax_latency(n, 6) for n in (1, 2, 3, 4, 5, 16, 17)]
    [0, 3, 7, 7, 11, 15, 19]
    >>> [one_lut_argmax_latency(n, 6, relays=True) for n in (1, 2, 10)]
    [0, 7, 31]
    """
    n, w = _check_count(n_classes, "n_classes"), _check_count(score_bits, "score_bits")
    depth = (n - 1).bit_length()
    if depth == 0:
        return 0
    if w == 1:
        stages = depth - 1
    elif w == 2:
        stages = depth
    else:
        stages = depth * _compare_stages(w) + depth - 1
    return 2 * stages + 1 if relays else stages


def _lut(fn, inputs: list):
    """``fn`` (0/1 arguments, one per input) of ``inputs`` (1-bit Values or constant ints) as a
    constant truth table read at the non-constant inputs: one LUT of at most four of them.

    A constant result is an int; a result that copies one input is that input."""
    assert not any(isinstance(x, _Lut) for x in inputs), "a LUT reads registers"
    live = [x for x in inputs if isinstance(x, Value)]
    assert len(live) <= 4, "more than one LUT4"
    table = 0
    for address in range(1 << len(live)):
        bits = iter(range(len(live)))
        args = [(address >> next(bits)) & 1 if isinstance(x, Value) else x for x in inputs]
        table |= (int(fn(*args)) & 1) << address
    if table in (0, (1 << (1 << len(live))) - 1):
        return table & 1
    for k, x in enumerate(live):
        if all(((table >> a) & 1) == ((a >> k) & 1) for a in range(1 << len(live))):
            return x
    return _Lut(table, live)


class _Lut:
    """One LUT not built yet: the truth table ``table`` read at the register bits ``inputs``
    (kept apart until its stage is registered, so that ``relays`` can move it onto relays)."""

    __slots__ = ("table", "inputs")

    def __init__(self, table: int, inputs: list):
        self.table, self.inputs = table, list(inputs)

    def value(self) -> Value:
        # A constant table read at the address: the project's way to write a LUT (Verilator once
        # miscompiled chains of XOR/AND, never a table lookup).
        return Const(self.table, 1 << len(self.inputs)).bit_select(Cat(*self.inputs), 1)


def _built(b):
    """A bit of a stage as a Value or an int (a :class:`_Lut` built)."""
    return b.value() if isinstance(b, _Lut) else b


class _Relays:
    """The relays of one argmax (``relays``): the relay registers built, as (signal name, the
    classes whose scores its bits depend on), and each register bit's classes."""

    def __init__(self):
        self.groups = []
        self._classes = {}              # id(bit) -> (bit, classes); the bit kept alive

    def classes(self, b) -> frozenset:
        if isinstance(b, _Lut):
            return frozenset().union(*(self.classes(x) for x in b.inputs))
        return self._classes.get(id(b), (None, frozenset()))[1]

    def mark(self, b, classes: frozenset):
        self._classes[id(b)] = (b, classes)


def _relay(m: Module, groups: list, en: Value, name: str, relays: _Relays) -> list:
    """One cycle before a stage's register (``relays``): each set of LUTs reading the same bits
    reads them from a relay register of its own (``relay_{name}_{k}``), and the bits the stage
    only carries go through one plain register (``{name}_p``). Same nesting as ``groups``."""
    made = {}                           # input bits (by identity) -> their relay bits
    for b in (b for group in groups for b in group):
        if isinstance(b, _Lut) and tuple(map(id, b.inputs)) not in made:
            sig = Signal(len(b.inputs), name=f"relay_{name}_{len(made)}", reset_less=True)
            with m.If(en):
                m.d.sync += sig.eq(Cat(*b.inputs))
            bits = [sig[k] for k in range(len(b.inputs))]
            for x, y in zip(b.inputs, bits):
                relays.mark(y, relays.classes(x))
            relays.groups.append((sig.name, relays.classes(b)))
            made[tuple(map(id, b.inputs))] = bits
    carried = _register(m, [[b for group in groups for b in group if isinstance(b, Value)]], en,
                        f"{name}_p", relays, relay=False)[0]
    pos = iter(carried)
    return [[_Lut(b.table, made[tuple(map(id, b.inputs))]) if isinstance(b, _Lut)
             else next(pos) if isinstance(b, Value) else b for b in group] for group in groups]


def _register(m: Module, groups: list, en: Value, name: str, relays: _Relays | None = None,
              relay: bool = True) -> list:
    """Register every non-constant bit of ``groups`` (lists of 1-bit Values, :class:`_Lut` or
    ints) in one reset-less signal loaded while ``en``, after :func:`_relay` with ``relays``
    (unless not ``relay``: its bits' classes are still tracked); return the same nesting,
    constants kept as ints.

    One signal per stage: Amaranth copies an expression once per use, a signal is built once."""
    if relays is not None and relay:
        groups = _relay(m, groups, en, name, relays)
    live = [b for group in groups for b in group if not isinstance(b, int)]
    if not live:
        return [list(group) for group in groups]
    sig = Signal(len(live), name=name, reset_less=True)
    with m.If(en):
        m.d.sync += sig.eq(Cat(*(_built(b) for b in live)))
    pos = iter(range(len(live)))
    out = [[b if isinstance(b, int) else sig[next(pos)] for b in group] for group in groups]
    if relays is not None:
        for b, y in zip((b for group in groups for b in group), (y for group in out for y in group)):
            if not isinstance(b, int):
                relays.mark(y, relays.classes(b))
    return out


def _delay(m: Module, groups: list, stages: int, en: Value, name: str,
           relays: _Relays | None = None) -> list:
    """``groups`` after ``stages`` registers (see :func:`_register`)."""
    for k in range(stages):
        groups = _register(m, groups, en, f"{name}_d{k + 1}", relays)
    return groups


def _cat(bits: list) -> Value:
    """``Cat`` of 1-bit Values, :class:`_Lut` and constant ints."""
    return Cat(*(Const(b, 1) if isinstance(b, int) else _built(b) for b in bits))


def _value(bits) -> int:
    return sum(b << k for k, b in enumerate(bits))


def _ge(bits) -> int:
    """``a >= b`` of the bits ``a`` then ``b`` (each LSB first, equal widths)."""
    h = len(bits) // 2
    return _value(bits[:h]) >= _value(bits[h:])


def _mux(ge, a, b):
    """One bit of ``Mux(ge, a, b)``."""
    return _lut(lambda g, x, y: x if g else y, [ge, a, b])


def _compare(m: Module, pairs: list, en: Value, name: str, relays: _Relays | None) -> list:
    """Registered ``a >= b`` for every ``(a, b)`` of ``pairs`` (bit lists, ``w >= 3`` bits),
    after :func:`_compare_stages` stages."""
    w = len(pairs[0][0])
    # Verdicts of one pair, lowest chunk first: [ge] for the lowest, [gt, eq] for the others.
    verdicts = []
    for a, b in pairs:
        pair = []
        for lo in range(0, w, 2):
            ab = a[lo:lo + 2] + b[lo:lo + 2]
            if lo == 0:
                pair.append([_lut(lambda *x: _ge(x), ab)])
            else:
                pair.append([_lut(lambda *x: not _ge(x[len(x) // 2:] + x[:len(x) // 2]), ab),
                             _lut(lambda *x: _value(x[:len(x) // 2]) == _value(x[len(x) // 2:]),
                                  ab)])
        verdicts.append(pair)
    stage = 1
    while True:
        flat = _register(m, [v for pair in verdicts for v in pair], en, f"{name}_c{stage}", relays)
        pos = iter(flat)
        verdicts = [[next(pos) for _ in pair] for pair in verdicts]
        if len(verdicts[0]) == 1:
            return [ge for (ge,), in verdicts]
        merged = []
        for pair in verdicts:
            out = []
            for k in range(0, len(pair) - 1, 2):
                lo, (gt_hi, eq_hi) = pair[k], pair[k + 1]
                if k == 0:
                    out.append([_lut(lambda g, e, l: g | e & l, [gt_hi, eq_hi, lo[0]])])
                else:
                    out.append([_lut(lambda g, e, l: g | e & l, [gt_hi, eq_hi, lo[0]]),
                                _lut(lambda e, l: e & l, [eq_hi, lo[1]])])
            if len(pair) % 2:
                out.append(pair[-1])
            merged.append(out)
        verdicts = merged
        stage += 1


def build_one_lut_argmax(m: Module, scores: list, *, en: Value, name: str, relays: bool = False):
    """Build the argmax of ``scores`` with one LUT4 between registers (see the module docstring).

    Parameters
    ----------
    m : Module
        Module that receives the logic and the registers.
    scores : list of Value
        The class scores, all the same width ``w``, unsigned; registers or ports (every register
        built here reads at most four bits of them or of its own registers).
    en : Value
        Pipeline enable: the registers load only while it is 1.
    name : str
        Prefix of the names of the signals built here.
    relays : bool
        Every LUT reads relay registers of its own (see the module docstring): two cycles a
        stage, one more for the index.

    Returns
    -------
    (index, delayed_scores, latency)
        ``index`` is the index of the highest score, lowest index on ties,
        ``max(1, ceil(log2(n)))`` bits wide, after ``latency`` registers
        (:func:`one_lut_argmax_latency`); it is combinational, each bit one LUT4 of registers,
        so the caller registers it next. ``delayed_scores`` is ``Cat(*scores)`` after
        ``latency`` registers, in step with ``index``. One class gives index 0 and latency 0.
    """
    if not isinstance(scores, (list, tuple)) or not scores:
        raise ValueError("scores must be a non-empty list of Values")
    scores = [Value.cast(s) for s in scores]
    n, w = len(scores), len(scores[0])
    if w < 1 or any(len(s) != w for s in scores):
        raise ValueError(f"scores must all be the same positive width, not "
                         f"{sorted({len(s) for s in scores})}")
    return _build(m, scores, en, name, _Relays() if relays else None)


def one_lut_argmax_relay_groups(n_classes: int, score_bits: int, name: str = "argmax") -> list:
    """The relay registers of :func:`build_one_lut_argmax` with ``relays``, in the order it
    builds them: (signal name, the classes whose scores its bits depend on). A placement puts
    each with the LUTs that read it among those classes' scores (:mod:`lutnet.placement`)."""
    relays = _Relays()
    _build(Module(), [Signal(_check_count(score_bits, "score_bits"))
                      for _ in range(_check_count(n_classes, "n_classes"))], Const(1, 1), name, relays)
    return relays.groups


def _build(m: Module, scores: list, en: Value, name: str, relays: _Relays | None):
    n, w = len(scores), len(scores[0])
    latency = one_lut_argmax_latency(n, w, relays is not None)
    class_bits = max(1, (n - 1).bit_length())
    history = [[s[k] for s in scores for k in range(w)]]     # Cat(scores) after t registers
    if relays is not None:
        for c in range(n):
            for b in history[0][c * w:(c + 1) * w]:
                relays.mark(b, frozenset([c]))

    def scores_at(t):
        while len(history) <= t:
            history.append(_register(m, [history[-1]], en, f"{name}_scores_d{len(history)}", relays)[0])
        return history[t]

    def split(flat):
        return [flat[c * w:(c + 1) * w] for c in range(n)]

    # Candidates: (score bits, index bits); an index bit is an int while it is constant.
    nodes = [(s, [(c >> k) & 1 for k in range(class_bits)])
             for c, s in enumerate(split(scores_at(0)))]
    depth = (n - 1).bit_length()
    t = 0                       # the cycle the candidates' scores are valid in
    index = [0] * class_bits
    for level in range(1, depth + 1):
        last = level == depth
        pairs = [(nodes[2 * p], nodes[2 * p + 1]) for p in range(len(nodes) // 2)]
        odd = nodes[-1:] if len(nodes) % 2 else []
        lname = f"{name}_l{level}"
        if w == 1:
            # Winner's score a | b; index bit Mux(a | ~b, ia, ib): four inputs, indices in step.
            idx = [[_lut(lambda a, b, x, y: x if a | (1 - b) else y, [sa[0], sb[0], xa, xb])
                    for xa, xb in zip(ia, ib)] for (sa, ia), (sb, ib) in pairs]
            if last:
                index = idx[0]
                break
            win = [[_lut(lambda a, b: a | b, [sa[0], sb[0]])] for (sa, _), (sb, _) in pairs]
            regs = _register(m, win + idx + [v for node in odd for v in node], en, lname, relays)
            k = len(pairs)
            nodes = list(zip(regs[:k], regs[k:2 * k]))
            nodes += [(regs[2 * k], regs[2 * k + 1])] if odd else []
            t += 1
        elif w == 2:
            # ge and the winner's score bits are functions of the four score bits; the indices
            # run one stage behind, multiplexed by the registered ge.
            ges, wins = [], []
            for (sa, _), (sb, _) in pairs:
                ab = sa + sb
                ges.append([_lut(lambda *x: _ge(x), ab)])
                wins.append([_lut(lambda *x, k=k: (x[:2] if _ge(x) else x[2:])[k], ab)
                             for k in range(2)])
            regs = _register(m, ges + ([] if last else wins + [s for s, _ in odd]), en, lname, relays)
            k = len(pairs)
            ges = [g for g, in regs[:k]]
            idx = [[_mux(g, xa, xb) for xa, xb in zip(ia, ib)]
                   for g, ((_, ia), (_, ib)) in zip(ges, pairs)]
            if last:
                index = idx[0]
                break
            idx = _register(m, idx + [i for _, i in odd], en, f"{lname}_index", relays)
            nodes = list(zip(regs[k:2 * k], idx))
            nodes += [(regs[2 * k], idx[k])] if odd else []
            t += 1
        else:
            stages = _compare_stages(w)
            ges = _compare(m, [(sa, sb) for (sa, _), (sb, _) in pairs], en, lname, relays)
            flat = [v for pair in pairs for node in pair for v in node]
            if level == 1:
                # The candidates are the scores, already delayed for delayed_scores.
                waiting = [[b for b in s] for s in split(scores_at(t + stages))]
                waiting = [v for c in range(2 * len(pairs)) for v in (waiting[c], nodes[c][1])]
            else:
                waiting = _delay(m, flat, stages, en, f"{lname}_wait", relays)
            idx = [[_mux(g, xa, xb) for xa, xb in zip(waiting[4 * p + 1], waiting[4 * p + 3])]
                   for p, g in enumerate(ges)]
            if last:
                index = idx[0]
                break
            win = [[_mux(g, xa, xb) for xa, xb in zip(waiting[4 * p], waiting[4 * p + 2])]
                   for p, g in enumerate(ges)]
            if odd and level == 1:
                odd = [(scores_at(t + stages + 1)[(n - 1) * w:], odd[0][1])]
            elif odd:
                odd = [tuple(_delay(m, list(odd[0]), stages + 1, en, f"{lname}_odd", relays))]
            k = len(pairs)
            regs = _register(m, win + idx, en, lname, relays)
            nodes = list(zip(regs[:k], regs[k:])) + odd
            t += stages + 1
    if relays is None or depth == 0:
        return _cat(index), Cat(*scores_at(latency)), latency
    # the last index bits read relays of their own too; the scores wait one more cycle
    index = _relay(m, [index], en, f"{name}_index", relays)[0]
    stages = (latency - 1) // 2
    return _cat(index), Cat(*_register(m, [scores_at(stages)], en, f"{name}_scores_last")[0]), latency
