"""The `lutnet` command as a user runs it: bad input gives one line and a non-zero exit."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netgen import random_net

LUTNET = [str(Path(sys.executable).with_name("lutnet"))]


def lutnet(*args, cwd=None, env=None):
    return subprocess.run(LUTNET + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)


def assert_user_error(proc, *needles):
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if "error:" in l]
    assert len(errors) == 1, proc.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def test_missing_data_dir(tmp_path):
    proc = lutnet("train", "--dataset", "mnist", "--data-dir", tmp_path / "nope", "-o", tmp_path / "run")
    assert_user_error(proc, "does not exist", "nope")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_corrupt_idx(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / stem).write_bytes(b"\x01\x02\x03\x04garbage")
    proc = lutnet("train", "--dataset", "idx", "--data-dir", d, "-o", tmp_path / "run")
    assert_user_error(proc, "bad magic number")


@pytest.mark.parametrize("content, needle", [(b"not a zip", "not a readable lutnet network file"), (None, "no such file")])
def test_corrupt_ir(tmp_path, content, needle):
    model = tmp_path / "model.npz"
    if content is not None:
        model.write_bytes(content)
    proc = lutnet("build", model, "-o", tmp_path / "out")
    assert_user_error(proc, needle, str(model))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["sim", "x", "--simulator", "modelsim"], "invalid choice: 'modelsim'"),
    (["train", "-o", "x", "--epochs", "0"], "must be a positive integer"),
    (["train", "-o", "x", "--hidden", "256,,2"], "comma-separated"),
    (["train", "-o", "x", "--dataset", "cifar"], "invalid choice: 'cifar'"),
    (["train", "-o", "x", "--binarization", "fuzzy"], "invalid choice: 'fuzzy'"),
    (["build", "x", "--place", "--hops", "0"], "argument --hops: must be a positive integer, not 0"),
])
def test_unknown_option_values(args, needle):
    assert_user_error(lutnet(*args), needle)


def test_unknown_board(tmp_path):
    model = random_net(np.random.default_rng(0), features=3, widths=[4]).save(tmp_path / "model.npz")
    proc = lutnet("build", model, "--board", "de10", "-o", tmp_path / "out")
    assert_user_error(proc, "unknown board 'de10'", "xc7")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, needle", [
    (["--board", "icebreaker"], "board top's UART cannot serve: add --core-only"),
    (["--core-only", "--stall-free"], "always_ready and stall_free cannot be combined"),
])
def test_always_ready_errors(tmp_path, args, needle):
    model = random_net(np.random.default_rng(0), features=3, widths=[4]).save(tmp_path / "model.npz")
    proc = lutnet("build", model, "--always-ready", *args, "-o", tmp_path / "out")
    assert_user_error(proc, needle)
    assert not (tmp_path / "out").exists()


def test_sim_needs_a_build_dir(tmp_path):
    assert_user_error(lutnet("sim", tmp_path), "not a build directory")


def test_report_without_summaries(tmp_path):
    assert_user_error(lutnet("report", tmp_path), "no summary.json")


def test_resume_with_a_different_config_is_one_line(tmp_path):
    run = tmp_path / "run"
    assert lutnet("train", "-o", run, "--hidden", "8", "--epochs", "1").returncode == 0
    assert_user_error(lutnet("train", "-o", run, "--hidden", "16", "--epochs", "2", "--resume"), "cannot resume", "hidden")
    assert_user_error(lutnet("train", "-o", tmp_path / "none", "--resume"), "no checkpoint")


def test_resume_of_a_finished_run_keeps_the_model(tmp_path):
    """The CLI passes --resume through (exact resume after an interruption: tests/test_train.py)."""
    run = tmp_path / "run"
    assert lutnet("train", "-o", run, "--hidden", "8", "--epochs", "2").returncode == 0
    before = (run / "model.npz").read_bytes()
    proc = lutnet("train", "-o", run, "--hidden", "8", "--epochs", "2", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert (run / "model.npz").read_bytes() == before
