r"""A trial of regularising gradients, one epoch at a time: the net, its optimiser, the batch
stream and the per-epoch history — everything a checkpoint must hold to resume exactly.

The four variants train the same :math:`G_\phi` (and λ) on the same batches (Willingham,
Sjöström, Guillemot, VISAPP 2024, compare such variants; the exact losses below are this
project's formulation, the paper's own text of them was not available). On a batch of clean
patches :math:`\bar x` degraded by the tasks of :mod:`pipeline.methods.rg.data`:

``denoiser``
    Denoising score matching (Vincent, Neural Comput. 2011; the weighting :math:`s^2` of Song &
    Ermon, NeurIPS 2019): :math:`\ell = \operatorname{mean}\,(s\,G_\phi(\bar x + s n) - n)^2`,
    :math:`s \sim U[\text{score\_percent}]` per patch, :math:`n \sim \mathcal N(0, I)`: the
    minimiser is :math:`G_\phi(x) = \mathbb E[n/s \mid x]`, the residual of a Gaussian denoiser
    (the RED / score baseline). The tasks' operators are not seen; λ stays at its initial value
    (the evaluation tunes its multiplier on val).
``bound``
    :math:`\ell_\text{bound}` of :func:`pipeline.methods.rg.solver.bound_loss`: the squared
    contraction bound on :math:`\|x^* - \bar x\|`, averaged over tasks, with the local Lipschitz
    constant of :math:`T` at :math:`\bar x` from ``power_iters`` power iterations, clamped at
    ``lipschitz_cap`` and penalised above it. No fixed point is computed.
``deqgd``
    Deep-equilibrium GD: :math:`\ell = \operatorname{mean}_\text{tasks}\operatorname{mean}\,
    (x^* - \bar x)^2` at the fixed point found by Anderson acceleration (``train_max_iter``,
    ``train_tol``), gradient by implicit differentiation (torchdeq, ``ift=True``; memory flat in
    the iteration count).
``rerg``
    :math:`\ell_\text{deqgd} + \beta\,\ell_\text{bound}`.

A step whose loss or gradient is not finite is skipped (``skipped`` counts them per epoch): a
DEQ whose map stopped contracting can blow up, and the comparison should record that rather
than crash. ``val_score`` is the mean PSNR (peak 1) over the fixed validation set of the
test-time solve (``solver``, ``max_iter``, ``tol``; strength 1); the record also holds the PSNR
per task, of the start :math:`x_0`, the solver's evaluations and converged fraction, and the
mean Lipschitz estimate of :math:`T` at the clean val patches. The net a trial hands on is the
one of its best epoch on val (``best``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pipeline.methods.base import TrialState
from pipeline.methods.metrics import psnr
from pipeline.methods.params import spec_from_config
from pipeline.methods.precision import set_precision
from pipeline.methods.rg.data import Degradation, RGBatch, draw_batch
from pipeline.methods.rg.net import RGNet
from pipeline.methods.rg.solver import (
    Group,
    Problem,
    bound_loss,
    deq_solver,
    gd_map,
    lipschitz,
    solve,
)
from pipeline.seeding import rng_for

__all__ = ["Trainer", "TrialSpec", "init_net", "psnr"]


@dataclass(frozen=True)
class TrialSpec:
    """What defines one trial: its variant, seed and hyper-parameters (a Tune config)."""

    variant: str
    seed_index: int
    seed: int = 0  # the global seed
    precision: str = "fp32"  # the nets' arithmetic (pipeline/methods/precision.py)
    width: int = 16
    depth: int = 5
    tau: float = 1.0
    lam: float = 0.002
    learn_lam: bool = True
    beta: float = 1.0
    lipschitz_cap: float = 0.95
    cap_penalty: float = 1.0
    power_iters: int = 3
    score_percent: tuple[float, float] = (1.0, 20.0)
    train_max_iter: int = 15
    train_tol: float = 1e-3
    backward_max_iter: int = 15
    backward_tol: float = 1e-4
    anderson_m: int = 5
    solver: str = "anderson"
    max_iter: int = 30
    tol: float = 1e-3
    tasks: tuple[str, ...] = ("identity", "blur", "downsample", "inpaint")
    noise_percent: tuple[float, float] = (1.0, 10.0)
    blur_sigma: tuple[float, float] = (1.0, 2.0)
    factor: int = 2
    missing: float = 0.5
    patch_size: int = 24
    batch_size: int = 8
    augment: bool = True
    lr: float = 2e-3
    epochs: int = 4
    steps_per_epoch: int = 40

    @classmethod
    def from_config(cls, config: dict[str, Any], **extra: Any) -> TrialSpec:
        return spec_from_config(cls, {**config, **extra})

    @property
    def name(self) -> str:
        return f"{self.variant}/seed-{self.seed_index}"

    @property
    def degradation(self) -> Degradation:
        return Degradation(
            self.tasks, self.noise_percent, self.blur_sigma, self.factor, self.missing
        )

    @property
    def uses_deq(self) -> bool:
        return self.variant in ("deqgd", "rerg")

    @property
    def uses_bound(self) -> bool:
        return self.variant in ("bound", "rerg")


def init_net(spec: TrialSpec) -> RGNet:
    """The trial's net, initialised (torch's default init) from a stream named after the seed
    index only — every variant of a seed starts from the same weights — without touching the
    global torch generator. The denoiser variant's λ is fixed (its loss does not see it)."""
    names = ("train", "rg", f"seed-{spec.seed_index}", "init")
    torch_seed = int(rng_for(spec.seed, *names).integers(0, 2**62))
    learn = spec.learn_lam and spec.variant != "denoiser"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return RGNet(
            spec.width,
            spec.depth,
            spec.lam,
            spec.tau,
            learn,
            spec.solver,
            spec.max_iter,
            spec.tol,
            spec.anderson_m,
        )


