r"""A trial of the adversarial local regulariser, one epoch at a time: the critic, its optimiser,
the batch stream and the per-epoch history — everything a checkpoint holds to resume exactly.

Each step minimises the WGAN-GP loss (:func:`pipeline.methods.alr.net.wgan_gp_loss`) on the
batch of :func:`pipeline.methods.alr.data.draw_batch` by Adam, its step size decaying
exponentially from ``lr`` at the first step to ``lr_final`` at the last step of the trial
(the paper: 1e-3 → 1e-4); the step size is a function of the step number, so a resumed trial
needs no scheduler state.

Validation, on the fixed noisy val crops at σ = ``val_sigma``:

``val_wasserstein``
    the held-out gap :math:`\operatorname{mean} r(y) - \operatorname{mean} r(x)` of noisy and
    clean crops (> 0: the critic tells them apart);
``val_score``
    the selection score, the mean PSNR gain (dB, peak 1) of the restoration
    (:func:`pipeline.methods.alr.solve.solve`, the trial's denoising schedule) over the noisy
    crop, at the best λ of ``lam_grid``; that λ (``val_lam``) is stored with the weights as the
    λ of strength 1. A critic is then scored by what it is for — restoring — at its own scale
    (two critics' maps need not have the same scale, so one fixed λ would favour one of
    them), and strength 1 is calibrated at σ ≈ ``val_sigma`` for every trained part, which keeps
    the evaluation's ×0.25 … ×4 grid around the right λ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.methods.alr.data import PatchBatch, ValSet, draw_batch, split_groups
from pipeline.methods.alr.net import ALRPart, wgan_gp_loss
from pipeline.methods.alr.params import variant_sigma
from pipeline.methods.alr.solve import solve
from pipeline.methods.base import TrialState
from pipeline.methods.metrics import psnr
from pipeline.methods.params import spec_from_config
from pipeline.methods.precision import set_precision
from pipeline.seeding import rng_for

__all__ = ["Trainer", "TrialSpec", "init_part", "psnr"]


@dataclass(frozen=True)
class TrialSpec:
    """What defines one trial: its variant, seed and hyper-parameters (a Tune config)."""

    variant: str
    seed_index: int
    seed: int = 0  # the global seed
    precision: str = "fp32"  # the nets' arithmetic (pipeline/methods/precision.py)
    widths: tuple[int, int, int] = (8, 8, 8)
    sigma_range: tuple[float, float] = (0.05, 0.30)
    groups: str = "shared"
    patch_size: int = 15
    batch_size: int = 32
    augment: bool = True
    lr: float = 3e-3
    lr_final: float = 3e-4
    mu: float = 5.0
    epochs: int = 4
    steps_per_epoch: int = 200
    iterations: int = 20
    restore_lr: tuple[float, float] = (0.03, 0.003)
    operator_iterations: int = 20
    operator_lr: tuple[float, float] = (0.05, 0.005)
    lam_grid: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)

    @classmethod
    def from_config(cls, config: dict[str, Any], **extra: Any) -> TrialSpec:
        merged = {**config, **extra}
        variant_sigma(merged["variant"])  # a bad variant fails here, naming it
        return spec_from_config(cls, merged)

    @property
    def name(self) -> str:
        return f"{self.variant}/seed-{self.seed_index}"

    @property
    def sigma(self) -> float | None:
        return variant_sigma(self.variant)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        """Adam's step size at ``step``: lr · (lr_final / lr)^(step / (total − 1))."""
        t = step / max(self.total_steps - 1, 1)
        return self.lr * (self.lr_final / self.lr) ** min(t, 1.0)


