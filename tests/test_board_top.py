"""The board top (hdl/board.py): UART in the Amaranth simulator, then the whole board_top over the
simulated UART on Verilator and Icarus (sim/board_runner.py), against the golden model."""
import json
import re
import shutil

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from lutnet import golden
from lutnet.hdl.board import BoardError, BoardTop, board_description, generate_board
from lutnet.hdl.options import PipelineOptions
from lutnet.hdl.uart import UartConfigError, UartRx, UartTx, baud_divisor
from lutnet.sim import board_runner, runner
from netgen import random_net

# a divisor of 5 cycles per bit keeps the bench short: ~200 cycles per 4-byte frame
CLK_HZ, BAUD = 1_000_000, 200_000
N_VECTORS = 60


# -- UART in the Amaranth simulator -------------------------------------------------------------

def _loopback(divisor: int, data: list[int], *, stall_every: int = 0):
    """TX -> RX; returns the bytes received (and the overrun/framing pulse counts)."""
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got, flags = [], {"overrun": 0, "framing_error": 0}

    async def source(ctx):
        for value in data:
            ctx.set(tx.i_stream.payload, value)
            ctx.set(tx.i_stream.valid, 1)
            await ctx.tick().until(tx.i_stream.ready)
            ctx.set(tx.i_stream.valid, 0)

    async def sink(ctx):
        ctx.set(rx.o_stream.ready, 1)
        cycles = 0
        while len(got) < len(data) and cycles < (len(data) + 2) * 12 * divisor:
            await ctx.tick()
            cycles += 1
            if ctx.get(rx.o_stream.valid) and ctx.get(rx.o_stream.ready):
                got.append(ctx.get(rx.o_stream.payload))
            flags["overrun"] += ctx.get(rx.overrun)
            flags["framing_error"] += ctx.get(rx.framing_error)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got, flags


@pytest.mark.parametrize("divisor", [4, 5, 7, 13])
def test_uart_loopback(divisor):
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x3C, 0xC3, 0x7E]
    got, flags = _loopback(divisor, data)
    assert got == data
    assert flags == {"overrun": 0, "framing_error": 0}


def test_uart_rx_framing_error_and_line_rate():
    """A low stop bit is a framing error and no byte; the TX takes exactly 10 bit times per byte."""
    divisor = 6
    m = Module()
    m.submodules.rx = rx = UartRx(divisor)
    m.submodules.tx = tx = UartTx(divisor)
    seen = {"bytes": [], "framing": 0, "tx_cycles": None}

    async def drive(ctx):
        ctx.set(rx.o_stream.ready, 1)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        # 0xA5 with its stop bit low, then a line held high, then a good 0x5A
        for bits in ([0, 1, 0, 1, 0, 0, 1, 0, 1, 0], [1] * 4, [0, 0, 1, 0, 1, 1, 0, 1, 0, 1], [1] * 3):
            for b in bits:
                ctx.set(rx.rx, b)
                for _ in range(divisor):
                    await ctx.tick()
                    seen["framing"] += ctx.get(rx.framing_error)
                    if ctx.get(rx.o_stream.valid):
                        seen["bytes"].append(ctx.get(rx.o_stream.payload))

    async def transmit(ctx):
        ctx.set(tx.i_stream.payload, 0x42)
        ctx.set(tx.i_stream.valid, 1)
        await ctx.tick().until(tx.i_stream.ready)
        ctx.set(tx.i_stream.valid, 0)
        cycles = 0
        await ctx.tick()
        while not ctx.get(tx.i_stream.ready):
            await ctx.tick()
            cycles += 1
        seen["tx_cycles"] = cycles + 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_testbench(transmit)
    sim.run()
    assert seen["framing"] == 1
    assert seen["bytes"] == [0x5A]
    assert seen["tx_cycles"] == 10 * divisor


def test_baud_divisor():
    assert baud_divisor(12_000_000, 115_200) == 104          # iCEBreaker: 0.16 % off
    assert baud_divisor(25_000_000, 115_200) == 217          # ECP5 boards: 0.01 % off
    assert baud_divisor(CLK_HZ, BAUD) == 5
    with pytest.raises(UartConfigError, match=r"nearest divisor 4 gives 250000 baud, 11\.1 % off"):
        baud_divisor(1_000_000, 225_000)
    with pytest.raises(UartConfigError, match="positive integer"):
        baud_divisor(12_000_000, 0)


# -- generation ---------------------------------------------------------------------------------

