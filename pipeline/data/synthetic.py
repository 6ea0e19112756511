"""Deterministic synthesis of *synthetic* multispectral cubes from RGB photographs.

The cubes made here are test data for restoration methods, not measured spectra: nothing in
them is a physical reflectance of the photographed scene, and results obtained on them must
be labelled as results on synthetic data.

Method (``rgb_to_cube``), for an RGB image with values in [0, 1] and ``C`` bands evenly spaced
over 400–700 nm (default 31 bands, 10 nm steps):

1. Endmembers. ``K >= 6`` (default 8) smooth spectra ``s_k(λ)`` in (0, 1]. Spectrum ``k`` is
   a baseline uniform in [0.01, 0.08] plus a main Gaussian-like bump ``(1 + x²/8)^-4`` (≈
   ``exp(-x²/2)`` near its centre), ``x = (λ - centre) / w``, of width ``w`` uniform in
   [30, 60] nm, centred at a uniform position in its own 1/K-th stratum of 380–720 nm (strata
   assigned in random order), plus 1–2 further components of amplitude uniform in [0.1, 0.4],
   centre uniform in [380, 720] nm and width uniform in [30, 150] nm, each equally likely a
   bump or a rising or falling sigmoid edge ``(1 ± x / sqrt(1 + x²)) / 2`` (pigment bands, a
   vegetation red edge, a blue sky slope). The spectrum is scaled to a peak uniform in
   [0.5, 1]. A draw whose Pearson correlation with an already accepted spectrum is >= 0.9 is
   discarded and spectrum ``k`` drawn again (same stratum) from the same stream.
2. Features, per pixel: R, G, B, chromaticities R/(R+G+B) and G/(R+G+B), and texture of the
   luma Y = 0.2126 R + 0.7152 G + 0.0722 B (of the values as given, no gamma decoding): local
   standard deviation in 5×5 and 11×11 windows, Sobel gradient magnitude of Y and of Y
   box-blurred over 5×5, and a Laplacian-of-Gaussian-like response (discrete Laplacian of Y
   box-blurred over 3×3 and over 7×7). Each of the F = 11 features is standardised over the
   image (zero mean, unit variance; a constant feature becomes 0) and soft-clipped to (-3, 3)
   by ``u / sqrt(1 + (u/3)²)``.
3. Abundances. A seeded random affine map (weight rows uniform in [-1, 1]^F, scaled to unit
   norm; biases uniform in [-0.2, 0.2]) gives K logits per pixel, and a softmax over K with
   temperature T (default 0.2) gives abundances ``a_k(p) >= 0`` with ``Σ_k a_k(p) = 1``. They
   depend non-linearly on colour and on local texture: one colour in two textures gets two
   different spectra.
4. Cube: ``cube[c, p] = (0.05 + 0.95 Y(p)) · Σ_k a_k(p) s_k(λ_c)``. Brightness follows the
   luma, and black pixels keep a little signal. Values lie in (0, 1].

The C × HW unfolding has rank at most K. ``effective_rank`` reports the number of singular
values holding 99.9 % of its energy. It must exceed 3 so that the data do not flatter
low-rank models; on the scikit-image test photographs (128 px and 32×32 crops, seeds 0–5) it
is 4–6, and 5 on every 128 px image with the default seed.

Reproducibility. Aimed at bit-identical output on any IEEE-754 machine: the synthesis uses
only elementwise +, −, ×, ÷ and sqrt (all correctly rounded), ``np.sum``/``np.mean``/``np.max``
along axes, and the box, Sobel and Laplace filters of ``scipy.ndimage`` (fixed-order
arithmetic). It avoids BLAS and ``np.exp``/``np.log``/``np.power``, whose SIMD and libm
implementations differ between CPUs; the softmax evaluates ``exp(x)``, ``x in [-40, 0]``, as
``(1 + x/1024)^1024`` by ten squarings. Randomness comes only from ``Generator.random``
(exact arithmetic on the PCG64 output), ``integers`` and ``permutation`` of a
``numpy.random.Generator`` passed in by the caller or built as
``numpy.random.default_rng(np.random.SeedSequence([seed, stream]))``, with separate streams
for the endmembers and the abundance map.
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
    """Return ``seed`` if it is a Generator, else a fresh Generator for (seed, stream)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(np.random.SeedSequence([int(seed), stream]))


