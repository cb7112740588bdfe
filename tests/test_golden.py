import numpy as np
import pytest

from lutnet import golden
from lutnet.ir import Encoder, GroupSumHead, LutLayer, Network, XnorHead, XnorLayer
from netgen import random_net


def reference(net, x):
    """Unpacked, one-neuron-at-a-time restatement of the IR conventions."""
    enc = net.encoder
    h = np.array([[int(v) >= int(t) for v, ts in zip(row, enc.thresholds) for t in ts] for row in x])
    for layer in net.layers:
        if isinstance(layer, LutLayer):
            h = np.array([[t[sum(int(r[i]) << k for k, i in enumerate(ins))] for ins, t in zip(layer.inputs, layer.tables)]
                          for r in h])
        else:
            h = np.array([[np.sum(r == w) >= t for w, t in zip(layer.weights, layer.thresholds)] for r in h])
    if isinstance(net.head, GroupSumHead):
        g = net.head.group
        scores = np.array([[int(np.sum(r[c * g:(c + 1) * g])) for c in range(net.head.n_classes)] for r in h])
    else:
        scores = np.array([[np.sum(r == w) for w in net.head.weights] for r in h])
    classes = np.array([max(range(len(s)), key=lambda c: (s[c], -c)) for s in scores])
    return classes, scores


@pytest.mark.parametrize("lut", [False, True])
def test_packed_model_equals_unpacked_reference(lut):
    rng = np.random.default_rng(0)
    for _ in range(30):
        net = random_net(rng, widths=[int(w) for w in rng.integers(1, 150, size=rng.integers(1, 3))], lut=lut)
        x = rng.integers(0, 2 ** net.encoder.input_bits, size=(40, net.encoder.n_features))
        classes, scores = reference(net, x)
        got = golden.run(net, x)
        assert np.array_equal(got.scores, scores)
        assert np.array_equal(got.classes, classes)


def test_pack_unpack_roundtrip_over_word_boundaries():
    rng = np.random.default_rng(1)
    for n in (1, 63, 64, 65, 128, 200):
        bits = rng.integers(0, 2, size=(7, n)).astype(bool)
        assert np.array_equal(golden.unpack(golden.pack(bits), n), bits)


def test_ties_go_to_the_lowest_class():
    enc = Encoder(np.array([[1]]), 1)
    head = XnorHead(np.array([[0], [1], [1]]))  # input 1 -> scores 0, 1, 1
    net = Network(enc, [], head)
    r = golden.run(net, np.array([[1], [0]]))
    assert r.scores.tolist() == [[0, 1, 1], [1, 0, 0]] and r.classes.tolist() == [1, 0]


def test_constant_thresholds():
    enc = Encoder(np.array([[1], [1]]), 1)
    layer = XnorLayer(np.array([[1, 1], [1, 1]]), np.array([0, 3]))  # always 1, never 1
    net = Network(enc, [layer], XnorHead(np.array([[1, 0], [0, 1]])))
    r = golden.run(net, np.array([[0, 0], [1, 1]]), keep_activations=True)
    assert r.activations[1].tolist() == [[True, False]] * 2


def test_bad_inputs_are_refused():
    net = random_net(np.random.default_rng(2), features=3, input_bits=4)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        golden.run(net, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="0..15"):
        golden.run(net, np.full((2, 3), 16))
