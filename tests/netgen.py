"""Random IR networks for tests."""
import numpy as np

from lutnet.ir import Encoder, Network, XnorHead, XnorLayer


def random_net(rng: np.random.Generator, *, features=None, input_bits=None, levels=None,
               widths=None, classes=None) -> Network:
    input_bits = input_bits or int(rng.integers(1, 9))
    features = features or int(rng.integers(1, 12))
    levels = levels or int(rng.integers(1, 4))
    widths = widths if widths is not None else [int(w) for w in rng.integers(1, 40, size=rng.integers(1, 4))]
    classes = classes or int(rng.integers(2, 11))
    enc = Encoder(np.sort(rng.integers(0, 2 ** input_bits + 1, size=(features, levels)), axis=1), input_bits)
    layers, n_in = [], enc.n_out
    for w in widths:
        layers.append(XnorLayer(rng.integers(0, 2, size=(w, n_in)), rng.integers(0, n_in + 2, size=w)))
        n_in = w
    return Network(enc, layers, XnorHead(rng.integers(0, 2, size=(classes, n_in))), meta={"dataset": "random"})
