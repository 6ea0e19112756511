r"""Image-quality and weight-map metrics for multi-band images, defined once
(``docs/science.md`` §7).

Images are (C, H, W) arrays with data range 1; every metric takes ``(clean, estimate)`` and
computes in float64. Higher is better for MPSNR and MSSIM, lower for SAM and ERGAS.

* MPSNR: mean over bands of :math:`10 \log_{10}(R^2 / \mathrm{MSE}_b)`.
* MSSIM: mean over bands of SSIM (Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 13(4), 2004) with an
  11×11 Gaussian window of σ 1.5, K₁ = 0.01, K₂ = 0.03, population (co)variances; equal to
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)`` per band.
* SAM: mean over pixels of the spectral angle :math:`\arccos(\langle x, \hat x\rangle /
  \max(\lVert x\rVert \lVert \hat x\rVert, \epsilon))` in radians (Kruse et al., Remote Sens.
  Environ. 44, 1993); NaN for a one-band image.
* ERGAS: :math:`100 \sqrt{\tfrac1C \sum_b (\mathrm{RMSE}_b / \mu_b)^2}` with
  :math:`\mu_b` the clean band's mean (Wald, 2000; resolution ratio 1).

Weight maps are scored by :func:`weight_auc` (how well low weights find the corrupted pixels)
and :func:`oracle_correlation` (Pearson correlation with the oracle map).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.stats import rankdata

__all__ = [
    "SAM_EPS",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "all_metrics",
    "band_psnr",
    "ergas",
    "mpsnr",
    "mssim",
    "oracle_correlation",
    "sam",
    "weight_auc",
]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 · 1.5 + 0.5) = 5: the 11×11 window of Wang et al.
SSIM_K1, SSIM_K2 = 0.01, 0.03
# A floor under ‖x‖‖x̂‖, not an offset (which would bias every angle): an all-zero spectrum
# (a dead pixel) gets cosine 0, a finite angle π/2.
SAM_EPS = 1e-12


def _finite(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _cubes(x: np.ndarray, y: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Two finite float64 (C, H, W) arrays of one shape, or a ValueError naming the culprit."""
    shapes = (np.shape(x), np.shape(y))
    if shapes[0] != shapes[1] or len(shapes[0]) != 3:
        raise ValueError(
            f"need {names[0]} and {names[1]} as (C, H, W) arrays of one shape, "
            f"got {shapes[0]} and {shapes[1]}"
        )
    return _finite(x, names[0]), _finite(y, names[1])


