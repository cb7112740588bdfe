"""Pipelining options of the generated hardware.

Every register named here is a pipeline register: all of them advance together on the global
enable of :class:`~lutnet.hdl.top.LutnetTop` (or on every clock with ``stall_free`` or
``always_ready``), and each adds one cycle of latency.

>>> PipelineOptions(adder_levels_per_stage=2).adder_levels_per_stage
2
>>> PipelineOptions(layers_per_stage=0)
Traceback (most recent call last):
...
ValueError: layers_per_stage must be a positive integer or None, not 0
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

__all__ = ["PipelineOptions"]

_BOOLS = ("register_encoder", "register_scores", "register_comparisons", "register_output",
          "share_subtrees", "stall_free", "always_ready", "split_lut6", "relay_inputs",
          "one_lut_head")
_PERIODS = ("layers_per_stage", "adder_levels_per_stage", "argmax_levels_per_stage")


@dataclass(frozen=True)
class PipelineOptions:
    """Where the pipeline registers go.

    A "per stage" option of ``N`` places a register after every ``N``-th item (layer, adder level,
    comparison level); ``None`` places none. Registers inside a tree are never placed after its
    last level (the register that follows the tree serves).

    ``register_comparisons`` splits every argmax level in two stages, the comparison of the
    candidates' scores and then the selection (one more cycle per level): a level is otherwise a
    comparator feeding multiplexers, two or three LUT levels, the longest path of a pipelined
    LUT-Net.

    ``stall_free`` makes the pipeline free-running: its registers have no enable (no global
    enable net fanning out to every flip-flop) and load on every clock; backpressure is taken by
    an output buffer as deep as the pipeline's latency, and the input's ready is a credit count
    held in registers (:class:`~lutnet.hdl.top.CreditBuffer`, two or three more cycles).

    ``always_ready`` makes the pipeline free-running with no backpressure at all, as LogicNets
    and most LUT-network cores stream: both streams are ``always_ready`` (no ready ports), a
    sample is taken whenever ``i_stream.valid`` is high and its result is offered for exactly
    one cycle, ``latency`` cycles later; whatever reads ``o_stream`` must take it then. No
    output buffer, no credit count: the clock is the layers' and the head's alone. Not with
    ``stall_free`` (which is the same pipeline behind a buffer that gives the output a ready).

    ``split_lut6`` registers every six-input LUT neuron as its two five-input halves and its
    sixth input, which then picks one (one more cycle per K = 6 layer): on a LUT4 fabric a
    six-input table is two multiplexer levels behind four LUT4s.

    ``relay_inputs`` gives every LUT neuron a register of its own for each of its inputs (a
    "relay"), between the previous stage's register and its LUT (one more cycle per LUT layer).
    A stage is then either a route alone (previous register to relay, however far) or a LUT
    reading registers beside it (relays to the neuron's register), which is what a placement
    that puts each neuron with its relays in one tile (``lutnet build --place``) needs. A bit
    read by several neurons gets one relay per neuron; synthesis is told to keep them apart.
    Not with ``split_lut6``.

    ``one_lut_head`` builds the head so that every register's next value is one LUT4 of
    registers: a group-sum head counts each class with counters of at most four bits of one
    weight (a bit of the count each, one LUT4), stage after stage, where adders put a carry
    chain between registers; the argmax compares 2-bit chunks and combines their verdicts, a
    LUT4 a stage, before it chooses. More cycles, more LUTs, for the clock. With
    ``relay_inputs`` the head's counters and its argmax's LUTs read relays of their own too
    (the argmax's stages then take two cycles each), and ``head_hops[s]``
    more registers before stage ``s``'s relays split its routes (``lutnet build --place --hops``
    chooses them from the distances it will place the counters at). (An XNOR head keeps its
    adder trees; only its argmax changes.)
    """

    register_encoder: bool = True                # register the encoder's output bits
    layers_per_stage: int | None = 1             # register after every N-th layer (XNOR or LUT)
    adder_levels_per_stage: int | None = None    # register every N adder levels in popcount trees
    register_scores: bool = True                 # register the head's class scores
    argmax_levels_per_stage: int | None = None   # register every N levels of the argmax tree
    register_comparisons: bool = False           # register each argmax comparison before its muxes
    register_output: bool = True                 # register the output payload (class + scores)
    share_subtrees: bool = True                  # build identical popcount subtrees once per layer
    stall_free: bool = False                     # free-running registers + credit-counted output buffer
    always_ready: bool = False                   # free-running registers, no ready ports (no backpressure)
    split_lut6: bool = False                     # register K=6 neurons as two LUT5 halves + a 2:1 mux
    relay_inputs: bool = False                   # a register per LUT neuron input (+1 cycle a LUT layer)
    one_lut_head: bool = False                   # head registers each one LUT4 of registers
    head_hops: tuple = ()                        # more registers before each head counter stage's relays

    def __post_init__(self):
        for name in _BOOLS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, not {value!r}")
            object.__setattr__(self, name, bool(value))
        for name in _PERIODS:
            value = getattr(self, name)
            if value is None:
                continue
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer))
                    or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, not {value!r}")
            object.__setattr__(self, name, int(value))
        if self.always_ready and self.stall_free:
            raise ValueError("always_ready and stall_free cannot be combined (always_ready has no "
                             "output ready for stall_free's buffer to serve)")
        if self.relay_inputs and self.split_lut6:
            raise ValueError("relay_inputs and split_lut6 cannot be combined")
        hops = self.head_hops
        if (isinstance(hops, (str, bytes)) or not hasattr(hops, "__iter__")
                or not all(isinstance(h, (int, np.integer)) and not isinstance(h, (bool, np.bool_))
                           and h >= 0 for h in hops)):
            raise ValueError(f"head_hops must be a sequence of non-negative integers, not {hops!r}")
        object.__setattr__(self, "head_hops", tuple(int(h) for h in hops))
        if any(self.head_hops) and not (self.one_lut_head and self.relay_inputs):
            raise ValueError("head_hops needs one_lut_head and relay_inputs")

    @property
    def free_running(self) -> bool:
        """Whether the stage registers load on every clock (no enable)."""
        return self.stall_free or self.always_ready

    def to_dict(self) -> dict:
        """The options as plain JSON values."""
        return {**asdict(self), "head_hops": list(self.head_hops)}

    @classmethod
    def from_dict(cls, d: dict) -> "PipelineOptions":
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown pipeline options {unknown}; known: {sorted(known)}")
        return cls(**d)


def registered_after(level: int, period: int | None, last: int) -> bool:
    """Whether a "register every ``period``" rule puts a register after ``level`` (1-based)
    of a chain of ``last`` levels, never after the last one."""
    return period is not None and level < last and level % period == 0


def register_count(last: int, period: int | None) -> int:
    """How many registers :func:`registered_after` places in a chain of ``last`` levels.

    >>> register_count(10, 3), register_count(9, 3), register_count(10, None)
    (3, 2, 0)
    """
    return 0 if period is None else (last - 1) // period if last > 0 else 0
