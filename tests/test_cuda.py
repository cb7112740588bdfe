"""Training on a CUDA device: the same code paths, the export on the CPU, bit-exact IRs.

The CUDA tests run where torch sees a GPU (skipped elsewhere, with the reason); the device
checks run everywhere."""
import pytest
import torch

from lutnet.distill import DistillConfig, DistillError, distill
from lutnet.lutnn import lut_lookup
from lutnet.train import ConfigError, TrainConfig, torch_device, train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


def test_device_names_are_checked():
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N, not 'gpu'"):
        TrainConfig(device="gpu")
    with pytest.raises(DistillError, match="device must be auto"):
        DistillConfig(device="tpu")
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.device_count() < 8:
        with pytest.raises(ConfigError, match="device cuda:7 is not available"):
            torch_device("cuda:7")


@cuda
def test_lookup_on_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    ports = torch.randint(0, 2, (64, 30, 6), generator=g).float()
    table, up = torch.randn(30, 64, generator=g), torch.randn(64, 30, generator=g)
    out = []
    for dev in ("cpu", "cuda"):
        p, t = ports.to(dev).detach().requires_grad_(), table.to(dev).detach().requires_grad_()
        (lut_lookup(p, t, extended=True) * up.to(dev)).sum().backward()
        out.append([v.detach().cpu() for v in (lut_lookup(p, t), p.grad, t.grad)])
    for a, b in zip(*out):
        assert torch.allclose(a, b, atol=1e-5)


@cuda
@pytest.mark.parametrize("arch, extra", [("bnn", {}), ("lut", {"hidden": (200, 100), "wiring": "learned"})])
def test_training_on_cuda_exports_a_bit_exact_ir(tmp_path, arch, extra):
    cfg = TrainConfig(arch=arch, levels=2, epochs=5, device="cuda", **({"hidden": (64, 64)} | extra))
    s = train(cfg, tmp_path / arch, progress=False)
    assert s["device"].startswith("cuda")
    assert s["fold_check"]["bits"] == 0 and s["fold_check"]["predictions"] == 0
    assert s["test_accuracy"] == s["torch_test_accuracy"] > 0.5


@cuda
def test_distill_fine_tunes_on_cuda(tmp_path):
    train(TrainConfig(hidden=(64, 64), levels=2, epochs=5, device="cpu"), tmp_path / "t", progress=False)
    s = distill(tmp_path / "t", tmp_path / "s", DistillConfig(group=10, finetune_epochs=3, device="cuda"),
                progress=False, log=lambda *_: None)
    assert s["device"].startswith("cuda") and s["fold_check"]["bits"] == 0
    assert s["test_accuracy"] == s["torch_test_accuracy"] > 0.7
