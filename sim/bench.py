"""cocotb testbench for a generated ``lutnet_top``: stream vectors in, check every result in order.

Run it through :func:`lutnet.sim.runner.run`, which sets the environment variables below:

``LUTNET_VECTORS``
    ``.npz`` with ``x`` (N, F) raw features, ``classes`` (N,) and ``scores`` (N, C) expected.
``LUTNET_DESIGN``
    the design's ``design.json`` (interface widths and latency); the widths are checked against
    the DUT's port widths.
``LUTNET_RESULTS``
    JSON file the tests write their results into, one entry per test name.
``LUTNET_SEED``
    seed for the backpressure test's pause patterns (default: cocotb's random seed).

Timing scheme, one loop iteration per clock cycle: drivers change their outputs on the falling
edge, then everything is sampled in the ReadOnly phase after it; ``valid & ready`` seen there is a
transfer on the next rising edge. Sampling settled values keeps the bench free of races with the
DUT's registers on every simulator, including combinational ``ready`` paths.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly
from cocotb.utils import get_sim_steps, get_sim_time

from lutnet.sim.payload import Design, load_vectors, pack_inputs, unpack_output
from lutnet.sim.runner import progress_counter

ENV_VECTORS = "LUTNET_VECTORS"
ENV_DESIGN = "LUTNET_DESIGN"
ENV_RESULTS = "LUTNET_RESULTS"
ENV_SEED = "LUTNET_SEED"

CLOCK_PERIOD_NS = 10
#: Mismatches kept in full (inputs, expected, got) in the results file.
KEEP_MISMATCHES = 10
#: Offending vectors listed in the failure message.
SHOW_MISMATCHES = 3
#: Probability of an idle input cycle / of o_stream.ready low in the backpressure test.
GAP_PROBABILITY = 0.3
STALL_PROBABILITY = 0.5


def random_pauses(seed: str, probability: float):
    """Endless pause pattern (True = pause this cycle), like cocotbext-axi's pause generators."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


