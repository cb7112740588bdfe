"""Bit-exact numpy model of a network IR: one small function per op, no torch.

Bits are packed 64 to a ``uint64`` word, bit ``i`` of a vector in word ``i // 64`` at position
``i % 64``; padding bits are 0 in inputs and weights alike, so they never count in ``x ^ w``.

>>> import numpy as np
>>> xnor_popcount(pack(np.array([[1, 0, 1]])), pack(np.array([[1, 1, 1]])), 3)
array([[2]])
>>> thresholds = np.array([2, 3]); (np.array([[2, 2]]) >= thresholds).astype(int)  # ">=" compares
array([[1, 0]])
>>> argmax_first(np.array([[3, 5, 5]]))  # ties go to the lowest index
array([1])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Encoder, GroupSumHead, LutLayer, Network, XnorHead, XnorLayer

#: Rows processed at once: keeps the (rows, n_out, words) temporary within a few MB.
_CHUNK_ELEMENTS = 1 << 20


def pack(bits: np.ndarray) -> np.ndarray:
    """(N, n) bits -> (N, ceil(n / 64)) uint64, little-endian bit order."""
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[1]
    words = -(-n // 64)
    padded = np.zeros((bits.shape[0], words * 64), dtype=bool)
    padded[:, :n] = bits
    return np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack`."""
    b = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(b, axis=1, bitorder="little")[:, :n].astype(bool)


def encode(encoder: Encoder, x: np.ndarray) -> np.ndarray:
    """(N, F) raw unsigned features -> (N, F * T) bits, ``x[f] >= thresholds[f, t]``."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != encoder.n_features:
        raise ValueError(f"inputs must have shape (N, {encoder.n_features}), not {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= 2 ** encoder.input_bits):
        raise ValueError(f"inputs must lie in 0..{2 ** encoder.input_bits - 1}")
    return (x.astype(np.int64)[:, :, None] >= encoder.thresholds[None]).reshape(len(x), -1)


def xnor_popcount(x: np.ndarray, w: np.ndarray, n_in: int) -> np.ndarray:
    """popcount(~(x ^ w)) over the first ``n_in`` bits: packed (N, W) x (M, W) -> (N, M)."""
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.int64)
    rows = max(1, _CHUNK_ELEMENTS // max(1, w.size))
    for s in range(0, x.shape[0], rows):
        diff = np.bitwise_count(x[s:s + rows, None, :] ^ w[None, :, :])
        out[s:s + rows] = n_in - diff.sum(axis=2, dtype=np.int64)
    return out


def xnor_layer(layer: XnorLayer, x: np.ndarray) -> np.ndarray:
    """Packed inputs -> packed output bits of an XNOR-popcount-threshold layer."""
    counts = xnor_popcount(x, pack(layer.weights), layer.n_in)
    return pack(counts >= layer.thresholds[None, :])


def xnor_head(head: XnorHead, x: np.ndarray) -> np.ndarray:
    """Packed inputs -> (N, classes) integer scores."""
    return xnor_popcount(x, pack(head.weights), head.n_in)


def lut_layer(layer: LutLayer, x: np.ndarray) -> np.ndarray:
    """Packed inputs -> packed outputs: each neuron looks up its table at the address formed by
    its K inputs (input k is address bit k)."""
    bits = unpack(x, layer.n_in)
    address = np.zeros((bits.shape[0], layer.n_out), dtype=np.int64)
    for k in range(layer.k):
        address |= bits[:, layer.inputs[:, k]].astype(np.int64) << k
    return pack(np.take_along_axis(layer.tables[None, :, :], address[:, :, None], axis=2)[:, :, 0])


def group_sum_head(head: GroupSumHead, x: np.ndarray) -> np.ndarray:
    """Packed inputs -> (N, classes) popcounts of each class's group of bits."""
    bits = unpack(x, head.n_in)
    return bits.reshape(len(bits), head.n_classes, head.group).sum(axis=2, dtype=np.int64)


def argmax_first(scores: np.ndarray) -> np.ndarray:
    """Index of the largest score per row, ties to the lowest index."""
    return np.argmax(scores, axis=1)


LAYER_OPS = {XnorLayer: xnor_layer, LutLayer: lut_layer}
HEAD_OPS = {XnorHead: xnor_head, GroupSumHead: group_sum_head}


@dataclass
class Result:
    classes: np.ndarray       # (N,) int
    scores: np.ndarray        # (N, classes) int
    activations: list         # bits after the encoder and after each layer, (N, width) bool


def run(net: Network, x: np.ndarray, *, keep_activations: bool = False) -> Result:
    """Run raw inputs (N, F) through the whole network."""
    bits = encode(net.encoder, x)
    acts = [bits] if keep_activations else []
    h = pack(bits)
    for layer in net.layers:
        h = LAYER_OPS[type(layer)](layer, h)
        if keep_activations:
            acts.append(unpack(h, layer.n_out))
    scores = HEAD_OPS[type(net.head)](net.head, h)
    return Result(classes=argmax_first(scores), scores=scores, activations=acts)


def predict(net: Network, x: np.ndarray) -> np.ndarray:
    return run(net, x).classes
