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

from . import locality
from .bnn import EncodedNet, sign_ste
from .ir import MAX_LUT_INPUTS, Encoder, GroupSumHead, LutLayer, Network, XnorLayer


WIRINGS = ("random", "serial", "learned")


@dataclass(frozen=True)
class LutConfig:
    hidden: tuple = (1000, 500)   # LUT neurons per layer; the last must be a multiple of n_classes
    k: int = 6                    # inputs per LUT neuron (2..6 fits one LUT6)
    levels: int = 1               # encoder levels per feature
    n_classes: int = 10
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    seed: int = 0                 # seeds the random wiring
    wiring: str = "random"        # random | serial (neuron j reads inputs jK..jK+K-1, wrapping) | learned
    local: float | None = None    # read only bits within this distance (lutnet.locality; None: anywhere)

    def __post_init__(self):
        if self.wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {', '.join(WIRINGS)}, not {self.wiring!r}")
        if not isinstance(self.k, int) or not 2 <= self.k <= MAX_LUT_INPUTS:
            raise ValueError(f"k must be an integer in 2..{MAX_LUT_INPUTS}, not {self.k!r}")
        if not self.hidden or any(not isinstance(w, int) or w < 1 for w in self.hidden):
            raise ValueError(f"hidden must list positive layer widths, not {self.hidden!r}")
        if locality.radius_error(self.local):
            raise ValueError(locality.radius_error(self.local))
        if self.local is not None and self.wiring == "serial":
            raise ValueError("serial wiring is not local: use random or learned wiring with local")
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


class _LutLookup(torch.autograd.Function):
    """Table lookup with the multilinear relaxation's gradients, without the 2**K expansion.

    For bit inputs the expansion above is one-hot, so its value is ``T[address]`` and its gradient
    with respect to input ``k`` is the finite difference ``T[a | 1<<k] - T[a & ~(1<<k)]``; this
    computes both by gathers (K + 1 per neuron instead of 2**K products), which is what makes
    MNIST-size LUT layers train in seconds per epoch on a CPU. Inputs must be exact 0./1. bits.
    """

    @staticmethod
    def forward(ctx, ports, table, extended):
        # ports (N, n_out, K) of 0./1.; table (n_out, 2**K) -> (N, n_out)
        n_out, size = table.shape
        k = ports.shape[-1]
        place = 1 << torch.arange(k, device=ports.device)
        flat = (ports.to(torch.int64) * place).sum(-1) + torch.arange(n_out, device=ports.device) * size
        ctx.save_for_backward(flat, table)
        ctx.k, ctx.extended = k, extended
        return table.reshape(-1)[flat]

    @staticmethod
    def backward(ctx, grad):
        flat, table = ctx.saved_tensors
        grad_ports = grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros(table.numel(), dtype=grad.dtype, device=grad.device)
            grad_table.index_add_(0, flat.reshape(-1), grad.reshape(-1))
            grad_table = grad_table.view_as(table)
        if ctx.needs_input_grad[0]:
            if ctx.extended:
                diffs = _extended_differences(table, ctx.k).reshape(ctx.k, -1)   # (K, n_out * 2**K)
                grad_ports = grad[..., None] * diffs[:, flat].permute(1, 2, 0)
            else:
                place = 1 << torch.arange(ctx.k, device=flat.device)
                hi = (flat[..., None] | place)                      # address with bit k set
                lo = hi - place                                     # ... and cleared
                t = table.reshape(-1)
                grad_ports = grad[..., None] * (t[hi] - t[lo])
        return grad_ports, grad_table, None


def _extended_differences(table: torch.Tensor, k: int) -> torch.Tensor:
    """DWN's extended finite difference: for input ``i`` at address ``a``, the differences
    ``T[b | 1<<i] - T[b & ~(1<<i)]`` at EVERY address ``b``, weighted by ``1 / (1 + Hamming distance
    of a and b on the other inputs)`` and normalised to sum to 1. Returns (K, n_out, 2**K)."""
    size = 2 ** k
    a = torch.arange(size, device=table.device)
    out = []
    for i in range(k):
        bit = 1 << i
        d = table[:, a | bit] - table[:, a & ~bit]                             # (n_out, 2**K)
        h = ((((a[:, None] ^ a[None, :]) & ~bit)[..., None] >> torch.arange(k, device=a.device)) & 1).sum(-1)
        w = 1.0 / (1.0 + h.to(table.dtype))
        out.append(d @ (w / w.sum(dim=1, keepdim=True)).T)
    return torch.stack(out)


