"""Golden-model throughput: 10,000 MNIST test images through a 784-512-512-10 binarized net.

    .venv/bin/python bench/golden_speed.py [--model runs/mnist/model.npz] [--repeat 7]

Without --model the weights and thresholds are random (the cost does not depend on them).
Pinned to one core (OMP/OPENBLAS threads = 1; numpy's bitwise ops are single-threaded anyway).
Prints the median of --repeat runs.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lutnet import datasets, golden
from lutnet.ir import Encoder, Network, XnorHead, XnorLayer


def random_mnist_net(rng) -> Network:
    enc = Encoder(np.full((784, 1), 128), 8)
    l1 = XnorLayer(rng.integers(0, 2, (512, 784)), rng.integers(0, 786, 512))
    l2 = XnorLayer(rng.integers(0, 2, (512, 512)), rng.integers(0, 514, 512))
    return Network(enc, [l1, l2], XnorHead(rng.integers(0, 2, (10, 512))))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/datasets/mnist"))
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args()
    net = Network.load(a.model) if a.model else random_mnist_net(np.random.default_rng(0))
    x = datasets.load("mnist", a.data_dir).x_test
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        classes = golden.predict(net, x)
        times.append(time.perf_counter() - t0)
    print(f"golden model: {len(x)} vectors through {net.describe()}: "
          f"median {statistics.median(times):.3f} s over {a.repeat} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}); {len(classes)} classes")


if __name__ == "__main__":
    sys.exit(main())
