"""Deterministic synthesis of *synthetic* multispectral cubes from RGB photographs.

The cubes made here are test data for restoration methods, not measured spectra: nothing in
them is a physical reflectance of the photographed scene. Any result obtained on them must be
labelled as obtained on synthetic data.

Method (``rgb_to_cube``), for an RGB image with values in [0, 1] and ``C`` bands on a uniform
grid over 400–700 nm (31 bands = 10 nm steps by default):

1. Endmembers. ``K >= 6`` (default 8) smooth spectra ``s_k(λ)`` in (0, 1]. Each is a baseline
   in [0.02, 0.2] plus 2–3 non-negative components with centres uniform in [380, 720] nm and
   widths ``w`` uniform in [30, 150] nm: Gaussian-like bumps ``(1 + x²/8)^-4`` or rising or
   falling sigmoid edges ``(1 ± x / sqrt(1 + x²)) / 2``, with ``x = (λ - centre) / w``
   (pigment bands, a red edge, a blue sky slope). Each spectrum is scaled to a peak uniform in
   [0.5, 1]. A candidate whose Pearson correlation with an accepted spectrum is >= 0.9 is
   rejected and the next one drawn, so the endmembers are clearly distinct.
2. Features. Per pixel: R, G, B, chromaticities r = R/(R+G+B), g = G/(R+G+B), and texture of
   the luma Y = 0.2126 R + 0.7152 G + 0.0722 B (of the values as given, no gamma decoding):
   local standard deviation in 5×5 and 11×11 windows, Sobel gradient magnitude of Y and of Y
   box-blurred over 5×5, and a Laplacian-of-Gaussian-like response (discrete Laplacian of Y
   box-blurred over 3×3 and 7×7). Each feature is standardised over the image (zero mean,
   unit variance; a constant feature becomes 0) and soft-clipped to (-3, 3) by
   ``u / sqrt(1 + (u/3)²)``.
3. Abundances. A seeded random affine map (weights uniform in ±sqrt(3/F) for F features,
   biases uniform in ±0.5) gives K logits per pixel; a softmax over K with temperature ``T``
   (default 0.35) gives abundances ``a_k(p) >= 0`` with ``Σ_k a_k(p) = 1``. They depend
   non-linearly on colour and on local texture, so equal colours in different textures get
   different spectra.
4. Cube. ``cube[c, p] = (0.05 + 0.95 Y(p)) · Σ_k a_k(p) s_k(λ_c)``: the brightness follows the
   luma, and black pixels keep a little signal. Values lie in (0, 1].

The cube has rank at most K in the C × HW unfolding; ``effective_rank`` reports how many
singular values hold 99.9 % of its energy, so that the data visibly does not favour
low-rank (rank <= 3) models.

Bit-reproducibility across machines. The synthesis uses only +, −, ×, ÷ and sqrt (correctly
rounded under IEEE 754), ``np.sum``/``np.max`` along axes and the integer-weight filters of
``scipy.ndimage``; no BLAS, and no ``np.exp``/``np.log``/``np.power`` whose SIMD or libm
implementations differ between CPUs. The softmax therefore evaluates ``exp(x)`` for
``x in [-40, 0]`` as ``(1 + x/1024)^1024`` by ten squarings. Randomness comes only from
uniform draws of a ``numpy.random.Generator`` (``Generator.random`` is exact arithmetic on the
PCG64 output), built from ``numpy.random.default_rng(np.random.SeedSequence([seed, stream]))``
with a separate stream for endmembers and abundances, or passed in by the caller.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["abundances", "effective_rank", "endmember_spectra", "rgb_to_cube", "wavelengths"]

MIN_ENDMEMBERS = 6
_MAX_CORRELATION = 0.9  # stricter than the 0.98 required, so spectra stay visibly distinct
_MAX_DRAWS = 10_000
_STREAM_SPECTRA = 0x5EC7
_STREAM_ABUNDANCE = 0xAB0D
_LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights

Seed = int | np.random.Generator


def _rng(seed: Seed, stream: int) -> np.random.Generator:
    """Return ``seed`` if it is a Generator, else a Generator for (seed, stream)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def wavelengths(bands: int = 31, start: float = 400.0, stop: float = 700.0) -> np.ndarray:
    """Return ``bands`` band centres in nm, evenly spaced from ``start`` to ``stop``."""
    if bands < 2:
        raise ValueError(f"bands must be >= 2, got {bands}")
    return np.linspace(start, stop, bands)


