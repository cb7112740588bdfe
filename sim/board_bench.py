"""cocotb testbench for a generated ``board_top``: frames over the simulated UART, class bytes back.

The DUT is ``board_tb`` (:func:`lutnet.sim.board_runner.testbench_verilog`): ``board_top`` with
its clock generated in the simulator, so the bench touches only ``uart_rx``, ``uart_tx`` and ``leds``.

Run it through :func:`lutnet.sim.board_runner.verify_board`, which sets:

``LUTNET_BOARD``
    the design's ``board.json`` (divisor, frame layout, power-on reset, LEDs).
``LUTNET_BOARD_VECTORS``
    ``.npz`` with ``x`` (N, F) raw features and ``classes`` (N,) expected.
``LUTNET_RESULTS``
    JSON file the test writes its results into.
``LUTNET_BOARD_PREFIX``
    bytes of a partial frame sent first, followed by an idle line long enough for the board to
    drop it (the resynchronisation rule); 0 sends none.
``LUTNET_BOARD_SKEW``
    relative error of the bench's bit time against the board's (e.g. 0.015 = 1.5 % slow).

The serial lines are driven and sampled with timers, one event per bit, never per clock: a
784-byte frame at 12 MHz / 115200 baud is about 800,000 clock cycles. The bench keeps at most
``max_in_flight`` frames unanswered when ``board.json`` asks for it, checks every reply in order
against the expected class and, if the board has LEDs, the LEDs against it once the reply's stop
bit is on the line.
"""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import Event, FallingEdge, Timer
from cocotb.utils import get_sim_time

from lutnet.sim.runner import progress_counter

ENV_BOARD = "LUTNET_BOARD"
ENV_VECTORS = "LUTNET_BOARD_VECTORS"
ENV_RESULTS = "LUTNET_RESULTS"
ENV_PREFIX = "LUTNET_BOARD_PREFIX"
ENV_SKEW = "LUTNET_BOARD_SKEW"

#: The clock period of the runner's wrapper ``board_tb`` (``always #5 clk = ~clk`` in ns).
CLOCK_PERIOD_PS = 10_000
KEEP_MISMATCHES = 10
#: Byte times to wait for the last replies after the last frame is sent.
TAIL_BYTES = 64


def _env_path(name: str) -> Path:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; run the bench through "
                           "lutnet.sim.board_runner.verify_board()")
    return Path(value)


