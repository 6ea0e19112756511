"""Case 6, ``impulse``: non-iid Gaussian, then on some bands salt-and-pepper noise (half 0,
half 1) with a density per band from {0.1, 0.3, 0.5, 0.7} (QRNN3D's protocol).

DLW's training draws are this model with ``sigma_255: {uniform: [10, 70]}`` and
``density: {uniform: [0.1, 0.5]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.degrade.draws import Draw
from pipeline.degrade.noise.common import (
    Info,
    add_impulse,
    as_image,
    check_fraction,
    choose_bands,
    finish,
)
from pipeline.degrade.noise.gaussian import NoniidParams, noniid_stage
from pipeline.schema import parse_dataclass, require


@dataclass(frozen=True)
class ImpulseParams(NoniidParams):
    band_fraction: float = 1 / 3
    density: Draw = field(default=Draw.from_param([0.1, 0.3, 0.5, 0.7]))
    salt_fraction: float = 0.5

    def check(self, where: str) -> None:
        super().check(where)
        check_fraction(self.band_fraction, f"{where}.band_fraction")
        self.density.check_range(f"{where}.density", 0.0, 1.0)
        ok = 0.0 <= self.salt_fraction <= 1.0
        require(ok, f"{where}.salt_fraction", self.salt_fraction, "must lie in [0, 1]")


def impulse(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(ImpulseParams, params, "impulse")
    y, sigma, mask, draws = noniid_stage(as_image(x), rng, p.sigma_255)
    bands = choose_bands(y.shape[0], p.band_fraction, rng)
    draws["impulse"] = add_impulse(y, mask, bands, rng, p.density, p.salt_fraction)
    return finish(y, sigma, mask, draws)
