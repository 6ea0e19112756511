"""Shared test inputs: smooth synthetic cubes (spectra mixed by smooth abundances with an edge)."""

import numpy as np


def smooth_cube(
    bands: int = 31,
    size: int = 32,
    seed: int = 0,
    spectra: int = 4,
    lo: float = 0.1,
    hi: float = 0.9,
) -> np.ndarray:
    """``spectra`` smooth spectra mixed by smooth spatial abundances, with one vertical edge,
    rescaled to [lo, hi]; float32 (bands, size, size)."""
    rng = np.random.default_rng(seed)
    lam = np.linspace(0, 1, bands)
    s = np.stack(
        [0.5 + 0.4 * np.sin(2 * np.pi * (f * lam + p)) for f, p in rng.random((spectra, 2))]
    )
    yy, xx = np.mgrid[0:size, 0:size] / size
    maps = np.stack(
        [
            np.cos(2 * np.pi * (a * xx + b * yy)) + 1.0 + (xx > 0.5) * c
            for a, b, c in rng.random((spectra, 3))
        ]
    )
    maps /= maps.sum(0, keepdims=True)
    cube = np.einsum("kc,khw->chw", s, maps)
    low, high = cube.min(), cube.max()
    return (lo + (hi - lo) * (cube - low) / (high - low)).astype(np.float32)
