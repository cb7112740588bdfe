import json
import zipfile

import numpy as np
import pytest

from lutnet import golden
from lutnet.ir import Encoder, GroupSumHead, IRError, LutLayer, Network, XnorHead, XnorLayer
from netgen import random_net


def test_roundtrip_keeps_every_array_and_the_function(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(10):
        net = random_net(rng, lut=i % 2 == 1)
        path = net.save(tmp_path / f"n{i}.npz")
        back = Network.load(path)
        assert back.describe() == net.describe() and back.meta == net.meta
        assert np.array_equal(back.encoder.thresholds, net.encoder.thresholds)
        for a, b in zip(back.layers, net.layers):
            assert type(a) is type(b) and a.header() == b.header()
            for key, value in a.arrays().items():
                assert np.array_equal(value, b.arrays()[key])
        x = rng.integers(0, 2 ** net.encoder.input_bits, size=(50, net.encoder.n_features))
        assert np.array_equal(golden.run(back, x).scores, golden.run(net, x).scores)


def test_save_is_deterministic(tmp_path):
    net = random_net(np.random.default_rng(2))
    a = Network.load(net.save(tmp_path / "a.npz"))
    a.save(tmp_path / "b.npz")
    net.save(tmp_path / "c.npz")
    with zipfile.ZipFile(tmp_path / "b.npz") as zb, zipfile.ZipFile(tmp_path / "c.npz") as zc:
        assert {n: zb.read(n) for n in zb.namelist()} == {n: zc.read(n) for n in zc.namelist()}


def _rewrite(src, dst, edit):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    edit(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(dst, **arrays)


def _set_version(h, a):
    h["schema_version"] = 99


def _drop_layer_weights(h, a):
    del a["layer0.weights"]


def _bad_threshold(h, a):
    a["layer0.thresholds"] = a["layer0.thresholds"] + 1000


def _wrong_shape(h, a):
    a["layer0.weights"] = a["layer0.weights"][:-1]


def _unknown_kind(h, a):
    h["layers"][0]["kind"] = "conv"


def _foreign_format(h, a):
    h["format"] = "something-else"


@pytest.mark.parametrize("edit, message", [
    (_set_version, "schema version 99 is not supported"),
    (_drop_layer_weights, "missing entry 'weights'"),
    (_bad_threshold, "xnor thresholds must lie in"),
    (_wrong_shape, "4 weight rows but 5 thresholds"),
    (_unknown_kind, "unknown kind 'conv'"),
    (_foreign_format, "not a lutnet network file"),
])
def test_corrupt_ir_is_named_in_one_line(tmp_path, edit, message):
    net = random_net(np.random.default_rng(3), features=4, widths=[5, 4])
    src = net.save(tmp_path / "good.npz")
    _rewrite(src, tmp_path / "bad.npz", edit)
    with pytest.raises(IRError) as e:
        Network.load(tmp_path / "bad.npz")
    assert message in str(e.value) and str(tmp_path / "bad.npz") in str(e.value)
    assert "\n" not in str(e.value)


def test_truncated_missing_and_foreign_files(tmp_path):
    src = random_net(np.random.default_rng(4)).save(tmp_path / "good.npz")
    data = src.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    for name, message in [("trunc.npz", "not a readable"), ("text.npz", "not a readable"),
                          ("foreign.npz", "no header"), ("absent.npz", "no such file")]:
        with pytest.raises(IRError, match=message):
            Network.load(tmp_path / name)


@pytest.mark.parametrize("build, message", [
    (lambda: XnorLayer(np.ones((2, 3), int), np.array([0, 5])), "thresholds must lie in 0..4"),
    (lambda: XnorLayer(np.full((2, 3), 2), np.array([0, 1])), "must hold bits"),
    (lambda: XnorLayer(np.ones((2, 3), int), np.array([0])), "2 weight rows but 1 thresholds"),
    (lambda: Encoder(np.array([[300]]), 8), "must lie in 0..256"),
    (lambda: XnorHead(np.ones((1, 3), int)), "at least 2 classes"),
    (lambda: LutLayer(np.zeros((2, 7), int), np.zeros((2, 128), int), 8), "K in 1..6"),
    (lambda: LutLayer(np.zeros((2, 3), int), np.zeros((2, 4), int), 8), r"shape \(2, 8\) for K = 3"),
    (lambda: LutLayer(np.full((2, 3), 8), np.zeros((2, 8), int), 8), "indices must lie in 0..7"),
    (lambda: GroupSumHead(25, 10), "divisible"),
    (lambda: Network(Encoder(np.array([[1]]), 1), [XnorLayer(np.ones((2, 3), int), np.array([0, 1]))],
                     XnorHead(np.ones((2, 2), int))), "layer 0 takes 3 inputs but receives 1"),
])
def test_ir_nodes_validate_themselves(build, message):
    with pytest.raises(IRError, match=message):
        build()
