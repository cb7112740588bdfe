"""A hardware probe for the Fmax target: the same LUT-Net with local wiring. Every LUT neuron j
of a layer is rewired to read K distinct inputs drawn (seed 0) from the max(2K, strides * n_in /
n_out) inputs on either side of its own position j * n_in / n_out in the previous layer (two
strides by default); its table is kept, so the network computes
something else (the accuracy is lost) but the hardware has the same size and shape. Build the
result as the original to compare where the clock goes:
    bench/local_wiring.py MODEL OUT [STRIDES]      (default 2)
    lutnet build OUT --board ulx3s-85f --core-only --adder-levels-per-stage 1 \\
        --argmax-levels-per-stage 1 --register-comparisons --stall-free"""
import dataclasses
import sys
from pathlib import Path

import numpy as np

from lutnet.flow import resolve_model
from lutnet.ir import LutLayer, Network

model, out = sys.argv[1:3]
strides = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
net = Network.load(resolve_model(model))
rng = np.random.default_rng(0)
layers = []
for layer in net.layers:
    if not isinstance(layer, LutLayer):
        layers.append(layer)
        continue
    (n_out, k), n_in = layer.inputs.shape, layer.n_in
    half = min(n_in // 2, max(2 * k, int(strides * n_in / n_out)))   # a window of 2 * half inputs
    inputs = np.empty_like(layer.inputs)
    for j in range(n_out):
        centre = (j + 0.5) * n_in / n_out
        lo = int(np.clip(centre - half, 0, n_in - 2 * half))
        inputs[j] = lo + rng.choice(2 * half, size=k, replace=False)
    layers.append(dataclasses.replace(layer, inputs=inputs))
Path(out).mkdir(parents=True, exist_ok=True)
# not the trained network any more: no accuracy to report for it
meta = {k: v for k, v in net.meta.items() if k != "test_accuracy"}
meta["rewired"] = f"LUT inputs within {strides:g} strides of each neuron (bench/local_wiring.py); tables of {model}"
path = dataclasses.replace(net, layers=tuple(layers), meta=meta).save(Path(out) / "model.npz")
print(f"{net.describe()}: LUT inputs rewired within {strides:g} strides -> {path}")
