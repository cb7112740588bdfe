"""LUT-Net on the torch side: exact table extraction, training, resume, errors."""
import numpy as np
import pytest
import torch

from lutnet import golden
from lutnet.ir import Network
from lutnet.lutnn import LutBlock, LutConfig
from lutnet.train import ConfigError, TrainConfig, train


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_extracted_tables_equal_torch_eval_on_every_input(k):
    """All 2**n_in inputs of a small layer whose BN has gamma < 0, gamma == 0 and exact ties."""
    g = torch.Generator().manual_seed(k)
    n_in, n_out = 8, 12
    block = LutBlock(n_in, n_out, k, LutConfig(hidden=(10,), k=k, n_classes=2), g)
    with torch.no_grad():
        block.table.copy_(torch.randint(-3, 4, block.table.shape).float())  # integer values: ties are exact
        block.bn.weight.copy_(torch.tensor([1, -1, 0, 0, 2, -0.5, 1, -1, 3, 1, -2, 0.25]))
        block.bn.bias.copy_(torch.tensor([0, 0, 1, -1, 0, 0.5, 0, 0, -1, 0.3, 0, 0]))
        block.bn.running_mean.copy_(torch.tensor([0, 1, 0, 0, -1, 2, 3, -3, 0.5, 0, 1, 0]))  # table values hit the mean
        block.bn.running_var.copy_(torch.rand(n_out, generator=g) + 0.5)
    block.eval()
    layer = block.extract()
    all_inputs = ((torch.arange(2 ** n_in)[:, None] >> torch.arange(n_in)) & 1).float()
    torch_bits = block(all_inputs).numpy().astype(bool)
    golden_bits = golden.unpack(golden.lut_layer(layer, golden.pack(all_inputs.numpy().astype(bool))), n_out)
    assert np.array_equal(torch_bits, golden_bits)
    # the rows with gamma == 0 are constants: beta >= 0 gives all ones, beta < 0 all zeros
    assert layer.tables[2].all() and not layer.tables[3].any()


def test_trained_digits_lut_net_is_bit_exact(tmp_path):
    cfg = TrainConfig(arch="lut", k=6, hidden=(300, 150), levels=2, epochs=15, seed=1)
    s = train(cfg, tmp_path / "run", progress=False)
    net = Network.load(tmp_path / "run" / "model.npz")
    assert [l.kind for l in net.layers] == ["lut", "lut"] and net.head.kind == "group_sum"
    assert s["fold_check"]["bits"] == 0 and s["fold_check"]["predictions"] == 0
    assert s["test_accuracy"] == s["torch_test_accuracy"] >= 0.85   # measured 0.883


def test_lut_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(arch="lut", k=3, hidden=(40, 20), epochs=3, seed=2)
    train(cfg, tmp_path / "a", progress=False)
    assert train(cfg, tmp_path / "b", progress=False, stop_after=1)["finished"] is False
    train(None, tmp_path / "b", resume=True, progress=False)
    na, nb = Network.load(tmp_path / "a" / "model.npz"), Network.load(tmp_path / "b" / "model.npz")
    for la, lb in zip(na.layers, nb.layers):
        assert np.array_equal(la.inputs, lb.inputs) and np.array_equal(la.tables, lb.tables)


@pytest.mark.parametrize("changes, message", [
    ({"k": 7}, "k must be an integer in 2..6"),
    ({"k": 1}, "k must be an integer in 2..6"),
    ({"arch": "cnn"}, "arch must be one of bnn, lut"),
])
def test_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_group_sum_needs_a_multiple_of_the_classes(tmp_path):
    with pytest.raises(ConfigError, match="multiple of the 10 classes"):
        train(TrainConfig(arch="lut", hidden=(40, 25), epochs=1), tmp_path / "r", progress=False)


def test_lookup_gradients_equal_the_multilinear_expansion():
    from lutnet.lutnn import lut_expand, lut_lookup
    g = torch.Generator().manual_seed(0)
    ports = torch.randint(0, 2, (32, 20, 5), generator=g).float()
    table, upstream = torch.randn(20, 32, generator=g), torch.randn(32, 20, generator=g)
    p1, t1 = ports.clone().requires_grad_(), table.clone().requires_grad_()
    ((lut_expand(p1) * t1).sum(-1) * upstream).sum().backward()
    p2, t2 = ports.clone().requires_grad_(), table.clone().requires_grad_()
    (lut_lookup(p2, t2) * upstream).sum().backward()
    assert torch.allclose(p1.grad, p2.grad, atol=1e-5) and torch.allclose(t1.grad, t2.grad, atol=1e-5)


def test_extended_finite_difference_matches_its_definition():
    from lutnet.lutnn import _extended_differences
    k, table = 3, torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    e = _extended_differences(table, k)
    for i in range(k):
        for j in range(2):
            for a in range(8):
                w = [1 / (1 + bin((a ^ b) & ~(1 << i)).count("1")) for b in range(8)]
                d = [float(table[j, b | 1 << i] - table[j, b & ~(1 << i)]) for b in range(8)]
                assert float(e[i, j, a]) == pytest.approx(np.dot(w, d) / sum(w), abs=1e-6)


@pytest.mark.parametrize("local", [False, True])
def test_learned_wiring_moves_and_extraction_follows_it(local):
    """Every neuron should copy input 15; with ``allow`` (local wiring) neurons 0-3 may not read
    it and none may read inputs 0-1, so only the others move there."""
    g = torch.Generator().manual_seed(3)
    allow = None
    if local:
        allow = torch.ones(8, 16, dtype=torch.bool)
        allow[:4, 15] = False
        allow[:, :2] = False
    block = LutBlock(16, 8, 3, LutConfig(hidden=(10,), k=3, n_classes=2), g, learn_wiring=True,
                     wiring_margin=0.01, batchnorm=False, extended_gradient=True, allow=allow)
    start = block.wiring.clone()
    opt = torch.optim.Adam(block.parameters(), lr=0.05)
    x = torch.randint(0, 2, (256, 16), generator=g).float()
    target = x[:, 15:16].expand(-1, 8)
    for _ in range(60):
        block.train()
        loss = ((block.values(x) - (2 * target - 1)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    block.values(x)                                 # the wiring follows the mapping
    movers = block.wiring[4:] if local else block.wiring
    assert not torch.equal(block.wiring, start) and (movers == 15).any(dim=1).float().mean() > 0.5
    if local:
        assert not (block.wiring[:4] == 15).any() and not (block.wiring < 2).any()
    block.eval()
    layer = block.extract()
    assert np.array_equal(layer.inputs, block.wiring.numpy())
    bits = golden.unpack(golden.lut_layer(layer, golden.pack(x.numpy().astype(bool))), 8)
    assert np.array_equal(bits, block(x).numpy().astype(bool))
