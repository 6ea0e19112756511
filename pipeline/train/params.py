"""The ``train`` section of params.yaml: DLW bilevel training with Ray Tune (docs/science.md,
docs/architecture.md).

Trials are the grid ``source_sets × seeds × search``: one DLWnet per source set (default every
non-empty subset of ``source_models``, as the DLW reference trains 7 nets), per training seed
and per point of the searched hyper-parameter grid.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.degrade.registry import Case
from pipeline.schema import ConfigError, parse, require

# Models of pipeline.models.registry.MODELS whose unrolled solve serves as a DLW source (checked
# by a test; the registry also holds target-only models). Listed here because parsing params
# must not import torch.
KNOWN_MODELS = ("nn", "tv", "tvs", "tv_l1")

# DLW's own training draws (docs/science.md): every band Gaussian with σ_b ~ U[10, 70]/255, plus
# salt-and-pepper with ratio U[0.1, 0.5] on one third of the bands.
DLW_TRAINING_NOISE = {
    "name": "impulse",
    "sigma_255": {"uniform": [10, 70]},
    "density": {"uniform": [0.1, 0.5]},
}

# Hyper-parameters a trial may take from the `search` grid (each is also a field below).
SEARCHABLE = (
    "lr",
    "lr_decay",
    "width",
    "depth",
    "batch_size",
    "patch_size",
    "epochs",
    "steps_per_epoch",
)


def set_name(models: list[str] | tuple[str, ...]) -> str:
    """A source set's name: its sorted model names joined with ``+`` (``nn+tv``)."""
    return "+".join(sorted(models))


@dataclass(frozen=True)
class SchedulerParams:
    # fifo: every trial runs all its epochs; asha: Async Successive Halving on val_mpsnr.
    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: int = 2

    def check(self, where: str) -> None:
        require(self.grace_period >= 1, f"{where}.grace_period", self.grace_period, "must be ≥ 1")
        ok = self.reduction_factor >= 2
        require(ok, f"{where}.reduction_factor", self.reduction_factor, "must be ≥ 2")


