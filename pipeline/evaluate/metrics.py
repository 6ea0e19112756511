"""Image-quality metrics for multi-band images, defined once (DESIGN §1.1).

Arrays are (C, H, W) with data range 1.
"""

from __future__ import annotations

import numpy as np


def band_psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR of each band, ``10 log10(range² / MSE_b)`` (inf where a band is exact)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"need two (C, H, W) arrays of one shape, got {x.shape} and {y.shape}")
    mse = np.mean((x - y) ** 2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def mpsnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """MPSNR: the mean over bands of the per-band PSNR."""
    return float(np.mean(band_psnr(x, y, data_range)))
