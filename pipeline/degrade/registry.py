"""The explicit registry of noise models, and ``Case``: a named, parameterised noise model.

Adding a noise model is one file in :mod:`pipeline.degrade.noise` plus one line in
``NOISE_MODELS``; it is then usable in ``params.yaml``, the tests and the leaderboard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from pipeline.degrade.noise.deadline import DeadlineParams, deadline
from pipeline.degrade.noise.gaussian import (
    BlindParams,
    IidParams,
    NoniidParams,
    QuadrantsParams,
    SpatialParams,
    blind,
    iid,
    noniid,
    quadrants,
    spatial,
)
from pipeline.degrade.noise.impulse import ImpulseParams, impulse
from pipeline.degrade.noise.mixture import MixtureParams, mixture
from pipeline.degrade.noise.stripe import StripeParams, stripe
from pipeline.io import canonical_json, json_sha256, safe_name
from pipeline.schema import fail, named_mapping, parse_dataclass, to_plain


class NoiseModel(NamedTuple):
    apply: Callable[..., tuple[np.ndarray, dict]]
    params: type


NOISE_MODELS: dict[str, NoiseModel] = {
    "iid": NoiseModel(iid, IidParams),
    "blind": NoiseModel(blind, BlindParams),
    "noniid": NoiseModel(noniid, NoniidParams),
    "spatial": NoiseModel(spatial, SpatialParams),
    "quadrants": NoiseModel(quadrants, QuadrantsParams),
    "stripe": NoiseModel(stripe, StripeParams),
    "deadline": NoiseModel(deadline, DeadlineParams),
    "impulse": NoiseModel(impulse, ImpulseParams),
    "mixture": NoiseModel(mixture, MixtureParams),
}


@dataclass(frozen=True)
class Case:
    """A noise case of a suite: ``{name: iid, sigma_255: 50}`` → label ``iid-50``.

    The label names the case's folder and its rows in every result table. By default it is the
    model name, plus σ for a fixed-σ ``iid`` case, plus a short hash of the parameters when they
    differ from the model's defaults; ``label:`` sets it explicitly.
    """

    name: str
    params: Any
    label: str
    # The forward operator (pipeline.degrade.tasks.Operator); None: denoising, A = I.
    operator: Any = None

    @classmethod
    def from_param(cls, value: Any, where: str = "case") -> Case:
        if isinstance(value, Case):
            return value
        name, rest = named_mapping(value, where, "a case", NOISE_MODELS, "unknown noise case")
        label = rest.pop("label", None)
        operator = rest.pop("operator", None)
        params = parse_dataclass(NOISE_MODELS[name].params, rest, where)
        if operator is not None:
            from pipeline.degrade.tasks import Operator

            operator = Operator.from_param(operator, f"{where}.operator")
        if label is None:
            label = default_label(name, params)
            if operator is not None:
                label = f"{operator.label}/{label}"
        try:
            # A task's label has two parts, operator/noise, each a safe folder name.
            parts = str(label).split("/")
            if len(parts) > (2 if operator is not None else 1):
                raise ValueError(f"case label {label!r} has too many '/' parts")
            for part in parts:
                safe_name(part, "case label")
        except ValueError as exc:
            raise fail(f"{where}.label", label, str(exc)) from None
        return cls(name, params, str(label), operator)

    @property
    def task(self) -> str:
        """The restoration task: the operator's label, or ``denoise``."""
        from pipeline.degrade.tasks import DENOISE

        return DENOISE if self.operator is None else self.operator.label

    def to_param(self) -> dict[str, Any]:
        out = {"name": self.name, "label": self.label, **to_plain(self.params)}
        if self.operator is not None:
            out["operator"] = self.operator.to_param()
        return out

    @property
    def params_json(self) -> str:
        """The full parameters (defaults included) as canonical JSON: the ``case_params`` column."""
        return canonical_json(to_plain(self.params))

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """``(y, info)`` for a clean ``x``: the noise of the case on :math:`A x`. For a case
        with an operator, ``info["operator"]`` holds the arrays that rebuild :math:`A`; the
        operator is drawn first, from its own stream (``rng``'s first 64-bit draw seeds it),
        so the noise of a denoising case is drawn exactly as before operators existed."""
        kwargs = {f.name: getattr(self.params, f.name) for f in dataclasses.fields(self.params)}
        if self.operator is None:
            return NOISE_MODELS[self.name].apply(x, rng, **kwargs)
        from pipeline.degrade.tasks import apply_operator

        op_rng = np.random.default_rng(int(rng.integers(2**63)))
        arrays = self.operator.draw(x.shape, op_rng)
        ax = apply_operator(arrays, x).astype(x.dtype)
        y, info = NOISE_MODELS[self.name].apply(ax, rng, **kwargs)
        if "observed" in arrays:  # missing pixels carry no measurement
            y = np.where(arrays["observed"], y, 0).astype(y.dtype)
        info["operator"] = arrays
        return y, info


def default_label(name: str, params: Any) -> str:
    defaults = NOISE_MODELS[name].params()
    label = name
    changed = params != defaults
    if name == "iid" and params.sigma_255.kind == "fixed":
        label = f"iid-{params.sigma_255.values[0]:g}"
        changed = False
    if changed:
        label += "-" + json_sha256(to_plain(params))[:6]
    return label