def init_part(spec: TrialSpec) -> ALRPart:
    """The trial's part, its critic initialised (torch's default init) from a stream named after
    the seed index — not the variant, so every variant of a seed starts from the same weights —
    without touching the global torch generator."""
    names = ("train", "alr", f"seed-{spec.seed_index}", "init")
    torch_seed = int(rng_for(spec.seed, *names).integers(0, 2**62))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return ALRPart(
            spec.widths,
            lam=spec.lam_grid[len(spec.lam_grid) // 2],
            iterations=spec.iterations,
            restore_lr=spec.restore_lr,
            operator_iterations=spec.operator_iterations,
            operator_lr=spec.operator_lr,
        )


class Trainer(TrialState):
    """``run_epoch()`` trains ``steps_per_epoch`` critic steps, validates and appends to
    ``history``; ``best`` holds the weights (with their calibrated λ) of the best epoch."""

    def __init__(
        self,
        spec: TrialSpec,
        train_tiles: list[np.ndarray],
        val: ValSet,
        device: str | torch.device = "cpu",
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.clean_tiles, self.noisy_tiles = split_groups(train_tiles, spec.patch_size, spec.groups)
        self.part = init_part(spec).to(self.device)
        set_precision(self.part, spec.precision)
        self.val = {
            "clean": torch.from_numpy(val.clean).to(self.device),
            "noisy": torch.from_numpy(val.noisy).to(self.device),
        }
        self.optimizer = torch.optim.Adam(self.part.critic.parameters(), lr=spec.lr)
        self.init_state()

    def batch(self, step: int) -> PatchBatch:
        s = self.spec
        return draw_batch(
            self.clean_tiles,
            self.noisy_tiles,
            seed=s.seed,
            seed_index=s.seed_index,
            step=step,
            batch_size=s.batch_size,
            patch_size=s.patch_size,
            augment=s.augment,
            sigma=s.sigma,
            sigma_range=s.sigma_range,
        )

    def train_step(self, step: int) -> dict[str, float]:
        b = self.batch(step)
        t = {
            k: torch.from_numpy(getattr(b, k)).to(self.device) for k in ("clean", "noisy", "alpha")
        }
        self.part.critic.train()
        self.optimizer.param_groups[0]["lr"] = self.spec.lr_at(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss, terms = wgan_gp_loss(
            self.part.critic, t["clean"], t["noisy"], t["alpha"], self.spec.mu
        )
        loss.backward()
        self.optimizer.step()
        return terms

    def run_epoch(self) -> dict[str, float]:
        s = self.spec
        first = self.epoch * s.steps_per_epoch
        terms = [self.train_step(i) for i in range(first, first + s.steps_per_epoch)]
        metrics = self.validate()
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "step": self.epoch * s.steps_per_epoch,
            "lr": s.lr_at(self.epoch * s.steps_per_epoch - 1),
            "critic_loss": float(np.mean([t["loss"] for t in terms])),
            "wasserstein": float(np.mean([t["wasserstein"] for t in terms])),
            "gp": float(np.mean([t["gp"] for t in terms])),
            **metrics,
        }
        self.part.lam.fill_(record["val_lam"])  # strength 1 of the part handed on
        return self.end_epoch(record)

    def validate(self) -> dict[str, float]:
        """``val_wasserstein``, ``val_psnr_y``, and per λ of the grid the mean PSNR gain of the
        restoration; ``val_lam`` the best λ, ``val_score`` its gain, ``val_psnr`` its PSNR."""
        s = self.spec
        critic = self.part.critic.eval()
        clean, noisy = self.val["clean"], self.val["noisy"]
        with torch.no_grad():
            gap = float(critic.score(noisy).mean() - critic.score(clean).mean())
            psnr_y = psnr(noisy, clean)
        grid = list(s.lam_grid)
        m = len(noisy)
        # Every λ of the grid at once: the crops repeated, one λ per copy (independent problems).
        lam = torch.tensor(grid, dtype=noisy.dtype, device=noisy.device).repeat_interleave(m)
        y = noisy.repeat(len(grid), 1, 1, 1)
        critic.requires_grad_(False)  # the solve differentiates in x only
        try:
            x = solve(critic, y, lam, y, s.iterations, s.restore_lr)
        finally:
            critic.requires_grad_(True)
        gains = psnr(x, clean.repeat(len(grid), 1, 1, 1)) - psnr_y.repeat(len(grid))
        gains = gains.reshape(len(grid), m).mean(1)
        best = int(torch.argmax(gains))
        out = {
            "val_wasserstein": gap,
            "val_psnr_y": float(psnr_y.mean()),
            "val_psnr": float(psnr_y.mean()) + float(gains[best]),
            "val_lam": float(grid[best]),
            "val_score": float(gains[best]),
        }
        if not all(math.isfinite(v) for v in out.values()):
            raise FloatingPointError(f"alr trial {s.name}: non-finite validation metrics {out}")
        return out

    def module(self):
        return self.part
