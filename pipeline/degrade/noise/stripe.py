"""Case 4, ``stripe``: non-iid Gaussian, then on some bands 5–15 % of the columns shifted by a
value from U[−0.25, 0.25] down their full length (QRNN3D's protocol)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.degrade.draws import Draw
from pipeline.degrade.noise.common import (
    Info,
    add_stripes,
    as_image,
    check_fraction,
    choose_bands,
    finish,
)
from pipeline.degrade.noise.gaussian import NoniidParams, noniid_stage
from pipeline.schema import parse_dataclass


@dataclass(frozen=True)
class StripeParams(NoniidParams):
    band_fraction: float = 1 / 3
    column_fraction: Draw = field(default=Draw.from_param({"uniform": [0.05, 0.15]}))
    shift: Draw = field(default=Draw.from_param({"uniform": [-0.25, 0.25]}))

    def check(self, where: str) -> None:
        super().check(where)
        check_fraction(self.band_fraction, f"{where}.band_fraction")
        self.column_fraction.check_range(f"{where}.column_fraction", 0.0, 1.0)
        self.shift.check_range(f"{where}.shift", -1.0, 1.0)


def stripe(x: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, Info]:
    p = parse_dataclass(StripeParams, params, "stripe")
    y, sigma, mask, draws = noniid_stage(as_image(x), rng, p.sigma_255)
    bands = choose_bands(y.shape[0], p.band_fraction, rng)
    draws["stripe"] = add_stripes(y, mask, bands, rng, p.column_fraction, p.shift)
    return finish(y, sigma, mask, draws)
