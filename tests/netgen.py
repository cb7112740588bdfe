"""Random IR networks for tests."""
import numpy as np

from lutnet.ir import Encoder, GroupSumHead, LutLayer, Network, XnorHead, XnorLayer


def random_lut_layer(rng, n_in, n_out, k=None) -> LutLayer:
    k = k or int(rng.integers(2, 7))
    return LutLayer(rng.integers(0, n_in, size=(n_out, k)), rng.integers(0, 2, size=(n_out, 2 ** k)), n_in)


def random_net(rng: np.random.Generator, *, features=None, input_bits=None, levels=None,
               widths=None, classes=None, lut=False) -> Network:
    """``lut=False``: XNOR layers and an XNOR head; ``lut=True``: each layer XNOR or LUT at random
    and a group-sum head after a LUT layer."""
    input_bits = input_bits or int(rng.integers(1, 9))
    features = features or int(rng.integers(1, 12))
    levels = levels or int(rng.integers(1, 4))
    widths = widths if widths is not None else [int(w) for w in rng.integers(1, 40, size=rng.integers(1, 4))]
    classes = classes or int(rng.integers(2, 11))
    enc = Encoder(np.sort(rng.integers(0, 2 ** input_bits + 1, size=(features, levels)), axis=1), input_bits)
    layers, n_in = [], enc.n_out
    for i, w in enumerate(widths):
        if lut and (rng.random() < 0.6 or i == len(widths) - 1):
            if i == len(widths) - 1:
                w = classes * max(1, w // classes)  # the group-sum head needs a multiple of classes
            layers.append(random_lut_layer(rng, n_in, w))
        else:
            layers.append(XnorLayer(rng.integers(0, 2, size=(w, n_in)), rng.integers(0, n_in + 2, size=w)))
        n_in = layers[-1].n_out
    head = GroupSumHead(n_in, classes) if lut else XnorHead(rng.integers(0, 2, size=(classes, n_in)))
    return Network(enc, layers, head, meta={"dataset": "random"})
