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


def random_layer_stack(rng: np.random.Generator, n_in: int, kinds: list[str], widths: list[int]) -> list:
    """Layers of the given kinds ("xnor" or "lut", K 2..6 at random) and output widths."""
    layers = []
    for kind, w in zip(kinds, widths):
        if kind == "lut":
            layers.append(random_lut_layer(rng, n_in, w))
        else:
            layers.append(XnorLayer(rng.integers(0, 2, size=(w, n_in)), rng.integers(0, n_in + 2, size=w)))
        n_in = w
    return layers


def random_mixed_net(rng: np.random.Generator, *, depth=None, head=None, order=None,
                     max_width: int = 60) -> Network:
    """A random net of ``depth`` (1..4) layers mixing XNOR and LUT layers, widths 1..``max_width``.

    ``order``: "xnor-lut" (XNOR layers, then LUT layers), "lut-xnor", "lut" (LUT only) or "any"
    (each layer either kind); ``head``: "group_sum" or "xnor". A group-sum head gets a last width
    that is a multiple of its classes.
    """
    depth = depth or int(rng.integers(1, 5))
    order = order or str(rng.choice(["xnor-lut", "lut-xnor", "lut", "any"]))
    head = head or str(rng.choice(["group_sum", "xnor"]))
    cut = int(rng.integers(0, depth + 1))
    kinds = {"xnor-lut": ["xnor"] * cut + ["lut"] * (depth - cut),
             "lut-xnor": ["lut"] * cut + ["xnor"] * (depth - cut),
             "lut": ["lut"] * depth,
             "any": [str(k) for k in rng.choice(["xnor", "lut"], size=depth)]}[order]
    input_bits = int(rng.integers(1, 9))
    enc = Encoder(np.sort(rng.integers(0, 2 ** input_bits + 1, size=(int(rng.integers(1, 9)),
                                                                    int(rng.integers(1, 4)))), axis=1),
                  input_bits)
    classes = int(rng.integers(2, 11))
    widths = [int(w) for w in rng.integers(1, max_width + 1, size=depth)]
    if head == "group_sum":
        widths[-1] = classes * max(1, min(widths[-1], max_width) // classes)
    layers = random_layer_stack(rng, enc.n_out, kinds, widths)
    n_in = layers[-1].n_out
    head_ir = GroupSumHead(n_in, classes) if head == "group_sum" else XnorHead(rng.integers(0, 2, size=(classes, n_in)))
    return Network(enc, layers, head_ir, meta={"dataset": "random"})


def random_pipeline_options(rng: np.random.Generator):
    """Random :class:`~lutnet.hdl.options.PipelineOptions` with at least one register."""
    from lutnet.hdl.options import PipelineOptions

    period = lambda: None if rng.random() < 0.4 else int(rng.integers(1, 4))
    flag = lambda: bool(rng.random() < 0.5)
    options = dict(register_encoder=flag(), layers_per_stage=period(), adder_levels_per_stage=period(),
                   register_scores=flag(), argmax_levels_per_stage=period(), register_output=flag(),
                   share_subtrees=flag(), register_comparisons=flag())
    if not (options["register_encoder"] or options["register_scores"] or options["register_output"]
            or options["layers_per_stage"]):
        options["register_output"] = True   # the streaming top needs a register
    return PipelineOptions(**options)
