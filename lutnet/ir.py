"""The frozen network description (IR): the only contract between torch and hardware.

A network is an input encoder, a list of binary layers and an output head, all in integer or
bit form. It is saved as one ``.npz`` file (loaded with ``allow_pickle=False``) holding a JSON
header (format name, schema version, layer kinds and shapes) and one array per tensor.

Conventions (the golden model, the HDL and the torch export all follow them):

* a bit 1 stands for +1, a bit 0 for -1; sign(0) is +1;
* encoder: ``bit[f * levels + t] = x[f] >= thresholds[f, t]``;
* XNOR layer: ``out[j] = popcount(~(x ^ weights[j])) >= thresholds[j]`` (a threshold of 0 is a
  constant 1, one of ``n_in + 1`` a constant 0);
* XNOR head: ``score[c] = popcount(~(x ^ weights[c]))``, class = argmax, ties to the lowest index;
* LUT layer: ``out[j] = tables[j, sum_k x[inputs[j, k]] << k]`` (input ``k`` is address bit ``k``);
* group-sum head: ``score[c] = popcount(x[c * g:(c + 1) * g])`` with ``g = n_in / classes``.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

FORMAT = "lutnet-ir"
SCHEMA_VERSION = 1


class IRError(ValueError):
    """An IR that cannot be loaded or is inconsistent; the message is one line."""


def _bits(name: str, a, shape_hint: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise IRError(f"{name} must be a 2-D bit matrix {shape_hint}, not shape {a.shape}")
    if a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.integer) or (a.size and (a.min() < 0 or a.max() > 1)):
            raise IRError(f"{name} must hold bits (0/1)")
        a = a.astype(np.bool_)
    a = a.copy()
    a.flags.writeable = False
    return a


def _ints(name: str, a, ndim: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != ndim or not np.issubdtype(a.dtype, np.integer):
        raise IRError(f"{name} must be a {ndim}-D integer array, not {a.dtype} of shape {a.shape}")
    a = a.astype(np.int64)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Encoder:
    """Raw unsigned features of ``input_bits`` bits each -> ``n_features * levels`` bits.

    Threshold binarization is the case ``levels == 1``; a thermometer code has ``levels > 1``.
    """

    kind: ClassVar[str] = "encoder"
    thresholds: np.ndarray  # (F, T) int, each in 0 .. 2**input_bits
    input_bits: int         # width of one raw feature

    def __post_init__(self):
        object.__setattr__(self, "thresholds", _ints("encoder thresholds", self.thresholds, 2))
        if not isinstance(self.input_bits, (int, np.integer)) or not 1 <= self.input_bits <= 16:
            raise IRError(f"encoder input_bits must be an integer in 1..16, not {self.input_bits!r}")
        object.__setattr__(self, "input_bits", int(self.input_bits))
        t = self.thresholds
        if t.shape[0] < 1 or t.shape[1] < 1:
            raise IRError(f"encoder thresholds must be (features, levels) with both >= 1, not {t.shape}")
        if t.size and (t.min() < 0 or t.max() > 2 ** self.input_bits):
            raise IRError(f"encoder thresholds must lie in 0..{2 ** self.input_bits}")

    @property
    def n_features(self) -> int:
        return self.thresholds.shape[0]

    @property
    def levels(self) -> int:
        return self.thresholds.shape[1]

    @property
    def n_out(self) -> int:
        return self.thresholds.size

    def header(self) -> dict:
        return {"input_bits": self.input_bits, "features": self.n_features, "levels": self.levels}

    def arrays(self) -> dict:
        return {"thresholds": self.thresholds}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict) -> "Encoder":
        enc = cls(thresholds=arrays["thresholds"], input_bits=header["input_bits"])
        if (enc.n_features, enc.levels) != (header["features"], header["levels"]):
            raise IRError("encoder thresholds do not match the header's features/levels")
        return enc


@dataclass(frozen=True, eq=False)
class XnorLayer:
    """Binarized dense layer: ``out[j] = popcount(~(x ^ weights[j])) >= thresholds[j]``."""

    kind: ClassVar[str] = "xnor"
    weights: np.ndarray     # (n_out, n_in) bool, 1 = +1
    thresholds: np.ndarray  # (n_out,) int, each in 0 .. n_in + 1

    def __post_init__(self):
        object.__setattr__(self, "weights", _bits("xnor weights", self.weights, "(n_out, n_in)"))
        object.__setattr__(self, "thresholds", _ints("xnor thresholds", self.thresholds, 1))
        if self.thresholds.shape[0] != self.n_out:
            raise IRError(f"xnor layer has {self.n_out} weight rows but {self.thresholds.shape[0]} thresholds")
        if self.n_out < 1 or self.n_in < 1:
            raise IRError(f"xnor layer must have at least one input and one output, not {self.weights.shape}")
        if self.thresholds.min() < 0 or self.thresholds.max() > self.n_in + 1:
            raise IRError(f"xnor thresholds must lie in 0..{self.n_in + 1}")

    @property
    def n_in(self) -> int:
        return self.weights.shape[1]

    @property
    def n_out(self) -> int:
        return self.weights.shape[0]

    def header(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out}

    def arrays(self) -> dict:
        return {"weights": self.weights.astype(np.uint8), "thresholds": self.thresholds}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict) -> "XnorLayer":
        layer = cls(weights=arrays["weights"], thresholds=arrays["thresholds"])
        if (layer.n_in, layer.n_out) != (header["n_in"], header["n_out"]):
            raise IRError("xnor weights do not match the header's n_in/n_out")
        return layer


@dataclass(frozen=True, eq=False)
class XnorHead:
    """Output head: ``score[c] = popcount(~(x ^ weights[c]))``; class = first argmax."""

    kind: ClassVar[str] = "xnor_head"
    weights: np.ndarray  # (classes, n_in) bool

    def __post_init__(self):
        object.__setattr__(self, "weights", _bits("head weights", self.weights, "(classes, n_in)"))
        if self.n_classes < 2 or self.n_in < 1:
            raise IRError(f"head must have at least 2 classes and 1 input, not {self.weights.shape}")

    @property
    def n_in(self) -> int:
        return self.weights.shape[1]

    @property
    def n_classes(self) -> int:
        return self.weights.shape[0]

    @property
    def score_bits(self) -> int:
        """Width of one class score (0 .. n_in)."""
        return int(self.n_in).bit_length()

    def header(self) -> dict:
        return {"n_in": self.n_in, "classes": self.n_classes}

    def arrays(self) -> dict:
        return {"weights": self.weights.astype(np.uint8)}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict) -> "XnorHead":
        head = cls(weights=arrays["weights"])
        if (head.n_in, head.n_classes) != (header["n_in"], header["classes"]):
            raise IRError("head weights do not match the header's n_in/classes")
        return head


MAX_LUT_INPUTS = 6


@dataclass(frozen=True, eq=False)
class LutLayer:
    """LUT-Net layer: neuron ``j`` reads the ``K`` inputs ``inputs[j]`` (input ``k`` is address
    bit ``k``) and outputs ``tables[j, address]``."""

    kind: ClassVar[str] = "lut"
    inputs: np.ndarray  # (n_out, K) int, each in 0 .. n_in - 1
    tables: np.ndarray  # (n_out, 2**K) bool
    n_in: int           # width of the layer's input vector

    def __post_init__(self):
        object.__setattr__(self, "inputs", _ints("lut inputs", self.inputs, 2))
        object.__setattr__(self, "tables", _bits("lut tables", self.tables, "(n_out, 2**K)"))
        if not isinstance(self.n_in, (int, np.integer)) or self.n_in < 1:
            raise IRError(f"lut layer n_in must be a positive integer, not {self.n_in!r}")
        object.__setattr__(self, "n_in", int(self.n_in))
        n_out, k = self.inputs.shape
        if n_out < 1 or not 1 <= k <= MAX_LUT_INPUTS:
            raise IRError(f"lut layer inputs must be (n_out, K) with n_out >= 1 and K in 1..{MAX_LUT_INPUTS}, not {self.inputs.shape}")
        if self.tables.shape != (n_out, 2 ** k):
            raise IRError(f"lut tables must have shape ({n_out}, {2 ** k}) for K = {k}, not {self.tables.shape}")
        if self.inputs.min() < 0 or self.inputs.max() >= self.n_in:
            raise IRError(f"lut input indices must lie in 0..{self.n_in - 1}")

    @property
    def k(self) -> int:
        return self.inputs.shape[1]

    @property
    def n_out(self) -> int:
        return self.inputs.shape[0]

    def header(self) -> dict:
        return {"n_in": self.n_in, "n_out": self.n_out, "k": self.k}

    def arrays(self) -> dict:
        return {"inputs": self.inputs, "tables": self.tables.astype(np.uint8)}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict) -> "LutLayer":
        layer = cls(inputs=arrays["inputs"], tables=arrays["tables"], n_in=header["n_in"])
        if (layer.n_out, layer.k) != (header["n_out"], header["k"]):
            raise IRError("lut arrays do not match the header's n_out/k")
        return layer


@dataclass(frozen=True, eq=False)
class GroupSumHead:
    """Output head: ``score[c] = popcount`` of the ``c``-th of ``classes`` equal contiguous groups
    of input bits; class = first argmax."""

    kind: ClassVar[str] = "group_sum"
    n_in: int
    n_classes: int

    def __post_init__(self):
        for name in ("n_in", "n_classes"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise IRError(f"group-sum head {name} must be an integer, not {getattr(self, name)!r}")
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.n_classes < 2 or self.n_in < self.n_classes or self.n_in % self.n_classes:
            raise IRError(f"group-sum head needs at least 2 classes and an input width divisible by them, "
                          f"not {self.n_in} inputs for {self.n_classes} classes")

    @property
    def group(self) -> int:
        return self.n_in // self.n_classes

    @property
    def score_bits(self) -> int:
        return int(self.group).bit_length()

    def header(self) -> dict:
        return {"n_in": self.n_in, "classes": self.n_classes}

    def arrays(self) -> dict:
        return {}

    @classmethod
    def from_parts(cls, header: dict, arrays: dict) -> "GroupSumHead":
        return cls(n_in=header["n_in"], n_classes=header["classes"])


LAYER_KINDS = {k.kind: k for k in (XnorLayer, LutLayer)}
HEAD_KINDS = {k.kind: k for k in (XnorHead, GroupSumHead)}


@dataclass(frozen=True, eq=False)
class Network:
    """Encoder -> layers -> head. ``meta`` is free JSON (dataset, class names, accuracies)."""

    encoder: Encoder
    layers: tuple
    head: XnorHead | GroupSumHead
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        width = self.encoder.n_out
        for i, layer in enumerate(self.layers):
            if type(layer) not in LAYER_KINDS.values():
                raise IRError(f"layer {i} is a {type(layer).__name__}, not one of {sorted(LAYER_KINDS)}")
            if layer.n_in != width:
                raise IRError(f"layer {i} takes {layer.n_in} inputs but receives {width}")
            width = layer.n_out
        if type(self.head) not in HEAD_KINDS.values():
            raise IRError(f"head is a {type(self.head).__name__}, not one of {sorted(HEAD_KINDS)}")
        if self.head.n_in != width:
            raise IRError(f"head takes {self.head.n_in} inputs but receives {width}")

    @property
    def n_classes(self) -> int:
        return self.head.n_classes

    def widths(self) -> list[int]:
        """Bit widths between stages: encoder output, each layer's output."""
        return [self.encoder.n_out] + [l.n_out for l in self.layers]

    def describe(self) -> str:
        enc = self.encoder
        parts = [f"{enc.n_features}x{enc.input_bits}b->{enc.n_out} (T={enc.levels})"]
        parts += [f"{l.kind}{l.n_out}" for l in self.layers] + [f"head{self.n_classes}"]
        return " -> ".join(parts)

    # -- file format -------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Write atomically (temp file in the same directory, then rename)."""
        path = Path(path)
        header = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "encoder": self.encoder.header(),
            "layers": [{"kind": l.kind, **l.header()} for l in self.layers],
            "head": {"kind": self.head.kind, **self.head.header()},
            "meta": self.meta,
        }
        arrays = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
        arrays.update({f"encoder.{k}": v for k, v in self.encoder.arrays().items()})
        for i, layer in enumerate(self.layers):
            arrays.update({f"layer{i}.{k}": v for k, v in layer.arrays().items()})
        arrays.update({f"head.{k}": v for k, v in self.head.arrays().items()})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path) -> "Network":
        """Load and validate; every failure is an IRError naming the file."""
        path = Path(path)
        try:
            return cls._load(path)
        except IRError as e:
            raise IRError(f"{path}: {e}") from None

    @classmethod
    def _load(cls, path: Path) -> "Network":
        if not path.is_file():
            raise IRError("no such file")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise IRError(f"not a readable lutnet network file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})")
        if "header" not in arrays:
            raise IRError("not a lutnet network file (no header)")
        try:
            header = json.loads(arrays.pop("header").tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise IRError("the header is not valid JSON")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise IRError(f"not a lutnet network file (format {header.get('format') if isinstance(header, dict) else None!r})")
        if header.get("schema_version") != SCHEMA_VERSION:
            raise IRError(f"schema version {header.get('schema_version')!r} is not supported (this lutnet reads {SCHEMA_VERSION})")

        def part(prefix):
            sub = {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + ".")}
            return sub

        try:
            encoder = Encoder.from_parts(header["encoder"], part("encoder"))
            layers = []
            for i, lh in enumerate(header["layers"]):
                kind = LAYER_KINDS.get(lh.get("kind"))
                if kind is None:
                    raise IRError(f"layer {i} has unknown kind {lh.get('kind')!r}")
                layers.append(kind.from_parts(lh, part(f"layer{i}")))
            hh = header["head"]
            head_kind = HEAD_KINDS.get(hh.get("kind"))
            if head_kind is None:
                raise IRError(f"head has unknown kind {hh.get('kind')!r}")
            head = head_kind.from_parts(hh, part("head"))
        except KeyError as e:
            raise IRError(f"missing entry {e.args[0]!r}")
        except (TypeError, AttributeError) as e:
            raise IRError(f"malformed header ({e})")
        return cls(encoder=encoder, layers=layers, head=head, meta=header.get("meta", {}))
