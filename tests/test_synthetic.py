"""Tests for the synthetic RGB → multispectral cube generator (pipeline.data.synthetic)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from pipeline.data.synthetic import (
    abundances,
    effective_rank,
    endmember_spectra,
    rgb_to_cube,
    wavelengths,
)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
# SHA-256 of rgb_to_cube(<integer test pattern>, seed=11); see test_golden_checksum.
GOLDEN_SHA256 = "d509dc08816165e2a75e5767cfba95dec50aacb8500fa522b97c0ec1e6f640f5"


def _photo(name: str, size: int = 128) -> np.ndarray:
    """A bundled skimage photograph in [0, 1], longest side downscaled to ``size`` pixels."""
    img = getattr(skimage.data, name)() / 255.0
    h, w = img.shape[:2]
    scale = size / max(h, w)
    return resize(img, (round(h * scale), round(w * scale)), anti_aliasing=True)


def _centre_crop(img: np.ndarray, size: int = 32) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top : top + size, left : left + size]


@pytest.fixture(scope="module")
def noise_rgb() -> np.ndarray:
    return np.random.default_rng(np.random.SeedSequence([1234])).random((24, 20, 3))


def test_wavelengths_grid() -> None:
    lam = wavelengths()
    assert lam.shape == (31,)
    np.testing.assert_allclose(lam, 400.0 + 10.0 * np.arange(31))
    assert wavelengths(16, 450.0, 600.0)[[0, -1]].tolist() == [450.0, 600.0]


@pytest.mark.parametrize("seed", range(5))
def test_endmembers_positive_smooth_distinct(seed: int) -> None:
    spectra = endmember_spectra(seed=seed)
    assert spectra.shape == (8, 31)
    assert np.all(spectra > 0.0) and np.all(spectra <= 1.0)
    # Smooth: the curvature per 10 nm step is small against each spectrum's own range
    # (white noise would give values near 1).
    curvature = np.abs(np.diff(spectra, n=2, axis=1)).max(axis=1)
    assert np.all(curvature <= 0.15 * np.ptp(spectra, axis=1))
    corr = np.corrcoef(spectra)[np.triu_indices(len(spectra), k=1)]
    assert np.all(np.abs(corr) < 0.98)


def test_endmembers_other_sizes() -> None:
    assert endmember_spectra(bands=61, n_endmembers=6).shape == (6, 61)
    assert endmember_spectra(bands=16, n_endmembers=12).shape == (12, 16)


def test_fewer_than_six_endmembers_rejected(noise_rgb: np.ndarray) -> None:
    with pytest.raises(ValueError, match="n_endmembers"):
        endmember_spectra(n_endmembers=5)
    with pytest.raises(ValueError, match="n_endmembers"):
        abundances(noise_rgb, n_endmembers=5)
    with pytest.raises(ValueError, match="n_endmembers"):
        rgb_to_cube(noise_rgb, n_endmembers=5)


def test_abundances_on_simplex(noise_rgb: np.ndarray) -> None:
    a = abundances(_photo("coffee", 64), n_endmembers=7)
    assert a.shape == (7, 43, 64)
    assert np.all(a >= 0.0)
    np.testing.assert_allclose(a.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.all(a.max(axis=(1, 2)) > 0.5)  # every endmember dominates somewhere
    np.testing.assert_allclose(abundances(noise_rgb).sum(axis=0), 1.0, rtol=0, atol=1e-12)


def test_cube_shape_and_range(noise_rgb: np.ndarray) -> None:
    cube = rgb_to_cube(noise_rgb)
    assert cube.shape == (31, 24, 20) and cube.dtype == np.float64
    assert np.all(cube > 0.0) and np.all(cube <= 1.0)
    assert rgb_to_cube(noise_rgb, bands=16).shape == (16, 24, 20)
    # Black keeps 5 % brightness, so the cube stays strictly positive.
    assert np.all(rgb_to_cube(np.zeros((4, 4, 3))) > 0.0)


def test_deterministic_and_seed_dependent(noise_rgb: np.ndarray) -> None:
    first, second = rgb_to_cube(noise_rgb, seed=3), rgb_to_cube(noise_rgb, seed=3)
    assert first.tobytes() == second.tobytes()
    assert not np.allclose(first, rgb_to_cube(noise_rgb, seed=4))
    assert not np.allclose(endmember_spectra(seed=3), endmember_spectra(seed=4))

    def from_generator() -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([7]))
        return rgb_to_cube(noise_rgb, seed=rng)

    assert from_generator().tobytes() == from_generator().tobytes()


def test_golden_checksum() -> None:
    """Bit-identical output across machines: this digest must not change from one to the next.

    The input is built from integers only. If the method is changed on purpose, update the
    digest in the same commit and say so.
    """
    i, j, c = np.meshgrid(np.arange(16), np.arange(12), np.arange(3), indexing="ij")
    rgb = ((7 * i + 13 * j * j + 29 * c + i * j) % 256) / 255.0
    digest = hashlib.sha256(rgb_to_cube(rgb, seed=11).tobytes()).hexdigest()
    assert digest == GOLDEN_SHA256


@pytest.mark.parametrize("name", PHOTOS)
def test_effective_rank_of_photographs_exceeds_three(name: str) -> None:
    img = _photo(name)
    full = effective_rank(rgb_to_cube(img))
    crop = effective_rank(rgb_to_cube(_centre_crop(img)))
    print(f"{name} {img.shape[:2]}: effective rank (99.9 %) full={full} crop32={crop}")
    assert full > 3 and crop > 3


def test_effective_rank_of_known_cubes() -> None:
    rng = np.random.default_rng(np.random.SeedSequence([5]))
    u, v = rng.random((2, 31)), rng.random((2, 10 * 12))
    rank2 = (u[0, :, None] * v[0] + u[1, :, None] * v[1]).reshape(31, 10, 12)
    assert effective_rank(rank2) == 2
    assert effective_rank(rank2[:1] * rank2[:, :1, :1]) == 1  # outer product: rank 1
    assert effective_rank(np.zeros((5, 3, 3))) == 0
    # Orthogonal rows with energies 0.9, 0.09, 0.009, 0.001: the threshold decides.
    weights = np.sqrt([0.9, 0.09, 0.009, 0.001])
    diag = (np.eye(4) * weights[:, None]).reshape(4, 2, 2)
    assert [effective_rank(diag, e) for e in (0.85, 0.95, 0.995, 0.9995, 1.0)] == [1, 2, 3, 4, 4]


def _histogram(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint colour histogram: distinct RGB triplets and their pixel counts."""
    return np.unique(img.reshape(-1, 3), axis=0, return_counts=True)


