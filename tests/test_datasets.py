import gzip

import numpy as np
import pytest

from lutnet import datasets
from lutnet.datasets import DataError


def test_digits_is_embedded_and_integer():
    ds = datasets.load("digits")
    assert ds.x_train.shape[1] == ds.x_test.shape[1] == 64
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert ds.max_value == 16 and ds.input_bits == 5 and ds.n_classes == 10
    assert np.array_equal(datasets.load("digits").y_test, ds.y_test)  # the split is fixed


def test_encoders():
    ds = datasets.load("digits")
    assert datasets.make_encoder(ds, 1).thresholds[0].tolist() == [8]
    assert datasets.make_encoder(ds, 3).thresholds[0].tolist() == [4, 8, 13]
    with pytest.raises(ValueError, match="levels"):
        datasets.make_encoder(ds, 0)


def test_mnist_from_shared(mnist_dir):
    ds = datasets.load("mnist", mnist_dir)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.shape == (28, 28) and ds.n_classes == 10 and ds.input_bits == 8


def _write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_idx_dir(d, n=20):
    rng = np.random.default_rng(0)
    d.mkdir(exist_ok=True)
    for split, count in (("train", n), ("t10k", n // 2)):
        _write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 5, 4)))
        _write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 3, count))
    return d


def test_any_idx_dataset_loads(tmp_path):
    ds = datasets.load("idx", _fake_idx_dir(tmp_path / "data"))
    assert ds.x_train.shape == (20, 20) and ds.shape == (5, 4) and ds.n_classes <= 3


def test_idx_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        datasets.load("mnist", tmp_path / "nowhere")
    d = _fake_idx_dir(tmp_path / "d")
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        datasets.load("idx", d)
    d = _fake_idx_dir(tmp_path / "magic")
    with gzip.open(d / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x12\x34\x08\x03" + bytes(20))
    with pytest.raises(DataError, match="bad magic number"):
        datasets.load("idx", d)
    d = _fake_idx_dir(tmp_path / "size")
    raw = gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes())
    (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-7]))
    with pytest.raises(DataError, match="does not match its header"):
        datasets.load("idx", d)
    with pytest.raises(DataError, match="unknown dataset 'cifar'"):
        datasets.load("cifar")


def test_mnist_download_failure_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv("LUTNET_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))  # closed port: refused at once
    with pytest.raises(DataError, match="could not be downloaded.*put the four IDX .gz files there"):
        datasets.load("mnist")
    assert not any((tmp_path / "lutnet" / "mnist").glob("*.gz"))
