"""Gaussian noise cases 1–3 of docs/science.md: ``iid``, ``blind``, ``noniid``, ``spatial``.

σ values are given on the 0–255 scale (``sigma_255``), as in the papers' tables; images and the
returned σ maps are on the [0, 1] scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.degrade.draws import Draw
from pipeline.degrade.noise.common import Info, add_gaussian, as_image, band_sigmas, finish
from pipeline.schema import parse_dataclass


@dataclass(frozen=True)
class IidParams:
    """``y = x + σ n``, one σ for the whole image (drawn once per image if random)."""

    sigma_255: Draw = field(default=Draw.from_param(50))

    def check(self, where: str) -> None:
        self.sigma_255.check_range(f"{where}.sigma_255", 0.0, 255.0)


@dataclass(frozen=True)
class BlindParams(IidParams):
    """``iid`` with σ drawn per image from U[10, 70]/255 (a blind-denoising test)."""

    sigma_255: Draw = field(default=Draw.from_param({"uniform": [10, 70]}))


@dataclass(frozen=True)
class NoniidParams(IidParams):
    """Each band its own σ, drawn independently (protocol: from {10, 30, 50, 70}/255)."""

    sigma_255: Draw = field(default=Draw.from_param([10, 30, 50, 70]))


@dataclass(frozen=True)
class SpatialParams:
    """Per band a smooth Gaussian bump of random centre and width, rescaled to
    [``sigma_range_255``] (HWnet's and DLW's spatially varying noise)."""

    sigma_range_255: tuple[float, ...] = (10.0, 70.0)
    bump_width: Draw = field(default=Draw.from_param({"uniform": [0.2, 0.6]}))

    def check(self, where: str) -> None:
        from pipeline.schema import require

        lo_hi = self.sigma_range_255
        require(len(lo_hi) == 2, f"{where}.sigma_range_255", list(lo_hi), "must be [low, high]")
        ok = 0 <= lo_hi[0] <= lo_hi[1] <= 255
        require(ok, f"{where}.sigma_range_255", list(lo_hi), "need 0 ≤ low ≤ high ≤ 255")
        self.bump_width.check_range(f"{where}.bump_width", 1e-3, 10.0)


@dataclass(frozen=True)
class QuadrantsParams:
    """Spatially variant Gaussian noise, one σ per image quadrant (top-left, top-right,
    bottom-left, bottom-right; every band alike): the quadrant-wise test of proxy-based
    hyper-guidance (Gao et al. 2023), 1/2/3/4 % of the range by default."""

    sigma_255: tuple[float, ...] = (2.55, 5.1, 7.65, 10.2)

    def check(self, where: str) -> None:
        from pipeline.schema import require

        s = self.sigma_255
        require(len(s) == 4, f"{where}.sigma_255", list(s), "needs 4 values (one per quadrant)")
        ok = all(0 <= v <= 255 for v in s)
        require(ok, f"{where}.sigma_255", list(s), "values must lie in [0, 255]")


def iid(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(IidParams, params, "iid")
    x = as_image(x)
    sigma = float(p.sigma_255.sample(rng)) / 255.0
    return finish(
        add_gaussian(x, sigma, rng),
        np.float64(sigma),
        np.zeros(x.shape, bool),
        {"sigma_255": sigma * 255.0},
    )


def blind(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(BlindParams, params, "blind")
    return iid(x, rng, sigma_255=p.sigma_255)


def noniid(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(NoniidParams, params, "noniid")
    return finish(*noniid_stage(as_image(x), rng, p.sigma_255))


def noniid_stage(x: np.ndarray, rng: np.random.Generator, sigma_255: Draw):
    """The band-wise Gaussian stage shared by the stripe/deadline/impulse/mixture cases.

    Returns float64 ``(y, sigma, mask, draws)`` so later corruptions act before rounding.
    """
    sigmas = band_sigmas(sigma_255, x.shape[0], rng)
    y = add_gaussian(x, sigmas[:, None, None], rng)
    draws = {"sigma_255": [float(s * 255.0) for s in sigmas]}
    return y, sigmas[:, None, None], np.zeros(x.shape, bool), draws


def _exact_gauss(d: np.ndarray, width: float) -> np.ndarray:
    """``exp(−d² / 2 width²)`` for a 1-D float64 array, each value correctly rounded."""
    import decimal

    ctx = decimal.Context(prec=40)
    c = -0.5 / (width * width)
    return np.array([float(ctx.exp(decimal.Decimal(v * v * c))) for v in map(float, d)])


def spatial(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(SpatialParams, params, "spatial")
    x = as_image(x)
    c, h, w = x.shape
    lo, hi = (v / 255.0 for v in p.sigma_range_255)
    sigma = np.empty(x.shape)
    for b in range(c):
        cy, cx = h * rng.random(), w * rng.random()  # = rng.uniform(0, h): no fused multiply-add
        width = float(p.bump_width.sample(rng)) * max(h, w)
        # exp(−(dy² + dx²)/2w²) as the outer product of its two 1-D factors, each a correctly
        # rounded exp: np.exp's float64 result depends on the CPU (SIMD code where available,
        # the C library elsewhere), and these σ values are stored (docs/conventions.md).
        bump = (
            _exact_gauss(np.arange(h) - cy, width)[:, None]
            * _exact_gauss(np.arange(w) - cx, width)[None, :]
        )
        span = bump.max() - bump.min()
        bump = (bump - bump.min()) / span if span > 0 else np.zeros_like(bump)
        sigma[b] = lo + (hi - lo) * bump
    return finish(add_gaussian(x, sigma, rng), sigma, np.zeros(x.shape, bool), {})


def quadrants(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(QuadrantsParams, params, "quadrants")
    x = as_image(x)
    _, h, w = x.shape
    sigma = np.empty(x.shape)
    rows, cols = (slice(0, h // 2), slice(h // 2, h)), (slice(0, w // 2), slice(w // 2, w))
    values = iter(v / 255.0 for v in p.sigma_255)
    for r in rows:
        for c in cols:
            sigma[:, r, c] = next(values)
    return finish(add_gaussian(x, sigma, rng), sigma, np.zeros(x.shape, bool), {})