def test_texture_changes_abundances() -> None:
    """Same colour histogram, different texture ⇒ different abundances for the same colour."""
    red, blue = np.array([0.8, 0.3, 0.2]), np.array([0.2, 0.4, 0.7])
    rows, cols = np.indices((32, 32))
    halves = np.where((cols < 16)[..., None], red, blue)
    checker = np.where(((rows + cols) % 2 == 0)[..., None], red, blue)
    for a, b in zip(_histogram(halves), _histogram(checker), strict=True):
        assert np.array_equal(a, b)
    # Pixel (16, 8) is red in both images: flat surroundings versus a 1-pixel checkerboard.
    a_flat, a_checker = abundances(halves)[:, 16, 8], abundances(checker)[:, 16, 8]
    assert np.abs(a_flat - a_checker).max() > 0.05

    # Shuffling pixels keeps the histogram but destroys the texture of a photograph.
    img = _photo("astronaut", 48)
    perm = np.random.default_rng(np.random.SeedSequence([2])).permutation(48 * 48)
    shuffled = img.reshape(-1, 3)[perm].reshape(img.shape)
    for a, b in zip(_histogram(img), _histogram(shuffled), strict=True):
        assert np.array_equal(a, b)
    expected = abundances(img).reshape(8, -1)[:, perm]
    got = abundances(shuffled).reshape(8, -1)
    assert np.abs(expected - got).max(axis=0).mean() > 0.05


def test_colour_changes_abundances() -> None:
    img = _photo("chelsea", 48)
    a, a_swapped = abundances(img), abundances(img[..., ::-1])
    assert np.abs(a - a_swapped).max(axis=0).mean() > 0.05


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 4), (3, 8, 8), (0, 8, 3), (2, 8, 8, 3)])
def test_bad_shape_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(f"got {shape}")):
        rgb_to_cube(np.zeros(shape))


def test_nan_and_out_of_range_rejected() -> None:
    rgb = np.full((6, 6, 3), 0.5)
    rgb[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rgb_to_cube(rgb)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_to_cube(np.full((6, 6, 3), 255.0))
    with pytest.raises(ValueError, match="shape"):
        effective_rank(np.zeros((4, 4)))