def _uniform(
    rng: np.random.Generator, low: float, high: float, size: int | tuple[int, ...] | None = None
) -> np.ndarray | float:
    """Uniform draw in [low, high) from ``rng.random``.

    The affine step runs as separate numpy operations, so no compiler can fuse it into an FMA
    (``Generator.uniform`` does it in C, where that depends on the platform's build flags).
    """
    return low + (high - low) * rng.random(size)


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


def _random_spectrum(lam: np.ndarray, centre: float, rng: np.random.Generator) -> np.ndarray:
    """One smooth reflectance-like spectrum: baseline, a main bump at ``centre``, 1–2 extras."""
    s = np.full(lam.shape, _uniform(rng, 0.01, 0.08))
    s = s + _bump((lam - centre) / _uniform(rng, 30.0, 60.0))
    for _ in range(int(rng.integers(1, 3))):
        kind, at, width = rng.random(), _uniform(rng, 380.0, 720.0), _uniform(rng, 30.0, 150.0)
        x = (lam - at) / width
        if kind < 0.5:
            s = s + _uniform(rng, 0.1, 0.4) * _bump(x)
        else:  # rising (red edge) or falling (blue slope) edge, equally likely
            s = s + _uniform(rng, 0.1, 0.4) * _edge(x if kind < 0.75 else -x)
    return s * (_uniform(rng, 0.5, 1.0) / np.max(s))


def endmember_spectra(bands: int = 31, n_endmembers: int = 8, seed: Seed = 0) -> np.ndarray:
    """Return ``n_endmembers`` smooth, distinct spectra in (0, 1], shape (K, bands).

    Main bumps sit in distinct strata of 380–720 nm (random order), which keeps the spectra
    far from a low-dimensional family; a draw too correlated with an accepted spectrum is
    redrawn from the same seeded stream, so the result is deterministic.
    """
    if n_endmembers < MIN_ENDMEMBERS:
        raise ValueError(f"n_endmembers must be >= {MIN_ENDMEMBERS}, got {n_endmembers}")
    lam, rng = wavelengths(bands), _rng(seed, _STREAM_SPECTRA)
    stratum = (720.0 - 380.0) / n_endmembers
    accepted: list[np.ndarray] = []
    for k in rng.permutation(n_endmembers):
        for _ in range(_MAX_DRAWS):
            s = _random_spectrum(lam, 380.0 + (k + rng.random()) * stratum, rng)
            if all(abs(_correlation(s, t)) < _MAX_CORRELATION for t in accepted):
                accepted.append(s)
                break
        else:
            raise RuntimeError(f"no {n_endmembers} distinct spectra found with {bands} bands")
    return np.stack(accepted)


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
    rgb: np.ndarray, n_endmembers: int = 8, seed: Seed = 0, temperature: float = 0.2
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
    weights = _uniform(rng, -1.0, 1.0, size=(n_endmembers, len(feats)))
    # Unit-norm rows give every logit a similar spread, so no endmember is starved or dominant.
    weights /= np.sqrt(np.sum(weights * weights, axis=1, keepdims=True))
    bias = _uniform(rng, -0.2, 0.2, size=n_endmembers)
    # Accumulate feature by feature (fixed order, no BLAS) to keep memory at K·H·W.
    logits = np.broadcast_to(bias[:, None, None], (n_endmembers, *rgb.shape[:2])).copy()
    for j, f in enumerate(feats):
        logits += weights[:, j, None, None] * f[None]
    logits /= temperature
    e = _exp_nonpositive(logits - np.max(logits, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)  # the maximum contributes 1, so no 0/0


def rgb_to_cube(
    rgb: np.ndarray,
    bands: int = 31,
    n_endmembers: int = 8,
    seed: Seed = 0,
    temperature: float = 0.2,
) -> np.ndarray:
    """Synthesise a (bands, H, W) float64 cube from an (H, W, 3) RGB image in [0, 1].

    See the module docstring for the method. With an integer seed, spectra and abundances use
    independent streams; with a Generator, spectra are drawn first, then abundance weights.
    """
    rgb = _check_rgb(rgb)
    spectra = endmember_spectra(bands, n_endmembers, seed)
    a = abundances(rgb, n_endmembers, seed, temperature)
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
