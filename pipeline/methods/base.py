r"""The Method interface: what a learned method gives the runner, the evaluation and the report.

Every method of the benchmark restores :math:`y = A x + n` through
:math:`\hat x = \operatorname{argmin}_x \tfrac12 \sum_i w_i (A x - y)_i^2 + \lambda R(x)` (or a
learned solver of it) and learns one part of it (docs/science.md, "One frame"). A method is one
package under :mod:`pipeline.methods` plus one line in :mod:`pipeline.methods.registry`; it
declares

* **training** — its params dataclass (a :class:`~pipeline.methods.params.TrialParams`, the
  section ``train.<name>`` of params.yaml), its trial grid's variants (:meth:`Method.variants`),
  the constant part of every trial's config (:meth:`Method.trial_config`) and a
  :class:`Trainer` for one trial (:meth:`Method.trainer`). The one Ray Tune runner
  (:mod:`pipeline.train`) does the rest: trials, resources, checkpoints, retries, resume, MLflow,
  ``models/<name>/``;
* **contributions to the matrix** — a *weighting* (``weights(part, y) → w``, a map for the
  fidelity) and/or a *restorer* (``restore(part, y, w, strength) → (x, diagnostics)``), each
  computed from a trained part loaded by :meth:`Method.load` with ``weights_only=True``;
* **its own report sections** (:meth:`Method.report_sections`, none by default).

Evaluation and report never branch on a method's name: they read these attributes.

A :class:`Trainer`'s checkpoint (its ``state_dict()``) holds plain tensors, numbers, strings and
lists only (``torch.load(weights_only=True)``) and at least ``epoch``, ``history`` (one record
per epoch, each with ``epoch`` and ``val_score``) and ``best`` (``None`` or a dict with
``epoch``, ``val_score`` and ``state_dict``: the weights of the best epoch on val, which the trial
hands on; without it the last epoch's ``state_dict`` is used).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from pipeline.io import safe_name
from pipeline.methods.params import TrialParams
from pipeline.schema import parse_dataclass

__all__ = ["LearnedPart", "Method", "Trainer", "TrialState", "check_restore_inputs", "find_parts"]

# The selection score every trainer reports each epoch (higher is better): Tune's metric, the
# best epoch of a trial, the best configuration of a search and the best seed.
SCORE = "val_score"


class Trainer(Protocol):
    """One trial's state, advanced one epoch at a time (module docstring: the checkpoint)."""

    epoch: int

    def run_epoch(self) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_restore_inputs(
    name: str, noisy: Any, w: Any, strength: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """A restorer's inputs as float32 arrays, or a :class:`ValueError` naming what is wrong:
    ``noisy`` a finite (C, H, W) cube, ``w`` None or finite, ≥ 0 and of its shape, ``strength``
    finite and ≥ 0. ``name`` starts the message (``"rg restorer"``)."""
    y = np.asarray(noisy, dtype=np.float32)
    if y.ndim != 3:
        raise ValueError(f"{name}: expected a (C, H, W) image, got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name}: the noisy image has NaN or infinite values")
    if not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"{name}: strength = {strength!r} must be finite and ≥ 0")
    if w is None:
        return y, None
    w = np.asarray(w, dtype=np.float32)
    if w.shape != y.shape:
        raise ValueError(f"{name}: weights of shape {w.shape}, image of shape {y.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name}: the weights must be finite and ≥ 0 (NaN or < 0 given)")
    return y, w