def band_psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR of each band, ``10 log10(range² / MSE_b)`` (inf where a band is exact)."""
    x, y = _cubes(x, y, ("x", "y"))
    mse = np.mean((x - y) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def mpsnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """MPSNR: the mean over bands of the per-band PSNR."""
    return float(np.mean(band_psnr(x, y, data_range)))


def band_ssim(clean: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    r"""SSIM of each band (Wang et al. 2004, eq. 13), averaged over the pixels whose 11×11
    window lies inside the image (a border of 5 is cropped, as scikit-image does):

    .. math:: \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
              {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
              \quad C_i = (K_i R)^2,

    local moments from a Gaussian filter (σ 1.5, reflecting boundary) applied per band.
    """
    x, y = _cubes(clean, estimate, ("clean", "estimate"))
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(x.shape[1:]) < 2 * radius + 1:
        raise ValueError(f"SSIM needs H, W ≥ {2 * radius + 1} (its window), got {x.shape}")

    def blur(a: np.ndarray) -> np.ndarray:  # σ 0 on the band axis: each band on its own
        return gaussian_filter(
            a, (0.0, SSIM_SIGMA, SSIM_SIGMA), mode="reflect", truncate=SSIM_TRUNCATE
        )

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s[:, radius:-radius, radius:-radius].mean(axis=(1, 2))


def mssim(clean: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> float:
    """MSSIM: the mean over bands of :func:`band_ssim`."""
    return float(np.mean(band_ssim(clean, estimate, data_range)))


def sam(clean: np.ndarray, estimate: np.ndarray) -> float:
    r"""Mean spectral angle in radians, :math:`\arccos(\mathrm{clip}(\langle x, \hat x\rangle /
    \max(\lVert x\rVert\,\lVert\hat x\rVert, \epsilon), -1, 1))` averaged over the H·W pixels.

    An all-zero spectrum has no direction: its cosine is 0, its angle π/2 (finite). NaN for a
    one-band image, where every spectrum is a scalar and the angle says nothing.
    """
    x, y = _cubes(clean, estimate, ("clean", "estimate"))
    if x.shape[0] < 2:
        return float("nan")
    dot = np.sum(x * y, axis=0)
    norms = np.sqrt(np.sum(x * x, axis=0)) * np.sqrt(np.sum(y * y, axis=0))
    cosine = np.clip(dot / np.maximum(norms, SAM_EPS), -1.0, 1.0)  # rounding can leave |cos| > 1
    return float(np.mean(np.arccos(cosine)))


def ergas(clean: np.ndarray, estimate: np.ndarray) -> float:
    r"""ERGAS :math:`= 100 \sqrt{\tfrac1C \sum_b (\mathrm{RMSE}_b / \mu_b)^2}`, :math:`\mu_b` the
    mean of clean band b. A clean band of mean 0 leaves it undefined: ValueError naming it
    (the data stages skip near-black crops for this reason, ``docs/conventions.md``)."""
    x, y = _cubes(clean, estimate, ("clean", "estimate"))
    mu = x.mean(axis=(1, 2))
    if np.any(mu == 0):
        raise ValueError(f"ERGAS is undefined: clean band(s) {np.flatnonzero(mu == 0)} have mean 0")
    rmse = np.sqrt(np.mean((x - y) ** 2, axis=(1, 2)))
    return float(100.0 * np.sqrt(np.mean((rmse / mu) ** 2)))


def all_metrics(clean: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """``{"mpsnr", "mssim", "sam", "ergas"}`` of one restored image."""
    x, y = _cubes(clean, estimate, ("clean", "estimate"))
    return {"mpsnr": mpsnr(x, y), "mssim": mssim(x, y), "sam": sam(x, y), "ergas": ergas(x, y)}


def _map_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{names[0]} and {names[1]} differ in shape: {np.shape(a)}, {np.shape(b)}")


def weight_auc(w: np.ndarray, mask: np.ndarray) -> float:
    r"""AUC of the score :math:`-w` for detecting the corrupted pixels (``mask`` True).

    The Mann–Whitney form: the probability that a corrupted pixel has a lower weight than a clean
    one, ties counting one half,

    .. math:: \mathrm{AUC} = \frac{\sum_{i \in P} r_i - n_P(n_P + 1)/2}{n_P\, n_N},

    with :math:`r_i` the average ranks of :math:`-w` over all pixels. 1: every corrupted pixel
    weighs less than every clean one; 0.5: no information (e.g. a constant map). NaN when the
    mask is all False or all True (no pairs to compare).
    """
    _map_pair(w, mask, ("w", "mask"))
    w = _finite(w, "w").ravel()
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask must be boolean (or 0/1)")
        m = m.astype(bool)
    m = m.ravel()
    n_pos = int(m.sum())
    n_neg = m.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(-w)  # average ranks: a tie adds ½ to the pair count
    return float((ranks[m].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def oracle_correlation(w: np.ndarray, w_oracle: np.ndarray) -> float:
    """Pearson correlation of a weight map with the oracle map over all pixels; NaN when either
    map is constant (e.g. unweighted, or the oracle of iid noise), where it is undefined."""
    _map_pair(w, w_oracle, ("w", "w_oracle"))
    a = _finite(w, "w").ravel()
    b = _finite(w_oracle, "w_oracle").ravel()
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if denom == 0 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.clip(np.sum(a * b) / denom, -1.0, 1.0))
