"""BatchNorm folding is exact: torch eval bits == folded IR bits on every input, no tolerance."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from lutnet import datasets, golden
from lutnet.bnn import BinaryMLP, BnnConfig, HiddenBlock
from lutnet.fold import FoldError, fold_block, fold_check, to_ir
from lutnet.ir import Network, XnorLayer
from lutnet.train import TrainConfig, load_model, train


def all_inputs(n: int) -> np.ndarray:
    """Every n-bit input vector, (2**n, n) bool."""
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool).reshape(2 ** n, n)


def torch_bits(block: HiddenBlock, x: np.ndarray) -> np.ndarray:
    block.eval()
    with torch.no_grad():
        out = block(torch.from_numpy(x).to(torch.float32) * 2 - 1)
    assert set(np.unique(out.numpy())) <= {-1.0, 1.0}
    return out.numpy() > 0


def ir_bits(layer: XnorLayer, x: np.ndarray) -> np.ndarray:
    return golden.unpack(golden.xnor_layer(layer, golden.pack(x)), layer.n_out)


def assert_block_exact(block: HiddenBlock) -> XnorLayer:
    layer = XnorLayer(*fold_block(block.eval()))
    x = all_inputs(block.n_in)
    expected, got = torch_bits(block, x), ir_bits(layer, x)
    assert expected.shape == got.shape
    bad = np.argwhere(expected != got)
    assert np.array_equal(expected, got), f"{len(bad)} mismatches, first (input, neuron) {bad[:3].tolist()}"
    return layer


def random_block(n_in: int, rng: np.random.Generator) -> HiddenBlock:
    """A block whose neurons cover every case: gamma > 0, < 0, == 0; exact ties (BN output exactly
    0 for an achievable pre-activation); means outside the reachable range; tiny and huge variances."""
    cases = []
    achievable = np.arange(-n_in, n_in + 1, 2)
    for gamma_sign in (1.0, -1.0):
        for _ in range(3):   # exact tie: running_mean = reachable a, beta = 0 -> BN(a) == 0 -> +1
            cases.append((gamma_sign * rng.uniform(0.1, 3), 0.0, float(rng.choice(achievable)), rng.uniform(0.01, 4)))
        for _ in range(6):   # generic
            cases.append((gamma_sign * rng.uniform(0.01, 3), rng.normal(0, 1), rng.normal(0, n_in ** 0.5), rng.uniform(0, 4)))
        cases.append((gamma_sign, 0.0, float(rng.choice(achievable)) + 0.5, 1.0))   # between two values
        cases.append((gamma_sign, 0.0, float(n_in + 3), 1.0))                      # never reached
        cases.append((gamma_sign, 0.0, float(-n_in - 3), 1.0))                     # always exceeded
        cases.append((gamma_sign * 1e-3, rng.normal(0, 1e-3), float(rng.choice(achievable)), 0.0))  # var = 0
    for beta in (0.0, 0.5, -0.5):                                                  # gamma == 0 -> constant
        cases.append((0.0, beta, rng.normal(0, 2), 1.0))
    cases.append((-0.0, 0.0, 0.0, 1.0))
    block = HiddenBlock(n_in, len(cases), BnnConfig(hidden=(len(cases),)))
    gamma, beta, mean, var = (torch.tensor(c, dtype=torch.float32) for c in zip(*cases))
    with torch.no_grad():
        block.linear.weight.uniform_(-1, 1, generator=torch.Generator().manual_seed(int(rng.integers(2 ** 31))))
        block.linear.weight[:, 0] = 0.0   # a latent weight of exactly 0 binarizes to +1
        block.bn.weight.copy_(gamma)
        block.bn.bias.copy_(beta)
        block.bn.running_mean.copy_(mean)
        block.bn.running_var.copy_(var)
    return block.eval()


@pytest.mark.parametrize("n_in", range(1, 11))
def test_block_folding_is_exact_on_all_inputs(n_in):
    rng = np.random.default_rng(1000 + n_in)
    for _ in range(5):
        block = random_block(n_in, rng)
        layer = assert_block_exact(block)
        t = layer.thresholds
        assert t.min() >= 0 and t.max() <= n_in + 1
        # the tie neurons really tie: BN output exactly 0 at a reachable a (every p occurs above)
        ties = [0, 1, 2, 13, 14, 15]
        y = block.bn_eval(block.bn.running_mean[None].clone())[0]
        assert torch.equal(y[ties], torch.zeros(len(ties)))
        assert block.eval_bits(block.bn.running_mean[None].clone())[0, ties].all()


def test_constant_and_flipped_neurons():
    n = 4
    block = HiddenBlock(n, 4, BnnConfig(hidden=(4,)))
    with torch.no_grad():
        block.linear.weight.copy_(torch.tensor([[0.5, -0.5, 0.5, -0.5]] * 4))
        block.bn.weight.copy_(torch.tensor([0.0, 0.0, 1.0, -1.0]))
        block.bn.bias.copy_(torch.tensor([1.0, -1.0, 0.0, 0.0]))
        block.bn.running_mean.zero_()
    bits, t = fold_block(block.eval())
    assert t.tolist() == [0, n + 1, 2, 2]           # always 1, never 1, a >= 0 <=> p >= 2, a <= 0 <=> p' >= 2
    w = block.linear.weight_bits().numpy()
    assert np.array_equal(bits[:3], w[:3]) and np.array_equal(bits[3], ~w[3])
    assert_block_exact(block)


@settings(max_examples=300, deadline=None)
@given(
    n_in=st.integers(1, 8),
    gamma=st.floats(width=32, allow_nan=False, allow_infinity=False),
    beta=st.floats(width=32, allow_nan=False, allow_infinity=False),
    mean=st.one_of(st.integers(-8, 8).map(float), st.floats(width=32, allow_nan=False, allow_infinity=False)),
    var=st.floats(0, 1e6, width=32),
    seed=st.integers(0, 2 ** 16),
)
def test_single_neuron_any_float_parameters(n_in, gamma, beta, mean, var, seed):
    block = HiddenBlock(n_in, 1, BnnConfig(hidden=(1,)))
    with torch.no_grad():
        block.linear.weight.uniform_(-1, 1, generator=torch.Generator().manual_seed(seed))
        block.bn.weight.fill_(gamma)
        block.bn.bias.fill_(beta)
        block.bn.running_mean.fill_(mean)
        block.bn.running_var.fill_(var)
    assert_block_exact(block)


def test_non_monotone_block_raises():
    block = HiddenBlock(6, 3, BnnConfig(hidden=(3,))).eval()
    block.bn_eval = lambda a: torch.cos(a)   # not a threshold function of a
    with pytest.raises(FoldError, match=r"neuron \d+ of a 6-input block is not monotone"):
        fold_block(block)


def test_fold_needs_eval_mode():
    block = HiddenBlock(3, 2, BnnConfig(hidden=(2,)))
    with pytest.raises(FoldError, match="eval mode"):
        fold_block(block.train())


def test_random_untrained_mlp_matches_golden_on_digits():
    """Untrained weights and random BN statistics (with ties) through a whole network."""
    ds = datasets.load("digits")
    enc = datasets.make_encoder(ds, 3)
    torch.manual_seed(3)
    model = BinaryMLP(BnnConfig(hidden=(40, 24), levels=3), enc.thresholds)
    rng = np.random.default_rng(3)
    with torch.no_grad():
        for block in model.blocks:
            c, n = block.n_out, block.n_in
            block.bn.weight.copy_(torch.from_numpy(rng.normal(0, 1, c) * (rng.random(c) > 0.1)).float())
            block.bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, c) * (rng.random(c) > 0.5)).float())
            block.bn.running_mean.copy_(torch.from_numpy(2.0 * rng.integers(0, n + 1, c) - n).float())
            block.bn.running_var.copy_(torch.from_numpy(rng.uniform(0.5, n, c)).float())
    net = to_ir(model, enc)
    check = fold_check(model, net, ds.x_test)
    assert check.ok, check
    assert check.total_bits == len(ds.x_test) * sum(net.widths())


# -- a trained model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fold-digits")
    cfg = TrainConfig(dataset="digits", hidden=(48, 32), levels=2, epochs=4, batch_size=64, seed=5, threads=1)
    summary = train(cfg, out, progress=False)
    return out, summary


def test_trained_digits_model_agrees_with_golden_on_every_bit(trained):
    out, summary = trained
    model, cfg = load_model(out / "checkpoint.pt")
    ds = datasets.load("digits")
    enc = datasets.make_encoder(ds, cfg.levels)
    net = to_ir(model, enc)
    saved = Network.load(out / "model.npz")
    for mine, theirs in zip(net.layers + (net.head,), saved.layers + (saved.head,)):
        assert np.array_equal(mine.weights, theirs.weights)
    assert [l.thresholds.tolist() for l in net.layers] == [l.thresholds.tolist() for l in saved.layers]

    check = fold_check(model, saved, ds.x_test)
    assert (check.bits, check.scores, check.predictions) == (0, 0, 0)
    assert check.samples == len(ds.x_test) and check.total_bits == len(ds.x_test) * sum(saved.widths())
    bits, dots, classes = model.trace(torch.from_numpy(ds.x_test.astype(np.int64)))
    g = golden.run(saved, ds.x_test, keep_activations=True)
    for tb, gb in zip(bits, g.activations):
        assert np.array_equal(tb.numpy(), gb)
    assert np.array_equal(classes.numpy(), g.classes)
    assert summary["fold_check"]["bits"] == 0 and summary["fold_check"]["predictions"] == 0
    assert summary["test_accuracy"] == summary["torch_test_accuracy"] == float((g.classes == ds.y_test).mean())


def test_fold_check_detects_a_wrong_threshold(trained):
    out, _ = trained
    model, cfg = load_model(out / "checkpoint.pt")
    ds = datasets.load("digits")
    net = Network.load(out / "model.npz")
    layer = net.layers[0]
    # move the threshold of the neuron nearest to its decision boundary by one
    counts = golden.xnor_popcount(golden.pack(golden.encode(net.encoder, ds.x_test)), golden.pack(layer.weights), layer.n_in)
    j = int(np.argmax((counts == layer.thresholds[None]).sum(0)))
    t = layer.thresholds.copy()
    t[j] += 1
    bad = Network(net.encoder, (XnorLayer(layer.weights, t),) + net.layers[1:], net.head, net.meta)
    check = fold_check(model, bad, ds.x_test)
    assert check.bits > 0 and not check.ok


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"binarization": "ternary"}, "binarization must be one of deterministic, stochastic, not 'ternary'"),
    ({"hidden": ()}, "hidden must list at least one"),
    ({"hidden": (64, 0)}, "hidden widths must be positive integers"),
    ({"hidden": 64}, "hidden must be a sequence"),
    ({"levels": 0}, "levels must be an integer in 1..255"),
    ({"n_classes": 1}, "n_classes must be an integer >= 2"),
    ({"bn_momentum": 0}, "bn_momentum must be in"),
])
def test_bad_bnn_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BnnConfig(**kwargs)


def test_encoder_mismatch_raises():
    ds = datasets.load("digits")
    with pytest.raises(ValueError, match="encoder has 2 levels per feature but config.levels is 1"):
        BinaryMLP(BnnConfig(hidden=(8,)), datasets.make_encoder(ds, 2).thresholds)
    model = BinaryMLP(BnnConfig(hidden=(8,), levels=2), datasets.make_encoder(ds, 2).thresholds)
    other = datasets.make_encoder(ds, 2)
    other = type(other)(thresholds=other.thresholds + 1, input_bits=other.input_bits)
    with pytest.raises(ValueError, match="thresholds differ"):
        to_ir(model, other)
    with pytest.raises(ValueError, match=r"inputs must have shape \(N, 64\)"):
        model.eval().trace(torch.zeros(2, 63, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="eval mode"):
        model.train().trace(torch.zeros(2, 64, dtype=torch.int64))
