r"""A trial of proxy-based hyper-guidance, one epoch at a time: the nets, their optimisers, the
batch stream and the per-epoch history — everything a checkpoint must hold to resume exactly.

Losses on a batch :math:`(y, \bar x, k, \sigma)`: the proxy's
:math:`g(\theta) = \operatorname{mean}(H_\theta(y) - \sigma)^2` and the reconstruction's
:math:`f(\omega; \theta) = \operatorname{mean}(A_\omega(y, k, H_\theta(y)) - \bar x)^2`.
The guidance variants:

``alternating``
    The paper's Algorithm 1, two Adam optimisers: a θ-step on :math:`g` (ω is not in the graph
    of :math:`g`), then an ω-step on :math:`f` with σ̂ computed without gradient from the
    updated θ. Each step leaves the other net's parameters bit for bit as they were (an
    optimiser only holds its own net's parameters, and the other net receives no gradient).
``naive``
    One Adam optimiser on both nets and :math:`f + g`: the reconstruction loss also drives θ
    through σ̂ (the proxy is then no longer a noise estimator alone).
``none``
    No proxy; the denoisers see the deconvolved image alone; :math:`f` only.

``val_score`` is the mean PSNR (peak 1) of :math:`x_K` over the fixed validation batch; the
record also holds the proxy's RMSE and Pearson correlation with the true σ map on it. The net a
trial hands on is the one of its best epoch on val (``best``), as for DLW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.methods.base import TrialState
from pipeline.methods.guidance.data import DeblurBatch, Degradation, draw_batch
from pipeline.methods.guidance.net import GuidanceNet, ircnn_rhos
from pipeline.methods.guidance.params import split_variant
from pipeline.methods.metrics import psnr
from pipeline.methods.params import spec_from_config
from pipeline.methods.precision import set_precision
from pipeline.seeding import rng_for

__all__ = ["Trainer", "TrialSpec", "init_net", "pearson", "psnr"]


@dataclass(frozen=True)
class TrialSpec:
    """What defines one trial: its variant, seed and hyper-parameters (a Tune config)."""

    guidance: str
    denoiser: str
    seed_index: int
    seed: int = 0  # the global seed
    precision: str = "fp32"  # the nets' arithmetic (pipeline/methods/precision.py)
    width: int = 16
    stages: int = 3
    sigma_max: float = 49.0
    sigma_min: float = 13.0
    rho_noise: float = 0.01
    patch_size: int = 32
    batch_size: int = 8
    augment: bool = True
    lr: float = 2e-3
    epochs: int = 6
    steps_per_epoch: int = 120
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    motion_size: int = 9
    motion_fraction: float = 0.5
    noise_percent: tuple[float, float] = (1.0, 5.0)
    noise_maps: tuple[str, ...] = ("constant", "quadrants", "smooth")
    sigma_floor: float = 1e-3

    @classmethod
    def from_config(cls, config: dict[str, Any], **extra: Any) -> TrialSpec:
        """From a trial's Tune config (its ``variant`` is ``<guidance>-<denoiser>``)."""
        merged = {**config, **extra}
        if "variant" in merged:
            merged["guidance"], merged["denoiser"] = split_variant(merged.pop("variant"))
        return spec_from_config(cls, merged)

    @property
    def variant(self) -> str:
        return f"{self.guidance}-{self.denoiser}"

    @property
    def name(self) -> str:
        return f"{self.variant}/seed-{self.seed_index}"

    @property
    def degradation(self) -> Degradation:
        return Degradation(
            self.blur_sigma,
            self.motion_size,
            self.motion_fraction,
            self.noise_percent,
            self.noise_maps,
        )