class UartHost:
    """The host's end of the serial line: sends bytes on ``uart_rx``, decodes ``uart_tx``."""

    def __init__(self, dut, bit_ps: int, rx_bit_ps: int):
        self.dut, self.bit, self.rx_bit = dut, bit_ps, rx_bit_ps
        self.replies: list[int] = []
        self.errors: list[str] = []
        self.replied = Event()

    async def send(self, value: int) -> None:
        line = self.dut.uart_rx
        for level in (0, *((value >> i) & 1 for i in range(8)), 1):
            line.value = level
            await Timer(self.bit, unit="ps")

    async def receive(self, n: int, on_reply) -> None:
        """Decode ``n`` bytes from ``uart_tx``, sampling each bit in its middle."""
        line, bit = self.dut.uart_tx, self.rx_bit
        while len(self.replies) < n:
            await FallingEdge(line)
            await Timer(bit // 2, unit="ps")
            if int(line.value) != 0:
                self.errors.append(f"glitch on uart_tx after {len(self.replies)} replies (start bit not low at mid-bit)")
                continue
            value = 0
            for i in range(8):
                await Timer(bit, unit="ps")
                value |= int(line.value) << i
            await Timer(bit, unit="ps")
            if int(line.value) != 1:
                self.errors.append(f"reply {len(self.replies)}: framing error (stop bit low)")
            self.replies.append(value)
            on_reply(len(self.replies) - 1, value)
            self.replied.set()


async def run_board(dut) -> dict:
    board = json.loads(_env_path(ENV_BOARD).read_text())
    with np.load(_env_path(ENV_VECTORS), allow_pickle=False) as z:
        x, classes = z["x"], z["classes"]
    prefix = int(os.environ.get(ENV_PREFIX) or 0)
    skew = float(os.environ.get(ENV_SKEW) or 0.0)
    frame = board["frame"]
    n_features, divisor = int(frame["bytes"]), int(board["divisor"])
    if x.ndim != 2 or x.shape[1] != n_features:
        raise AssertionError(f"vectors have shape {x.shape} but the board takes {n_features}-byte frames")
    bit_ps = divisor * CLOCK_PERIOD_PS
    host = UartHost(dut, round(bit_ps * (1 + skew)), bit_ps)
    n_leds, active_low = int(board.get("n_leds", 0)), bool(board.get("leds_active_low"))
    mismatches: list[dict] = []
    counted = [0]
    led_errors: list[str] = []
    answered = progress_counter(len(x), "frames answered")

    def check(k: int, value: int) -> None:
        answered(k + 1)
        if value != int(classes[k]):
            counted[0] += 1
            if len(mismatches) < KEEP_MISMATCHES:
                mismatches.append({"index": k, "input": [int(v) for v in x[k]],
                                   "expected": int(classes[k]), "got": value})
        if n_leds:
            want = value & ((1 << n_leds) - 1)
            if active_low:
                want ^= (1 << n_leds) - 1
            leds = dut.leds.value
            if not leds.is_resolvable or int(leds) != want:
                if len(led_errors) < 3:
                    led_errors.append(f"reply {k} (class {value}): leds read {leds}, expected {want:0{n_leds}b}")

    dut.uart_rx.value = 1
    await Timer((int(board.get("por_cycles", 16)) + 4) * CLOCK_PERIOD_PS, unit="ps")

    start, t0 = time.perf_counter(), get_sim_time("ps")
    receiver = cocotb.start_soon(host.receive(len(x), check))
    rng = random.Random(0)
    if prefix % n_features:
        for _ in range(prefix % n_features):
            await host.send(rng.getrandbits(8))
        # the resynchronisation rule: an idle line drops the partial frame
        await Timer(int(frame["resync_idle_cycles"]) * CLOCK_PERIOD_PS + 20 * bit_ps, unit="ps")
    window = frame.get("max_in_flight")
    for k, row in enumerate(x):
        while window is not None and k - len(host.replies) >= window:
            host.replied.clear()
            await host.replied.wait()
        for value in row:
            await host.send(int(value))
    tail = (TAIL_BYTES + int(board.get("latency") or 0)) * 10 * bit_ps
    waited = 0
    while not receiver.done() and waited < tail:
        await Timer(10 * bit_ps, unit="ps")
        waited += 10 * bit_ps
    # a few more byte times: an extra reply would be a bug too
    extra_from = len(host.replies)
    if receiver.done():
        extra = cocotb.start_soon(host.receive(len(x) + 8, lambda k, v: None))
        await Timer(30 * bit_ps, unit="ps")
        extra.cancel()
    else:
        receiver.cancel()
    got = host.replies[:len(x)]
    errors = list(host.errors) + led_errors
    if len(host.replies) > len(x) or (receiver.done() and len(host.replies) > extra_from):
        errors.append(f"{len(host.replies) - len(x)} reply byte(s) beyond the {len(x)} frames sent")
    if len(got) < len(x):
        errors.append(f"only {len(got)} of {len(x)} replies came back")
    sim_ps = get_sim_time("ps") - t0
    return {
        "simulator": cocotb.SIM_NAME,
        "vectors": int(len(x)),
        "received": len(got),
        "mismatches": counted[0] + (len(x) - len(got)),
        "first_mismatches": mismatches,
        "errors": errors,
        "seconds": time.perf_counter() - start,
        "cycles": int(sim_ps // CLOCK_PERIOD_PS),
        "got_classes": got,
    }


def _write_results(name: str, entry: dict) -> None:
    path = _env_path(ENV_RESULTS)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({name: entry}))
    os.replace(tmp, path)


@cocotb.test()
async def board_uart(dut):
    """Every frame over the UART; every reply byte equals the expected class, in order."""
    try:
        entry = await run_board(dut)
    except (AssertionError, ValueError) as e:
        entry = {"simulator": cocotb.SIM_NAME, "vectors": 0, "received": 0, "mismatches": 0,
                 "first_mismatches": [], "errors": [f"{type(e).__name__}: {e}"], "seconds": 0.0,
                 "cycles": 0, "got_classes": []}
    _write_results("board_uart", entry)
    dut._log.info("board_uart: %d frames, %d mismatches, %d cycles, %.3f s", entry["vectors"],
                  entry["mismatches"], entry["cycles"], entry["seconds"])
    if entry["mismatches"] or entry["errors"]:
        raise AssertionError(f"{entry['mismatches']} of {entry['vectors']} replies differ; "
                             + "; ".join(entry["errors"]))