class StreamSource:
    """Drives an amaranth ``stream`` input: payload and valid, obeying ready (``ready=None``: an
    ``always_ready`` stream, every valid cycle is a transfer)."""

    def __init__(self, clk, payload, valid, ready):
        self.clk, self.payload, self.valid, self.ready = clk, payload, valid, ready
        self.cycles: list[int] = []   # cycle of each transfer

    async def send(self, payloads: list[int], pause=None, filler=None) -> None:
        """Send all payloads in order; ``pause`` yields True for a cycle without valid (taken
        only between transfers: valid and payload are held until accepted). ``filler`` gives the
        payload driven while valid is low, to catch a DUT that ignores valid."""
        fall, settle = FallingEdge(self.clk), ReadOnly()
        period = _period_steps()
        i, n = 0, len(payloads)
        asserted = False   # valid is high
        free = True        # the previous beat (if any) was accepted: free to choose this cycle's
        while i < n:
            await fall
            if free:
                if pause is not None and next(pause):
                    if asserted:
                        self.valid.value = 0
                        asserted = False
                    if filler is not None:
                        self.payload.value = next(filler)
                else:
                    self.payload.value = payloads[i]
                    if not asserted:
                        self.valid.value = 1
                        asserted = True
            await settle
            if asserted:
                free = self.ready is None or bool(self.ready.value)
                if free:
                    self.cycles.append(get_sim_time("step") // period)
                    i += 1
        await fall
        self.valid.value = 0


class StreamSink:
    """Drives an amaranth ``stream`` output's ready and hands each transferred payload on
    (``ready=None``: an ``always_ready`` stream, which cannot pause; every valid cycle is a
    transfer)."""

    def __init__(self, clk, payload, valid, ready):
        self.clk, self.payload, self.valid, self.ready = clk, payload, valid, ready
        self.cycles: list[int] = []   # cycle of each transfer
        self.stalled: str | None = None

    async def receive(self, n: int, on_beat, pause=None, idle_limit: int = 1000) -> None:
        """Collect ``n`` transfers, calling ``on_beat(payload_int)`` for each in order. Gives up
        (setting ``stalled``) after ``idle_limit`` cycles in a row without a transfer."""
        fall, settle = FallingEdge(self.clk), ReadOnly()
        period = _period_steps()
        got, idle, ready = 0, 0, None
        while got < n:
            await fall
            want = 0 if pause is not None and next(pause) else 1
            if want != ready:
                ready = want
                if self.ready is not None:
                    self.ready.value = want
            await settle
            if ready and self.valid.value:
                self.cycles.append(get_sim_time("step") // period)
                on_beat(self.payload.value.to_unsigned())
                got += 1
                idle = 0
            else:
                idle += 1
                if idle > idle_limit:
                    self.stalled = f"no result for {idle_limit} cycles after {got} of {n} results"
                    return

    async def count_extra(self, cycles: int) -> int:
        """Hold ready high for ``cycles`` cycles; return how many (unexpected) transfers happen."""
        fall, settle = FallingEdge(self.clk), ReadOnly()
        extra = 0
        for _ in range(cycles):
            await fall
            if self.ready is not None:
                self.ready.value = 1
            await settle
            extra += bool(self.valid.value)
        return extra


class Scoreboard:
    """In-order checker: result ``k`` must equal expected ``k``."""

    def __init__(self, design: Design, x, classes, scores):
        self.design, self.x, self.classes, self.scores = design, x, classes, scores
        self.got_classes: list[int] = []
        self.mismatches = 0
        self.first: list[dict] = []
        self.checked = progress_counter(len(x), "results checked")

    def __call__(self, value: int) -> None:
        d = self.design
        k = len(self.got_classes)
        cls, scores = unpack_output(value, d.class_bits, d.score_bits, d.n_classes)
        self.got_classes.append(cls)
        self.checked(k + 1)
        exp_cls, exp_scores = int(self.classes[k]), [int(s) for s in self.scores[k]]
        if cls != exp_cls or scores != exp_scores:
            self.mismatches += 1
            if len(self.first) < KEEP_MISMATCHES:
                self.first.append({
                    "index": k,
                    "input": [int(v) for v in self.x[k]],
                    "expected": {"class": exp_cls, "scores": exp_scores},
                    "got": {"class": cls, "scores": scores},
                })


class TB:
    """Owns the clock, reset, the input driver, the output monitor and the checker."""

    def __init__(self, dut, design: Design):
        self.dut, self.design = dut, design
        missing = [port for port in design.ports if not hasattr(dut, port)]
        if missing:
            raise AssertionError(f"{design.top} lacks port(s) {', '.join(missing)}; "
                                 f"the bench needs all of {', '.join(design.ports)}")
        for port, width in (("i_stream__payload", design.payload_in_bits),
                            ("o_stream__payload", design.payload_out_bits)):
            actual = len(getattr(dut, port))
            if actual != width:
                raise AssertionError(f"{port} is {actual} bits wide but design.json implies {width}")
        self.clock = Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns")
        i_ready, o_ready = (None, None) if design.always_ready else (dut.i_stream__ready, dut.o_stream__ready)
        self.source = StreamSource(dut.clk, dut.i_stream__payload, dut.i_stream__valid, i_ready)
        self.sink = StreamSink(dut.clk, dut.o_stream__payload, dut.o_stream__valid, o_ready)

    async def reset(self, cycles: int = 2) -> None:
        self.dut.i_stream__valid.value = 0
        self.dut.i_stream__payload.value = 0
        if not self.design.always_ready:
            self.dut.o_stream__ready.value = 0
        self.dut.rst.value = 1
        self.clock.start()
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def stream(self, x, classes, scores, *, backpressure: bool, seed) -> dict:
        """Stream every vector through the DUT and check the results; returns the results entry."""
        d = self.design
        if x.ndim != 2 or x.shape[1] != d.n_features:
            raise AssertionError(f"vectors have shape {x.shape} but the design takes {d.n_features} features")
        if scores.shape != (len(x), d.n_classes) or classes.shape != (len(x),):
            raise AssertionError(f"expected results have shapes {classes.shape}, {scores.shape}, "
                                 f"not ({len(x)},), ({len(x)}, {d.n_classes})")
        payloads = pack_inputs(x, d.input_bits)
        board = Scoreboard(d, x, classes, scores)
        src_pause = snk_pause = filler = None
        if backpressure:
            src_pause = random_pauses(f"{seed}-source", GAP_PROBABILITY)
            # an always_ready output cannot be paused: input gaps only
            snk_pause = None if d.always_ready else random_pauses(f"{seed}-sink", STALL_PROBABILITY)
            rng = random.Random(f"{seed}-filler")
            filler = iter(lambda: rng.getrandbits(d.payload_in_bits), None)
        idle_limit = max(1000, 20 * (d.latency or 0))

        await self.reset()
        start = time.perf_counter()
        sender = cocotb.start_soon(self.source.send(payloads, src_pause, filler))
        await self.sink.receive(len(payloads), board, snk_pause, idle_limit)
        if sender.done():
            await sender   # re-raises a driver exception
        else:
            sender.cancel()
        extra = await self.sink.count_extra((d.latency or 0) + 4)
        seconds = time.perf_counter() - start

        errors = []
        if self.sink.stalled:
            errors.append(f"DUT stalled: {self.sink.stalled}")
        if extra:
            errors.append(f"{extra} result(s) beyond the {len(payloads)} expected")
        measured_latency = None
        if self.source.cycles and self.sink.cycles:
            measured_latency = self.sink.cycles[0] - self.source.cycles[0]
            if self.sink.cycles[0] < self.source.cycles[0]:
                errors.append("a result came out before any input went in")
        if measured_latency is not None and d.latency is not None and (
                measured_latency < d.latency or (measured_latency != d.latency and not backpressure)):
            errors.append(f"design.json says latency {d.latency} but the first result came "
                          f"{measured_latency} cycles after the first input")
        if not backpressure and len(self.sink.cycles) == len(payloads) and payloads:
            if not _consecutive(self.source.cycles):
                errors.append("i_stream.ready dropped although o_stream.ready was always high")
            if not _consecutive(self.sink.cycles):
                errors.append("results did not come one per clock after the first")
        cycles = (self.sink.cycles[-1] - self.source.cycles[0] + 1) if self.sink.cycles else 0
        return {
            "simulator": cocotb.SIM_NAME,
            "simulator_version": cocotb.SIM_VERSION,
            "backpressure": backpressure,
            "seed": seed,
            "vectors": len(payloads),
            "received": len(board.got_classes),
            "mismatches": board.mismatches + (len(payloads) - len(board.got_classes)),
            "first_mismatches": board.first,
            "errors": errors,
            "measured_latency": measured_latency,
            "cycles": cycles,
            "seconds": seconds,
            "got_classes": board.got_classes,
        }


def _period_steps() -> int:
    return get_sim_steps(CLOCK_PERIOD_NS, "ns")


def _consecutive(cycles: list[int]) -> bool:
    return all(b - a == 1 for a, b in zip(cycles, cycles[1:]))


def _short(values: list[int], limit: int = 16) -> str:
    head = ", ".join(str(v) for v in values[:limit])
    return f"[{head}{', ...' if len(values) > limit else ''}] ({len(values)} values)"


def failure_message(entry: dict) -> str:
    """One paragraph naming the first offending vectors and any protocol errors."""
    lines = []
    if entry["mismatches"] and entry["received"]:
        missing = entry["vectors"] - entry["received"]
        lines.append(f"{entry['mismatches']} of {entry['vectors']} results differ from the expected ones"
                     + (f" ({missing} of them missing)" if missing else ""))
        for m in entry["first_mismatches"][:SHOW_MISMATCHES]:
            lines.append(
                f"  index {m['index']}: input {_short(m['input'])} expected class {m['expected']['class']} "
                f"scores {m['expected']['scores']}, got class {m['got']['class']} scores {m['got']['scores']}")
    lines.extend(entry["errors"])
    return "\n".join(lines)


def _write_results(name: str, entry: dict) -> None:
    path = os.environ.get(ENV_RESULTS)
    if not path:
        return
    path = Path(path)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = entry
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; run the bench through lutnet.sim.runner.run()")
    return Path(value)


async def _run(dut, name: str, backpressure: bool) -> None:
    design = Design.load(_env_path(ENV_DESIGN))
    x, classes, scores = load_vectors(_env_path(ENV_VECTORS))
    seed = os.environ.get(ENV_SEED) or cocotb.RANDOM_SEED
    try:
        tb = TB(dut, design)
        entry = await tb.stream(x, classes, scores, backpressure=backpressure, seed=seed)
    except (AssertionError, ValueError) as e:
        # the DUT does not fit its design.json, or drove X/Z on valid/ready/payload: the run
        # stopped, so no result counts as checked
        entry = {"simulator": cocotb.SIM_NAME, "simulator_version": cocotb.SIM_VERSION,
                 "backpressure": backpressure, "seed": seed, "vectors": len(x), "received": 0,
                 "mismatches": len(x), "first_mismatches": [], "errors": [f"{type(e).__name__}: {e}"],
                 "measured_latency": None, "cycles": 0, "seconds": 0.0, "got_classes": []}
    _write_results(name, entry)
    dut._log.info("%s: %d vectors, %d mismatches, %d cycles, %.3f s", name, entry["vectors"],
                  entry["mismatches"], entry["cycles"], entry["seconds"])
    if entry["mismatches"] or entry["errors"]:
        raise AssertionError(failure_message(entry))


@cocotb.test()
async def stream_full_rate(dut):
    """All vectors back to back with o_stream.ready always high; one result per clock."""
    await _run(dut, "stream_full_rate", backpressure=False)


@cocotb.test()
async def stream_backpressure(dut):
    """Random (seeded) input gaps and o_stream.ready stalls; results still in order and exact."""
    await _run(dut, "stream_backpressure", backpressure=True)
