"""Stream payload packing and the vector/design files shared by the bench and the runner.

Plain numpy, no cocotb, so it can be used (and tested) outside a simulator.

Input payload: feature ``f`` at bits ``[f * input_bits +: input_bits]``.
Output payload: class index at ``[0 +: class_bits]``, score ``c`` at
``[class_bits + c * score_bits +: score_bits]``.

>>> pack_inputs(np.array([[1, 2], [3, 0]]), input_bits=2)
[9, 3]
>>> unpack_output(0b0101_0011_01, class_bits=2, score_bits=4, n_classes=2)
(1, [3, 5])
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The ports of a generated top (see hdl/emit.py; an ``always_ready`` design has no ``*__ready``);
#: the bench touches only these.
PORTS = ("clk", "rst", "i_stream__payload", "i_stream__valid", "i_stream__ready",
         "o_stream__payload", "o_stream__valid", "o_stream__ready")
#: Rows converted at once by :func:`pack_inputs` (bounds the temporary bit matrix).
_PACK_CHUNK = 1024


@dataclass(frozen=True)
class Design:
    """The stream interface of a generated design, as written to ``design.json``."""

    top: str
    n_features: int
    input_bits: int
    n_classes: int
    class_bits: int
    score_bits: int
    latency: int | None   # cycles from an input transfer to its result being valid, if known
    verilog: str = ""     # Verilog file name beside design.json (default ``<top>.v``)
    ports: tuple = PORTS  # the ports the bench drives and watches (design.json's "ports")

    @property
    def always_ready(self) -> bool:
        """No ready ports: every input is taken, every result offered for one cycle."""
        return "o_stream__ready" not in self.ports

    @property
    def payload_in_bits(self) -> int:
        return self.n_features * self.input_bits

    @property
    def payload_out_bits(self) -> int:
        return self.class_bits + self.n_classes * self.score_bits

    @classmethod
    def load(cls, path) -> "Design":
        """Read ``design.json``; a missing or inconsistent entry is a ValueError naming the file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: cannot read design description ({e})") from None
        try:
            design = cls(
                top=str(d["top"]),
                n_features=int(d["n_features"]),
                input_bits=int(d["input_bits"]),
                n_classes=int(d["n_classes"]),
                class_bits=int(d["class_bits"]),
                score_bits=int(d["score_bits"]),
                latency=None if d.get("latency") is None else int(d["latency"]),
                verilog=str(d.get("verilog") or f"{d['top']}.v"),
                ports=tuple(p for p in PORTS if p in d.get("ports", PORTS)),
            )
        except KeyError as e:
            raise ValueError(f"{path}: design description lacks {e.args[0]!r}") from None
        for key, width in (("payload_in_bits", design.payload_in_bits),
                           ("payload_out_bits", design.payload_out_bits)):
            if key in d and int(d[key]) != width:
                raise ValueError(f"{path}: {key} is {d[key]} but the other fields give {width}")
        return design


def pack_inputs(x: np.ndarray, input_bits: int) -> list[int]:
    """(N, F) unsigned features -> N payload integers, feature ``f`` at bit ``f * input_bits``."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"inputs must be a 2-D (vectors, features) array, not shape {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= 1 << input_bits):
        raise ValueError(f"inputs must lie in 0..{(1 << input_bits) - 1}")
    x = x.astype(np.uint32)
    shifts = np.arange(input_bits, dtype=np.uint32)
    out = []
    for s in range(0, len(x), _PACK_CHUNK):
        chunk = x[s:s + _PACK_CHUNK]
        bits = ((chunk[:, :, None] >> shifts) & 1).astype(np.uint8).reshape(len(chunk), -1)
        packed = np.packbits(bits, axis=1, bitorder="little")
        out.extend(int.from_bytes(row.tobytes(), "little") for row in packed)
    return out


def unpack_output(value: int, class_bits: int, score_bits: int, n_classes: int) -> tuple[int, list[int]]:
    """One output payload integer -> (class, [score per class])."""
    mask = (1 << score_bits) - 1
    scores = [(value >> (class_bits + c * score_bits)) & mask for c in range(n_classes)]
    return value & ((1 << class_bits) - 1), scores


def save_vectors(path, x, classes, scores) -> Path:
    """Write the bench's vector file: ``x`` (N, F), ``classes`` (N,), ``scores`` (N, C)."""
    x, classes, scores = np.asarray(x), np.asarray(classes), np.asarray(scores)
    if x.ndim != 2 or classes.shape != (len(x),) or scores.ndim != 2 or len(scores) != len(x):
        raise ValueError(
            f"vectors need x (N, F), classes (N,), scores (N, C); got {x.shape}, {classes.shape}, {scores.shape}")
    if x.size and (x.min() < 0 or x.max() > 0xFFFF):
        raise ValueError("inputs must be unsigned and at most 16 bits wide")
    path = Path(path)
    np.savez(path, x=x.astype(np.uint16), classes=classes.astype(np.int64), scores=scores.astype(np.int64))
    return path


def load_vectors(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return z["x"], z["classes"], z["scores"]