def test_board_description(tmp_path):
    net = random_net(np.random.default_rng(3), features=64, input_bits=5, levels=2, widths=[16], classes=10)
    d = generate_board(net, tmp_path, clk_hz=12_000_000, baud=115_200, n_leds=2, leds_active_low=True)
    assert d["divisor"] == 104 and d["baud_error"] < 0.002
    assert d["frame"]["bytes"] == 64 and d["frame"]["feature_bits"] == 5
    assert d["frame"]["resync_idle_cycles"] == 16 * 10 * 104
    assert json.loads((tmp_path / "board.json").read_text()) == d
    text = (tmp_path / "board_top.v").read_text()
    assert "module board_top(" in text
    header = text[text.index("module board_top("):].split(";", 1)[0]
    assert set(header[header.index("(") + 1:header.index(")")].replace(" ", "").split(",")) == {
        "clk", "uart_rx", "uart_tx", "leds"}
    d0 = generate_board(net, tmp_path / "noled", clk_hz=12_000_000, baud=115_200, n_leds=0)
    assert "leds" not in d0["ports"]
    assert "leds" not in (tmp_path / "noled" / "board_top.v").read_text().split(";", 1)[0]


def test_board_error_wide_features(tmp_path):
    net = random_net(np.random.default_rng(4), features=3, input_bits=9, levels=1, widths=[4], classes=2)
    with pytest.raises(BoardError, match=r"^net input is 9-bit features; the UART framing carries at most 8 bits per feature$"):
        generate_board(net, tmp_path, clk_hz=12_000_000, baud=115_200, n_leds=0)
    assert not (tmp_path / "board_top.v").exists()


def test_board_error_always_ready(tmp_path):
    net = random_net(np.random.default_rng(4), features=3, input_bits=4, levels=1, widths=[4], classes=2)
    with pytest.raises(BoardError, match=r"^an always_ready core has no backpressure"):
        generate_board(net, tmp_path, clk_hz=12_000_000, baud=115_200, n_leds=0,
                       options=PipelineOptions(always_ready=True))
    assert not (tmp_path / "board_top.v").exists()


def test_board_error_baud(tmp_path):
    net = random_net(np.random.default_rng(4), features=3, input_bits=4, levels=1, widths=[4], classes=2)
    with pytest.raises(BoardError, match=r"^2600000 baud from a 12000000 Hz clock: the nearest divisor 5 gives 2400000 baud, 7\.7 % off"):
        generate_board(net, tmp_path, clk_hz=12_000_000, baud=2_600_000, n_leds=0)


