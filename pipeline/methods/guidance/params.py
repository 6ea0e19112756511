r"""The ``train.guidance`` section of params.yaml: proxy-based hyper-guidance for non-blind
deconvolution (Gao, Liu, Liu, Fan, The Visual Computer 2023; :mod:`pipeline.methods.guidance`).

Trials are the grid ``guidance × denoisers × seeds × search``. A variant is named
``<guidance>-<denoiser>`` (``alternating-tiny``):

* ``guidance``: how the proxy :math:`H_\theta` (the σ̂ estimator) and the reconstruction network
  :math:`A_\omega` are trained — ``alternating`` (the paper's Algorithm 1: a θ-step on
  :math:`g = \operatorname{mean}(\hat\sigma - \sigma)^2`, then an ω-step on the reconstruction
  MSE :math:`f` with θ fixed), ``naive`` (one optimiser on :math:`f + g`) or ``none`` (no proxy:
  the denoisers see the deconvolved image alone; :math:`f` only);
* ``denoiser``: the denoiser of every HQS stage — ``tiny`` (6 dilated convolutions) or
  ``general`` (9).

The defaults are CPU-sized (the paper: width 64, K = 5 stages, Adam 1e-4, 320² crops, 10⁵
steps); the paper's noise (σ ~ U[1, 5] %) and IRCNN schedule (σ_i from 49 to 13, λ = 0.01²/3)
are kept. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.methods.params import TrialParams
from pipeline.schema import require, require_choices

__all__ = ["DENOISERS", "GUIDANCE", "NOISE_MAPS", "GuidanceParams", "split_variant"]

GUIDANCE = ("alternating", "naive", "none")
DENOISERS = ("tiny", "general")
# σ maps of the training noise: one level per image, one per image quadrant, or a smooth field.
NOISE_MAPS = ("constant", "quadrants", "smooth")


def split_variant(variant: str) -> tuple[str, str]:
    """``"alternating-tiny"`` → ``("alternating", "tiny")``; anything else is a ValueError."""
    guidance, _, denoiser = str(variant).partition("-")
    if guidance not in GUIDANCE or denoiser not in DENOISERS:
        raise ValueError(
            f"guidance variant {variant!r}: expected <guidance>-<denoiser> with guidance in "
            f"{list(GUIDANCE)} and denoiser in {list(DENOISERS)}"
        )
    return guidance, denoiser


def gaussian_side(sigma: float) -> int:
    """Side of the Gaussian training kernel of width ``sigma``: 2⌈3σ⌉ + 1 (the blur task's)."""
    return 2 * math.ceil(3 * sigma) + 1


@dataclass(frozen=True)
class GuidanceParams(TrialParams):
    SEARCHABLE: ClassVar[tuple[str, ...]] = (
        "lr",
        "width",
        "stages",
        "batch_size",
        "patch_size",
        "epochs",
        "steps_per_epoch",
    )

    guidance: list[str] = field(default_factory=lambda: list(GUIDANCE))
    denoisers: list[str] = field(default_factory=lambda: ["tiny"])
    width: int = 16  # channels of the proxy and of every denoiser (paper: 64)
    stages: int = 3  # K unrolled HQS stages, each with its own denoiser (paper: 5)
    # IRCNN schedule: σ_i log-spaced from sigma_max to sigma_min (255 scale) over the K stages,
    # ρ_i = (rho_noise² / 3) / (σ_i / 255)².
    sigma_max: float = 49.0
    sigma_min: float = 13.0
    rho_noise: float = 0.01
    patch_size: int = 32  # square single-band training patches (paper: 320)
    batch_size: int = 8  # single-band patches per step, bands folded into the batch (paper: 3)
    augment: bool = True  # random flips and 90° rotations of each patch
    lr: float = 2e-3  # Adam, both nets (paper: 1e-4; larger for the short CPU schedule)
    epochs: int = 6
    steps_per_epoch: int = 120
    # Training blur, one kernel per patch: a Gaussian of width U[blur_sigma] pixels, or with
    # probability motion_fraction a random camera-shake kernel of side motion_size.
    blur_sigma: list[float] = field(default_factory=lambda: [0.5, 2.0])
    motion_size: int = 9
    motion_fraction: float = 0.5
    # Training noise: Gaussian with σ ~ U[noise_percent] % of the [0, 1] range, drawn per image
    # (constant), per image quadrant or as a smooth field (noise_maps: the kinds drawn from).
    noise_percent: list[float] = field(default_factory=lambda: [1.0, 5.0])
    noise_maps: list[str] = field(default_factory=lambda: list(NOISE_MAPS))
    sigma_floor: float = 1e-3  # ε: the weighting is 1 / max(σ̂, ε)² (finite where σ̂ = 0)
    val_patches: int = 8  # degraded patches per val image, fixed by the seed

    def variants(self) -> list[str]:
        """``<guidance>-<denoiser>``, the longest trials first: the general denoiser before the
        tiny one, then alternating (two backward passes a step), naive, none."""
        den = sorted(self.denoisers, key=DENOISERS[::-1].index)
        gui = sorted(self.guidance, key=GUIDANCE.index)
        return [f"{g}-{d}" for d in den for g in gui]

    def check_method(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        require_choices(key("guidance"), self.guidance, GUIDANCE)
        require_choices(key("denoisers"), self.denoisers, DENOISERS)
        require_choices(key("noise_maps"), self.noise_maps, NOISE_MAPS)
        require(self.sigma_min > 0, key("sigma_min"), self.sigma_min, "must be positive")
        require(
            self.sigma_max >= self.sigma_min,
            key("sigma_max"),
            self.sigma_max,
            f"must be ≥ sigma_min ({self.sigma_min})",
        )
        require(self.rho_noise > 0, key("rho_noise"), self.rho_noise, "must be positive")
        a = self.blur_sigma
        ok = len(a) == 2 and 0 < a[0] <= a[1] <= 8
        require(ok, key("blur_sigma"), a, "must be [low, high] pixels with 0 < low ≤ high ≤ 8")
        m = self.motion_size
        ok = 3 <= m <= 31 and m % 2 == 1
        require(ok, key("motion_size"), m, "must be an odd integer in [3, 31]")
        f = self.motion_fraction
        require(0 <= f <= 1, key("motion_fraction"), f, "must be a probability in [0, 1]")
        n = self.noise_percent
        ok = len(n) == 2 and 0 <= n[0] <= n[1] <= 100
        require(ok, key("noise_percent"), n, "must be [low, high] % with 0 ≤ low ≤ high ≤ 100")
        require(self.sigma_floor > 0, key("sigma_floor"), self.sigma_floor, "must be positive")
        require(self.val_patches >= 1, key("val_patches"), self.val_patches, "must be ≥ 1")
        # Every training kernel must fit a patch (circular blur on the patch grid).
        side = max(gaussian_side(a[1]), m if f > 0 else 1)
        for name, value in [("patch_size", self.patch_size)] + [
            (f"search.patch_size[{i}]", v) for i, v in enumerate(self.search.get("patch_size", []))
        ]:
            require(
                value >= side,
                key(name),
                value,
                f"smaller than the largest training kernel ({side}×{side}: blur_sigma "
                f"{a[1]:g} → 2⌈3σ⌉ + 1, motion_size {m})",
            )

    def check_value(self, name: str, value: Any, where: str) -> None:
        if name == "lr":
            require(0 < value < 1, where, value, "the learning rate must lie in (0, 1)")
        else:
            super().check_value(name, value, where)