class Trainer(TrialState):
    """``run_epoch()`` trains ``steps_per_epoch`` steps of the trial's variant, scores the
    validation set and appends to ``history``."""

    def __init__(
        self,
        spec: TrialSpec,
        train_tiles: list[np.ndarray],
        val: RGBatch,
        device: str | torch.device = "cpu",
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.tiles = train_tiles
        self.deg = spec.degradation
        self.net = init_net(spec).to(self.device)
        set_precision(self.net, spec.precision)
        self.val = self.tensors(val)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=spec.lr)
        self.fixed_point = deq_solver(
            max_iter=spec.train_max_iter,
            tol=spec.train_tol,
            backward_max_iter=spec.backward_max_iter,
            backward_tol=spec.backward_tol,
            m=spec.anderson_m,
        )
        self.init_state()

    # --- data -----------------------------------------------------------------------------

    def tensors(self, b: RGBatch) -> dict[str, Any]:
        """A batch as tensors ``(N, 1, ·, ·)`` float32 and its :class:`Problem` (w = 1)."""

        def t(a: np.ndarray) -> torch.Tensor:
            a = np.ascontiguousarray(a, dtype=np.float32)
            return torch.from_numpy(a)[:, None].to(self.device)

        groups = [Group(g.operator().to(self.device), t(g.y)) for g in b.groups]
        out = {
            "problem": Problem(groups),
            "clean": t(b.clean),
            "x0": t(np.concatenate([g.x0 for g in b.groups])),
            "v0": t(b.v0),
            "tasks": [g.task for g in b.groups],
        }
        if len(b.s):
            out["s"] = torch.from_numpy(b.s.astype(np.float32)).view(-1, 1, 1, 1).to(self.device)
            out["noise"] = t(b.noise)
        return out

    def batch(self, step: int) -> dict[str, Any]:
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
            score_percent=s.score_percent,
        )
        return self.tensors(b)

    # --- losses ---------------------------------------------------------------------------

    def denoiser_loss(self, b: dict[str, Any]) -> torch.Tensor:
        s, n = b["s"], b["noise"]
        return torch.mean((s * self.net(b["clean"] + s * n) - n) ** 2)

    def deq_loss(self, b: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, x*)``: the task-averaged MSE of the fixed point."""
        problem = b["problem"]
        x_star, _ = self.fixed_point(gd_map(self.net, problem), b["x0"])
        mse = ((x_star - b["clean"]) ** 2).flatten(1).mean(1)
        per_task = torch.stack([m.mean() for m in torch.split(mse, problem.sizes)])
        return per_task.mean(), x_star

    def train_step(self, step: int) -> dict[str, float]:
        """Batch ``step`` through the trial's variant: the loss and its parts."""
        s = self.spec
        b = self.batch(step)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms: dict[str, float] = {}
        loss = torch.zeros((), device=self.device)
        if s.variant == "denoiser":
            loss = self.denoiser_loss(b)
            terms["denoise"] = float(loss.detach())
        if s.uses_deq:
            deq, _ = self.deq_loss(b)
            loss = loss + deq
            terms["deq"] = float(deq.detach())
        if s.uses_bound:
            bound, parts = bound_loss(
                self.net,
                b["problem"],
                b["clean"],
                b["v0"],
                iters=s.power_iters,
                cap=s.lipschitz_cap,
                penalty=s.cap_penalty,
            )
            loss = loss + (s.beta if s.variant == "rerg" else 1.0) * bound
            terms["bound"] = float(bound.detach())
            terms["lipschitz"] = parts["lipschitz"]
        terms["loss"] = float(loss.detach())
        ok = math.isfinite(terms["loss"])
        if ok:
            loss.backward()
            grads = [p.grad for p in self.net.parameters() if p.grad is not None]
            ok = all(bool(torch.isfinite(g).all()) for g in grads)
        if ok:
            self.optimizer.step()
        terms["skipped"] = 0.0 if ok else 1.0
        return terms

    # --- epochs ---------------------------------------------------------------------------

    def run_epoch(self) -> dict[str, float]:
        s = self.spec
        first = self.epoch * s.steps_per_epoch
        steps = [self.train_step(i) for i in range(first, first + s.steps_per_epoch)]
        metrics = self.validate()
        self.epoch += 1
        record: dict[str, float] = {"epoch": self.epoch, "step": self.epoch * s.steps_per_epoch}
        for key in steps[0]:
            values = [t[key] for t in steps if math.isfinite(t[key])]
            if key == "skipped":
                record["skipped"] = float(sum(t["skipped"] for t in steps))
            elif values:  # no NaN in metrics.json (strict JSON)
                record[f"train_{key}"] = float(np.mean(values))
        record["lam"] = float(self.net.lam.detach())
        record.update(metrics)
        record["val_score"] = metrics["val_psnr"]  # the runner's selection score
        return self.end_epoch(record)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR of the test-time solve on the validation set: overall (``val_psnr``), per task
        (``val_psnr_<task>``), of the start (``val_psnr_start``); the solver's evaluations and
        converged fraction; the mean Lipschitz estimate of T at the clean patches."""
        s, v = self.spec, self.val
        self.net.eval()
        x, info = solve(gd_map(self.net, v["problem"]), v["x0"], **self.net.solve_settings)
        bad = ~torch.isfinite(x.flatten(1)).all(1)
        x[bad] = v["x0"][bad]  # a diverged sample scores its start (as the restorer returns)
        p = psnr(x, v["clean"])
        out = {
            "val_psnr": float(p.mean()),
            "val_psnr_start": float(psnr(v["x0"], v["clean"]).mean()),
            "val_evaluations": float(info["evaluations"]),
            "val_converged": float(info["converged"].double().mean()),
            "val_diverged": float(bad.sum()),
        }
        for task, part in zip(v["tasks"], torch.split(p, v["problem"].sizes), strict=True):
            out[f"val_psnr_{task}"] = float(part.mean())
        L = lipschitz(self.net, v["problem"], v["clean"], v["v0"], s.power_iters)
        if torch.isfinite(L).all():
            out["val_lipschitz"] = float(L.mean())
        return out
