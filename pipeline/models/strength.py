"""The main regularisation strength of each variational model, and how to scale it.

The evaluate stage tunes every target's strength on ``val`` over multipliers of the reference
values (``docs/science.md``); ``stages.apply`` takes a multiplier from the command line.
"""

from __future__ import annotations

import math

from pipeline.models.base import VariationalModel
from pipeline.models.registry import MODELS

__all__ = ["reference_strengths", "scaled_params", "strength_fields"]


def strength_fields(target: str) -> tuple[tuple[str, ...], bool]:
    """``(fields, inverse)``: the fields of ``target``'s params that make up its main
    regularisation strength, and whether they weigh the fidelity (÷ the multiplier) rather than
    the regulariser (×): the class's ``strength_fields`` and ``strength_inverse``
    (:class:`~pipeline.models.base.VariationalModel`, where each model says why)."""
    cls = _model_class(target)
    return cls.strength_fields, cls.strength_inverse


def _model_class(target: str) -> type[VariationalModel]:
    if target not in MODELS:
        raise ValueError(f"unknown target {target!r} (known: {', '.join(MODELS)})")
    return MODELS[target][0]




def scaled_params(
    target: str, multiplier: float, reference: dict | None = None
) -> dict[str, float]:
    r"""Overrides for ``build_model(target, **overrides)`` that multiply the target's reference
    regularisation strength by ``multiplier`` :math:`m > 0`:

    * ``tv``, ``tvs``, ``tv_l1``: ``lam`` × m (the weight of the TV term);
    * ``nn``: ``lam_factor`` ÷ m (λ weighs the fidelity; the strength is 1/λ, Rui et al. 2023);
    * ``lrtv``: ``nuclear`` and ``tau`` × m together (``lam``, the outlier threshold, stays);
    * ``e3dtv``: ``tau`` × m (``lam`` stays);

    and the ADMM penalties of the model's ``penalty_fields`` × √m (TV, TVS, TV-L1: ``mu1``,
    ``mu2``, ``mu_max``; LRTV: ``mu0``, ``mu_max``), which changes the path of the iterations,
    not the minimiser.

    The reference values are the model's defaults, or those given in ``reference`` (e.g. the
    evaluate stage's ``evaluate.targets.<name>`` overrides), so a study can re-centre the grid.
    ``multiplier = 1`` gives the reference values exactly (``x * 1.0 == x`` in floating point).
    Only strengths are returned: other settings (boundaries, tolerances) are the caller's.
    """
    fields, inverse = strength_fields(target)
    m = _check_multiplier(multiplier)
    default = MODELS[target][1]()
    ref = {f: float((reference or {}).get(f, getattr(default, f))) for f in fields}
    out = {f: ref[f] / m if inverse else ref[f] * m for f in fields}
    # The ADMM penalties follow the strength as √m (no change to the minimiser; see
    # VariationalModel.penalty_fields): a weak regulariser with the reference penalties needs
    # thousands of iterations.
    for f in _model_class(target).penalty_fields:
        value = float((reference or {}).get(f, getattr(default, f)))
        out[f] = value if m == 1.0 else value * math.sqrt(m)
    return out


def _check_multiplier(multiplier: float) -> float:
    try:
        m = float(multiplier)
    except (TypeError, ValueError):
        raise ValueError(f"strength multiplier must be a number, got {multiplier!r}") from None
    if not math.isfinite(m) or m <= 0:
        raise ValueError(f"strength multiplier must be finite and > 0, got {multiplier!r}")
    return m


def reference_strengths(target: str, reference: dict | None = None) -> dict[str, float]:
    """The reference values of ``target``'s strength fields (what multiplier 1 gives)."""
    fields, _ = strength_fields(target)
    return {f: v for f, v in scaled_params(target, 1.0, reference).items() if f in fields}
