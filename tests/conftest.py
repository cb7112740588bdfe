import os
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MNIST_DIR = Path(os.environ.get("LUTNET_MNIST_DIR", SHARED / "datasets" / "mnist"))


@pytest.fixture
def mnist_dir():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found in {MNIST_DIR} (../shared/datasets/mnist)")
    return MNIST_DIR
