"""Binary MLP in torch: sign activations, ±1 weights on clipped latent reals, BatchNorm in between.

The model reads the raw integer features the hardware sees and encodes them with the very
thresholds of the IR encoder, so nothing is rescaled between training and hardware. In eval mode
every hidden block computes its BatchNorm through one method, :meth:`HiddenBlock.bn_eval`, and
its output bits through :meth:`HiddenBlock.eval_bits`; :mod:`lutnet.fold` calls the same method
on every possible pre-activation to derive the integer thresholds, so the folding is exact.

Conventions: bit 1 = +1, bit 0 = -1, sign(0) = +1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BINARIZATIONS = ("deterministic", "stochastic")


# -- straight-through estimators ------------------------------------------------------------------
class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class _BinaryConnectSTE(torch.autograd.Function):
    """+1 with probability hard_sigmoid(w) = clip((w + 1) / 2, 0, 1), else -1."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        p = ((w + 1) / 2).clamp(0, 1)
        return torch.where(torch.rand(w.shape, dtype=w.dtype, device=w.device) < p, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1; backward passes the gradient straight through where |x| <= 1.

    >>> x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], requires_grad=True)
    >>> y = sign_ste(x)
    >>> y.detach()
    tensor([-1., -1., -1.,  1.,  1.,  1.,  1.])
    >>> y.sum().backward()
    >>> x.grad
    tensor([0., 1., 1., 1., 1., 1., 0.])
    """
    return _SignSTE.apply(x)


def binarize_weights(w: torch.Tensor, stochastic: bool = False) -> torch.Tensor:
    """Latent weights in [-1, 1] -> ±1 with a straight-through gradient (clipped to |w| <= 1).

    ``stochastic`` is BinaryConnect's rule: +1 with probability hard_sigmoid(w), drawn from the
    global torch generator; otherwise the deterministic sign, sign(0) = +1.

    >>> w = torch.tensor([-1.0, -0.25, 0.0, 0.75], requires_grad=True)
    >>> wb = binarize_weights(w)
    >>> wb.detach()
    tensor([-1., -1.,  1.,  1.])
    >>> (wb * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    >>> w.grad
    tensor([1., 2., 3., 4.])
    >>> _ = torch.manual_seed(0)
    >>> binarize_weights(torch.tensor([-1.0, 1.0, 1.0]), stochastic=True)  # p(+1) = 0, 1, 1
    tensor([-1.,  1.,  1.])
    """
    return _BinaryConnectSTE.apply(w) if stochastic else _SignSTE.apply(w)


# -- configuration --------------------------------------------------------------------------------
@dataclass
class BnnConfig:
    hidden: tuple = (256, 256)          # widths of the hidden binary layers, first to last
    levels: int = 1                     # encoder levels per feature (1 = threshold, > 1 thermometer)
    n_classes: int = 10                 # output classes
    binarization: str = "deterministic"  # weights in training: "deterministic" sign or "stochastic" (BinaryConnect)
    bn_momentum: float = 0.1            # BatchNorm running-statistics momentum
    bn_eps: float = 1e-5                # BatchNorm epsilon
    init_scale: float = 0.1             # latent weights start uniform in [-init_scale, init_scale]

    def __post_init__(self):
        try:
            self.hidden = tuple(self.hidden)
        except TypeError:
            raise ValueError(f"hidden must be a sequence of layer widths, not {self.hidden!r}") from None
        if not self.hidden:
            raise ValueError("hidden must list at least one hidden layer width")
        if not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be positive integers, not {self.hidden!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        if not isinstance(self.levels, (int, np.integer)) or isinstance(self.levels, bool) or not 1 <= self.levels <= 255:
            raise ValueError(f"levels must be an integer in 1..255, not {self.levels!r}")
        if not isinstance(self.n_classes, (int, np.integer)) or isinstance(self.n_classes, bool) or self.n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, not {self.n_classes!r}")
        self.levels, self.n_classes = int(self.levels), int(self.n_classes)
        if self.binarization not in BINARIZATIONS:
            raise ValueError(f"binarization must be one of {', '.join(BINARIZATIONS)}, not {self.binarization!r}")
        if not isinstance(self.bn_momentum, (int, float)) or not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], not {self.bn_momentum!r}")
        if not isinstance(self.bn_eps, (int, float)) or not self.bn_eps > 0:
            raise ValueError(f"bn_eps must be > 0, not {self.bn_eps!r}")
        if not isinstance(self.init_scale, (int, float)) or not 0 < self.init_scale <= 1:
            raise ValueError(f"init_scale must be in (0, 1], not {self.init_scale!r}")


# -- modules ----------------------------------------------------------------------------------------
class BinaryLinear(nn.Module):
    """Dense layer without bias whose weights are binarized latent reals kept in [-1, 1]."""

    def __init__(self, n_in: int, n_out: int, stochastic: bool = False, init_scale: float = 1.0):
        super().__init__()
        self.n_in, self.n_out, self.stochastic = n_in, n_out, stochastic
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-init_scale, init_scale))  # (out, in)

    def binary_weight(self) -> torch.Tensor:
        """±1 weights: stochastic only while training with BinaryConnect, else sign (sign(0) = +1)."""
        return binarize_weights(self.weight, self.stochastic and self.training)

    def weight_bits(self) -> torch.Tensor:
        """(out, in) bool, 1 = +1; what the eval forward uses."""
        return self.weight.detach() >= 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, in) of ±1 -> (N, out) integer-valued dot products 2p - n (exact in float32)
        return F.linear(x, self.binary_weight())

    @torch.no_grad()
    def clip_(self) -> None:
        self.weight.clamp_(-1.0, 1.0)


class HiddenBlock(nn.Module):
    """BinaryLinear -> BatchNorm1d -> sign."""

    def __init__(self, n_in: int, n_out: int, config: BnnConfig):
        super().__init__()
        self.linear = BinaryLinear(n_in, n_out, config.binarization == "stochastic", config.init_scale)
        self.bn = nn.BatchNorm1d(n_out, eps=config.bn_eps, momentum=config.bn_momentum)

    @property
    def n_in(self) -> int:
        return self.linear.n_in

    @property
    def n_out(self) -> int:
        return self.linear.n_out

    def bn_eval(self, a: torch.Tensor) -> torch.Tensor:
        """Eval-mode BatchNorm of pre-activations ``a`` (N, out): the ONLY eval-mode BN code path.

        Three separate elementwise ops, each correctly rounded, so every element's result depends
        only on its own value and channel, never on the batch size or memory layout.
        """
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (out,)
        return (a - bn.running_mean) * scale + bn.bias

    def eval_bits(self, a: torch.Tensor) -> torch.Tensor:
        """Eval-mode output bits (bool, 1 = +1) of pre-activations ``a`` (N, out)."""
        return self.bn_eval(a) >= 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.linear(x)                                   # (N, out)
        if self.training:
            return sign_ste(self.bn(a))
        return self.eval_bits(a).to(a.dtype) * 2 - 1


class EncodedNet(nn.Module):
    """Base of the trainable nets: holds the IR encoder's integer thresholds and encodes raw inputs.

    ``encoder_thresholds`` (F, levels) are the integer thresholds of the IR encoder:
    ``bit[f * levels + t] = x[f] >= thresholds[f, t]``.
    """

    def __init__(self, encoder_thresholds, levels: int):
        super().__init__()
        thr = (encoder_thresholds.detach().clone() if isinstance(encoder_thresholds, torch.Tensor)
               else torch.from_numpy(np.array(encoder_thresholds)))
        if thr.ndim != 2 or thr.dtype.is_floating_point or thr.dtype == torch.bool:
            raise ValueError(f"encoder thresholds must be a (features, levels) integer array, not {thr.dtype} {tuple(thr.shape)}")
        if thr.shape[1] != levels:
            raise ValueError(f"encoder has {thr.shape[1]} levels per feature but config.levels is {levels}")
        self.register_buffer("thresholds", thr.to(torch.int64).clone())   # (F, levels)

    @property
    def n_features(self) -> int:
        return self.thresholds.shape[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) raw integers -> (N, F * levels) bool bits, feature-major."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"inputs must have shape (N, {self.n_features}), not {tuple(x.shape)}")
        if x.dtype.is_floating_point and not torch.equal(x, x.round()):
            raise ValueError("inputs must be raw integer features, not scaled floats")
        return (x.to(torch.int64)[:, :, None] >= self.thresholds[None]).reshape(len(x), -1)


class BinaryMLP(EncodedNet):
    """Raw integer features -> encoder bits -> hidden binary blocks -> scaled integer class scores."""

    def __init__(self, config: BnnConfig, encoder_thresholds):
        super().__init__(encoder_thresholds, config.levels)
        self.config = config
        widths = [self.thresholds.numel(), *config.hidden]
        self.blocks = nn.ModuleList(HiddenBlock(i, o, config) for i, o in zip(widths[:-1], widths[1:]))
        self.out = BinaryLinear(widths[-1], config.n_classes, config.binarization == "stochastic", config.init_scale)
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(widths[-1])))  # logits = exp(.) * (2p - n)

    def ir_scores(self, dots: torch.Tensor) -> torch.Tensor:
        """Head dot products 2p - n -> the IR's popcount scores p."""
        return (dots + self.out.n_in) // 2

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Last hidden ±1 activations (N, n) -> integer dot products 2p - n with the head (N, classes)."""
        return self.out(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) raw integer features -> (N, classes) logits."""
        h = self.encode(x).to(torch.float32) * 2 - 1        # (N, F * levels) of ±1
        for block in self.blocks:
            h = block(h)
        return self.scores(h) * self.log_scale.exp()

    @torch.no_grad()
    def trace(self, x: torch.Tensor):
        """Eval mode only: (bits, dots, classes) where ``bits`` is a list of (N, width) bool
        tensors (encoder output, then each hidden layer), ``dots`` the head's integer dot products
        2p - n and ``classes`` the argmax of the logits (first maximum)."""
        if self.training:
            raise RuntimeError("BinaryMLP.trace needs eval mode (call model.eval() first)")
        bits = [self.encode(x)]
        h = bits[0].to(torch.float32) * 2 - 1
        for block in self.blocks:
            h = block(h)
            bits.append(h > 0)
        dots = self.scores(h)
        classes = torch.argmax(dots * self.log_scale.exp(), dim=1)
        return bits, dots.to(torch.int64), classes

    def hidden_bits(self, x: torch.Tensor) -> list:
        """Eval mode: bits after the encoder and after every hidden layer, as golden's activations."""
        return self.trace(x)[0]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        was = self.training
        self.eval()
        try:
            return self.trace(x)[2]
        finally:
            self.train(was)

    def binary_layers(self) -> list:
        return [b.linear for b in self.blocks] + [self.out]

    def clip_weights_(self) -> None:
        """Clip every latent weight to [-1, 1]; call after each optimizer step."""
        for layer in self.binary_layers():
            layer.clip_()