def _bump(x: np.ndarray) -> np.ndarray:
    """Gaussian-like bump (≈ exp(-x²/2) near 0) using arithmetic only."""
    q = 1.0 + x * x / 8.0
    q2 = q * q
    return 1.0 / (q2 * q2)


def _edge(x: np.ndarray) -> np.ndarray:
    """Smooth step from 0 to 1 (algebraic sigmoid), arithmetic and sqrt only."""
    return 0.5 * (1.0 + x / np.sqrt(1.0 + x * x))


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays without BLAS."""
    da, db = a - np.mean(a), b - np.mean(b)
    return float(np.sum(da * db) / np.sqrt(np.sum(da * da) * np.sum(db * db)))


def _random_spectrum(lam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one smooth reflectance-like spectrum with peak in [0.5, 1]."""
    s = np.full(lam.shape, rng.uniform(0.02, 0.2))
    for _ in range(int(rng.integers(2, 4))):
        kind, centre, width = rng.random(), rng.uniform(380.0, 720.0), rng.uniform(30.0, 150.0)
        amplitude = rng.uniform(0.3, 1.0)
        x = (lam - centre) / width
        if kind < 0.5:
            s = s + amplitude * _bump(x)
        else:  # rising (red edge) or falling (blue slope) edge, equally likely
            s = s + amplitude * _edge(x if kind < 0.75 else -x)
    return s * (rng.uniform(0.5, 1.0) / np.max(s))


def endmember_spectra(bands: int = 31, n_endmembers: int = 8, seed: Seed = 0) -> np.ndarray:
    """Return ``n_endmembers`` smooth, distinct spectra in (0, 1], shape (K, bands).

    Candidates are drawn in sequence from one seeded stream and a candidate too correlated
    with an accepted spectrum is skipped, so the result is deterministic.
    """
    if n_endmembers < MIN_ENDMEMBERS:
        raise ValueError(f"n_endmembers must be >= {MIN_ENDMEMBERS}, got {n_endmembers}")
    lam, rng = wavelengths(bands), _rng(seed, _STREAM_SPECTRA)
    accepted: list[np.ndarray] = []
    for _ in range(_MAX_DRAWS):
        s = _random_spectrum(lam, rng)
        if all(abs(_correlation(s, t)) < _MAX_CORRELATION for t in accepted):
            accepted.append(s)
            if len(accepted) == n_endmembers:
                return np.stack(accepted)
    raise RuntimeError(f"could not draw {n_endmembers} distinct spectra with {bands} bands")


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """Validate an (H, W, 3) image in [0, 1] and return it as float64."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    rgb = rgb.astype(np.float64)
    if not np.all(np.isfinite(rgb)):
        raise ValueError("rgb contains NaN or infinite values")
    if rgb.min() < 0.0 or rgb.max() > 1.0:
        raise ValueError(f"rgb values must lie in [0, 1], got [{rgb.min()}, {rgb.max()}]")
    return rgb


def _luma(rgb: np.ndarray) -> np.ndarray:
    return _LUMA[0] * rgb[..., 0] + _LUMA[1] * rgb[..., 1] + _LUMA[2] * rgb[..., 2]


def _local_std(y: np.ndarray, size: int) -> np.ndarray:
    mean = ndimage.uniform_filter(y, size, mode="reflect")
    mean_sq = ndimage.uniform_filter(y * y, size, mode="reflect")
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))  # clamp rounding below zero


def _sobel_magnitude(y: np.ndarray) -> np.ndarray:
    gx, gy = ndimage.sobel(y, axis=1, mode="reflect"), ndimage.sobel(y, axis=0, mode="reflect")
    return np.sqrt(gx * gx + gy * gy)


def _standardise(f: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the image, then soft-clip to (-3, 3)."""
    centred = f - np.mean(f)
    std = np.sqrt(np.mean(centred * centred))
    if std <= 1e-12 * (1.0 + np.max(np.abs(f))):  # constant feature carries no information
        return np.zeros_like(f)
    u = centred / std
    return u / np.sqrt(1.0 + (u / 3.0) * (u / 3.0))  # bounded logits keep the softmax stable