@dataclass(frozen=True)
class TrainParams:
    # Source models of the grid; every trial's weights are scored on val with each of them.
    source_models: list[str] = field(default_factory=lambda: ["nn", "tv", "tvs"])
    # Source sets to train (lists of model names); null: every non-empty subset of source_models.
    source_sets: list[list[str]] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds k → seed-<k>.pt
    width: int = 16  # DLWnet filters (paper: 64)
    depth: int = 3  # spatial + spectral blocks
    patch_size: int = 32  # square training patches (paper: 64)
    batch_size: int = 4  # (paper: 10)
    augment: bool = True  # random flips and 90° rotations of each patch
    lr: float = 1e-2  # Adam learning rate (paper: 1e-3; 1e-2 learns most in ~100 steps)
    lr_decay: float = 0.8  # ExponentialLR factor per epoch (paper: 0.8)
    epochs: int = 6  # (paper: 10)
    steps_per_epoch: int = 20  # (paper: 2000)
    # Training noise, drawn on the fly: a noise case as in degrade.cases (DLW's draws).
    noise: Case = field(default_factory=lambda: Case.from_param(DLW_TRAINING_NOISE, "noise"))
    val_patches: int = 4  # noisy patches per val image, fixed by the seed
    # Hyper-parameter grid, e.g. {lr: [0.001, 0.003]}: every value is a separate trial.
    search: dict[str, list[Any]] = field(default_factory=dict)
    scheduler: SchedulerParams = field(default_factory=SchedulerParams)
    cpu: float = 1.0  # Ray resources per trial; torch threads are pinned to the CPUs
    gpu: float = 0.0  # fractional GPUs share a device between trials
    max_failures: int = 2  # retries of a crashed trial, from its last checkpoint
    keep_checkpoints: int = 2  # checkpoints kept per trial in Ray's folder

    def check(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        models = self.source_models
        require(len(models) > 0, key("source_models"), models, "needs at least one model")
        for i, m in enumerate(models):
            require(
                m in KNOWN_MODELS,
                f"{key('source_models')}[{i}]",
                m,
                f"unknown model (known: {', '.join(KNOWN_MODELS)})",
            )
        require(len(set(models)) == len(models), key("source_models"), models, "listed twice")
        for i, s in enumerate(self.source_sets or []):
            require(len(s) > 0, f"{key('source_sets')}[{i}]", s, "a source set needs a model")
            for m in s:
                require(
                    m in models,
                    f"{key('source_sets')}[{i}]",
                    s,
                    f"{m!r} is not in {key('source_models')} {models}",
                )
            require(len(set(s)) == len(s), f"{key('source_sets')}[{i}]", s, "listed twice")
        names = [set_name(s) for s in self.source_sets or []]
        require(
            len(set(names)) == len(names),
            key("source_sets"),
            self.source_sets,
            "a source set is listed twice",
        )
        require(len(self.seeds) > 0, key("seeds"), self.seeds, "needs at least one seed")
        require(all(k >= 0 for k in self.seeds), key("seeds"), self.seeds, "must be ≥ 0")
        require(len(set(self.seeds)) == len(self.seeds), key("seeds"), self.seeds, "listed twice")
        for name in (
            "width",
            "depth",
            "patch_size",
            "batch_size",
            "epochs",
            "steps_per_epoch",
            "val_patches",
        ):
            require(getattr(self, name) >= 1, key(name), getattr(self, name), "must be ≥ 1")
        check_value("lr", self.lr, key("lr"))
        check_value("lr_decay", self.lr_decay, key("lr_decay"))
        require(self.cpu > 0, key("cpu"), self.cpu, "must be positive")
        require(self.gpu >= 0, key("gpu"), self.gpu, "must be ≥ 0")
        require(self.max_failures >= 0, key("max_failures"), self.max_failures, "must be ≥ 0")
        ok = self.keep_checkpoints >= 1
        require(ok, key("keep_checkpoints"), self.keep_checkpoints, "must be ≥ 1")
        for name, values in self.search.items():
            where_s = f"{key('search')}.{name}"
            require(
                name in SEARCHABLE,
                where_s,
                values,
                f"not a searchable hyper-parameter (searchable: {', '.join(SEARCHABLE)})",
            )
            require(
                isinstance(values, list) and len(values) > 0,
                where_s,
                values,
                "must be a non-empty list of values",
            )
            tp = float if name in ("lr", "lr_decay") else int
            for i, v in enumerate(values):
                check_value(name, parse(tp, v, f"{where_s}[{i}]"), f"{where_s}[{i}]")

    def sets(self) -> list[str]:
        """Source-set names of the grid, most expensive first (more models, then TV-family)
        so that the longest trials start first and the 2-slot schedule stays balanced."""
        if self.source_sets is not None:
            chosen = [set_name(s) for s in self.source_sets]
        else:
            chosen = [
                set_name(c)
                for r in range(1, len(self.source_models) + 1)
                for c in itertools.combinations(self.source_models, r)
            ]
        return sorted(chosen, key=lambda s: (-len(s.split("+")), -_cost(s), s))

    def search_grid(self) -> dict[str, list[Any]]:
        """The searched values with their parameter types (ints stay ints)."""
        return {
            name: [parse(float if name in ("lr", "lr_decay") else int, v, name) for v in values]
            for name, values in self.search.items()
        }


def _cost(name: str) -> float:
    # Relative per-step cost of one unrolled solve (measured, 32×32×31, batch 4).
    return sum({"nn": 0.45, "tv": 1.0, "tvs": 1.1, "tv_l1": 1.0}[m] for m in name.split("+"))


def check_value(name: str, value: Any, where: str) -> None:
    if name == "lr":
        require(0 < value < 1, where, value, "the learning rate must lie in (0, 1)")
    elif name == "lr_decay":
        require(0 < value <= 1, where, value, "the per-epoch decay must lie in (0, 1]")
    elif value < 1:
        raise ConfigError(f"{where} = {value!r}: must be ≥ 1")