def lut_lookup(ports: torch.Tensor, table: torch.Tensor, extended: bool = False) -> torch.Tensor:
    """(N, n_out, K) bits as 0./1. floats, (n_out, 2**K) tables -> (N, n_out) ``T[address]``,
    input k = address bit k; gradients as the multilinear expansion's (:func:`lut_expand`).

    >>> lut_lookup(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[10.0, 11.0, 12.0, 13.0]]))
    tensor([[11.]])

    ``extended=True`` replaces the input gradient by DWN's extended finite difference
    (:func:`_extended_differences`), which also looks at the table away from the current address.
    """
    return _LutLookup.apply(ports, table, extended)


class LutBlock(nn.Module):
    """n_out K-input LUT neurons -> (BatchNorm) -> sign; bits in, bits out.

    Wiring: fixed (random unless ``wiring`` is given) or learned (``learn_wiring``): then every
    input port k of neuron j reads input ``argmax_i M[j * K + k, i]`` of a mapping matrix ``M``
    trained with the DWN rule (the port's gradient times ``2 x_i - 1`` for every candidate ``i``);
    ``M`` starts with a margin on the initial wiring, so training moves a port only when its
    gradients keep pointing elsewhere. ``table`` gives the initial tables (default uniform in
    [-1, 1]). ``batchnorm=False`` drops the BatchNorm: the neuron is ``T[address] >= 0``.
    ``extended_gradient`` trains with DWN's extended finite difference (:func:`lut_lookup`).
    ``clip_table`` keeps the table in [-1, 1] after every step (:meth:`LutMLP.clip_weights_`), where
    sign's straight-through estimator passes gradients (an entry beyond it would freeze).
    ``allow`` (n_out, n_in) bool limits the inputs each neuron may read (random and learned
    wiring pick among them only; see :mod:`lutnet.locality`).
    """

    def __init__(self, n_in: int, n_out: int, k: int, config: LutConfig, generator: torch.Generator, *,
                 wiring=None, table=None, batchnorm: bool = True, learn_wiring: bool = False,
                 wiring_margin: float = 1.0, extended_gradient: bool = False, clip_table: bool = False,
                 allow=None):
        super().__init__()
        if k > n_in and wiring is None:
            raise ValueError(f"a {k}-input LUT cannot be wired to a layer of only {n_in} bits")
        self.n_in, self.n_out, self.k = n_in, n_out, k
        self.extended_gradient = extended_gradient
        self.clip_table = clip_table
        if allow is not None:
            allow = torch.as_tensor(allow, dtype=torch.bool)
            if allow.shape != (n_out, n_in):
                raise ValueError(f"allow must be ({n_out}, {n_in}) bools, not {tuple(allow.shape)}")
            if int(allow.sum(dim=1).min()) < k:
                raise ValueError(f"allow leaves a neuron fewer than the {k} inputs it reads")
        if wiring is None:
            keys = torch.rand(n_out, n_in, generator=generator)
            if allow is not None:
                keys = keys.masked_fill(~allow, 2.0)                              # never before an allowed one
            wiring = keys.argsort(dim=1)[:, :k]                                   # K distinct inputs
        wiring = torch.as_tensor(wiring, dtype=torch.int64)
        if wiring.shape != (n_out, k) or (wiring.numel() and not 0 <= int(wiring.min()) <= int(wiring.max()) < n_in):
            raise ValueError(f"wiring must be ({n_out}, {k}) input indices in 0..{n_in - 1}")
        if allow is not None and not bool(allow.gather(1, wiring).all()):
            raise ValueError("wiring reads inputs that allow forbids")
        self.register_buffer("wiring", wiring.clone())                             # (n_out, K)
        if table is None:
            table = torch.empty(n_out, 2 ** k).uniform_(-1, 1, generator=generator)
        table = torch.as_tensor(table, dtype=torch.float32)
        if table.shape != (n_out, 2 ** k):
            raise ValueError(f"table must be ({n_out}, {2 ** k}), not {tuple(table.shape)}")
        self.table = nn.Parameter(table.clone())
        self.bn = nn.BatchNorm1d(n_out, eps=config.bn_eps, momentum=config.bn_momentum) if batchnorm else None
        self.mapping = None
        # the learned mapping's argmax skips the forbidden inputs (not saved: the config rebuilds it)
        self.register_buffer("forbid", None if allow is None else ~allow.repeat_interleave(k, dim=0), persistent=False)
        if learn_wiring:
            m = torch.randn(n_out * k, n_in, generator=generator) * 0.01   # rows: argmax reads memory in order
            m[torch.arange(n_out * k), self.wiring.reshape(-1)] += wiring_margin
            self.mapping = nn.Parameter(m)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_in) bits -> (N, n_out) table values ``T[address]``."""
        if self.mapping is not None and self.training:
            with torch.no_grad():
                m = self.mapping if self.forbid is None else self.mapping.masked_fill(self.forbid, -math.inf)
                self.wiring.copy_(m.argmax(dim=1).view(self.n_out, self.k))
        ports = x[:, self.wiring]                                                  # (N, n_out, K)
        if self.mapping is not None and self.training:
            soft = ((2 * x.detach() - 1) @ self.mapping.T).view(len(x), self.n_out, self.k)
            ports = ports + (soft - soft.detach())                                 # value unchanged
        return lut_lookup(ports, self.table, self.extended_gradient and self.training)

    def bn_eval(self, y: torch.Tensor) -> torch.Tensor:
        """Eval-mode BatchNorm: the ONLY eval-mode BN code path (elementwise, batch independent)."""
        bn = self.bn
        if bn is None:
            return y
        return (y - bn.running_mean) * (bn.weight / torch.sqrt(bn.running_var + bn.eps)) + bn.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_in) bits as 0./1. floats -> (N, n_out) bits as 0./1. floats."""
        y = self.values(x)
        if self.training:
            return (sign_ste(self.bn(y) if self.bn is not None else y) + 1) / 2
        return (self.bn_eval(y) >= 0).to(y.dtype)

    @torch.no_grad()
    def extract(self) -> LutLayer:
        """The eval-mode function of every neuron, read over all 2**K inputs."""
        if self.training:
            raise RuntimeError("extract needs eval mode (call model.eval() first)")
        addresses = torch.arange(2 ** self.k)
        bits = ((addresses[:, None] >> torch.arange(self.k)) & 1).to(torch.float32)   # (2**K, K)
        ports = bits[:, None, :].expand(-1, self.n_out, -1)                            # (2**K, n_out, K)
        tables = (self.bn_eval(lut_lookup(ports, self.table)) >= 0).T                  # (n_out, 2**K)
        return LutLayer(inputs=self.wiring.numpy(), tables=tables.numpy(), n_in=self.n_in)


