"""The host side of the board protocol (lutnet.serial_host, `lutnet classify`) against a fake board:
a thread on a pseudo-terminal that speaks the protocol with the golden model, no hardware."""
import json
import os
import select
import threading
import tty

import numpy as np
import pytest

from lutnet import cli, datasets, golden
from lutnet.ir import Network, XnorHead, XnorLayer
from lutnet.serial_host import SerialHostError, classify

N = 40


class FakeBoard:
    """Reads frames of ``n_features`` bytes from a pty, answers each with the golden class.

    Like the board, a line idle for ``resync_s`` drops a partial frame. ``wrong`` holds the indices
    of frames answered with a wrong class."""

    def __init__(self, net: Network, *, wrong=(), resync_s=0.01):
        self.net, self.wrong, self.resync_s = net, set(wrong), resync_s
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self.slave = slave
        self.frames = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        os.close(self.master)
        os.close(self.slave)

    def _serve(self):
        n = self.net.encoder.n_features
        mask = (1 << self.net.encoder.input_bits) - 1
        buf = bytearray()
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], self.resync_s)
            if not ready:
                buf.clear()   # idle line: drop a partial frame
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            while len(buf) >= n:
                x = np.frombuffer(bytes(buf[:n]), dtype=np.uint8)[None].astype(np.int64) & mask
                del buf[:n]
                cls = int(golden.run(self.net, x).classes[0])
                if self.frames in self.wrong:
                    cls = (cls + 1) % self.net.n_classes
                os.write(self.master, bytes([cls]))
                self.frames += 1


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random XNOR net on digits (64 features x 5 bits), saved as a board build directory would be."""
    rng = np.random.default_rng(7)
    ds = datasets.load("digits")
    enc = datasets.make_encoder(ds, levels=1)
    layer = XnorLayer(rng.integers(0, 2, size=(32, enc.n_out)), rng.integers(0, enc.n_out, size=32))
    net = Network(enc, [layer], XnorHead(rng.integers(0, 2, size=(10, 32))), meta={"dataset": "digits"})
    folder = tmp_path_factory.mktemp("board-build")
    net.save(folder / "model.npz")
    (folder / "board.json").write_text(json.dumps({"baud": 115200, "frame": {"resync_idle_bytes": 16,
                                                                            "max_in_flight": None}}))
    return folder, net


def test_fake_board_matches_golden(model):
    folder, net = model
    lines = []
    with FakeBoard(net) as board:
        r = classify(board.path, folder, limit=N, log=lines.append)
    assert board.frames == N
    assert r["samples"] == N and r["mismatches"] == 0 and r["first_mismatches"] == []
    assert r["baud"] == 115200 and r["samples_per_second"] > 0
    ds = datasets.load("digits")
    expected = golden.run(net, ds.x_test[:N]).classes
    assert r["accuracy"] == pytest.approx(float(np.mean(expected == ds.y_test[:N])))
    assert r["accuracy"] == r["golden_accuracy"]
    assert any("differ from the golden model" in line for line in lines)


def test_wrong_answer_detected(model):
    folder, net = model
    with FakeBoard(net, wrong={3, 17}) as board:
        r = classify(board.path, folder / "model.npz", limit=N, window=4, log=lambda s: None)
    assert r["mismatches"] == 2
    assert [m["index"] for m in r["first_mismatches"]] == [3, 17]
    assert all(m["got"] != m["expected"] for m in r["first_mismatches"])


def test_silent_board_times_out(model):
    folder, net = model
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(SerialHostError, match=r"no answer from the board .* after 0 of 3 samples"):
            classify(os.ttyname(slave), folder, limit=3, timeout=0.2, log=lambda s: None)
    finally:
        os.close(master)
        os.close(slave)


def test_loopback_url_is_not_a_board(model):
    """pyserial's loop:// echoes the frame bytes back, so answer k is byte k of the first frame:
    wrong answers, and reported so."""
    folder, net = model
    r = classify("loop://", folder, limit=5, window=1, log=lambda s: None)
    x = datasets.load("digits").x_test[:5]
    echoed = x.reshape(-1)[:5]
    assert r["mismatches"] == int(np.sum(echoed != golden.run(net, x).classes)) > 0


def test_cli_unopenable_port(model, capsys):
    folder, _ = model
    code = None
    try:
        code = cli.main(["classify", str(folder), "--port", "/dev/does-not-exist-lutnet", "--limit", "2"])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lutnet classify: error: cannot open serial port '/dev/does-not-exist-lutnet'")
    assert len(err.splitlines()) == 1


def test_cli_fake_board(model, capsys):
    folder, net = model
    with FakeBoard(net) as board:
        code = cli.main(["classify", str(folder), "--port", board.path, "--limit", "10"])
    assert code == 0
    assert "10 samples, 0 differ from the golden model" in capsys.readouterr().out
