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
    SpatialParams,
    blind,
    iid,
    noniid,
    spatial,
)
from pipeline.degrade.noise.impulse import ImpulseParams, impulse
from pipeline.degrade.noise.mixture import MixtureParams, mixture
from pipeline.degrade.noise.stripe import StripeParams, stripe
from pipeline.io import canonical_json, json_sha256, safe_name
from pipeline.schema import ConfigError, fail, parse_dataclass, to_plain


class NoiseModel(NamedTuple):
    apply: Callable[..., tuple[np.ndarray, dict]]
    params: type


NOISE_MODELS: dict[str, NoiseModel] = {
    "iid": NoiseModel(iid, IidParams),
    "blind": NoiseModel(blind, BlindParams),
    "noniid": NoiseModel(noniid, NoniidParams),
    "spatial": NoiseModel(spatial, SpatialParams),
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

    @classmethod
    def from_param(cls, value: Any, where: str = "case") -> Case:
        if isinstance(value, Case):
            return value
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict) or "name" not in value:
            raise fail(where, value, "a case is a mapping with a 'name' (and its parameters)")
        rest = dict(value)
        name = rest.pop("name")
        label = rest.pop("label", None)
        if name not in NOISE_MODELS:
            raise ConfigError(
                f"{where}.name = {name!r}: unknown noise case (known: {', '.join(NOISE_MODELS)})"
            )
        params = parse_dataclass(NOISE_MODELS[name].params, rest, where)
        if label is None:
            label = default_label(name, params)
        try:
            safe_name(str(label), "case label")
        except ValueError as exc:
            raise fail(f"{where}.label", label, str(exc)) from None
        return cls(name, params, str(label))

    def to_param(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, **to_plain(self.params)}

    @property
    def params_json(self) -> str:
        """The full parameters (defaults included) as canonical JSON: the ``case_params`` column."""
        return canonical_json(to_plain(self.params))

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        kwargs = {f.name: getattr(self.params, f.name) for f in dataclasses.fields(self.params)}
        return NOISE_MODELS[self.name].apply(x, rng, **kwargs)


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
