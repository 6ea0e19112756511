r"""Restorers of the transfer matrix: what turns a noisy image (and a weight map) into an estimate.

Three sources, one interface (:class:`Restorer`):

* the **variational models** of :mod:`pipeline.models` (``MODELS``), solved to convergence with
  their strength scaled by the tuned multiplier; their class says their role — ``target``
  (solved with every weighting) or ``peer`` (a robust classical baseline, solved unweighted);
* the **peer baselines** BM4D/BM3D (:mod:`pipeline.evaluate.baselines`): no strength, given the
  true mean σ (oracle-informed), for denoising; and the closed-form references of the tasks with
  an operator (:mod:`pipeline.evaluate.operator_baselines`): the Wiener deconvolution (given σ:
  oracle-informed), the normalised-adjoint upsampling and the normalised-convolution fill;
* the restorers of **learned methods** (:mod:`pipeline.methods.registry`), one per trained
  variant and seed, their role set by the method (``target`` if they take a weighting, else
  ``learned``).

:func:`plan_restorers` turns ``evaluate.restorers`` into :class:`Restorer` entries (learned ones
from ``models/<method>/``); :meth:`Restorer.restore` runs one inside a Ray task. Neither
evaluate nor report branches on a method's name: they read ``role``, ``tuned``,
``oracle_informed`` and ``operators`` (the forward operators a restorer can take: ``identity``
for denoising, ``blur``, ``downsample``, ``inpaint``; cells of other tasks are not planned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.params import EvaluateParams, split_name

__all__ = ["Restorer", "check_restorers", "classical_restorers", "plan_restorers"]

IDENTITY = ("identity",)
# The key of a model restorer's overrides that holds overrides per forward operator.
PER_OPERATOR = "per_operator"
# The label of a learned restorer's oracle-guided row: "<method>:<variant>+oracle".
ORACLE_SUFFIX = "+oracle"
# The closed-form references of the tasks with an operator: the operator each takes, and whether
# it is given the true σ.
OPERATOR_BASELINES = {
    "wiener": (("blur",), True),
    "upsample": (("downsample",), False),
    "fill": (("inpaint",), False),
}


def classical_restorers() -> dict[str, dict[str, Any]]:
    """Name → facts (``role``, ``tuned``, ``oracle_informed``, ``operators``) of every
    non-learned restorer: the variational models (from their classes), the BM3D/BM4D baselines
    and the operator baselines."""
    from pipeline.evaluate.baselines import BASELINES
    from pipeline.models.registry import MODELS

    out = {
        name: {
            "role": cls.role,
            "tuned": True,
            "oracle_informed": False,
            "operators": tuple(cls.operators),
        }
        for name, (cls, _) in MODELS.items()
    }
    for name in BASELINES:
        out[name] = {"role": "peer", "tuned": False, "oracle_informed": True, "operators": IDENTITY}
    for name, (operators, informed) in OPERATOR_BASELINES.items():
        out[name] = {
            "role": "peer",
            "tuned": False,
            "oracle_informed": informed,
            "operators": operators,
        }
    return out


@dataclass(frozen=True)
class Restorer:
    """One row label of the matrix. ``kind``: ``model``, ``baseline`` or ``learned``."""

    label: str
    kind: str
    role: str  # target | peer | learned
    tuned: bool
    oracle_informed: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)  # a model's parameter overrides
    method: str = ""  # learned: the method's registry name
    variant: str = ""
    seed: int = -1
    path: str = ""  # learned: the checkpoint, relative to the repository root
    method_cls: Any = None  # learned: the method class (pickled by reference into tasks)
    operators: tuple[str, ...] = IDENTITY  # the forward operators it takes (module docstring)
    # learned: the oracle-guided row of a method that can be told the true σ map
    # (Method.restorer_oracle): restore_oracle() with the case's σ instead of its own estimate.
    oracle: bool = False
    net_precision: str = "fp32"  # learned: its nets' fp32 | bf16 (resolved by plan_restorers)

    def applies(self, operator: str) -> bool:
        """Whether the restorer takes a case with this operator (``identity``: denoising)."""
        return operator in self.operators

    def overrides_for(self, operator: str = "identity") -> dict[str, Any]:
        """The model's overrides on a task with ``operator``: ``overrides`` with its
        ``per_operator`` entry for that operator merged in (e.g. TV's periodic boundary, whose
        Z-solve is an exact FFT, on circular blur and down-sampling)."""
        base = {k: v for k, v in self.overrides.items() if k != PER_OPERATOR}
        return {**base, **self.overrides.get(PER_OPERATOR, {}).get(operator, {})}

    @property
    def weighted(self) -> bool:
        """Solved with every weighting (else once, with weighting ``none``)."""
        return self.role == "target"

    @property
    def key(self) -> tuple[str, int]:
        return (self.label, self.seed)

    def model_params(self, multiplier: float, operator: str = "identity") -> dict[str, Any]:
        """A model's complete parameters at ``multiplier`` on a task with ``operator``
        (overrides, scaled strength, the defaults of every other field)."""
        from pipeline.models import MODELS
        from pipeline.models.strength import scaled_params
        from pipeline.schema import parse_dataclass, to_plain

        overrides = self.overrides_for(operator)
        params = {**overrides, **scaled_params(self.label, multiplier, overrides)}
        return to_plain(parse_dataclass(MODELS[self.label][1], params, self.label))

    def identity(self, multiplier: float, operator: str = "identity") -> dict[str, Any]:
        """What the cell cache keys this restorer by at ``multiplier``
        (:mod:`pipeline.evaluate.cache`): parameters, and a hash of the code (and weights)
        that compute it."""
        from pipeline.evaluate.cache import source_hash

        if self.kind == "model":
            return {
                "label": self.label,
                "params": self.model_params(multiplier, operator),
                "code": source_hash("models"),
            }
        if self.kind == "baseline" and self.label in OPERATOR_BASELINES:
            return {"label": self.label, "code": source_hash("evaluate/operator_baselines.py")}
        if self.kind == "baseline":
            from importlib import metadata

            return {
                "label": self.label,
                "code": source_hash("evaluate/baselines.py"),
                "version": metadata.version(self.label),
            }
        import hashlib

        from pipeline.evaluate.cache import method_hash

        path = Path(self.path)
        return {
            "method": self.method,
            "variant": self.variant,
            **({"oracle": True} if self.oracle else {}),
            "net_precision": self.net_precision,  # resolved by plan_restorers
            "code": method_hash(self.method_cls),
            "checkpoint": hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "",
        }

    def restore_batch(
        self,
        items: list[dict[str, np.ndarray]],
        ws: list[np.ndarray | None],
        multiplier: float,
        precision: str,
    ) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Several images of one shape, solved in one batch by a model (samples stop on their
        own: the batch equals the per-sample solves). ``ws`` are all maps or all None."""
        import torch

        from pipeline.models import build_model

        if self.kind != "model" or len(items) == 1:
            pairs = zip(items, ws, strict=True)
            return [self.restore(it, w, multiplier, precision) for it, w in pairs]
        model = build_model(self.label, **self.model_params(multiplier))
        model.converge_dtype = getattr(torch, precision)
        y = torch.from_numpy(np.stack([it["noisy"] for it in items]))
        wt = None if ws[0] is None else torch.from_numpy(np.stack(ws))
        with torch.no_grad():
            sol = model.solve(y, wt, converge=True)
        return [
            (
                sol.x[i].numpy(),
                {
                    "iterations": int(sol.sample_iterations[i]),
                    "primal_residual": float(sol.primal_residual[i]),
                    "dual_residual": float(sol.dual_residual[i]),
                    "converged": bool(sol.converged[i]),
                },
            )
            for i in range(len(items))
        ]

    def reference_strengths(self) -> dict[str, float]:
        """What multiplier 1 means (empty for a learned or untuned restorer)."""
        if self.kind != "model":
            return {}
        from pipeline.models.strength import reference_strengths

        return reference_strengths(self.label, self.overrides)

    def restore(
        self,
        item: dict[str, np.ndarray],
        w: np.ndarray | None,
        multiplier: float,
        precision: str,
        root: Path | None = None,
        parts: dict | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """The estimate of ``item["noisy"]`` and the solver's diagnostics."""
        import torch

        noisy, A = item["noisy"], item.get("A")
        if self.kind == "baseline":
            if self.label in OPERATOR_BASELINES:
                from pipeline.evaluate.operator_baselines import operator_baseline

                x = operator_baseline(self.label, noisy, A, item["sigma"])
            else:
                from pipeline.evaluate.baselines import denoise_baseline

                x = denoise_baseline(self.label, noisy, float(np.mean(item["sigma"])))
            nan = math.nan
            return x, {"iterations": 0, "primal_residual": nan, "dual_residual": nan,
                       "converged": True}  # fmt: skip
        if self.kind == "learned":
            from pipeline.methods.precision import set_precision

            parts = {} if parts is None else parts
            if self.path not in parts:
                part = self.method_cls.load(Path(root or ".") / self.path)
                parts[self.path] = set_precision(part, self.net_precision)
            # An untuned learned restorer runs at its trained strength (multiplier 1).
            strength = multiplier if self.tuned else 1.0
            if self.oracle:
                x, diag = self.method_cls.restore_oracle(parts[self.path], noisy, item["sigma"], A)
            else:
                x, diag = self.method_cls.restore(parts[self.path], noisy, w, strength, A=A)
            return np.asarray(x, dtype=np.float32), {
                "iterations": int(diag.get("iterations", 0)),
                "primal_residual": float(diag.get("primal_residual", math.nan)),
                "dual_residual": float(diag.get("dual_residual", math.nan)),
                "converged": bool(diag.get("converged", True)),
            }
        from pipeline.degrade.operators import operator_kind
        from pipeline.models import build_model

        model = build_model(self.label, **self.model_params(multiplier, operator_kind(A)))
        model.converge_dtype = getattr(torch, precision)
        y = torch.from_numpy(noisy)[None]
        wt = None if w is None else torch.from_numpy(w)[None]
        with torch.no_grad():
            sol = model.solve(y, wt, converge=True, A=A)
        return sol.x[0].numpy(), {
            "iterations": int(sol.iterations),
            "primal_residual": float(sol.primal_residual[0]),
            "dual_residual": float(sol.dual_residual[0]),
            "converged": bool(sol.converged[0]),
        }


def check_restorers(p: EvaluateParams, source: str = "params.yaml") -> None:
    """Every restorer is known and its overrides build it; an unknown name, key or bad value is
    named by its full key in ``source`` (``evaluate.restorers.tv.tol``)."""
    from pipeline.methods.registry import METHODS, providing
    from pipeline.models import MODELS, build_model
    from pipeline.schema import ConfigError, parse_dataclass

    classical = classical_restorers()
    learned = providing("restorer")
    for name, overrides in p.restorers.items():
        where = f"evaluate.restorers.{name}"
        head, _ = split_name(name, where)
        if head in METHODS:
            if head not in learned:
                raise ConfigError(f"{source}: {where}: method {head!r} provides no restorer")
            continue
        if name not in classical:
            known = ", ".join([*classical, *learned])
            raise ConfigError(f"{source}: {where}: unknown restorer {name!r} (known: {known})")
        if name not in MODELS:
            if overrides:
                raise ConfigError(f"{source}: {where} = {overrides!r}: takes no overrides")
            continue
        per = overrides.get(PER_OPERATOR, {})
        takes = classical[name]["operators"]
        if not isinstance(per, dict) or any(k not in takes or k == "identity" for k in per):
            known = ", ".join(k for k in takes if k != "identity") or "none"
            raise ConfigError(
                f"{source}: {where}.{PER_OPERATOR} = {per!r}: a mapping from the operators "
                f"{name} takes ({known}) to overrides"
            )
        try:
            base = {k: v for k, v in overrides.items() if k != PER_OPERATOR}
            parse_dataclass(MODELS[name][1], base, where)
            build_model(name, **base)
            for op, more in per.items():
                at = f"{where}.{PER_OPERATOR}.{op}"
                parse_dataclass(MODELS[name][1], {**base, **more}, at)
        except (ConfigError, ValueError) as exc:
            text = str(exc)
            if not text.startswith(where):
                text = f"{where}: {text}"
            raise ConfigError(f"{source}: {text}") from None


def plan_restorers(p: EvaluateParams, root: Path) -> list[Restorer]:
    """The restorers of ``p.restorers`` in order; a learned one expands to every trained variant
    and seed in ``models/<method>/`` (or the one variant named)."""
    from pipeline.methods.base import find_parts
    from pipeline.methods.precision import resolve_precision
    from pipeline.methods.registry import get_method

    classical = classical_restorers()
    out = []
    for name, overrides in p.restorers.items():
        if name in classical:
            facts = classical[name]
            kind = "model" if facts["tuned"] else "baseline"
            out.append(Restorer(name, kind, overrides=dict(overrides), **facts))
            continue
        head, variant = split_name(name, f"evaluate.restorers.{name}")
        cls = get_method(head)
        if cls.restorer_role is None:
            raise ValueError(f"evaluate.restorers.{name}: method {head!r} provides no restorer")
        parts = find_parts(root, head, [variant] if variant else None)
        if not parts:
            raise ValueError(f"{root / 'models' / head}: no trained {head}; run train@{head}")
        for part in parts:
            learned = Restorer(
                part.label,
                "learned",
                role=cls.restorer_role or "learned",
                tuned=cls.restorer_tuned,
                method=head,
                variant=part.variant,
                seed=part.seed,
                path=part.path,
                method_cls=cls,
                operators=tuple(cls.restorer_operators),
                # Resolved here, once: every task then runs (and caches) the same precision.
                net_precision=resolve_precision(p.net_precision),
            )
            out.append(learned)
            if cls.restorer_oracle and cls.provides_weighting_for(part.variant):
                # The same part told the true σ map: how much its own estimate costs.
                out.append(
                    replace(
                        learned,
                        label=f"{part.label}{ORACLE_SUFFIX}",
                        role="learned",
                        tuned=False,
                        oracle_informed=True,
                        oracle=True,
                    )
                )
    return out
