"""Datasets as raw unsigned integer features: the embedded ``digits`` set and IDX files (MNIST).

Every dataset is returned as integers exactly as the hardware sees them (no float scaling):
``digits`` pixels are 0..16 (5 bits), IDX/MNIST pixels are 0..255 (8 bits).
"""
from __future__ import annotations

import gzip
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ir import Encoder

NAMES = ("digits", "mnist", "idx")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A dataset that cannot be found or read; the message is one line."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray   # (N, F) unsigned integers
    y_train: np.ndarray   # (N,) int64 in 0..classes-1
    x_test: np.ndarray
    y_test: np.ndarray
    input_bits: int       # width of one raw feature in hardware
    shape: tuple          # image shape of one sample, e.g. (28, 28)
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def max_value(self) -> int:
        return int(max(self.x_train.max(), self.x_test.max()))


def load(name: str, data_dir=None) -> Dataset:
    """Load ``digits``, ``mnist`` or ``idx`` (any dataset in MNIST's IDX layout in ``data_dir``)."""
    if name == "digits":
        return _digits()
    if name == "mnist":
        return _idx("mnist", _mnist_dir(data_dir))
    if name == "idx":
        if data_dir is None and not os.environ.get("LUTNET_DATA"):
            raise DataError("dataset 'idx' needs --data-dir (or LUTNET_DATA) naming a directory of IDX files")
        return _idx("idx", Path(data_dir or os.environ["LUTNET_DATA"]))
    raise DataError(f"unknown dataset {name!r} (known: {', '.join(NAMES)})")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.uint8)                 # 0..16
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))  # fixed split, the same everywhere
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], input_bits=5, shape=(8, 8), n_classes=10)


def _mnist_dir(data_dir) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    if os.environ.get("LUTNET_DATA"):
        return Path(os.environ["LUTNET_DATA"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lutnet" / "mnist"
    if not all(_find(cache, f) for f in IDX_FILES.values()):
        _download_mnist(cache)
    return cache


def _download_mnist(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES.values():
        if _find(dest, stem):
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            tmp = dest / f".{stem}.gz.part"
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=30) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
                os.replace(tmp, dest / (stem + ".gz"))
                break
            except OSError as e:
                tmp.unlink(missing_ok=True)
                errors.append(f"{mirror}: {e}")
        else:
            raise DataError(f"MNIST is not in {dest} and could not be downloaded ({errors[-1]}); "
                            f"put the four IDX .gz files there or pass --data-dir")


def _find(directory: Path, stem: str):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped), checking the magic number and the size."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: size {len(raw)} bytes does not match its header {dims} ({expected} bytes)")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)


def _idx(name: str, directory: Path) -> Dataset:
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist")
    parts = {}
    for key, stem in IDX_FILES.items():
        path = _find(directory, stem)
        if path is None:
            raise DataError(f"{directory}: missing {stem}[.gz]")
        parts[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = parts[f"x_{split}"], parts[f"y_{split}"]
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{directory}: {split} images {x.shape} and labels {y.shape} do not match")
        if x.dtype != np.uint8:
            raise DataError(f"{directory}: {split} images must be unsigned bytes, not {x.dtype}")
    if parts["x_train"].shape[1:] != parts["x_test"].shape[1:]:
        raise DataError(f"{directory}: train and test images differ in shape")
    y_all = np.concatenate([parts["y_train"], parts["y_test"]]).astype(np.int64)
    if y_all.min() < 0:
        raise DataError(f"{directory}: negative labels")
    shape = parts["x_train"].shape[1:]
    flat = lambda a: a.reshape(len(a), -1)
    return Dataset(name, flat(parts["x_train"]), parts["y_train"].astype(np.int64),
                   flat(parts["x_test"]), parts["y_test"].astype(np.int64),
                   input_bits=8, shape=tuple(shape), n_classes=int(y_all.max()) + 1)


def make_encoder(ds: Dataset, levels: int = 1) -> Encoder:
    """Evenly spaced thresholds over 1..max_value: levels=1 is threshold binarization
    (x >= (max+1)/2), levels > 1 a thermometer code."""
    if not isinstance(levels, int) or not 1 <= levels <= 255:
        raise ValueError(f"encoder levels must be an integer in 1..255, not {levels!r}")
    top = ds.max_value + 1
    t = np.array([max(1, round((i + 1) * top / (levels + 1))) for i in range(levels)], dtype=np.int64)
    return Encoder(thresholds=np.tile(t, (ds.n_features, 1)), input_bits=ds.input_bits)