class FrozenXnorLayer(nn.Module):
    """An IR XNOR layer in torch, not trained: bits in, ``popcount(xnor(x, w)) >= threshold`` out.

    The popcount is ``x @ w.T + (1 - x) @ (1 - w).T``, exact in float32 below 2**24 inputs, so this
    computes what the golden model and the RTL compute; mixed nets (XNOR layers, then LUT layers)
    train their LUT part behind it."""

    def __init__(self, layer: XnorLayer):
        super().__init__()
        if layer.n_in >= 2 ** 24:
            raise ValueError(f"an XNOR layer of {layer.n_in} inputs is beyond float32's exact integers")
        self.layer = layer
        self.register_buffer("w", torch.from_numpy(layer.weights.astype(np.float32)))
        self.register_buffer("thresholds", torch.from_numpy(layer.thresholds.astype(np.float32)))

    @property
    def n_in(self) -> int:
        return self.layer.n_in

    @property
    def n_out(self) -> int:
        return self.layer.n_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        count = x @ self.w.T + (1 - x) @ (1 - self.w).T
        return (count >= self.thresholds).to(x.dtype)


def _block(n_in: int, n_out: int, config: LutConfig, g: torch.Generator, allow=None) -> LutBlock:
    """A directly trained layer: learned wiring trains with the extended finite difference, as DWN."""
    if config.k > n_in:
        raise ValueError(f"a {config.k}-input LUT cannot be wired to a layer of only {n_in} bits")
    wiring = None
    if config.wiring == "serial":
        wiring = (torch.arange(n_out)[:, None] * config.k + torch.arange(config.k)) % n_in
    learned = config.wiring == "learned"
    return LutBlock(n_in, n_out, config.k, config, g, wiring=wiring, learn_wiring=learned,
                    extended_gradient=learned, wiring_margin=0.0 if learned else 1.0, allow=allow)


