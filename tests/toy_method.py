r"""A toy learned method, defined for the tests only: the smallest complete
:class:`~pipeline.methods.base.Method` (docs/adding-a-method.md walks through it).

One parameter :math:`\theta` is learned by Adam. It gives

* a **weighting**: the constant map :math:`w = e^{\theta}` (a scale of the fidelity), and
* a **restorer** of role ``target`` (it takes any weighting): the weighted blend of the noisy
  image and its 3×3 box-filtered version,

  .. math:: \hat x = \frac{w \odot y + s\,e^{\theta}\,B y}{w + s\,e^{\theta}},

  with :math:`s` the strength multiplier tuned on val (1: the trained blend).

Training minimises the mean squared error of :math:`\hat x` (w = 1, s = 1) on noisy training
patches (Gaussian noise, σ = 0.1), so :math:`\theta` learns how much to smooth; ``val_score`` is
the MPSNR on fixed val patches. Variants are names from the params (``variants: [a]``); the
trials are variants × seeds × searched values, as for every method.
"""

# No `from __future__ import annotations`: a Ray worker receives this module by value (the
# tests folder is not on its path), and its dataclass annotations must be objects, not strings.
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.methods.base import Method
from pipeline.methods.params import TrialParams
from pipeline.schema import require

SIGMA = 0.1  # the training noise


@dataclass(frozen=True)
class ToyParams(TrialParams):
    SEARCHABLE: ClassVar[tuple[str, ...]] = ("epochs", "lr")

    variants: list[str] = field(default_factory=lambda: ["a"])
    epochs: int = 2
    lr: float = 0.1
    steps_per_epoch: int = 5
    patch_size: int = 8

    def check_method(self, where: str) -> None:
        require(len(self.variants) > 0, f"{where}.variants", self.variants, "needs one")
        require(self.steps_per_epoch >= 1, f"{where}.steps_per_epoch", self.steps_per_epoch, "≥ 1")

    def check_value(self, name: str, value: Any, where: str) -> None:
        if name == "lr":
            require(0 < value < 1, where, value, "must lie in (0, 1)")
        else:
            super().check_value(name, value, where)


def box3(y):
    """The 3×3 mean of every band (replicated edges), torch or numpy in, torch out."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(y, dtype=torch.float64)
    t = t[None] if t.ndim == 3 else t
    b, c, h, w = t.shape
    flat = F.pad(t.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(flat, 3, stride=1).reshape(b, c, h, w)


def blend(y, theta, w=None, strength: float = 1.0):
    import torch

    y = torch.as_tensor(y, dtype=torch.float64)
    y4 = y[None] if y.ndim == 3 else y
    w = (
        torch.ones_like(y4)
        if w is None
        else torch.as_tensor(w, dtype=torch.float64).reshape(y4.shape)
    )
    k = strength * torch.exp(theta)
    x = (w * y4 + k * box3(y4)) / (w + k)
    return x[0] if y.ndim == 3 else x


class ToyTrainer:
    def __init__(self, params: ToyParams, config: dict, context: dict) -> None:
        import torch

        from pipeline.seeding import rng_for
        from pipeline.train.data import load_tiles, random_patch

        self.config, self.epoch, self.history, self.best = config, 0, [], None
        self.name = f"{config['variant']}/seed-{config['seed_index']}"
        self.seed = int(context["seed"])
        data = Path(context["data_dir"])
        self.tiles = list(load_tiles(data, "train").values())
        rng = rng_for(self.seed, "toy", "val")
        val = [
            random_patch(t, params.patch_size, rng, False) for t in load_tiles(data, "val").values()
        ]
        self.val_clean = np.stack(val)
        self.val_noisy = self.val_clean + SIGMA * rng.standard_normal(self.val_clean.shape)
        self.steps, self.patch = params.steps_per_epoch, params.patch_size
        self.theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.theta], lr=float(config["lr"]))

    def _batch(self, step: int):
        from pipeline.seeding import rng_for
        from pipeline.train.data import random_patch

        rng = rng_for(self.seed, "toy", self.name, "batch", str(step))
        clean = np.stack([random_patch(t, self.patch, rng, True) for t in self.tiles])
        return clean + SIGMA * rng.standard_normal(clean.shape), clean

    def run_epoch(self) -> dict[str, float]:
        import torch

        losses = []
        for step in range(self.epoch * self.steps, (self.epoch + 1) * self.steps):
            noisy, clean = self._batch(step)
            self.optimizer.zero_grad()
            loss = torch.mean((blend(noisy, self.theta) - torch.from_numpy(clean)) ** 2)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            x = blend(self.val_noisy, self.theta).numpy()
        mse = ((x - self.val_clean) ** 2).mean(axis=(2, 3))
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "train_loss": float(np.mean(losses)),
            "theta": float(self.theta),
            "val_score": float(np.mean(10 * np.log10(1 / mse))),
        }
        self.history.append(record)
        if self.best is None or record["val_score"] > self.best["val_score"]:
            self.best = {"epoch": self.epoch, "val_score": record["val_score"],
                         "state_dict": {"theta": self.theta.detach().clone()}}  # fmt: skip
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "state_dict": {"theta": self.theta.detach().clone()},
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": [dict(h) for h in self.history],
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            self.theta.copy_(state["state_dict"]["theta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history, self.best = state["epoch"], list(state["history"]), state["best"]


class Toy(Method):
    name: ClassVar[str] = "toy"
    params_cls = ToyParams
    provides_weighting: ClassVar[bool] = True
    restorer_role: ClassVar[str | None] = "target"
    restorer_tuned: ClassVar[bool] = True

    def variants(self) -> list[str]:
        return list(self.params.variants)

    def trainer(self, config: dict, context: dict) -> ToyTrainer:
        return ToyTrainer(self.params, config, context)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu"):
        from pipeline.checkpoint import state_dict_of

        state = state_dict_of(path, device)
        if "theta" not in state:
            raise ValueError(f"{path}: not a toy checkpoint")
        return state["theta"]

    @classmethod
    def weights(cls, part, noisy: np.ndarray) -> np.ndarray:
        return np.full(noisy.shape, float(np.exp(float(part))), dtype=np.float32)

    @classmethod
    def restore(cls, part, noisy: np.ndarray, w, strength: float, A=None):
        import torch

        with torch.no_grad():
            x = blend(noisy, part.double(), w, strength)
        return x.numpy().astype(np.float32), {"iterations": 1, "converged": True}