class TrialState:
    """The bookkeeping every trainer shares (module docstring: the checkpoint): ``epoch``,
    ``history``, ``best``, and the checkpoint of the trained module with its optimiser state.

    A subclass sets ``self.spec`` (with ``variant`` and ``seed_index``) and calls
    :meth:`init_state`; it says what it trains (:meth:`module`, ``self.net`` by default), what else
    has state (:meth:`stateful`, ``{"optimizer": self.optimizer}`` by default; a value may be a
    dict of such objects) and, if not by variant and seed, which trial it is (:meth:`trial_id`).
    Each epoch ends with :meth:`end_epoch`, which keeps the best epoch on val."""

    def init_state(self) -> None:
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best: dict[str, Any] | None = None  # the best epoch on val: epoch, score, weights

    def module(self) -> Any:
        return self.net

    def stateful(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer}

    def trial_id(self) -> dict[str, Any]:
        return {"variant": self.spec.variant, "seed_index": self.spec.seed_index}

    def module_state(self) -> dict[str, Any]:
        """The trained module's weights, detached copies on the CPU."""
        return {k: v.detach().cpu().clone() for k, v in self.module().state_dict().items()}

    def end_epoch(self, record: dict[str, float]) -> dict[str, float]:
        """Append the epoch's record and keep the weights of the best ``val_score``."""
        self.history.append(record)
        if self.best is None or record[SCORE] > self.best[SCORE]:
            self.best = {
                "epoch": self.epoch,
                SCORE: float(record[SCORE]),
                "state_dict": self.module_state(),
            }
        return record

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers, strings and lists only: loadable with ``weights_only=True``."""

        def plain(o: Any) -> Any:
            if isinstance(o, dict):
                return {k: v.state_dict() for k, v in o.items()}
            return o.state_dict()

        return {
            "state_dict": self.module_state(),
            **{k: plain(o) for k, o in self.stateful().items()},
            "epoch": self.epoch,
            "history": [dict(h) for h in self.history],
            "best": None if self.best is None else dict(self.best),
            "spec": self.trial_id(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = self.trial_id()
        if state.get("spec") != mine:
            raise ValueError(f"checkpoint of trial {state.get('spec')}, not of {mine}")
        self.module().load_state_dict(state["state_dict"])
        for key, o in self.stateful().items():
            if isinstance(o, dict):
                for k, v in o.items():
                    v.load_state_dict(state[key][k])
            else:
                o.load_state_dict(state[key])
        self.epoch = int(state["epoch"])
        self.history = [dict(h) for h in state["history"]]
        self.best = state.get("best")


@dataclass(frozen=True)
class LearnedPart:
    """A trained part on disk: ``models/<method>/<variant>/seed-<k>.pt``."""

    method: str
    variant: str
    seed: int
    path: str  # relative to the repository root

    @property
    def label(self) -> str:
        """The name of its weighting or restorer in the matrix: ``<method>:<variant>``."""
        return f"{self.method}:{self.variant}"


def find_parts(
    root: str | os.PathLike, method: str, variants: list[str] | None = None
) -> list[LearnedPart]:
    """Every ``models/<method>/<variant>/seed-<k>.pt`` under ``root`` (``best.pt`` is a copy of
    one of them), restricted to ``variants`` when given (a missing one is an error)."""
    root = Path(root)
    base = root / "models" / method
    found = []
    for path in sorted(base.glob("*/seed-*.pt")):
        variant = safe_name(path.parent.name, "variant")
        try:
            seed = int(path.stem.removeprefix("seed-"))
        except ValueError:
            raise ValueError(f"{path}: expected seed-<k>.pt") from None
        if variants is None or variant in variants:
            found.append(LearnedPart(method, variant, seed, path.relative_to(root).as_posix()))
    if variants is not None:
        missing = sorted(set(variants) - {p.variant for p in found})
        if missing:
            raise ValueError(f"{base}: no trained part for variant(s) {missing}; train them first")
    return found


class Method:
    """Base class of a learned method (module docstring). Subclasses set the class attributes
    and override what they provide; the defaults provide nothing."""

    name: ClassVar[str]  # the registry key, the params section train.<name>, models/<name>/
    params_cls: ClassVar[type[TrialParams]] = TrialParams
    # Code under pipeline/ (besides pipeline/train and the method's own package) whose changes
    # alter trained weights: part of the experiment's name, so a resume never mixes code.
    code: ClassVar[tuple[str, ...]] = ()
    # Contributions to the matrix.
    provides_weighting: ClassVar[bool] = False
    # Role of the restorer it provides: "target" (takes every weighting, like the classical
    # variational targets), "learned" (takes no weighting) or None (no restorer).
    restorer_role: ClassVar[str | None] = None
    # Whether its restorer has a strength to tune on val (multipliers of evaluate.grid).
    restorer_tuned: ClassVar[bool] = False
    # The forward operators its restorer takes (identity, blur, downsample, inpaint): evaluate
    # plans it on the cases of those tasks only, and passes A to restore() on a task.
    restorer_operators: ClassVar[tuple[str, ...]] = ("identity",)
    # Whether its restorer can be told the true σ map instead of estimating it: evaluate then adds
    # an oracle-guided row "<method>:<variant>+oracle" (restore_oracle) for every variant that
    # estimates one (provides_weighting_for).
    restorer_oracle: ClassVar[bool] = False
    # Whether its weighting comes from an estimated noise level σ̂ (noise_map), for the gallery.
    gives_noise_map: ClassVar[bool] = False

    def __init__(self, params: TrialParams | None = None) -> None:
        self.params = params if params is not None else self.params_cls()

    @classmethod
    def from_plain(cls, section: dict[str, Any] | None, where: str = "") -> Method:
        return cls(parse_dataclass(cls.params_cls, section or {}, where or f"train.{cls.name}"))

    # --- training -------------------------------------------------------------------------

    def check(self, where: str) -> None:
        """Checks that need more than the schema (e.g. the model registry, which imports torch);
        raise :class:`~pipeline.schema.ConfigError` naming the key."""

    def variants(self) -> list[str]:
        """The variants of the trial grid, the longest trials first (2-slot schedules balance)."""
        raise NotImplementedError

    def trial_config(self) -> dict[str, Any]:
        """What every trial's Tune config holds besides variant, seed index and the searchable
        hyper-parameters (so each MLflow run records it)."""
        return {}

    def trainer(self, config: dict[str, Any], context: dict[str, Any]) -> Trainer:
        """The trainer of one trial. ``config``: variant, seed_index, hyper-parameters;
        ``context``: seed (global), data_dir, device, threads."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line on the grid, for the stage's log."""
        p = self.params
        search = f" × search {p.search}" if p.search else ""
        return f"{len(self.variants())} variants × {len(p.seeds)} seeds{search}"

    def progress(self, result: dict[str, Any]) -> str:
        """The per-epoch log line's metrics."""
        return f"val score {result.get(SCORE, float('nan')):.4g}"

    def part_record(self, config: dict[str, Any]) -> dict[str, Any]:
        """What ``seed-<k>.json`` says about the trained part (its architecture)."""
        return {}

    def summary(self, outcomes: list, context: dict[str, Any]) -> dict[str, Any]:
        """Extra entries of ``reports/train/<name>/metrics.json`` (e.g. a reference score)."""
        return {}

    def summary_lines(self, metrics: dict[str, Any]) -> list[str]:
        """The stage's closing table."""
        return [
            f"{variant:<16} val score {row.get(SCORE, float('nan')):.4f}"
            for variant, row in metrics.get("variants", {}).items()
        ]

    def figure(self, state_dict: dict, context: dict[str, Any], path: Path, title: str) -> bool:
        """Write a PNG of a trained part to ``path`` (logged to its MLflow run); False: none."""
        return False

    # --- contributions to the matrix ------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> Any:
        """The trained part of ``path`` (``torch.load(weights_only=True)``), in eval mode."""
        raise NotImplementedError

    @classmethod
    def weights(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        """The weight map for ``noisy`` (C, H, W): float32, finite, ≥ 0, same shape."""
        raise NotImplementedError(f"{cls.__name__} provides no weighting")

    @classmethod
    def provides_weighting_for(cls, variant: str) -> bool:
        """Whether the trained variant gives a weight map (a method may have variants that do
        not, e.g. a net trained without its map); ``provides_weighting`` by default."""
        return cls.provides_weighting

    @classmethod
    def restore(
        cls, part: Any, noisy: np.ndarray, w: np.ndarray | None, strength: float, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The restoration of ``noisy`` (C, H, W) with weights ``w`` (None: w = 1) and the
        strength multiplier ``strength`` (1: the trained one), and its diagnostics
        (``iterations``, ``converged``; residuals optional). ``A``: the case's forward
        operator (:func:`pipeline.degrade.tasks.build_operator`), ``None`` for denoising; only
        operators listed in ``restorer_operators`` reach it."""
        raise NotImplementedError(f"{cls.__name__} provides no restorer")

    @classmethod
    def noise_map(cls, part: Any, noisy: np.ndarray) -> np.ndarray:
        """The estimated noise level σ̂ of ``noisy`` (C, H, W), when ``gives_noise_map``: shown
        in the gallery beside the true σ."""
        raise NotImplementedError(f"{cls.__name__} estimates no noise level")

    @classmethod
    def restore_oracle(
        cls, part: Any, noisy: np.ndarray, sigma: np.ndarray, A: Any = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The restoration told the true noise-level map ``sigma`` (C, H, W) of the case (the
        oracle-guided row, when ``restorer_oracle``)."""
        raise NotImplementedError(f"{cls.__name__} takes no oracle σ")

    @classmethod
    def report_sections(cls, results, lb, options) -> list:
        """The method's own report sections (:class:`pipeline.report.sections.Section`, each a
        template name plus a tidy table and/or a figure) from the results table, the leaderboard
        and the report options (``options.reference``, ``options.confidence``); none by
        default. The report renders them in registry order and exports their tables."""
        return []