def _features(rgb: np.ndarray) -> list[np.ndarray]:
    """Standardised per-pixel colour and texture features, each (H, W)."""
    total = np.sum(rgb, axis=2) + 1e-6  # black pixels: chromaticity ≈ 0 instead of 0/0
    y = _luma(rgb)
    raw = [
        rgb[..., 0],
        rgb[..., 1],
        rgb[..., 2],
        rgb[..., 0] / total,
        rgb[..., 1] / total,
        _local_std(y, 5),
        _local_std(y, 11),
        _sobel_magnitude(y),
        _sobel_magnitude(ndimage.uniform_filter(y, 5, mode="reflect")),
        ndimage.laplace(ndimage.uniform_filter(y, 3, mode="reflect"), mode="reflect"),
        ndimage.laplace(ndimage.uniform_filter(y, 7, mode="reflect"), mode="reflect"),
    ]
    return [_standardise(f) for f in raw]


def _exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """exp(x) for x <= 0 as (1 + x/1024)^1024: ten squarings, identical on every IEEE CPU."""
    e = 1.0 + np.maximum(x, -40.0) / 1024.0
    for _ in range(10):
        e = e * e
    return e


def abundances(
    rgb: np.ndarray, n_endmembers: int = 8, seed: Seed = 0, temperature: float = 0.35
) -> np.ndarray:
    """Per-pixel endmember abundances, shape (K, H, W), non-negative and summing to 1.

    A seeded random affine map of the colour and texture features gives K logits per pixel;
    a softmax over K with the given temperature turns them into abundances.
    """
    rgb = _check_rgb(rgb)
    if n_endmembers < MIN_ENDMEMBERS:
        raise ValueError(f"n_endmembers must be >= {MIN_ENDMEMBERS}, got {n_endmembers}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    feats = _features(rgb)
    rng = _rng(seed, _STREAM_ABUNDANCE)
    scale = np.sqrt(3.0 / len(feats))  # unit-variance logits for independent unit features
    weights = rng.uniform(-scale, scale, size=(n_endmembers, len(feats)))
    bias = rng.uniform(-0.5, 0.5, size=n_endmembers)
    # Accumulate feature by feature (fixed order, no BLAS) to keep memory at K·H·W.
    logits = np.broadcast_to(bias[:, None, None], (n_endmembers, *rgb.shape[:2])).copy()
    for j, f in enumerate(feats):
        logits += weights[:, j, None, None] * f[None]
    logits /= temperature
    e = _exp_nonpositive(logits - np.max(logits, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)  # the maximum contributes 1, so no 0/0


def rgb_to_cube(
    rgb: np.ndarray, bands: int = 31, n_endmembers: int = 8, seed: Seed = 0
) -> np.ndarray:
    """Synthesise a (bands, H, W) float64 cube from an (H, W, 3) RGB image in [0, 1].

    See the module docstring for the method. With an integer seed, spectra and abundances use
    independent streams; with a Generator, spectra are drawn first, then abundance weights.
    """
    rgb = _check_rgb(rgb)
    spectra = endmember_spectra(bands, n_endmembers, seed)
    a = abundances(rgb, n_endmembers, seed)
    mixed = np.zeros((bands, *rgb.shape[:2]))
    for k in range(n_endmembers):  # fixed summation order, no BLAS
        mixed += spectra[k, :, None, None] * a[k][None]
    return (0.05 + 0.95 * _luma(rgb))[None] * mixed


def effective_rank(cube: np.ndarray, energy: float = 0.999) -> int:
    """Smallest r whose top-r squared singular values of the C × HW unfolding hold ``energy``.

    Uses ``np.linalg.svd``: this is a report on the data, not part of the synthesis. An
    all-zero cube has rank 0.
    """
    cube = np.asarray(cube, dtype=np.float64)
    if cube.ndim != 3:
        raise ValueError(f"cube must have shape (C, H, W), got {cube.shape}")
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"energy must lie in (0, 1], got {energy}")
    sq = np.linalg.svd(cube.reshape(cube.shape[0], -1), compute_uv=False) ** 2
    cumulative = np.cumsum(sq)
    if cumulative[-1] == 0.0:
        return 0
    r = int(np.searchsorted(cumulative, energy * cumulative[-1], side="left")) + 1
    return min(r, sq.size)
