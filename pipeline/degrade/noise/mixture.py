"""Case 7, ``mixture``: non-iid Gaussian, then stripe, dead-line and impulse corruption, each on
its own set of bands (QRNN3D's complex case: a random permutation of the bands cut into three
consecutive, disjoint sets of ⌊C/3⌋). With fewer than three bands, or ``disjoint: false`` (DLW's
training draws), each corruption picks its bands independently, so the sets may overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.degrade.draws import Draw
from pipeline.degrade.noise.common import (
    Info,
    add_deadlines,
    add_impulse,
    add_stripes,
    as_image,
    check_fraction,
    choose_bands,
    finish,
    n_some_bands,
)
from pipeline.degrade.noise.gaussian import NoniidParams, noniid_stage
from pipeline.schema import parse_dataclass, require


@dataclass(frozen=True)
class MixtureParams(NoniidParams):
    band_fraction: float = 1 / 3
    column_fraction: Draw = field(default=Draw.from_param({"uniform": [0.05, 0.15]}))
    shift: Draw = field(default=Draw.from_param({"uniform": [-0.25, 0.25]}))
    density: Draw = field(default=Draw.from_param([0.1, 0.3, 0.5, 0.7]))
    salt_fraction: float = 0.5
    disjoint: bool = True

    def check(self, where: str) -> None:
        super().check(where)
        check_fraction(self.band_fraction, f"{where}.band_fraction")
        self.column_fraction.check_range(f"{where}.column_fraction", 0.0, 1.0)
        self.shift.check_range(f"{where}.shift", -1.0, 1.0)
        self.density.check_range(f"{where}.density", 0.0, 1.0)
        ok = 0.0 <= self.salt_fraction <= 1.0
        require(ok, f"{where}.salt_fraction", self.salt_fraction, "must lie in [0, 1]")


def mixture_band_sets(bands: int, fraction: float, disjoint: bool, rng: np.random.Generator):
    """Three band sets (stripe, deadline, impulse)."""
    if disjoint and bands >= 3:
        n = min(n_some_bands(bands, fraction), bands // 3)
        order = rng.permutation(bands)
        return [np.sort(order[i * n : (i + 1) * n]) for i in range(3)]
    return [choose_bands(bands, fraction, rng) for _ in range(3)]


def mixture(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(MixtureParams, params, "mixture")
    y, sigma, mask, draws = noniid_stage(as_image(x), rng, p.sigma_255)
    s_bands, d_bands, i_bands = mixture_band_sets(y.shape[0], p.band_fraction, p.disjoint, rng)
    draws["stripe"] = add_stripes(y, mask, s_bands, rng, p.column_fraction, p.shift)
    draws["deadline"] = add_deadlines(y, mask, d_bands, rng, p.column_fraction)
    draws["impulse"] = add_impulse(y, mask, i_bands, rng, p.density, p.salt_fraction)
    return finish(y, sigma, mask, draws)
