"""The ``train.dlw`` section of params.yaml: DLW bilevel training (docs/science.md).

Trials are the grid ``source_sets × seeds × search``: one DLWnet per source set (default every
non-empty subset of ``source_models``, as the DLW reference trains 7 nets), per training seed
and per point of the searched hyper-parameter grid. No torch here: whether a source model exists
is checked by :meth:`pipeline.methods.dlw.DLW.check` against the model registry.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipeline.degrade.registry import Case
from pipeline.methods.params import TrialParams
from pipeline.schema import require

__all__ = ["DLW_TRAINING_NOISE", "DLWParams", "set_name"]

# DLW's own training draws (docs/science.md): every band Gaussian with σ_b ~ U[10, 70]/255, plus
# salt-and-pepper with ratio U[0.1, 0.5] on one third of the bands.
DLW_TRAINING_NOISE = {
    "name": "impulse",
    "sigma_255": {"uniform": [10, 70]},
    "density": {"uniform": [0.1, 0.5]},
}


def set_name(models: list[str] | tuple[str, ...]) -> str:
    """A source set's name: its sorted model names joined with ``+`` (``nn+tv``)."""
    return "+".join(sorted(models))


@dataclass(frozen=True)
class DLWParams(TrialParams):
    SEARCHABLE: ClassVar[tuple[str, ...]] = (
        "lr",
        "lr_decay",
        "width",
        "depth",
        "batch_size",
        "patch_size",
        "epochs",
        "steps_per_epoch",
    )

    # Source models of the grid; every trial's weights are scored on val with each of them.
    source_models: list[str] = field(default_factory=lambda: ["nn", "tv", "tvs"])
    # Source sets to train (lists of model names); null: every non-empty subset of source_models.
    source_sets: list[list[str]] | None = None
    width: int = 16  # DLWnet filters (paper: 64)
    depth: int = 3  # spatial + spectral blocks
    patch_size: int = 32  # square training patches (paper: 64)
    batch_size: int = 4  # (paper: 10)
    augment: bool = True  # random flips and 90° rotations of each patch
    lr: float = 1e-2  # Adam learning rate (paper: 1e-3; 1e-2 learns most in ~100 steps)
    lr_decay: float = 0.8  # ExponentialLR factor per epoch (paper: 0.8)
    steps_per_epoch: int = 20  # (paper: 2000)
    # Training noise, drawn on the fly: a noise case as in degrade.cases (DLW's draws).
    noise: Case = field(default_factory=lambda: Case.from_param(DLW_TRAINING_NOISE, "noise"))
    val_patches: int = 4  # noisy patches per val image, fixed by the seed
    # How DLWnet is evaluated (pipeline/methods/dlw/net.py; benchmarks/train_roofline.py): one
    # of its exact layouts (auto | separable | separable_cl | conv3d | conv3d_cl; auto: a fixed
    # rule of device, width and precision; `precision` is every method's, params.py).
    layout: str = "auto"
    # Recompute each unrolled ADMM iteration in the backward pass instead of keeping its
    # intermediates (torch.utils.checkpoint): less memory, more time, the same gradients.
    checkpoint_unrolled: bool = False

    def check_method(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        models = self.source_models
        require(len(models) > 0, key("source_models"), models, "needs at least one model")
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
        require(self.val_patches >= 1, key("val_patches"), self.val_patches, "must be ≥ 1")
        layouts = ("auto", "separable", "separable_cl", "conv3d", "conv3d_cl")
        require(self.layout in layouts, key("layout"), self.layout, f"one of {layouts}")

    def check_value(self, name: str, value: Any, where: str) -> None:
        if name == "lr":
            require(0 < value < 1, where, value, "the learning rate must lie in (0, 1)")
        elif name == "lr_decay":
            require(0 < value <= 1, where, value, "the per-epoch decay must lie in (0, 1]")
        else:
            super().check_value(name, value, where)

    def sets(self) -> list[str]:
        """Source-set names in the order given (null: every non-empty subset)."""
        if self.source_sets is not None:
            return [set_name(s) for s in self.source_sets]
        return [
            set_name(c)
            for r in range(1, len(self.source_models) + 1)
            for c in itertools.combinations(self.source_models, r)
        ]
