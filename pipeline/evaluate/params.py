"""The ``evaluate`` section of params.yaml: the transfer matrix (``docs/science.md`` §4 and
``docs/conventions.md``, "Fair comparison").

The matrix crosses two lists, each drawn from a registry:

* ``weightings`` — maps for the fidelity: the built-ins (``unweighted``, ``oracle``,
  ``handcrafted``; :mod:`pipeline.evaluate.weightings`) and what learned methods provide,
  named ``<method>`` (every trained variant and seed in ``models/<method>``) or
  ``<method>:<variant>`` (one variant);
* ``restorers`` — name → parameter overrides: the classical restorers (the variational models of
  :mod:`pipeline.models` and the peer baselines BM3D/BM4D; :mod:`pipeline.evaluate.restorers`)
  and the restorers learned methods provide (``<method>`` or ``<method>:<variant>``, no
  overrides).

A restorer of role ``target`` is solved with every weighting; a ``peer`` or a learned restorer
that takes no weighting gets one row per image (weighting ``none``). Every strength is tuned on
``val`` per (restorer, case, weighting, seeds) over ``grid`` (multipliers of the reference
strengths, :mod:`pipeline.models.strength`). Names are checked against the registries when the
stage starts (:func:`pipeline.evaluate.restorers.check_restorers`), which import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.io import safe_name
from pipeline.schema import ConfigError, require

# The built-in weightings (pipeline.evaluate.weightings.BUILTIN; a test keeps them in step:
# parsing params must not import numpy-heavy modules).
BUILTIN_WEIGHTINGS = ("unweighted", "oracle", "handcrafted")


def _default_weightings() -> list[str]:
    # The built-ins and every registered method's weighting (all its variants).
    from pipeline.methods.registry import providing

    return [*BUILTIN_WEIGHTINGS, *providing("weighting")]


def _default_restorers() -> dict[str, dict[str, Any]]:
    # Tolerances of the default profile: on the val/test cubes (32×32×31) tol = 1e-3 changes
    # MPSNR by ≤ 0.04 dB against 1e-5 at 4–7× fewer iterations, and E3DTV's 1e-2 by ≤ 0.07 dB
    # against its 3e-3 (README, "Evaluation"); the paper profile uses the models' defaults.
    return {
        "nn": {"tol": 1e-3},
        "tv": {"boundary": "neumann", "tol": 1e-3},
        "tvs": {"boundary": "neumann", "tol": 1e-3},
        "lrtv": {"tol": 1e-3},
        "e3dtv": {"tol": 1e-2},
        "tv_l1": {"tol": 1e-3},
        "bm4d": {},
    }


def split_name(name: str, where: str) -> tuple[str, str]:
    """``"<method>:<variant>"`` → ``(method, variant)``; ``"<method>"`` → ``(method, "")``."""
    head, _, variant = name.partition(":")
    if variant:
        try:
            safe_name(variant, "variant")
        except ValueError as exc:
            raise ConfigError(f"{where} = {name!r}: {exc}") from None
    return head, variant


@dataclass(frozen=True)
class EvaluateParams:
    # Weightings: built-ins, and <method> / <method>:<variant> of the learned methods.
    weightings: list[str] = field(default_factory=_default_weightings)
    # Restorers and their parameter overrides (validated against the model's own params).
    restorers: dict[str, dict[str, Any]] = field(default_factory=_default_restorers)
    # Multipliers of each restorer's reference strengths, tuned on val (docs/conventions.md):
    # the starting grid; a best value on its edge extends it (× the edge's spacing, up to
    # `extend` times per edge), then `refine` rounds halve the spacing around the best in log
    # scale. A best value still on the edge after `extend` steps is reported (strength_on_edge).
    grid: list[float] = field(default_factory=lambda: [0.25, 1.0, 4.0])
    extend: int = 3
    refine: int = 1
    # Samples per batched solve of a model (1: one cell at a time, the fastest on a CPU for the
    # default 32×32×31 cubes: benchmarks/evaluate_engine.py; GPUs want more).
    batch: int = 1
    # Reuse solved cells from runs/cache/cells (keyed by content; safe to delete).
    cache: bool = True
    # Arithmetic of the converged solves: float32 is ≈ 25 % faster than float64 and changes
    # MPSNR by < 1e-3 dB at the default tolerances (benchmarks/tolerance.py).
    precision: Literal["float32", "float64"] = "float32"
    # Arithmetic of the learned methods' nets (weight maps, σ maps, learned restorers):
    # pipeline.methods.precision. bf16 runs their convolutions in bfloat16 (faster only where
    # the CPU or GPU has it natively: benchmarks/train_roofline.py) and moves the results by
    # the amounts benchmarks/precision_quality.py measures; auto is bf16 only where native.
    net_precision: Literal["fp32", "bf16", "auto"] = "fp32"
    cases: list[str] | None = None  # null: every case in data/degraded
    gallery_images: int = 2  # test images whose restorations go to the gallery
    cpu: float = 1.0  # Ray resources per task; torch threads are pinned to them
    # Exceptions to the full cross (pipeline.evaluate.scope): restorers and weightings per case,
    # weightings per restorer.
    scope: dict[str, Any] = field(default_factory=dict)

    @property
    def narrowed(self):
        """The parsed :class:`~pipeline.evaluate.scope.Scope`."""
        from pipeline.evaluate.scope import Scope

        return Scope.parse(self.scope, "evaluate.scope")

    def check(self, where: str) -> None:
        from pipeline.methods.registry import METHODS, providing

        def key(name: str) -> str:
            return f"{where}.{name}"

        require(len(self.weightings) > 0, key("weightings"), self.weightings, "needs one")
        learned = providing("weighting")
        known = ", ".join([*BUILTIN_WEIGHTINGS, *learned])
        for i, w in enumerate(self.weightings):
            head, _ = split_name(w, f"{key('weightings')}[{i}]")
            ok = (w in BUILTIN_WEIGHTINGS) or (head in learned)
            require(ok, f"{key('weightings')}[{i}]", w, f"unknown weighting ({known})")
        require(
            len(set(self.weightings)) == len(self.weightings),
            key("weightings"),
            self.weightings,
            "a weighting is listed twice",
        )
        require(len(self.restorers) > 0, key("restorers"), self.restorers, "needs a restorer")
        for name, overrides in self.restorers.items():
            head, _ = split_name(name, f"{key('restorers')}.{name}")
            if head in METHODS:
                require(
                    not overrides,
                    f"{key('restorers')}.{name}",
                    overrides,
                    "a learned restorer takes no overrides (its strength is tuned on val)",
                )
        require(len(self.grid) > 0, key("grid"), self.grid, "needs at least one multiplier")
        for i, m in enumerate(self.grid):
            require(m > 0, f"{key('grid')}[{i}]", m, "multipliers must be > 0")
        require(len(set(self.grid)) == len(self.grid), key("grid"), self.grid, "repeated value")
        require(self.extend >= 0, key("extend"), self.extend, "must be ≥ 0")
        require(self.refine >= 0, key("refine"), self.refine, "must be ≥ 0")
        require(self.batch >= 1, key("batch"), self.batch, "must be ≥ 1")
        require(self.gallery_images >= 0, key("gallery_images"), self.gallery_images, "≥ 0")
        require(self.cpu > 0, key("cpu"), self.cpu, "must be > 0")
        self.narrowed.check(self.cases, list(self.restorers), list(self.weightings), key("scope"))
