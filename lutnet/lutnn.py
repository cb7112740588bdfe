"""LUT-Net in torch: every neuron is one K-input truth table, trained through a differentiable
relaxation, with BatchNorm and binarization inside the neuron.

A neuron reads K bits ``x_0..x_{K-1}`` (fixed random wiring) and computes the multilinear
expansion of a real-valued table ``T`` (2**K entries):

    y = sum_a T[a] * prod_k (x_k if bit k of a else 1 - x_k)

For bits the product is one-hot, so ``y = T[address]`` exactly; its gradient with respect to
``x_k`` is the finite difference ``T[a | 1<<k] - T[a & ~(1<<k)]`` (the DWN/LUTNet relaxation).
``y`` then goes through BatchNorm and sign (straight-through), so after training the neuron's
whole function over its 2**K inputs is a bit table, read exhaustively by :func:`extract`.
The output head is a group sum: class ``c`` scores the popcount of its group of the last layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .bnn import EncodedNet, sign_ste
from .ir import MAX_LUT_INPUTS, Encoder, GroupSumHead, LutLayer, Network


@dataclass(frozen=True)
class LutConfig:
    hidden: tuple = (1000, 500)   # LUT neurons per layer; the last must be a multiple of n_classes
    k: int = 6                    # inputs per LUT neuron (2..6 fits one LUT6)
    levels: int = 1               # encoder levels per feature
    n_classes: int = 10
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    seed: int = 0                 # seeds the random wiring

    def __post_init__(self):
        if not isinstance(self.k, int) or not 2 <= self.k <= MAX_LUT_INPUTS:
            raise ValueError(f"k must be an integer in 2..{MAX_LUT_INPUTS}, not {self.k!r}")
        if not self.hidden or any(not isinstance(w, int) or w < 1 for w in self.hidden):
            raise ValueError(f"hidden must list positive layer widths, not {self.hidden!r}")
        if self.hidden[-1] % self.n_classes:
            raise ValueError(f"the last LUT layer ({self.hidden[-1]} neurons) must be a multiple of the "
                             f"{self.n_classes} classes for the group-sum head")


def lut_expand(x: torch.Tensor) -> torch.Tensor:
    """(..., K) inputs in [0, 1] -> (..., 2**K) address weights, address bit k = input k.

    >>> lut_expand(torch.tensor([[1.0, 0.0]]))  # address 0b01 = 1
    tensor([[0., 1., 0., 0.]])
    """
    w = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
    for k in range(x.shape[-1]):
        xk = x[..., k:k + 1]
        w = torch.cat([w * (1 - xk), w * xk], dim=-1)
    return w


class LutBlock(nn.Module):
    """n_out K-input LUT neurons with fixed wiring -> BatchNorm -> sign; bits in, bits out."""

    def __init__(self, n_in: int, n_out: int, k: int, config: LutConfig, generator: torch.Generator):
        super().__init__()
        if k > n_in:
            raise ValueError(f"a {k}-input LUT cannot be wired to a layer of only {n_in} bits")
        self.n_in, self.n_out, self.k = n_in, n_out, k
        wiring = torch.rand(n_out, n_in, generator=generator).argsort(dim=1)[:, :k]  # K distinct inputs
        self.register_buffer("wiring", wiring)                                     # (n_out, K)
        self.table = nn.Parameter(torch.empty(n_out, 2 ** k).uniform_(-1, 1, generator=generator))
        self.bn = nn.BatchNorm1d(n_out, eps=config.bn_eps, momentum=config.bn_momentum)

    def values(self, gathered: torch.Tensor) -> torch.Tensor:
        """(N, n_out, K) inputs in [0, 1] -> (N, n_out) table values (exact T[address] for bits)."""
        return (lut_expand(gathered) * self.table).sum(dim=-1)

    def bn_eval(self, y: torch.Tensor) -> torch.Tensor:
        """Eval-mode BatchNorm: the ONLY eval-mode BN code path (elementwise, batch independent)."""
        bn = self.bn
        return (y - bn.running_mean) * (bn.weight / torch.sqrt(bn.running_var + bn.eps)) + bn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_in) bits as 0./1. floats -> (N, n_out) bits as 0./1. floats."""
        y = self.values(x[:, self.wiring])
        if self.training:
            return (sign_ste(self.bn(y)) + 1) / 2
        return (self.bn_eval(y) >= 0).to(y.dtype)

    @torch.no_grad()
    def extract(self) -> LutLayer:
        """The eval-mode function of every neuron, read over all 2**K inputs."""
        if self.training:
            raise RuntimeError("extract needs eval mode (call model.eval() first)")
        addresses = torch.arange(2 ** self.k)
        bits = ((addresses[:, None] >> torch.arange(self.k)) & 1).to(torch.float32)   # (2**K, K)
        gathered = bits[:, None, :].expand(-1, self.n_out, -1)                         # (2**K, n_out, K)
        tables = (self.bn_eval(self.values(gathered)) >= 0).T                           # (n_out, 2**K)
        return LutLayer(inputs=self.wiring.numpy(), tables=tables.numpy(), n_in=self.n_in)


class LutMLP(EncodedNet):
    """Raw integer features -> encoder bits -> LUT layers -> group-sum scores (x a learned scale)."""

    def __init__(self, config: LutConfig, encoder_thresholds):
        super().__init__(encoder_thresholds, config.levels)
        self.config = config
        g = torch.Generator().manual_seed(config.seed)
        widths = [self.thresholds.numel(), *config.hidden]
        self.blocks = nn.ModuleList(LutBlock(i, o, config.k, config, g) for i, o in zip(widths[:-1], widths[1:]))
        self.group = config.hidden[-1] // config.n_classes
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(self.group)))

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Last layer bits (N, n) -> (N, classes) popcount of each class's group."""
        return h.reshape(len(h), self.config.n_classes, self.group).sum(dim=2)

    def ir_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.round().to(torch.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x).to(torch.float32)
        for block in self.blocks:
            h = block(h)
        return self.scores(h) * self.log_scale.exp()

    @torch.no_grad()
    def trace(self, x: torch.Tensor):
        """Eval mode only: (bits per stage, integer scores, classes) as BinaryMLP.trace."""
        if self.training:
            raise RuntimeError("LutMLP.trace needs eval mode (call model.eval() first)")
        bits = [self.encode(x)]
        h = bits[0].to(torch.float32)
        for block in self.blocks:
            h = block(h)
            bits.append(h > 0)
        scores = self.scores(h)
        return bits, scores, torch.argmax(scores * self.log_scale.exp(), dim=1)

    def binary_layers(self):
        return []

    def clip_weights_(self) -> None:
        pass


def lut_to_ir(model: LutMLP, encoder: Encoder, meta: dict | None = None) -> Network:
    """Read every LUT neuron's table exhaustively (eval mode) into an IR network."""
    if not np.array_equal(encoder.thresholds, model.thresholds.numpy()):
        raise ValueError("the encoder's thresholds differ from those the model was trained with")
    model.eval()
    layers = [block.extract() for block in model.blocks]
    head = GroupSumHead(n_in=model.config.hidden[-1], n_classes=model.config.n_classes)
    return Network(encoder=encoder, layers=layers, head=head, meta=dict(meta or {}))
