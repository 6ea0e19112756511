"""A trial of DLW training, one epoch at a time: the net, its optimiser and schedule, the batch
stream and the per-epoch history — everything a checkpoint must hold to resume exactly.

Adam (Kingma & Ba 2015) with an exponential decay of the learning rate per epoch, as the DLW
reference (Rui et al., arXiv 2301.06081: Adam 1e-3, ×0.8 per epoch).

A guard against collapse. The weight map is ``N · softmax(h) + 1e-4``: when a few Adam steps
sharpen the softmax too far, almost every weight sits at the floor, the gradient through the
softmax vanishes, and the trial never recovers (seen with the CPU profile's learning rate 1e-2:
one of the seven source sets ended 5 dB *below* the unweighted models after its first epoch).
An epoch that leaves the weighted source models more than :data:`COLLAPSE_MARGIN_DB` below the
unweighted ones on the validation set is therefore undone and run again, same batches, with
half the learning rate, up to :data:`MAX_RETRIES` times; ``lr_retries`` in the history counts
them. The decision uses the validation set only (never test images) and is deterministic.

The net a trial hands on is the one of its best epoch on the validation set (``best``: epoch,
``val_score`` — the val MPSNR — and weights, kept in the checkpoint so that a resumed trial keeps
it too): the validation set exists to select checkpoints, and a short, fast CPU schedule can end
below an earlier epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pipeline.degrade.registry import Case
from pipeline.methods.base import TrialState
from pipeline.methods.dlw.bilevel import bilevel_step, score
from pipeline.methods.dlw.data import draw_batch
from pipeline.methods.dlw.net import DLWNet
from pipeline.methods.params import spec_from_config
from pipeline.models.registry import build_model
from pipeline.seeding import rng_for
from pipeline.train.data import Batch

__all__ = ["COLLAPSE_MARGIN_DB", "MAX_RETRIES", "Trainer", "TrialSpec", "init_net"]

# An epoch ending this far below the unweighted models (mean val MPSNR over the trial's own
# source models) has collapsed; untrained weights are near uniform and score within ~0.1 dB.
COLLAPSE_MARGIN_DB = 1.0
MAX_RETRIES = 3


@dataclass(frozen=True)
class TrialSpec:
    """What defines one trial: its source set, seed and hyper-parameters (a Tune config)."""

    source_set: str
    seed_index: int
    seed: int = 0  # the global seed
    width: int = 16
    depth: int = 3
    patch_size: int = 32
    batch_size: int = 4
    augment: bool = True
    lr: float = 1e-2
    lr_decay: float = 0.8
    epochs: int = 6
    steps_per_epoch: int = 20
    noise: dict[str, Any] = field(default_factory=lambda: {"name": "impulse"})
    val_models: tuple[str, ...] = ("nn", "tv", "tvs")
    layout: str = "auto"  # DLWnet's evaluation (net.py): the same weights in every layout
    precision: str = "fp32"
    checkpoint_unrolled: bool = False

    @classmethod
    def from_config(cls, config: dict[str, Any], **extra: Any) -> TrialSpec:
        """From a trial's Tune config (its ``variant`` is the source set)."""
        merged = {**config, **extra}
        if "variant" in merged:
            merged["source_set"] = merged.pop("variant")
        return spec_from_config(cls, merged)

    @property
    def models(self) -> list[str]:
        return self.source_set.split("+")

    @property
    def name(self) -> str:
        return f"{self.source_set}/seed-{self.seed_index}"

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def init_net(spec: TrialSpec) -> DLWNet:
    """A DLWNet initialised from the trial's own seed (torch's default init, seeded), without
    touching the process's global torch generator."""
    torch_seed = int(
        rng_for(spec.seed, "train", spec.source_set, f"seed-{spec.seed_index}", "init").integers(
            0, 2**62
        )
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        return DLWNet(spec.width, spec.depth, spec.layout, spec.precision)


class Trainer(TrialState):
    """``run_epoch()`` trains ``steps_per_epoch`` bilevel steps, scores the validation set with
    every model of ``val_models``, decays the learning rate and appends to ``history``."""

    def __init__(
        self,
        spec: TrialSpec,
        train_tiles: list[np.ndarray],
        val: Batch,
        device: str | torch.device = "cpu",
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.tiles = train_tiles
        self.noise = Case.from_param(spec.noise, "train.noise")
        self.net = init_net(spec).to(self.device)
        self.models = [build_model(m) for m in spec.models]
        self.val_models = {m: build_model(m) for m in spec.val_models}
        self.val_noisy = torch.from_numpy(val.noisy).to(self.device)
        self.val_clean = torch.from_numpy(val.clean).to(self.device)
        self.val_mask = torch.from_numpy(val.mask).to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=spec.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, spec.lr_decay)
        self.init_state()
        # The unweighted (w = 1) val MPSNR of the trial's own source models: the collapse line.
        own = {m: build_model(m) for m in spec.models}
        self.unweighted_val = float(
            np.mean(list(score(own, self.val_noisy, self.val_clean, None).values()))
        )

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.spec
        b = draw_batch(
            self.tiles,
            seed=s.seed,
            source_set=s.source_set,
            seed_index=s.seed_index,
            step=step,
            batch_size=s.batch_size,
            patch_size=s.patch_size,
            augment=s.augment,
            noise=self.noise,
        )
        return torch.from_numpy(b.noisy).to(self.device), torch.from_numpy(b.clean).to(self.device)

    def run_epoch(self) -> dict[str, float]:
        """One epoch; a collapsed one is redone from its start with half the learning rate."""
        import copy

        start = copy.deepcopy((self.net.state_dict(), self.optimizer.state_dict()))
        retries = 0
        while True:
            lr = self.optimizer.param_groups[0]["lr"]
            losses = self._train_steps()
            metrics = self.validate()
            collapsed = metrics["val_mpsnr"] < self.unweighted_val - COLLAPSE_MARGIN_DB
            if not collapsed or retries == MAX_RETRIES:
                break
            retries += 1
            self.net.load_state_dict(start[0])
            self.optimizer.load_state_dict(start[1])
            for group in self.optimizer.param_groups:
                group["lr"] = lr / 2
        self.scheduler.step()
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "step": self.epoch * self.spec.steps_per_epoch,
            "lr": lr,
            "train_loss": float(np.mean(losses)),
            **metrics,
            "lr_retries": retries,
            "val_score": metrics["val_mpsnr"],  # the runner's selection score
        }
        return self.end_epoch(record)

    def best_state(self) -> tuple[int, dict[str, Any]]:
        """``(epoch, state dict)`` of the best epoch on val (the current net before any epoch)."""
        if self.best is None:
            return self.epoch, {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        return int(self.best["epoch"]), self.best["state_dict"]

    def _train_steps(self) -> list[float]:
        s = self.spec
        first = self.epoch * s.steps_per_epoch
        self.net.train()
        return [
            bilevel_step(
                self.net,
                self.models,
                self.optimizer,
                *self.batch(step),
                step=step,
                trial=s.name,
                checkpoint=s.checkpoint_unrolled,
            )
            for step in range(first, first + s.steps_per_epoch)
        ]

    def validate(self) -> dict[str, float]:
        """``val_mpsnr_<model>`` for every validation model, ``val_mpsnr`` their mean over the
        trial's own source models, and ``val_weight_ratio``: mean weight on corrupted pixels
        over mean weight on clean pixels (DLW should drive it well below 1)."""
        w = self.weights(self.val_noisy)
        per_model = score(self.val_models, self.val_noisy, self.val_clean, w)
        out = {f"val_mpsnr_{m}": v for m, v in per_model.items()}
        own = [per_model[m] for m in self.spec.models if m in per_model]
        if len(own) < len(self.spec.models):  # a source model not among val_models
            extra = {m: build_model(m) for m in self.spec.models if m not in per_model}
            own += list(score(extra, self.val_noisy, self.val_clean, w).values())
        out["val_mpsnr"] = float(np.mean(own))
        out["val_weight_ratio"] = weight_ratio(w, self.val_mask)
        return out

    @torch.no_grad()
    def weights(self, noisy: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        self.net.eval()
        return torch.cat([self.net(noisy[i : i + chunk]) for i in range(0, len(noisy), chunk)])

    def stateful(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "scheduler": self.scheduler}

    def trial_id(self) -> dict[str, Any]:
        return {"source_set": self.spec.source_set, "seed_index": self.spec.seed_index}


def weight_ratio(w: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean weight on corrupted pixels / mean weight on the others (NaN without both kinds)."""
    if not bool(mask.any()) or bool(mask.all()):
        return float("nan")
    return float(w[mask].mean() / w[~mask].mean())