def init_net(spec: TrialSpec) -> GuidanceNet:
    """The trial's net, initialised (torch's default init) from a stream named after the
    denoiser and the seed index — not the guidance, so ``alternating`` and ``naive`` of a seed
    start from the same weights — without touching the global torch generator."""
    names = ("train", "guidance", spec.denoiser, f"seed-{spec.seed_index}", "init")
    torch_seed = int(rng_for(spec.seed, *names).integers(0, 2**62))
    rhos = ircnn_rhos(spec.stages, spec.sigma_max, spec.sigma_min, spec.rho_noise)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return GuidanceNet(
            rhos, spec.width, spec.denoiser, spec.guidance != "none", spec.sigma_floor
        )


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of all entries of ``a`` and ``b`` (NaN if one is constant)."""
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    den = float(a.norm() * b.norm())
    return float((a @ b) / den) if den > 0 else float("nan")


class Trainer(TrialState):
    """``run_epoch()`` trains ``steps_per_epoch`` steps of the trial's guidance variant, scores
    the validation batch and appends to ``history``."""

    def __init__(
        self,
        spec: TrialSpec,
        train_tiles: list[np.ndarray],
        val: DeblurBatch,
        device: str | torch.device = "cpu",
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.tiles = train_tiles
        self.deg = spec.degradation
        self.net = init_net(spec).to(self.device)
        set_precision(self.net, spec.precision)
        self.val = self._tensors(val)
        lr = spec.lr
        if spec.guidance == "alternating":
            self.optimizers = {
                "theta": torch.optim.Adam(self.net.proxy.parameters(), lr=lr),
                "omega": torch.optim.Adam(self.net.hqs.parameters(), lr=lr),
            }
        else:  # naive: both nets; none: the HQS net (there is no proxy)
            self.optimizers = {"joint": torch.optim.Adam(self.net.parameters(), lr=lr)}
        self.init_state()

    def _tensors(self, b: DeblurBatch) -> dict[str, torch.Tensor]:
        def t(a: np.ndarray, dtype=torch.float32) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype)

        return {
            "noisy": t(b.noisy),
            "clean": t(b.clean),
            "sigma": t(b.sigma),
            "kernel": t(b.kernel),
        }

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        s = self.spec
        b = draw_batch(
            self.tiles,
            seed=s.seed,
            seed_index=s.seed_index,
            step=step,
            batch_size=s.batch_size,
            patch_size=s.patch_size,
            augment=s.augment,
            deg=self.deg,
        )
        return self._tensors(b)

    # --- one step of each kind ------------------------------------------------------------

    def theta_step(self, b: dict[str, torch.Tensor]) -> float:
        """Alternating, upper level: one Adam step of θ on g; ω is untouched."""
        opt = self.optimizers["theta"]
        opt.zero_grad(set_to_none=True)
        g = torch.mean((self.net.proxy(b["noisy"]) - b["sigma"]) ** 2)
        g.backward()
        opt.step()
        return float(g.detach())

    def omega_step(self, b: dict[str, torch.Tensor]) -> float:
        """Alternating, lower level (and ``none``): one Adam step of ω on f, σ̂ from the
        current θ without gradient; θ is untouched."""
        opt = self.optimizers["omega" if "omega" in self.optimizers else "joint"]
        sigma = None
        if self.net.guided:
            with torch.no_grad():
                sigma = self.net.proxy(b["noisy"])
        opt.zero_grad(set_to_none=True)
        f = torch.mean((self.net.hqs(b["noisy"], b["kernel"], sigma) - b["clean"]) ** 2)
        f.backward()
        opt.step()
        return float(f.detach())

    def joint_step(self, b: dict[str, torch.Tensor]) -> tuple[float, float]:
        """Naive: one Adam step of both nets on f + g (f reaches θ through σ̂)."""
        opt = self.optimizers["joint"]
        opt.zero_grad(set_to_none=True)
        sigma = self.net.proxy(b["noisy"])
        g = torch.mean((sigma - b["sigma"]) ** 2)
        f = torch.mean((self.net.hqs(b["noisy"], b["kernel"], sigma) - b["clean"]) ** 2)
        (f + g).backward()
        opt.step()
        return float(f.detach()), float(g.detach())

    def train_step(self, step: int) -> tuple[float, float]:
        """Batch ``step`` through the trial's variant: ``(f, g)`` (g NaN without a proxy)."""
        b = self.batch(step)
        self.net.train()
        if self.spec.guidance == "alternating":
            g = self.theta_step(b)
            return self.omega_step(b), g
        if self.spec.guidance == "naive":
            return self.joint_step(b)
        return self.omega_step(b), float("nan")

    # --- epochs ---------------------------------------------------------------------------

    def run_epoch(self) -> dict[str, float]:
        s = self.spec
        first = self.epoch * s.steps_per_epoch
        losses = np.array([self.train_step(i) for i in range(first, first + s.steps_per_epoch)])
        metrics = self.validate()
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "step": self.epoch * s.steps_per_epoch,
            "train_f": float(losses[:, 0].mean()),
            **metrics,
            "val_score": metrics["val_psnr"],  # the runner's selection score
        }
        if self.net.guided:  # a net without σ̂ has no g (no NaN in metrics.json: strict JSON)
            record["train_g"] = float(losses[:, 1].mean())
        return self.end_epoch(record)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """``val_psnr`` (mean per-patch PSNR of x_K), ``val_psnr_y`` (of the blurred, noisy
        input), and for a guided net ``val_sigma_rmse`` and ``val_sigma_corr`` (σ̂ against σ;
        absent without σ̂, so the metrics hold no NaN)."""
        self.net.eval()
        v = self.val
        sigma = self.net.proxy(v["noisy"]) if self.net.guided else None
        x = self.net.hqs(v["noisy"], v["kernel"], sigma)
        out = {
            "val_psnr": float(psnr(x, v["clean"]).mean()),
            "val_psnr_y": float(psnr(v["noisy"], v["clean"]).mean()),
        }
        if sigma is not None:
            out["val_sigma_rmse"] = float(torch.sqrt(torch.mean((sigma - v["sigma"]) ** 2)))
            corr = pearson(sigma, v["sigma"])
            if math.isfinite(corr):  # undefined for a constant σ̂ (a collapsed proxy)
                out["val_sigma_corr"] = corr
        return out

    def stateful(self) -> dict[str, Any]:
        return {"optimizers": self.optimizers}
