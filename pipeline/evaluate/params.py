"""The ``evaluate`` section of params.yaml: the transfer matrix (``docs/science.md`` §4 and
``docs/conventions.md``, "Fair comparison").

Every (weighting × target × case × test image) cell is solved to convergence with the target's
regularisation strength tuned on ``val`` per (target, case, weighting, training seed) over
``grid`` (multipliers of the reference strengths, :mod:`pipeline.models.strength`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.schema import require

# Parsing params must not import torch: the names are listed here, and a test checks them
# against pipeline.models.MODELS and pipeline.evaluate.baselines.BASELINES.
KNOWN_TARGETS = ("tv", "tvs", "nn", "lrtv", "e3dtv", "tv_l1")
KNOWN_WEIGHTINGS = ("unweighted", "oracle", "handcrafted", "dlw")
KNOWN_BASELINES = ("bm4d", "bm3d", "tv_l1")


def _default_targets() -> dict[str, dict[str, Any]]:
    # Tolerances of the default profile: on the val/test cubes (32×32×31) tol = 1e-3 changes
    # MPSNR by ≤ 0.04 dB against 1e-5 at 4–7× fewer iterations, and E3DTV's 1e-2 by ≤ 0.07 dB
    # against its 3e-3 (README, "Evaluation"); the paper profile uses the models' defaults.
    return {
        "nn": {"tol": 1e-3},
        "tv": {"boundary": "neumann", "tol": 1e-3},
        "tvs": {"boundary": "neumann", "tol": 1e-3},
        "lrtv": {"tol": 1e-3},
        "e3dtv": {"tol": 1e-2},
    }


@dataclass(frozen=True)
class EvaluateParams:
    # Target models and their parameter overrides (validated against the model's own params).
    targets: dict[str, dict[str, Any]] = field(default_factory=_default_targets)
    # Weightings: dlw means every trained net found in models/dlw (all seeds).
    weightings: list[str] = field(
        default_factory=lambda: ["unweighted", "oracle", "handcrafted", "dlw"]
    )
    # Restrict dlw to these source sets (names like nn+tv); null: every trained one.
    source_sets: list[str] | None = None
    # Multipliers of each target's reference strengths, tuned on val (``docs/conventions.md``).
    grid: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0])
    # Peer baselines in the same table: bm4d (cubes) / bm3d (grey, RGB) given the true mean σ,
    # and tv_l1 (unweighted, tuned like a target). Options: {tv_l1: {...}} overrides.
    baselines: list[str] = field(default_factory=lambda: ["bm4d", "tv_l1"])
    tv_l1: dict[str, Any] = field(default_factory=lambda: {"tol": 1e-3})
    # Arithmetic of the converged solves: float32 is ≈ 25 % faster than float64 and changes
    # MPSNR by < 1e-3 dB at the default tolerances (benchmarks/tolerance.py).
    precision: Literal["float32", "float64"] = "float32"
    cases: list[str] | None = None  # null: every case in data/degraded
    gallery_images: int = 2  # test images whose restorations go to the gallery
    cpu: float = 1.0  # Ray resources per task; torch threads are pinned to them

    def check(self, where: str) -> None:
        def key(name: str) -> str:
            return f"{where}.{name}"

        require(len(self.targets) > 0, key("targets"), self.targets, "needs a target")
        for name in self.targets:
            known = ", ".join(KNOWN_TARGETS)
            require(name in KNOWN_TARGETS, key("targets"), name, f"unknown target ({known})")
        require(len(self.weightings) > 0, key("weightings"), self.weightings, "needs one")
        for i, w in enumerate(self.weightings):
            known = ", ".join(KNOWN_WEIGHTINGS)
            require(w in KNOWN_WEIGHTINGS, f"{key('weightings')}[{i}]", w, f"unknown ({known})")
        require(
            len(set(self.weightings)) == len(self.weightings),
            key("weightings"),
            self.weightings,
            "a weighting is listed twice",
        )
        require(len(self.grid) > 0, key("grid"), self.grid, "needs at least one multiplier")
        for i, m in enumerate(self.grid):
            require(m > 0, f"{key('grid')}[{i}]", m, "multipliers must be > 0")
        require(len(set(self.grid)) == len(self.grid), key("grid"), self.grid, "repeated value")
        for i, b in enumerate(self.baselines):
            known = ", ".join(KNOWN_BASELINES)
            require(b in KNOWN_BASELINES, f"{key('baselines')}[{i}]", b, f"unknown ({known})")
        require(self.gallery_images >= 0, key("gallery_images"), self.gallery_images, "≥ 0")
        require(self.cpu > 0, key("cpu"), self.cpu, "must be > 0")
