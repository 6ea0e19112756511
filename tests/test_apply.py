"""``python -m stages.apply``: reading files, strengths, restoring a small cube end to end with the
handcrafted and a DLW weighting, and errors that name the file or value."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cubes import smooth_cube

from pipeline.evaluate.apply import (
    preview,
    preview_bands,
    read_image,
    scaled_params,
)
from pipeline.evaluate.metrics import mpsnr
from pipeline.models import MODELS, build_model

ROOT = Path(__file__).resolve().parents[1]
# ``stages`` is not an installed package (only ``pipeline`` is): load the script by its path.
_spec = importlib.util.spec_from_file_location("stages_apply", ROOT / "stages" / "apply.py")
stages_apply = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stages_apply)
main = stages_apply.main
OUTPUTS = ("restored.npy", "weights.npy", "noisy.png", "restored.png", "weights.png")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def impulse_noise(clean: np.ndarray, seed: int = 1) -> np.ndarray:
    """Gaussian σ = 0.05 everywhere, salt and pepper (density 0.3) on a third of the bands."""
    rng = np.random.default_rng(seed)
    y = clean + 0.05 * rng.standard_normal(clean.shape)
    c = clean.shape[0]
    for b in rng.choice(c, size=max(1, c // 3), replace=False):
        hit = rng.random(clean.shape[1:]) < 0.3
        y[b][hit] = rng.integers(0, 2, size=int(hit.sum()))
    return y.astype(np.float32)


@pytest.fixture
def case(tmp_path):
    clean = smooth_cube(bands=8, size=24, spectra=3, lo=0.2, hi=0.8)
    noisy = impulse_noise(clean)
    path = tmp_path / "cube.npy"
    np.save(path, noisy)
    return clean, noisy, path


def run(path, out, *extra):
    return main([str(path), "--target", "tv", "--out", str(out), *extra])


def test_handcrafted_tv_restores_an_impulse_cube(case, tmp_path, capsys):
    clean, noisy, path = case
    out = tmp_path / "out"
    summary = run(path, out, "--weighting", "handcrafted")
    for name in (*OUTPUTS, "summary.json"):
        assert (out / name).is_file(), name
    restored = np.load(out / "restored.npy")
    weights = np.load(out / "weights.npy")
    assert restored.shape == weights.shape == noisy.shape
    assert restored.dtype == weights.dtype == np.float32
    assert abs(float(weights.mean()) - 1) < 1e-3 and weights.min() >= 0
    gain = mpsnr(clean, restored) - mpsnr(clean, noisy)
    assert gain > 5.0, gain  # measured: 22.25 → 28.89 dB (+6.64; unweighted TV: +4.10)
    assert summary["converged"] and summary["iterations"] >= 20
    assert json.loads((out / "summary.json").read_text())["iterations"] == summary["iterations"]
    printed = capsys.readouterr().out
    assert f"{summary['iterations']} iterations, converged True" in printed
    from PIL import Image

    with Image.open(out / "restored.png") as im:  # 8 bands: false colour from 3 of them
        assert im.size == (24, 24) and im.mode == "RGB"


def total_variation(x: np.ndarray) -> float:
    return float(np.abs(np.diff(x, axis=1)).sum() + np.abs(np.diff(x, axis=2)).sum())


def test_strength_multiplier_changes_the_solve(case, tmp_path):
    path = case[2]
    tv = {}
    for m in ("0.25", "4"):
        summary = run(path, tmp_path / m, "--weighting", "unweighted", "--strength", m)
        root = math.sqrt(float(m))  # the ADMM penalties follow the strength as √m
        scaled = {"lam": 0.1 * float(m), "mu1": 0.1 * root, "mu2": 0.1 * root, "mu_max": 3 * root}
        assert summary["params"] == {**build_model("tv").params.__dict__, **scaled}
        np.testing.assert_array_equal(np.load(tmp_path / m / "weights.npy"), 1.0)
        tv[m] = total_variation(np.load(tmp_path / m / "restored.npy"))
    # ×16 the TV weight: a much flatter image (measured TV: 556 at ×0.25, 0.003 at ×4)
    assert tv["4"] < 0.5 * tv["0.25"], tv


def test_scaled_params_defaults_and_multipliers():
    for target in MODELS:
        defaults = MODELS[target][1]()
        assert build_model(target, **scaled_params(target, 1.0)).params == defaults
    r2 = math.sqrt(2.0)  # TV's and LRTV's ADMM penalties follow the strength as √m
    assert scaled_params("tv", 2.0) == {"lam": 0.2, "mu1": 0.1 * r2, "mu2": 0.1 * r2,
                                        "mu_max": 3.0 * r2}  # fmt: skip
    assert scaled_params("nn", 2.0) == {"lam_factor": 5.0}  # λ weighs the fidelity: ÷
    lrtv = {"nuclear": 0.08, "tau": 0.08, "mu0": 0.2, "mu_max": 6.0}
    assert scaled_params("lrtv", 4.0) == lrtv
    assert scaled_params("e3dtv", 0.5) == {"tau": 0.02}
    with pytest.raises(ValueError, match="'foo'"):
        scaled_params("foo", 1.0)
    with pytest.raises(ValueError, match="got 0"):
        scaled_params("tv", 0)


def test_dlw_checkpoint_loads_and_runs(case, tmp_path):
    from pipeline.checkpoint import save_checkpoint
    from pipeline.methods.dlw.net import DLWNet

    clean, noisy, path = case
    torch.manual_seed(1)  # seed 0 gives a dead ReLU layer, hence uniform weights
    ckpt = tmp_path / "models" / "best.pt"
    save_checkpoint(ckpt, DLWNet(width=2, depth=1).state_dict())
    out = tmp_path / "dlw"
    summary = run(path, out, "--weighting", "dlw", "--checkpoint", str(ckpt))
    weights = np.load(out / "weights.npy")
    # N·softmax + 1e-4: mean 1 + 1e-4, positive, not constant (a random net is not uniform)
    assert abs(float(weights.mean()) - 1) < 2e-4 and weights.min() > 0
    assert weights.std() > 1e-3
    assert summary["checkpoint"] == str(ckpt) and summary["converged"]
    assert mpsnr(clean, np.load(out / "restored.npy")) > mpsnr(clean, noisy)


def test_errors_name_the_file_or_value(case, tmp_path):
    _, noisy, path = case
    bad = tmp_path / "nan.npy"
    np.save(bad, np.where(noisy > 0.9, np.nan, noisy))
    with pytest.raises(ValueError, match=rf"{bad}: holds \d+ NaN"):
        run(bad, tmp_path / "o1", "--weighting", "handcrafted")
    with pytest.raises(ValueError, match="unknown target 'foo'"):
        main([str(path), "--weighting", "handcrafted", "--target", "foo", "--out", str(tmp_path)])
    missing = tmp_path / "models" / "nope.pt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        run(path, tmp_path / "o2", "--weighting", "dlw", "--checkpoint", str(missing))
    with pytest.raises(ValueError, match="needs --checkpoint"):
        run(path, tmp_path / "o3", "--weighting", "dlw")
    with pytest.raises(ValueError, match=r"only used by a learned weighting \(dlw, guidance\)"):
        run(path, tmp_path / "o3", "--weighting", "handcrafted", "--checkpoint", str(missing))
    with pytest.raises(ValueError, match="unknown weighting 'oracle'"):
        run(path, tmp_path / "o4", "--weighting", "oracle")
    four = tmp_path / "four.npy"
    np.save(four, noisy[None])
    with pytest.raises(ValueError, match=rf"{four}: expected a 2-D or 3-D array"):
        run(four, tmp_path / "o5", "--weighting", "handcrafted")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=rf"{junk}: cannot read image"):
        read_image(junk)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o5").exists()


def test_read_pictures_and_mat(tmp_path):
    import scipy.io
    from PIL import Image

    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full((4, 5), 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    expect = rgb.transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), expect, rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), expect, rtol=1e-6)
    np.testing.assert_allclose(read_image(tmp_path / "grey.png"), expect[:1], rtol=1e-6)
    cube = np.random.default_rng(0).random((4, 5, 6))  # MATLAB (H, W, C)
    scipy.io.savemat(tmp_path / "c.mat", {"rad": cube, "other": np.ones(3)})
    np.testing.assert_allclose(
        read_image(tmp_path / "c.mat", "rad"), cube.transpose(2, 0, 1), rtol=1e-6
    )
    import h5py

    with h5py.File(tmp_path / "v73.mat", "w") as f:  # MATLAB v7.3: HDF5 sees (C, W, H)
        f["rad"] = cube.transpose(2, 1, 0)
    np.testing.assert_allclose(read_image(tmp_path / "v73.mat"), cube.transpose(2, 0, 1), rtol=1e-6)
    with pytest.raises(ValueError, match="choose one with --key"):
        read_image(tmp_path / "c.mat")
    with pytest.raises(ValueError, match=r"c.mat: no array 'cube'"):
        read_image(tmp_path / "c.mat", "cube")


def test_previews():
    assert preview_bands(31) == [24, 15, 5]  # 640, 550, 450 nm on 400–700 nm
    assert preview_bands(3) == [0, 1, 2] and preview_bands(1) == [0]
    img = np.linspace(-0.5, 1.5, 31 * 2 * 2, dtype=np.float32).reshape(31, 2, 2)
    rgb = preview(img)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].max() == 255 and rgb[..., 2].min() == 0  # clipped to [0, 1]
    assert preview(img[:1]).shape == (2, 2)


def test_command_line_error_is_one_line(case, tmp_path):
    """The real ``python -m stages.apply``: a bad file ends it with one line naming the file."""
    _, noisy, _ = case
    bad = tmp_path / "nan.npy"
    np.save(bad, np.full_like(noisy, np.nan))
    cmd = [sys.executable, "-m", "stages.apply", str(bad), "--weighting", "unweighted"]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"[apply] error: {bad}: holds {noisy.size} NaN or infinite values (shape {noisy.shape})"
    )