def test_board_top_backlog_one_feature():
    """One feature per frame and a host 2.5 % faster than the board's transmitter (stop bits of
    3/4 bit): replies back up, the core stalls behind the busy transmitter, and a host keeping at
    most ``max_in_flight`` frames unanswered still gets every reply, in order (Amaranth simulator)."""
    rng = np.random.default_rng(5)
    net = random_net(rng, features=1, input_bits=8, levels=8, widths=[12], classes=4)
    divisor = 16
    top = BoardTop(net, divisor=divisor, n_leds=2)
    window = board_description(top, 4 * divisor, 4)["frame"]["max_in_flight"]
    assert window == 4
    xs = rng.integers(0, 256, size=50)
    expected = golden.run(net, xs[:, None]).classes.tolist()
    got, stalls, errors = [], [0], [0]

    async def clock(ctx):
        while True:
            ctx.set(top.clk, 1)
            await ctx.delay(5e-7)
            ctx.set(top.clk, 0)
            await ctx.delay(5e-7)

    async def cycles(ctx, n):
        for _ in range(n):
            await ctx.posedge(top.clk)

    async def host(ctx):
        ctx.set(top.uart_rx, 1)
        await cycles(ctx, 30)
        for k, value in enumerate(xs):
            while k - len(got) >= window:
                await cycles(ctx, 1)
            for level in (0, *((int(value) >> i) & 1 for i in range(8))):
                ctx.set(top.uart_rx, level)
                await cycles(ctx, divisor)
            ctx.set(top.uart_rx, 1)
            await cycles(ctx, divisor * 3 // 4)
        for _ in range(40 * 10 * divisor):
            if len(got) == len(xs):
                break
            await cycles(ctx, 1)

    async def reader(ctx):
        while True:
            await ctx.negedge(top.uart_tx)
            await cycles(ctx, divisor // 2)
            value = 0
            for i in range(8):
                await cycles(ctx, divisor)
                value |= ctx.get(top.uart_tx) << i
            await cycles(ctx, divisor)
            got.append(value)
            assert ctx.get(top.leds) == value & 3

    async def watch(ctx):
        while True:
            await ctx.posedge(top.clk)
            stalls[0] += ctx.get(top.core.o_stream.valid) and not ctx.get(top.core.o_stream.ready)
            errors[0] += ctx.get(top.rx.overrun) + ctx.get(top.rx.framing_error)

    sim = Simulator(top)
    sim.add_process(clock)
    sim.add_testbench(reader, background=True)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(host)
    sim.run()
    assert len(set(expected)) > 1
    assert got == expected
    assert errors[0] == 0
    assert stalls[0] > 0   # the backpressure path was exercised


# -- the whole board_top over the simulated UART --------------------------------------------------

@pytest.fixture(scope="module")
def board(tmp_path_factory):
    rng = np.random.default_rng(11)
    net = random_net(rng, features=4, input_bits=5, levels=2, widths=[16, 12], classes=6)
    folder = tmp_path_factory.mktemp("board")
    generate_board(net, folder, clk_hz=CLK_HZ, baud=BAUD, n_leds=3, leds_active_low=True)
    x = rng.integers(0, 32, size=(N_VECTORS, 4))
    x[0] = 0
    x[1] = 31
    return folder, x, golden.run(net, x).classes


@pytest.fixture(scope="module")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("board-sim")


def need(simulator):
    reason = runner.available(simulator)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_board_matches_golden(board, build_root, simulator):
    need(simulator)
    folder, x, classes = board
    assert len(set(classes.tolist())) > 1
    r = board_runner.verify_board(folder, x, classes, simulator=simulator, build_root=build_root, log=lambda s: None)
    assert r["passed"], r
    assert r["vectors"] == N_VECTORS and r["mismatches"] == 0 and r["errors"] == []
    assert r["got_classes"] == classes.tolist()
    assert r["cycles"] >= N_VECTORS * 4 * 10 * 5


def test_board_progress_lines(board, build_root, monkeypatch):
    # while the simulator runs, a line every PROGRESS_SECONDS (here 0.05 s) with the wall seconds
    # and the frames the bench has seen answered; the bench's last note counts them all
    need("icarus")
    from lutnet import progress

    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.05)
    folder, x, classes = board
    lines = []
    r = board_runner.verify_board(folder, x[:20], classes[:20], simulator="icarus", build_root=build_root,
                                  log=lines.append, keep_run_dir=True)
    assert r["passed"]
    progress = [l for l in lines if l.startswith("  icarus: ")]
    assert progress and all(re.fullmatch(r"  icarus: \d+ s(, \d+ of 20 frames answered)?", l) for l in progress), lines
    notes = sorted(build_root.rglob(f"board-run-*/{runner.PROGRESS_FILE}"), key=lambda p: p.stat().st_mtime)
    assert notes[-1].read_text() == "20 of 20 frames answered"


def test_board_mismatch_detected(board, build_root):
    need("verilator")
    folder, x, classes = board
    wrong = classes.copy()
    wrong[[2, 9]] = (wrong[[2, 9]] + 1) % 6
    r = board_runner.verify_board(folder, x[:12], wrong[:12], build_root=build_root, log=lambda s: None)
    assert not r["passed"]
    assert r["mismatches"] == 2
    assert [m["index"] for m in r["first_mismatches"]] == [2, 9]
    assert r["first_mismatches"][0]["got"] == classes[2]


@pytest.mark.parametrize("skew", [0.015, -0.015])
def test_board_resync_and_baud_skew(board, build_root, skew):
    """3 bytes of a partial frame, an idle line, then whole frames: the partial frame is dropped.
    The host's bit time is 1.5 % off the board's."""
    need("verilator")
    folder, x, classes = board
    r = board_runner.verify_board(folder, x[:10], classes[:10], build_root=build_root, prefix_bytes=3,
                                  skew=skew, log=lambda s: None)
    assert r["passed"], r


def test_board_without_resync_idle_fails(board, build_root, tmp_path):
    """Control for the test above: the same partial frame followed by a too-short idle line leaves
    the frames misaligned, and the bench sees it."""
    need("verilator")
    folder, x, classes = board
    copy = tmp_path / "board"
    shutil.copytree(folder, copy)
    desc = json.loads((copy / "board.json").read_text())
    desc["frame"]["resync_idle_cycles"] = 0
    (copy / "board.json").write_text(json.dumps(desc))
    r = board_runner.verify_board(copy, x[:10], classes[:10], build_root=build_root, prefix_bytes=3,
                                  log=lambda s: None)
    assert not r["passed"]
