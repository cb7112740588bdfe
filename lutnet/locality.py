"""Where every bit of a network lives, and which bits a neuron may read when it is trained local.

On an FPGA the wire from a register to a LUT input costs more than the LUT: on the ECP5 a route of
two to six tiles costs 1.2-1.4 ns against the 0.83 ns of a register -> LUT -> register hop inside
one tile (``bench/locked_placement.py``). A net whose neurons read only nearby bits can be placed
so that every such route stays short. This module fixes the geometry that training and placement
share: every layer's bits are laid out row-major on a grid over the same unit square, so bit
``i`` of a layer of ``n`` sits at :func:`grid`\\ ``(n)[i]``:

- the encoder's bits sit at their feature's position (feature-major, ``levels`` bits per
  feature); for a square image the feature grid is the image itself;
- a hidden layer fills the square in index order;
- the last LUT layer of a group-sum head holds class ``c``'s group at indices ``c * group ..``;
  its members are interleaved over the square (member ``g`` of class ``c`` takes slot
  ``g * classes + c``), so every class reads every region of the layer below.

A local neuron reads only bits within ``radius`` (Chebyshev distance, a fraction of the square's
side) of its own position; :func:`allowed` widens a neuron's window just enough to hold ``k``
bits where the radius is smaller than the spacing of the layer below.
"""
from __future__ import annotations

import math

import numpy as np


def radius_error(radius) -> str | None:
    """Why ``radius`` is not a valid ``local`` setting (None when it is: None or a positive
    finite number)."""
    if radius is None or (not isinstance(radius, bool) and isinstance(radius, (int, float)) and 0 < radius < math.inf):
        return None
    return f"local must be a positive distance (a fraction of the layout's side), not {radius!r}"


def grid(n: int) -> np.ndarray:
    """(n, 2) centres (row, column) in [0, 1) of ``n`` cells filled row-major on the squarest grid.

    >>> grid(4).tolist()
    [[0.25, 0.25], [0.25, 0.75], [0.75, 0.25], [0.75, 0.75]]
    """
    if n < 1:
        raise ValueError(f"a grid needs at least one cell, not {n}")
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    i = np.arange(n)
    return np.stack([(i // cols + 0.5) / rows, (i % cols + 0.5) / cols], axis=1)


def encoder_positions(n_features: int, levels: int) -> np.ndarray:
    """Positions of the encoder's ``n_features * levels`` bits (feature-major)."""
    return np.repeat(grid(n_features), levels, axis=0)


def layer_positions(n: int, n_classes: int | None = None) -> np.ndarray:
    """Positions of a layer's ``n`` bits; ``n_classes`` for the layer a group-sum head reads,
    whose class groups are interleaved over the square."""
    cells = grid(n)
    if n_classes is None:
        return cells
    if n % n_classes:
        raise ValueError(f"a group-sum layer of {n} bits does not split into {n_classes} classes")
    group = n // n_classes
    j = np.arange(n)
    return cells[(j % group) * n_classes + j // group]


def chain(n_features: int, levels: int, widths, n_classes: int | None = None, n_prefix_out: int | None = None) -> list:
    """Positions of the input bits and of every layer of a stack of ``widths``: a list of
    ``len(widths) + 1`` arrays. The last layer feeds a group-sum head of ``n_classes`` (None:
    it does not). ``n_prefix_out``: the stack reads the ``n_prefix_out`` bits of an XNOR layer
    instead of the encoder."""
    first = encoder_positions(n_features, levels) if n_prefix_out is None else grid(n_prefix_out)
    out = [first]
    for i, w in enumerate(widths):
        out.append(layer_positions(w, n_classes if i == len(widths) - 1 else None))
    return out


def distances(out_pos: np.ndarray, in_pos: np.ndarray) -> np.ndarray:
    """(n_out, n_in) Chebyshev distances."""
    return np.abs(out_pos[:, None, :] - in_pos[None, :, :]).max(axis=2)


def allowed(out_pos: np.ndarray, in_pos: np.ndarray, radius: float, k: int) -> np.ndarray:
    """(n_out, n_in) bool: the bits each neuron may read, those within ``radius`` of it, widened
    for a neuron to its ``k`` nearest bits where fewer lie within the radius."""
    if not radius > 0:
        raise ValueError(f"radius must be positive, not {radius!r}")
    if k > len(in_pos):
        raise ValueError(f"a {k}-input neuron cannot read a layer of only {len(in_pos)} bits")
    d = distances(out_pos, in_pos)
    kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
    return d <= np.maximum(radius, kth) + 1e-9


def spread(inputs: np.ndarray, out_pos: np.ndarray, in_pos: np.ndarray) -> np.ndarray:
    """(n_out,) the Chebyshev distance from each neuron to its farthest input."""
    rows = np.arange(len(inputs))[:, None]
    return np.abs(out_pos[rows] - in_pos[inputs]).max(axis=(1, 2))


def net_positions(net) -> list:
    """:func:`chain` for an :class:`lutnet.ir.Network`: the positions of its input bits and of
    every layer's bits (a group-sum head's classes interleaved in the last layer)."""
    return chain(net.encoder.n_features, net.encoder.levels, [layer.n_out for layer in net.layers],
                 net.n_classes if net.head.kind == "group_sum" else None)


def curve_order(points) -> np.ndarray:
    """The indices of ``points`` ((n, 2) row, column in [0, 1)) in the order a Hilbert curve
    over the square visits them, so that runs of consecutive points lie close together.

    >>> curve_order([[0.9, 0.9], [0.1, 0.1], [0.9, 0.1], [0.1, 0.9]]).tolist()
    [1, 2, 0, 3]
    """
    side = 1 << 10
    at = np.clip((np.asarray(points, dtype=float).reshape(-1, 2) * side).astype(np.int64), 0, side - 1)
    y, x = at[:, 0].copy(), at[:, 1].copy()
    d = np.zeros(len(at), dtype=np.int64)
    s = side // 2
    while s > 0:
        rx, ry = (x & s) > 0, (y & s) > 0
        d += s * s * ((3 * rx) ^ ry)
        # rotate the quadrant so the curve's sub-squares join up
        flip = ~ry & rx
        x = np.where(flip, side - 1 - x, x)
        y = np.where(flip, side - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        s //= 2
    return np.argsort(d, kind="stable")
