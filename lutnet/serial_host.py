"""Host side of the board protocol: run the test set through a board over a serial port.

The board (``lutnet build --board``, :mod:`lutnet.hdl.board`) takes one byte per feature and
answers each frame with one byte, the class index. :func:`classify` sends the model's test
samples, reads the answers and compares them with the golden model on the same samples.

>>> classify("/dev/ttyUSB1", "runs/digits/build", limit=100)  # doctest: +SKIP
{'port': '/dev/ttyUSB1', 'samples': 100, 'mismatches': 0, 'accuracy': 0.95, ...}

``port`` is a device path or any pyserial URL (``loop://``, ``socket://host:port``, ``rfc2217://``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import datasets, golden
from .ir import IRError, Network

__all__ = ["SerialHostError", "classify", "DEFAULT_BAUD", "DEFAULT_WINDOW"]

DEFAULT_BAUD = 115_200
#: Frames sent ahead of their answers when the board does not bound it (see board.json
#: ``frame.max_in_flight``): enough to hide a USB-serial bridge's latency.
DEFAULT_WINDOW = 32
#: Idle byte times that make the board drop a partial frame, when no board.json says.
DEFAULT_RESYNC_BYTES = 16
KEEP_MISMATCHES = 10


class SerialHostError(RuntimeError):
    """The serial port cannot be used or the board does not answer; the message is one line."""


def _resolve(model) -> tuple[Path, dict | None]:
    """(IR file, board.json dict or None) for a board build directory, a build/train directory or an IR file."""
    from .flow import resolve_model

    path = Path(model)
    board = None
    if path.is_dir() and (path / "board.json").is_file():
        try:
            board = json.loads((path / "board.json").read_text())
        except (OSError, ValueError) as e:
            raise SerialHostError(f"{path / 'board.json'}: cannot read board description ({e})") from None
    src = resolve_model(path)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such model file")
    return src, board


def _open(port: str, baud: int, timeout: float, write_timeout: float):
    import serial

    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout, write_timeout=write_timeout)
    except (serial.SerialException, ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SerialHostError(f"cannot open serial port {port!r}: {reason}") from None


def classify(port: str, model, *, limit: int | None = None, baud: int | None = None, timeout: float = 2.0,
             data_dir=None, window: int | None = None, log=print) -> dict:
    """Send the model's test samples to a board on ``port`` and compare its answers with the golden model.

    Parameters
    ----------
    port : serial device path or pyserial URL.
    model : a board build directory (``board.json`` gives the baud rate and in-flight bound), a
        build or train directory holding ``model.npz``, or an IR file.
    limit : only the first ``limit`` test samples.
    baud : baud rate (default: the build's, else 115200).
    timeout : seconds to wait for an answer before giving up.
    data_dir : dataset folder (default: the one in the model's meta).
    window : frames sent ahead of their answers (default: the build's bound, else 32).

    Returns
    -------
    dict with ``port``, ``baud``, ``samples``, ``mismatches`` (answers differing from the golden
    model), ``first_mismatches`` (index, expected, got), ``accuracy`` (answers vs labels),
    ``golden_accuracy``, ``seconds`` and ``samples_per_second``.

    Raises
    ------
    SerialHostError when the port cannot be opened, written or read, or the board stops answering;
    IRError or DataError for the model and its dataset.
    """
    src, board = _resolve(model)
    net = Network.load(src)
    from .hdl.board import MAX_IN_FLIGHT, BoardError, check_fits

    try:
        check_fits(net)
    except BoardError as e:
        raise SerialHostError(str(e)) from None
    name = net.meta.get("dataset")
    if name is None:
        raise IRError(f"{src}: meta names no dataset to classify")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit}")
    ds = datasets.load(name, data_dir if data_dir is not None else net.meta.get("data_dir"))
    x, y = ds.x_test[:limit], ds.y_test[:limit]
    if x.shape[1] != net.encoder.n_features:
        raise SerialHostError(f"dataset {name} has {x.shape[1]} features but the net takes {net.encoder.n_features}")
    expected = golden.run(net, x).classes
    baud = int(baud or (board or {}).get("baud") or DEFAULT_BAUD)
    frame = (board or {}).get("frame", {})
    if window is None:
        bound = frame.get("max_in_flight") if board else (MAX_IN_FLIGHT if net.encoder.n_features == 1 else None)
        window = DEFAULT_WINDOW if bound is None else max(1, min(DEFAULT_WINDOW, int(bound)))
    resync_s = 2 * int(frame.get("resync_idle_bytes", DEFAULT_RESYNC_BYTES)) * 10 / baud
    payload = x.astype(np.uint8)

    import serial

    got = bytearray()
    # a write of a whole window takes its time on the wire before it can time out
    write_timeout = timeout + 2 * window * x.shape[1] * 10 / baud
    with _open(port, baud, timeout, write_timeout) as ser:
        try:
            # whatever the board was in the middle of: an idle line drops its partial frame
            time.sleep(max(0.05, resync_s))
            ser.reset_input_buffer()
            log(f"classifying {len(x)} samples on {port} at {baud} baud ({x.shape[1]} bytes per sample)")
            start = last_log = time.perf_counter()
            sent = 0
            while len(got) < len(x):
                ahead = min(len(x), len(got) + window)
                if sent < ahead:
                    ser.write(payload[sent:ahead].tobytes())
                    sent = ahead
                chunk = ser.read(max(1, min(ser.in_waiting, sent - len(got))))
                if not chunk:
                    raise SerialHostError(
                        f"no answer from the board on {port} after {len(got)} of {len(x)} samples within "
                        f"{timeout} s (is it programmed with this model's board build, at {baud} baud?)")
                got += chunk
                now = time.perf_counter()
                if now - last_log > 5:
                    log(f"{len(got)} of {len(x)} samples, {len(got) / (now - start):.0f} samples/s")
                    last_log = now
            seconds = time.perf_counter() - start
        except serial.SerialException as e:
            raise SerialHostError(f"serial port {port!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    answers = np.frombuffer(bytes(got[:len(x)]), dtype=np.uint8).astype(np.int64)
    wrong = np.flatnonzero(answers != expected)
    result = {
        "port": port,
        "baud": baud,
        "samples": int(len(x)),
        "mismatches": int(len(wrong)),
        "first_mismatches": [{"index": int(i), "expected": int(expected[i]), "got": int(answers[i])}
                             for i in wrong[:KEEP_MISMATCHES]],
        "accuracy": float(np.mean(answers == y)),
        "golden_accuracy": float(np.mean(expected == y)),
        "seconds": round(seconds, 3),
        "samples_per_second": len(x) / seconds if seconds > 0 else float("inf"),
    }
    log(f"{len(x)} samples in {seconds:.2f} s ({result['samples_per_second']:.0f} samples/s), "
        f"{len(wrong)} differ from the golden model, accuracy {100 * result['accuracy']:.2f} %")
    return result
