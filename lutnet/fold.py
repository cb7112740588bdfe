"""Fold a trained :class:`~lutnet.bnn.BinaryMLP` into the IR: BatchNorm + sign -> integer thresholds.

A hidden neuron with ``n`` inputs sees the pre-activation ``a = 2p - n`` where
``p = popcount(~(x ^ w))`` lies in ``0..n``. Instead of solving ``BN(a) >= 0`` with a float formula,
the threshold is read off the block's own eval-mode code run on all ``n + 1`` candidates at once:

* output non-decreasing in ``p``: ``T`` = first ``p`` with output 1 (``n + 1`` if never, 0 if always);
* output non-increasing (gamma < 0): the neuron's weights are inverted (``p' = n - p``) and ``T``
  is derived on ``p'``;
* anything else is not a threshold function and raises :class:`FoldError`.

Either way ``T = n + 1 - (number of candidates giving 1)``, so torch eval and the IR agree on every
input by construction; :func:`fold_check` confirms it on data with ``np.array_equal`` semantics.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import golden
from .bnn import BinaryMLP, HiddenBlock
from .ir import Encoder, Network, XnorHead, XnorLayer


class FoldError(ValueError):
    """A block whose eval-mode output is not a threshold function of its popcount."""


@torch.no_grad()
def fold_block(block: HiddenBlock) -> tuple[np.ndarray, np.ndarray]:
    """One hidden block -> (weight bits (n_out, n_in) bool, thresholds (n_out,) int64).

    >>> from lutnet.bnn import BnnConfig
    >>> b = HiddenBlock(3, 2, BnnConfig(hidden=(2,))).eval()
    >>> with torch.no_grad():
    ...     _ = b.bn.running_mean.fill_(1.0)                   # a = 2p - 3 >= 1 <=> p >= 2
    ...     _ = b.bn.weight[1].fill_(-1.0)                     # 2nd: a <= 1 <=> p' = 3 - p >= 1
    >>> bits, t = fold_block(b)
    >>> t.tolist(), (bits[1] == ~(b.linear.weight_bits()[1].numpy())).all()
    ([2, 1], np.True_)
    """
    if block.training:
        raise FoldError("fold_block needs the block in eval mode (call model.eval() first)")
    n, c = block.n_in, block.n_out
    p = torch.arange(n + 1)
    a = (2 * p - n).to(torch.float32)[:, None].expand(n + 1, c).contiguous()   # (n + 1, C), as in forward
    out = block.eval_bits(a)                                                  # (n + 1, C) bool
    rising = (out[1:] >= out[:-1]).all(dim=0)
    falling = (out[1:] <= out[:-1]).all(dim=0)
    bad = ~(rising | falling)
    if bad.any():
        j = int(bad.nonzero()[0, 0])
        raise FoldError(f"neuron {j} of a {n}-input block is not monotone in its popcount "
                        f"(outputs over p = 0..{n}: {out[:, j].int().tolist()})")
    flip = (falling & ~rising).numpy()                                        # constant -> no flip
    thresholds = (n + 1 - out.sum(dim=0)).numpy().astype(np.int64)
    bits = block.linear.weight_bits().numpy().copy()
    bits[flip] = ~bits[flip]
    return bits, thresholds


def to_ir(model: BinaryMLP, encoder: Encoder, meta: dict | None = None) -> Network:
    """Fold ``model`` (switched to eval mode) into an IR network using ``encoder``.

    The encoder must hold the thresholds the model was built with. The head's weights are the
    sign bits of the output layer: its logits are ``exp(log_scale) * (2p - n)`` with a positive
    scale, so the argmax over popcounts (first maximum) picks the same class.
    """
    if not isinstance(model, BinaryMLP):
        raise TypeError(f"to_ir folds a BinaryMLP, not a {type(model).__name__}")
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be an ir.Encoder, not a {type(encoder).__name__}")
    if not np.array_equal(encoder.thresholds, model.thresholds.numpy()):
        raise ValueError("the encoder's thresholds differ from those the model was trained with")
    model.eval()
    scale = float(model.log_scale.detach().exp())
    if not 0 < scale < float("inf"):
        raise FoldError(f"the output scale exp(log_scale) = {scale} is not a positive finite number")
    layers = [XnorLayer(*fold_block(block)) for block in model.blocks]
    head = XnorHead(model.out.weight_bits().numpy())
    return Network(encoder=encoder, layers=layers, head=head, meta=dict(meta or {}))


@dataclass(frozen=True)
class FoldCheck:
    """Disagreements between torch eval and the golden model on the same inputs."""

    bits: int          # hidden bits that differ (encoder output and every hidden layer)
    scores: int        # head scores that differ (torch (2p - n + n) / 2 vs golden popcount)
    predictions: int   # predicted classes that differ
    samples: int       # inputs compared
    total_bits: int    # hidden bits compared

    @property
    def ok(self) -> bool:
        return self.bits == 0 and self.scores == 0 and self.predictions == 0


def fold_check(model: BinaryMLP, net: Network, x, batch: int = 2048) -> FoldCheck:
    """Run raw inputs ``x`` (N, F) through torch eval and :func:`lutnet.golden.run`; count exact
    mismatches of every hidden bit, head score and prediction. Shapes must match exactly."""
    x = np.asarray(x)
    model.eval()
    bits = scores = preds = total = 0
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        t_bits, t_dots, t_classes = model.trace(torch.from_numpy(xb.astype(np.int64)))
        g = golden.run(net, xb, keep_activations=True)
        if len(t_bits) != len(g.activations):
            raise ValueError(f"torch has {len(t_bits)} activation stages, the IR {len(g.activations)}")
        for i, (tb, gb) in enumerate(zip(t_bits, g.activations)):
            tb = tb.numpy()
            if tb.shape != gb.shape:
                raise ValueError(f"stage {i}: torch bits {tb.shape} vs golden {gb.shape}")
            bits += int((tb != gb).sum())
            total += tb.size
        t_scores = model.ir_scores(t_dots).numpy()
        if t_scores.shape != g.scores.shape:
            raise ValueError(f"torch scores {t_scores.shape} vs golden {g.scores.shape}")
        scores += int((t_scores != g.scores).sum())
        preds += int((t_classes.numpy() != g.classes).sum())
    return FoldCheck(bits=bits, scores=scores, predictions=preds, samples=len(x), total_bits=total)
