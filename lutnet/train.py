"""Train a :class:`~lutnet.bnn.BinaryMLP` or a :class:`~lutnet.lutnn.LutMLP`, checkpoint every epoch, fold to the IR and verify it.

``train(config, out_dir)`` writes into ``out_dir``:

* ``checkpoint.pt`` after every epoch (atomically): model, optimizer, scheduler and RNG states,
  the epoch and the config, so ``train(..., resume=True)`` continues to exactly the model an
  uninterrupted run gives;
* ``model.npz``: the folded IR (:meth:`lutnet.ir.Network.save`), checked against torch eval
  bit by bit on the whole test set before it is written;
* ``summary.json``: accuracies (golden model and torch), timings, network, history.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import datasets, golden, locality
from .bnn import BINARIZATIONS, BinaryMLP, BnnConfig
from .fold import fold_check, to_ir
from .ir import LutLayer
from .lutnn import WIRINGS, LutConfig, LutMLP, lut_to_ir

ARCHS = ("bnn", "lut")

CHECKPOINT = "checkpoint.pt"
MODEL = "model.npz"
SUMMARY = "summary.json"
CHECKPOINT_VERSION = 1
#: Fields that may differ between a checkpoint's config and the one given on resume.
RESUME_MAY_CHANGE = ("data_dir", "threads", "device")



class ConfigError(ValueError):
    """A training configuration or checkpoint that cannot be used; the message is one line."""

@dataclass
class TrainConfig:
    dataset: str = "digits"             # datasets.load name: digits, mnist or idx
    arch: str = "bnn"                   # "bnn": binarized XNOR layers; "lut": K-input LUT neurons
    k: int = 6                          # inputs per LUT neuron (arch "lut")
    wiring: str = "random"              # LUT input wiring (arch "lut"): random | serial | learned
    local: float | None = None          # arch "lut": read only bits within this distance (lutnet.locality)
    data_dir: str | None = None         # directory of IDX files (mnist/idx); None = default location
    hidden: tuple = (256, 256)          # widths of the hidden binary layers
    levels: int = 1                     # encoder levels per feature (1 = threshold, > 1 thermometer)
    binarization: str = "deterministic"  # weights in training: "deterministic" or "stochastic" (BinaryConnect)
    epochs: int = 20                    # passes over the training set
    batch_size: int = 128               # samples per step (the last incomplete batch of an epoch is dropped)
    lr: float | None = None             # Adam learning rate; None = 1e-2 for bnn, 1e-1 for lut (measured best on digits)
    weight_lr_scale: float = 1.0        # latent binary weights learn at lr * weight_lr_scale
    lr_final: float = 0.01              # cosine schedule (per step) ends at lr * lr_final
    bn_momentum: float = 0.1            # BatchNorm running-statistics momentum
    init_scale: float = 0.1             # latent weights start uniform in [-init_scale, init_scale]
    seed: int = 0                       # seeds model init, shuffling and stochastic binarization
    threads: int = 1                    # torch.set_num_threads while training; > 1 only on idle cores
                                        # (libgomp spin-waits: 2 threads on 2 busy cores ran 10x slower
                                        # unless OMP_WAIT_POLICY=PASSIVE is set before torch is imported)
    device: str = "auto"                # torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N
    train_limit: int | None = None      # use only the first N training samples (quick runs); None = all
    test_limit: int | None = None       # evaluate only the first N test samples; None = all

    def __post_init__(self):
        if not isinstance(self.dataset, str) or self.dataset not in datasets.NAMES:
            raise ConfigError(f"dataset must be one of {', '.join(datasets.NAMES)}, not {self.dataset!r}")
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        try:
            self.hidden = tuple(self.hidden)
        except TypeError:
            raise ConfigError(f"hidden must be a sequence of layer widths, not {self.hidden!r}") from None
        if not self.hidden:
            raise ConfigError("hidden must list at least one hidden layer width")
        if not all(_is_int(h) and h >= 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive integers, not {self.hidden!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if not _is_int(self.k) or not 2 <= self.k <= 6:
            raise ConfigError(f"k must be an integer in 2..6, not {self.k!r}")
        if self.wiring not in WIRINGS:
            raise ConfigError(f"wiring must be one of {', '.join(WIRINGS)}, not {self.wiring!r}")
        if self.local is not None:
            if self.arch != "lut":
                raise ConfigError("local applies to LUT layers only (arch lut)")
            if locality.radius_error(self.local):
                raise ConfigError(locality.radius_error(self.local))
            if self.wiring == "serial":
                raise ConfigError("serial wiring is not local: use random or learned wiring with local")
        if self.binarization not in BINARIZATIONS:
            raise ConfigError(f"binarization must be one of {', '.join(BINARIZATIONS)}, not {self.binarization!r}")
        for name, low in (("levels", 1), ("epochs", 1), ("batch_size", 2), ("threads", 1), ("seed", 0)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}")
        if self.levels > 255:
            raise ConfigError(f"levels must be an integer in 1..255, not {self.levels!r}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                raise ConfigError(f"{name} must be None or an integer >= 1, not {value!r}")
        if not valid_device(self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {self.device!r}")
        if self.lr is None:
            self.lr = 1e-1 if self.arch == "lut" else 1e-2
        for name in ("lr", "weight_lr_scale"):
            value = getattr(self, name)
            if not _is_real(value) or not 0 < value < math.inf:
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        if not _is_real(self.lr_final) or not 0 <= self.lr_final <= 1:
            raise ConfigError(f"lr_final must be in 0..1 (a fraction of lr), not {self.lr_final!r}")
        if not _is_real(self.bn_momentum) or not 0 < self.bn_momentum <= 1:
            raise ConfigError(f"bn_momentum must be in (0, 1], not {self.bn_momentum!r}")
        if not _is_real(self.init_scale) or not 0 < self.init_scale <= 1:
            raise ConfigError(f"init_scale must be in (0, 1], not {self.init_scale!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    def model(self, thresholds, n_classes: int):
        """A fresh model of this config's architecture."""
        if self.arch == "lut":
            try:
                config = LutConfig(hidden=self.hidden, k=self.k, levels=self.levels, n_classes=n_classes,
                                   bn_momentum=self.bn_momentum, seed=self.seed, wiring=self.wiring,
                                   local=self.local)
                return LutMLP(config, thresholds)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return BinaryMLP(self.bnn_config(n_classes), thresholds)

    def bnn_config(self, n_classes: int) -> BnnConfig:
        return BnnConfig(hidden=self.hidden, levels=self.levels, n_classes=n_classes,
                         binarization=self.binarization, bn_momentum=self.bn_momentum,
                         init_scale=self.init_scale)


