r"""The ``train.alr`` section of params.yaml: the adversarial local regulariser (Prost, Houdard,
Almansa, Papadakis, "Learning local regularization for variational image restoration", SSVM
2021; :mod:`pipeline.methods.alr`).

Trials are the grid ``variants × seeds × search``. A variant names the noise of the critic's
"noisy" patches:

* ``varying``: Gaussian with :math:`\sigma \sim U[\text{sigma\_range}]` per patch (the paper's
  varying-σ critic, :math:`U[0.05, 0.30]`);
* ``s<σ>`` (``s0.05``, ``s0.1``, ``s0.2``, ``s0.4``): one fixed σ (the single-level critics).

The defaults are CPU-sized: critic widths (8, 8, 8) instead of the paper's (128, 64, 32), 800
Adam steps a trial at 3e-3 → 3e-4 (~12 s on one core), patches of shared train tiles
(``groups``), and a 20-iteration restoration (paper: 70 for denoising, 50 for deblurring), so
that a 31-band 32×32 cube restores in ~0.2 s on one core. The paper's losses are kept: WGAN-GP
with μ = 5, exponential Adam decay, batch 32, 15×15 patches.
No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pipeline.methods.params import TrialParams
from pipeline.schema import require

__all__ = ["PATCH", "VARYING", "ALRParams", "variant_sigma"]

PATCH = 15  # the critic's nominal patch side (the paper's receptive field)
VARYING = "varying"


def variant_sigma(variant: str) -> float | None:
    """``"s0.1"`` → 0.1; ``"varying"`` → None (σ drawn per patch); anything else: ValueError."""
    if variant == VARYING:
        return None
    if variant.startswith("s"):
        try:
            sigma = float(variant[1:])
        except ValueError:
            sigma = math.nan
        if math.isfinite(sigma) and 0 < sigma <= 1:
            return sigma
    raise ValueError(
        f"alr variant {variant!r}: expected 'varying' or 's<σ>' with 0 < σ ≤ 1 (e.g. 's0.1')"
    )


@dataclass(frozen=True)
class ALRParams(TrialParams):
    SEARCHABLE: ClassVar[tuple[str, ...]] = (
        "lr",
        "lr_final",
        "mu",
        "batch_size",
        "epochs",
        "steps_per_epoch",
    )

    # The critics trained (the longest first does not matter: every variant costs the same).
    variants: list[str] = field(default_factory=lambda: [VARYING, "s0.05", "s0.1", "s0.2", "s0.4"])
    sigma_range: list[float] = field(default_factory=lambda: [0.05, 0.30])  # varying: U[lo, hi]
    # Where the unpaired patches come from: "images" — clean from the even-numbered train tiles,
    # noisy from the odd-numbered ones (disjoint images); "shared" — both from every train tile,
    # independent crops (the authors' synthetic-noise training: two loaders over one folder).
    # With the default's two train tiles "images" lets the critic learn which image a patch
    # comes from (pipeline.methods.alr.data): "shared" by default, "images" with many images.
    groups: Literal["images", "shared"] = "shared"
    # Critic widths (w1, w2, w3): conv 3×3 1→w1, 3×3 w1→w2, 3×3/3 w2→w2, 3×3 w2→w2, 1×1 w2→w3,
    # 1×1 w3→w3 (paper: 128, 64, 32; the restoration's cost grows with w1·w2).
    widths: list[int] = field(default_factory=lambda: [8, 8, 8])
    patch_size: int = PATCH  # training patches (≥ 15: a larger one gives a map, its mean scores)
    batch_size: int = 32  # clean and noisy single-band patches per step (paper: 32)
    augment: bool = True  # random flips and 90° rotations of each patch
    # Adam, first and last step, exponential decay over the trial (paper: 1e-3 → 1e-4 over
    # ~10⁵ steps; 3× larger for the 800-step default: the σ = 0.05 critic then learns the noise).
    lr: float = 3e-3
    lr_final: float = 3e-4
    mu: float = 5.0  # weight of the gradient penalty (paper)
    epochs: int = 4
    steps_per_epoch: int = 200
    # Restoration at test time (Adam on x), stored with the trained part. 20 steps reach the
    # PSNR of 300 (measured on the default val tile, σ = 0.05–0.2).
    # Denoising (paper: 70 iterations, lr 0.01 → 0.001). Adam moves each pixel by about lr per
    # step, so the schedule bounds how far x gets from y: at σ = 0.4 the paper's reaches 12.1 dB
    # and 30 × (0.1 → 0.01) 18.3 dB, at the same cost at σ = 0.05 (benchmarks/alr_schedule.py).
    iterations: int = 30
    restore_lr: list[float] = field(default_factory=lambda: [0.1, 0.01])
    operator_iterations: int = 20  # blur, down-sampling, inpainting (paper deblurring: 50)
    operator_lr: list[float] = field(default_factory=lambda: [0.05, 0.005])  # paper 0.1 → 0.01
    # λ calibration on val: strength 1 is the λ of this grid (per-pixel units, see solve) with
    # the best mean PSNR gain on the val crops at σ = val_sigma; val_score is that gain.
    lam_grid: list[float] = field(default_factory=lambda: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05])
    val_sigma: float = 0.1
    val_patches: int = 8  # single-band crops per val image, noisy at val_sigma, fixed by the seed
    val_size: int = 32  # their side (a smaller val tile: its smaller side)

    def check_method(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        v = self.variants
        require(len(v) > 0, key("variants"), v, "needs at least one")
        require(len(set(v)) == len(v), key("variants"), v, "listed twice")
        for i, name in enumerate(v):
            try:
                variant_sigma(name)
            except ValueError:
                require(False, f"{key('variants')}[{i}]", name, "expected 'varying' or 's<σ>'")
        lo_hi = self.sigma_range
        ok = len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1] <= 1
        require(ok, key("sigma_range"), lo_hi, "must be [low, high] with 0 < low ≤ high ≤ 1")
        w = self.widths
        ok = len(w) == 3 and all(int(x) == x and x >= 1 for x in w)
        require(ok, key("widths"), w, "must be three positive integers [w1, w2, w3]")
        ok = self.patch_size >= PATCH
        require(ok, key("patch_size"), self.patch_size, f"must be ≥ {PATCH} (the critic's patch)")
        require(self.mu >= 0, key("mu"), self.mu, "must be ≥ 0")
        for name in ("iterations", "operator_iterations", "val_patches"):
            require(getattr(self, name) >= 1, key(name), getattr(self, name), "must be ≥ 1")
        for name in ("restore_lr", "operator_lr"):
            r = getattr(self, name)
            ok = len(r) == 2 and all(0 < x < 10 for x in r)
            require(ok, key(name), r, "must be [first, last] Adam steps in (0, 10)")
        g = self.lam_grid
        ok = len(g) > 0 and all(x > 0 and math.isfinite(x) for x in g)
        require(ok, key("lam_grid"), g, "must be a non-empty list of positive λ")
        require(0 < self.val_sigma <= 1, key("val_sigma"), self.val_sigma, "must lie in (0, 1]")
        require(self.val_size >= PATCH, key("val_size"), self.val_size, f"must be ≥ {PATCH}")
        require(
            self.lr_final <= self.lr,
            key("lr_final"),
            self.lr_final,
            f"must be ≤ lr ({self.lr}): the schedule decays",
        )

    def check_value(self, name: str, value: Any, where: str) -> None:
        if name in ("lr", "lr_final"):
            require(0 < value < 1, where, value, "the learning rate must lie in (0, 1)")
        elif name == "mu":
            require(value >= 0, where, value, "must be ≥ 0")
        elif name == "batch_size":
            require(value >= 2, where, value, "must be ≥ 2")
        else:
            super().check_value(name, value, where)
