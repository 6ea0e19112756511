"""Building blocks shared by the noise models (docs/science.md, after QRNN3D's protocol code)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.degrade.draws import Draw

Info = dict[str, Any]


def as_image(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"a noise model needs an image of shape (C, H, W), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("the clean image contains NaN or infinite values")
    return x.astype(np.float64, copy=True)


def band_sigmas(sigma_255: Draw, bands: int, rng: np.random.Generator) -> np.ndarray:
    """One σ per band on the [0, 1] scale, drawn independently per band."""
    return sigma_255.sample(rng, bands) / 255.0


def add_gaussian(x: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x + σ ⊙ n`` with ``n`` standard normal; ``sigma`` broadcasts to ``x``."""
    return x + sigma * rng.standard_normal(x.shape)


def n_some_bands(bands: int, fraction: float) -> int:
    """ "Some bands" = ⌊C · fraction⌋, at least one (10 of 31 for one third)."""
    return max(1, int(np.floor(bands * fraction + 1e-9)))


def choose_bands(bands: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(bands)[: n_some_bands(bands, fraction)])


def n_columns(width: int, fraction: float) -> int:
    return int(np.floor(width * fraction + 1e-9))


def pick_columns(width: int, rng: np.random.Generator, column_fraction: Draw) -> np.ndarray:
    """Distinct columns, ⌊W · f⌋ of them with the fraction f drawn per band."""
    return np.sort(rng.choice(width, n_columns(width, column_fraction.sample(rng)), False))


def add_stripes(
    y: np.ndarray,
    mask: np.ndarray,
    bands: np.ndarray,
    rng: np.random.Generator,
    column_fraction: Draw,
    shift: Draw,
) -> list[dict[str, Any]]:
    """Shift whole columns of the chosen bands by a constant drawn per column."""
    record = []
    for b in bands:
        cols = pick_columns(y.shape[2], rng, column_fraction)
        y[b][:, cols] += shift.sample(rng, len(cols))[None, :]
        mask[b][:, cols] = True
        record.append({"band": int(b), "columns": len(cols)})
    return record


def add_deadlines(
    y: np.ndarray,
    mask: np.ndarray,
    bands: np.ndarray,
    rng: np.random.Generator,
    column_fraction: Draw,
) -> list[dict[str, Any]]:
    """Set whole columns of the chosen bands to zero (dead detector lines)."""
    record = []
    for b in bands:
        cols = pick_columns(y.shape[2], rng, column_fraction)
        y[b][:, cols] = 0.0
        mask[b][:, cols] = True
        record.append({"band": int(b), "columns": len(cols)})
    return record


def add_impulse(
    y: np.ndarray,
    mask: np.ndarray,
    bands: np.ndarray,
    rng: np.random.Generator,
    density: Draw,
    salt_fraction: float,
) -> list[dict[str, Any]]:
    """Salt-and-pepper: each pixel of a chosen band flips with the band's density, to 1 (salt)
    with probability ``salt_fraction``, else to 0 (pepper)."""
    shape = y.shape[1:]
    record = []
    for b in bands:
        d = float(density.sample(rng))
        flipped = rng.random(shape) < d
        salt = rng.random(shape) < salt_fraction
        y[b][flipped & salt] = 1.0
        y[b][flipped & ~salt] = 0.0
        mask[b] |= flipped
        record.append({"band": int(b), "density": d})
    return record


def finish(
    y: np.ndarray, sigma: np.ndarray, mask: np.ndarray, draws: dict
) -> tuple[np.ndarray, Info]:
    return y.astype(np.float32), {
        "sigma": np.broadcast_to(sigma, y.shape).astype(np.float32),
        "mask": np.asarray(mask, dtype=bool),
        "draws": draws,
    }


def check_fraction(value: float, where: str) -> None:
    from pipeline.schema import require

    require(0.0 < value <= 1.0, where, value, "must be a fraction in (0, 1]")