def valid_device(name) -> bool:
    """A device name lutnet takes: auto, cpu, cuda or cuda:N."""
    return isinstance(name, str) and (name in ("auto", "cpu", "cuda")
                                      or (name.startswith("cuda:") and name[5:].isdigit()))


def torch_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when torch sees one, else the CPU; a CUDA device that is not
    there is a :class:`ConfigError`. Exports always run on the CPU (numpy reads the tables)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        index = int(name[5:]) if ":" in name else 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} is not available (torch sees {torch.cuda.device_count()} CUDA devices)")
    return torch.device(name)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


# -- pieces -------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file in ``path``'s directory, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def cosine(total_steps: int, final: float):
    def factor(step: int) -> float:
        t = min(step, total_steps) / max(1, total_steps)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))
    return factor


def _build(cfg: TrainConfig, thresholds, n_classes: int, steps_per_epoch: int):
    model = cfg.model(thresholds, n_classes)
    weights = [layer.weight for layer in model.binary_layers()]
    ids = {id(w) for w in weights}
    others = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.Adam([
        {"params": weights, "lr": cfg.lr * cfg.weight_lr_scale},
        {"params": others, "lr": cfg.lr},
    ])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine(cfg.epochs * steps_per_epoch, cfg.lr_final))
    return model, optimizer, scheduler


