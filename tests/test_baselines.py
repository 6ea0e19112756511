"""Peer baselines BM4D and BM3D: gains on smooth images, agreement with the packages called
directly, the pinned profile, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from cubes import smooth_cube

from pipeline.evaluate.baselines import (
    BASELINES,
    bm3d_profile,
    bm4d_profile,
    denoise_baseline,
)
from pipeline.evaluate.metrics import mpsnr

SIGMA = 30 / 255


def noisy_of(clean: np.ndarray, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (clean + SIGMA * rng.standard_normal(clean.shape)).astype(np.float32)


def camera64() -> np.ndarray:
    """scikit-image's camera (512²) as 64×64 means of 8×8 blocks, (1, 64, 64) in [0, 1]."""
    from skimage import data

    cam = data.camera().astype(np.float64) / 255
    return cam.reshape(64, 8, 64, 8).mean(axis=(1, 3))[None].astype(np.float32)


def test_bm4d_denoises_a_smooth_cube():
    clean = smooth_cube()
    noisy = noisy_of(clean)
    before = noisy.copy()
    out = denoise_baseline("bm4d", noisy, SIGMA)
    assert out.shape == noisy.shape and out.dtype == np.float32
    np.testing.assert_array_equal(noisy, before)  # the input is not written into
    gain = mpsnr(clean, out) - mpsnr(clean, noisy)
    # measured: noisy 18.67 dB → BM4D 35.72 dB (+17.05 dB)
    assert gain > 12.0, gain


def test_bm3d_grey_matches_the_package_and_denoises():
    import bm3d

    clean = camera64()
    noisy = noisy_of(clean, seed=2)
    out = denoise_baseline("bm3d", noisy, SIGMA)
    assert out.shape == (1, 64, 64) and out.dtype == np.float32
    # The package called directly with its "np" profile, single-threaded (the pinned profile).
    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    direct = bm3d.bm3d(noisy[0].astype(np.float64), SIGMA, profile=profile)
    np.testing.assert_array_equal(out[0], np.asarray(direct, dtype=np.float32))
    gain = mpsnr(clean, out) - mpsnr(clean, noisy)
    # measured: noisy 18.57 dB → BM3D 26.81 dB (+8.24 dB) on this small, detailed image
    assert gain > 6.0, gain


def test_bm3d_rgb_uses_colour_bm3d():
    import bm3d

    clean = smooth_cube(bands=3, size=32, seed=3)
    noisy = noisy_of(clean, seed=4)
    out = denoise_baseline("bm3d", noisy, SIGMA)
    direct = bm3d.bm3d_rgb(noisy.transpose(1, 2, 0).astype(np.float64), SIGMA, bm3d_profile())
    np.testing.assert_array_equal(out, np.asarray(direct, dtype=np.float32).transpose(2, 0, 1))
    gain = mpsnr(clean, out) - mpsnr(clean, noisy)
    assert gain > 10.0, gain  # measured: 18.67 → 32.41 dB (+13.74 dB)


def test_pinned_profiles():
    import bm3d
    import bm4d

    assert type(bm4d_profile(31)) is bm4d.BM4DProfile and bm4d_profile(31).bs_ht == (4, 4, 4)
    assert type(bm4d_profile(3)) is bm4d.BM4DProfile2D  # as the package's "np" picks below 5
    assert type(bm3d_profile()) is bm3d.BM3DProfile
    assert bm4d_profile(31).num_threads == 1 and bm3d_profile().num_threads == 1
    assert BASELINES == ("bm4d", "bm3d")


@pytest.mark.parametrize(
    ("name", "noisy", "sigma", "match"),
    [
        ("bm5d", np.zeros((1, 16, 16), np.float32), 0.1, "'bm5d'"),
        ("bm4d", np.zeros((16, 16), np.float32), 0.1, r"shape \(16, 16\)"),
        ("bm3d", np.zeros((2, 1, 16, 16), np.float32), 0.1, r"shape \(2, 1, 16, 16\)"),
        ("bm4d", np.full((5, 16, 16), np.nan, np.float32), 0.1, "1280 NaN"),
        ("bm3d", np.zeros((1, 16, 16), np.float32), 0.0, "got 0.0"),
        ("bm3d", np.zeros((1, 16, 16), np.float32), -0.1, "got -0.1"),
        ("bm3d", np.zeros((1, 16, 16), np.float32), float("nan"), "got nan"),
        ("bm3d", np.zeros((1, 16, 16), np.float32), 30.0, "30.0 is above 1"),
        ("bm3d", np.zeros((31, 16, 16), np.float32), 0.1, "got 31 bands"),
        ("bm3d", np.zeros((1, 4, 16), np.float32), 0.1, r"shape \(1, 4, 16\)"),
        ("bm4d", np.zeros((1, 16, 16), np.int64), 0.1, "int64"),
    ],
)
def test_bad_inputs_name_the_value(name, noisy, sigma, match):
    with pytest.raises(ValueError, match=match):
        denoise_baseline(name, noisy, sigma)
