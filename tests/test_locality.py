"""Local wiring: the shared layout, the masks, and training that keeps every neuron's inputs near it."""
import numpy as np
import pytest
import torch

from lutnet import cli, locality
from lutnet.ir import Network
from lutnet.lutnn import LutBlock, LutConfig
from lutnet.train import ConfigError, TrainConfig, train


def test_grid_fills_the_square_row_major():
    g = locality.grid(28 * 28)
    assert g.shape == (784, 2) and len(np.unique(g, axis=0)) == 784
    assert g.min() > 0 and g.max() < 1
    # pixel (r, c) of a 28 x 28 image sits at row r, column c
    assert np.allclose(g[3 * 28 + 5], [3.5 / 28, 5.5 / 28])
    assert locality.grid(5).tolist() == [[0.25, 1 / 6], [0.25, 0.5], [0.25, 5 / 6], [0.75, 1 / 6], [0.75, 0.5]]


def test_class_groups_are_interleaved_over_the_square():
    pos = locality.layer_positions(40, n_classes=10)                  # 4 members per class
    assert sorted(map(tuple, pos)) == sorted(map(tuple, locality.grid(40)))
    for c in range(10):
        group = pos[c * 4:(c + 1) * 4]
        # every class has members in both halves of the square, not one corner
        assert group[:, 0].min() < 0.5 < group[:, 0].max()
    with pytest.raises(ValueError, match="does not split into 10 classes"):
        locality.layer_positions(45, n_classes=10)


def test_encoder_bits_sit_at_their_feature():
    pos = locality.encoder_positions(4, 3)
    assert np.array_equal(pos[0:3], np.repeat(locality.grid(4)[:1], 3, axis=0))
    assert np.array_equal(pos[9:12], np.repeat(locality.grid(4)[3:], 3, axis=0))


def test_allowed_is_the_window_widened_to_k_inputs():
    out, inp = locality.grid(16), locality.grid(64)
    a = locality.allowed(out, inp, 0.2, k=4)
    d = locality.distances(out, inp)
    assert np.array_equal(a, d <= 0.2 + 1e-9)
    tiny = locality.allowed(out, inp, 0.001, k=4)
    assert (tiny.sum(axis=1) >= 4).all() and (tiny.sum(axis=1) < 9).all()   # the 4 nearest, ties kept
    with pytest.raises(ValueError, match="radius must be positive"):
        locality.allowed(out, inp, 0.0, k=4)


def test_random_wiring_stays_inside_the_mask_and_bad_masks_are_refused():
    g = torch.Generator().manual_seed(3)
    allow = torch.ones(8, 16, dtype=torch.bool)
    allow[:4, 15] = False                                       # neurons 0-3 may not read input 15
    allow[:, :2] = False
    for _ in range(5):                                          # five random wirings
        block = LutBlock(16, 8, 3, LutConfig(hidden=(10,), k=3, n_classes=2), g, allow=allow)
        assert not (block.wiring < 2).any() and not (block.wiring[:4] == 15).any()
    with pytest.raises(ValueError, match="wiring reads inputs that allow forbids"):
        LutBlock(16, 8, 3, LutConfig(hidden=(10,), k=3, n_classes=2), g, wiring=torch.zeros(8, 3, dtype=torch.int64)
                 + torch.arange(3), allow=allow)
    with pytest.raises(ValueError, match="fewer than the 3 inputs"):
        LutBlock(16, 8, 3, LutConfig(hidden=(10,), k=3, n_classes=2), g, allow=torch.zeros(8, 16, dtype=torch.bool))


@pytest.mark.parametrize("wiring", ["random", "learned"])
def test_a_local_digits_net_reads_only_near_bits(tmp_path, wiring):
    s = train(TrainConfig(arch="lut", k=4, hidden=(64, 40), epochs=3, wiring=wiring, local=0.2), tmp_path / "l",
              progress=False)
    net = Network.load(tmp_path / "l" / "model.npz")
    pos = locality.chain(net.encoder.n_features, net.encoder.levels, [l.n_out for l in net.layers], net.n_classes)
    for i, layer in enumerate(net.layers):
        # the 8 x 8 image and the 64-neuron grid share a spacing of 1/8 > 0.2 / 2: no widening needed
        assert locality.spread(layer.inputs, pos[i + 1], pos[i]).max() <= 0.2 + 1e-9
    assert s["test_accuracy"] > 0.4                      # measured 0.52 (random), 0.56 (learned)


@pytest.mark.parametrize("changes, message", [
    ({"arch": "lut", "local": -0.1}, "local must be a positive distance"),
    ({"arch": "lut", "local": 0.1, "wiring": "serial"}, "serial wiring is not local"),
    ({"arch": "bnn", "local": 0.1}, "local applies to LUT layers only"),
])
def test_local_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_cli_rejects_a_bad_radius(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "-o", str(tmp_path / "x"), "--arch", "lut", "--local", "0"])
    assert e.value.code == 2 and "--local" in capsys.readouterr().err


@pytest.mark.parametrize("side", [2, 4, 16])
def test_curve_order_visits_neighbours_in_turn(side):
    """On a square grid the order is a Hilbert curve: every point once, each next to the last."""
    shuffled = locality.grid(side * side)[np.random.default_rng(side).permutation(side * side)]
    order = locality.curve_order(shuffled)
    assert sorted(order.tolist()) == list(range(side * side))
    walk = shuffled[order] * side
    steps = np.abs(np.diff(walk, axis=0)).sum(axis=1)
    assert np.allclose(steps, 1)