def train_step(model, optimizer, xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, int]:
    """One optimizer step on cross entropy, then the model's own clipping; returns the batch's
    mean loss and its number of correct predictions."""
    logits = model(xb)
    loss = F.cross_entropy(logits, yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    model.clip_weights_()
    return float(loss.detach()), int((logits.detach().argmax(1) == yb).sum())


def train_epoch(model, optimizer, scheduler, xt: torch.Tensor, yt: torch.Tensor, batch_size: int,
                generator: torch.Generator, device, bar) -> tuple[float, float]:
    """One epoch: the training set in an order drawn from ``generator``, ``len(xt) // batch_size``
    batches through :func:`train_step`, the scheduler stepped after each and ``bar`` (tqdm)
    advanced; returns the epoch's mean loss and training accuracy."""
    model.train()
    order = torch.randperm(len(xt), generator=generator)
    steps = len(xt) // batch_size
    loss_sum, correct, seen = 0.0, 0, 0
    for i in range(steps):
        idx = order[i * batch_size:(i + 1) * batch_size]
        loss, right = train_step(model, optimizer, xt[idx].to(device), yt[idx].to(device))
        scheduler.step()
        loss_sum += loss * len(idx)
        correct += right
        seen += len(idx)
        bar.update(1)
        if i % 10 == 0 or i == steps - 1:
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    return loss_sum / seen, correct / seen


@torch.no_grad()
def torch_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> float:
    model.eval()
    device = model.thresholds.device
    correct = 0
    for s in range(0, len(x), batch):
        correct += int((model.trace(x[s:s + batch].to(device))[2].cpu() == y[s:s + batch]).sum())
    return correct / len(x)


def _load_checkpoint(path: Path, what: str = "cannot resume") -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no checkpoint {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise ConfigError(f"{what}: {path} is not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{what}: {path} is not a lutnet checkpoint of version {CHECKPOINT_VERSION}")
    return ckpt


def _resolve_config(config: TrainConfig | None, saved: dict) -> TrainConfig:
    ckpt_cfg = TrainConfig.from_dict(saved)
    if config is None:
        return ckpt_cfg
    diff = [f.name for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUME_MAY_CHANGE and getattr(config, f.name) != getattr(ckpt_cfg, f.name)]
    if diff:
        name = diff[0]
        raise ConfigError(f"cannot resume: config field {name} is {getattr(config, name)!r} but the checkpoint "
                         f"has {getattr(ckpt_cfg, name)!r} (differing: {', '.join(diff)})")
    return dataclasses.replace(ckpt_cfg, data_dir=config.data_dir, threads=config.threads)


def load_model(path) -> tuple:
    """Rebuild the trained model (in eval mode) and its config from a checkpoint file or run directory."""
    path = Path(path)
    ckpt = _load_checkpoint(path / CHECKPOINT if path.is_dir() else path, "cannot load model")
    cfg = TrainConfig.from_dict(ckpt["config"])
    state = ckpt["model"]
    n_classes = int(state["out.weight"].shape[0]) if cfg.arch == "bnn" else int(ckpt.get("n_classes", 10))
    model = cfg.model(state["thresholds"], n_classes)
    model.load_state_dict(state)
    return model.eval(), cfg


# -- training -----------------------------------------------------------------------------------------
def train(config: TrainConfig | None, out_dir, resume: bool = False, progress: bool = True, *,
          stop_after: int | None = None) -> dict:
    """Train, fold and verify; return the summary (also written to ``out_dir/summary.json``).

    ``resume=True`` continues from ``out_dir/checkpoint.pt``; ``config`` may then be None (use the
    checkpoint's) or must equal the checkpoint's except for ``data_dir`` and ``threads``.
    ``stop_after=k`` stops after epoch ``k`` as if interrupted (checkpoint written, no export) and
    returns ``{"finished": False, "epoch": k}``.
    """
    out_dir = Path(out_dir)
    ckpt = None
    if resume:
        ckpt = _load_checkpoint(out_dir / CHECKPOINT)
        cfg = _resolve_config(config, ckpt["config"])
    else:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, not {type(config).__name__}")
        cfg = config
    if stop_after is not None and (not _is_int(stop_after) or stop_after < 1):
        raise ConfigError(f"stop_after must be None or an integer >= 1, not {stop_after!r}")
    out_dir.mkdir(parents=True, exist_ok=True)

    ds = datasets.load(cfg.dataset, cfg.data_dir)
    encoder = datasets.make_encoder(ds, cfg.levels)
    x_train, y_train = ds.x_train[:cfg.train_limit], ds.y_train[:cfg.train_limit]
    x_test, y_test = ds.x_test[:cfg.test_limit], ds.y_test[:cfg.test_limit]
    if len(x_train) < cfg.batch_size:
        raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(x_train)} training samples")
    steps = len(x_train) // cfg.batch_size
    xt = torch.from_numpy(x_train.astype(np.int64))
    yt = torch.from_numpy(y_train.astype(np.int64))
    xv = torch.from_numpy(x_test.astype(np.int64))
    yv = torch.from_numpy(y_test.astype(np.int64))

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        device = torch_device(cfg.device)
        model, optimizer, scheduler = _build(cfg, encoder.thresholds, ds.n_classes, steps)
        model.to(device)          # before loading the optimizer state: it follows its parameters
        generator = torch.Generator().manual_seed(cfg.seed)
        start, history, seconds = 0, [], 0.0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            torch.set_rng_state(ckpt["torch_rng"])
            generator.set_state(ckpt["generator"])
            start, history, seconds = ckpt["epoch"], list(ckpt["history"]), float(ckpt["seconds"])

        bar = tqdm(total=cfg.epochs * steps, initial=start * steps, disable=not progress,
                   unit="step", dynamic_ncols=True, leave=True)
        try:
            for epoch in range(start, cfg.epochs):
                t0, c0 = time.perf_counter(), time.process_time()
                bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
                loss, train_acc = train_epoch(model, optimizer, scheduler, xt, yt, cfg.batch_size, generator,
                                              device, bar)
                test_acc = torch_accuracy(model, xv, yv)
                dt = time.perf_counter() - t0
                seconds += dt
                history.append({"epoch": epoch + 1, "loss": loss, "train_accuracy": train_acc,
                                "torch_test_accuracy": test_acc, "seconds": dt,
                                "cpu_seconds": time.process_time() - c0})
                bar.set_postfix(loss=f"{loss:.4f}", acc=f"{train_acc:.4f}", test=f"{test_acc:.4f}")
                if progress:
                    bar.write(f"epoch {epoch + 1}/{cfg.epochs}: loss {loss:.4f} "
                              f"train {train_acc:.4f} test {test_acc:.4f} ({dt:.1f}s)")
                state = {
                    "version": CHECKPOINT_VERSION,
                    "epoch": epoch + 1,
                    "n_classes": ds.n_classes,
                    "config": cfg.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "generator": generator.get_state(),
                    "history": history,
                    "seconds": seconds,
                }
                _atomic_write(out_dir / CHECKPOINT, lambda f: torch.save(state, f))
                if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < cfg.epochs:
                    return {"finished": False, "epoch": epoch + 1}
        finally:
            bar.close()

        return _export(model.cpu(), cfg, ds, encoder, x_test, y_test, xv, yv, out_dir, history, seconds,
                       str(device))
    finally:
        torch.set_num_threads(threads_before)


def _export(model, cfg, ds, encoder, x_test, y_test, xv, yv, out_dir: Path, history, seconds, device="cpu") -> dict:
    t0 = time.perf_counter()
    model.eval()
    torch_acc = torch_accuracy(model, xv, yv)
    net = lut_to_ir(model, encoder) if isinstance(model, LutMLP) else to_ir(model, encoder)
    check = fold_check(model, net, x_test)
    if not check.ok:
        raise RuntimeError(f"folded IR disagrees with torch eval on the test set: {check.bits} hidden bits, "
                           f"{check.scores} scores, {check.predictions} predictions differ")
    golden_acc = float((golden.predict(net, x_test) == y_test).mean())
    meta = {
        "dataset": ds.name,
        "data_dir": str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None,
        "n_classes": ds.n_classes,
        "image_shape": list(ds.shape),
        "test_accuracy": golden_acc,
        "test_samples": len(x_test),
        "encoder": "threshold" if cfg.levels == 1 else "thermometer",
        "encoder_levels": cfg.levels,
    }
    net = dataclasses.replace(net, meta=meta)
    net.save(out_dir / MODEL)
    weight_bits = sum(l.tables.size if isinstance(l, LutLayer) else l.weights.size for l in net.layers)
    weight_bits += getattr(net.head, "weights", np.zeros(0)).size
    summary = {
        "command": "train",
        "finished": True,
        "dataset": ds.name,
        "test_accuracy": golden_acc,
        "torch_test_accuracy": torch_acc,
        "test_samples": len(x_test),
        "train_samples": int(min(len(ds.x_train), cfg.train_limit or len(ds.x_train))),
        "epochs": cfg.epochs,
        "device": device,
        "seconds": seconds,
        "seconds_per_epoch": seconds / max(1, len(history)),
        "export_seconds": time.perf_counter() - t0,   # fold + bit-exact check + golden accuracy
        "network": net.describe(),
        "widths": net.widths() + [net.n_classes],
        "params": {
            "weight_bits": int(weight_bits),
            "thresholds": int(sum(l.n_out for l in net.layers if not isinstance(l, LutLayer))),
            "torch_parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "fold_check": dataclasses.asdict(check),
        "config": cfg.to_dict(),
        "history": history,
        "model": MODEL,
    }
    _write_json(out_dir / SUMMARY, summary)
    return summary