def local_masks(config: LutConfig, n_features: int, levels: int, n_prefix_out: int | None = None) -> list:
    """Per LUT layer, the (n_out, n_in) inputs each neuron may read under ``config.local``
    (a list of None without it)."""
    if config.local is None:
        return [None] * len(config.hidden)
    pos = locality.chain(n_features, levels, config.hidden, config.n_classes, n_prefix_out)
    return [torch.from_numpy(locality.allowed(o, i, config.local, config.k)) for i, o in zip(pos[:-1], pos[1:])]


class LutMLP(EncodedNet):
    """Raw integer features -> encoder bits -> (frozen XNOR layers) -> LUT layers -> group-sum
    scores (x a learned scale). ``prefix`` lists IR XNOR layers run before the LUT layers."""

    def __init__(self, config: LutConfig, encoder_thresholds, blocks=None, prefix=()):
        super().__init__(encoder_thresholds, config.levels)
        self.config = config
        self.prefix = nn.ModuleList(FrozenXnorLayer(layer) for layer in prefix)
        n_in = self.thresholds.numel()
        for i, stage in enumerate(self.prefix):
            if stage.n_in != n_in:
                raise ValueError(f"XNOR layer {i} reads {stage.n_in} bits but gets {n_in}")
            n_in = stage.n_out
        widths = [n_in, *config.hidden]
        if blocks is None:
            g = torch.Generator().manual_seed(config.seed)
            masks = local_masks(config, self.thresholds.shape[0], self.thresholds.shape[1],
                                self.prefix[-1].n_out if len(self.prefix) else None)
            blocks = [_block(i, o, config, g, a) for i, o, a in zip(widths[:-1], widths[1:], masks)]
        if [(b.n_in, b.n_out) for b in blocks] != list(zip(widths[:-1], widths[1:])):
            raise ValueError(f"blocks {[(b.n_in, b.n_out) for b in blocks]} do not chain the widths {widths}")
        self.blocks = nn.ModuleList(blocks)
        self.group = config.hidden[-1] // config.n_classes
        self.log_scale = nn.Parameter(torch.tensor(-0.5 * math.log(self.group)))

    def stages(self) -> list:
        return [*self.prefix, *self.blocks]

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Last layer bits (N, n) -> (N, classes) popcount of each class's group."""
        return h.reshape(len(h), self.config.n_classes, self.group).sum(dim=2)

    def ir_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.round().to(torch.int64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x).to(torch.float32)
        for stage in self.stages():
            h = stage(h)
        return self.scores(h) * self.log_scale.exp()

    @torch.no_grad()
    def trace(self, x: torch.Tensor):
        """Eval mode only: (bits per stage, integer scores, classes) as BinaryMLP.trace."""
        if self.training:
            raise RuntimeError("LutMLP.trace needs eval mode (call model.eval() first)")
        bits = [self.encode(x)]
        h = bits[0].to(torch.float32)
        for stage in self.stages():
            h = stage(h)
            bits.append(h > 0)
        scores = self.scores(h)
        return bits, scores, torch.argmax(scores * self.log_scale.exp(), dim=1)

    def binary_layers(self):
        return []

    @torch.no_grad()
    def clip_weights_(self) -> None:
        """After each optimizer step: clamp the tables of blocks built with ``clip_table``."""
        for block in self.blocks:
            if block.clip_table:
                block.table.clamp_(-1, 1)


def lut_to_ir(model: LutMLP, encoder: Encoder, meta: dict | None = None) -> Network:
    """Read every LUT neuron's table exhaustively (eval mode) into an IR network."""
    if not np.array_equal(encoder.thresholds, model.thresholds.numpy()):
        raise ValueError("the encoder's thresholds differ from those the model was trained with")
    model.eval()
    layers = [stage.layer for stage in model.prefix] + [block.extract() for block in model.blocks]
    head = GroupSumHead(n_in=model.config.hidden[-1], n_classes=model.config.n_classes)
    return Network(encoder=encoder, layers=layers, head=head, meta=dict(meta or {}))
