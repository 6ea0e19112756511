"""The explicit registry of variational models.

Adding a model is one file in :mod:`pipeline.models` (a :class:`~pipeline.models.base.
VariationalModel` with a frozen params dataclass and its class facts: ``role``,
``strength_fields``, ``strength_inverse``, ``unrolled_cost``) plus one line in ``MODELS``; it is
then buildable from ``params.yaml`` by name, tunable as a target and, with an ``unrolled_cost``,
usable as a DLW source model. The lists of names other code needs are derived from the classes
here (:func:`source_models`, :func:`models_with_role`), in registry order.
"""

from __future__ import annotations

from typing import Any

from pipeline.models.base import ROLES, VariationalModel
from pipeline.models.e3dtv import E3DTV, E3DTVParams
from pipeline.models.lrtv import LRTV, LRTVParams
from pipeline.models.nn import NN, NNParams
from pipeline.models.tv import TV, TVParams
from pipeline.models.tv_l1 import TVL1, TVL1Params
from pipeline.models.tvs import TVS, TVSParams
from pipeline.schema import parse_dataclass

__all__ = ["MODELS", "build_model", "models_with_role", "source_models"]

MODELS: dict[str, tuple[type[VariationalModel], type]] = {
    "tv": (TV, TVParams),
    "tvs": (TVS, TVSParams),
    "nn": (NN, NNParams),
    "tv_l1": (TVL1, TVL1Params),
    "lrtv": (LRTV, LRTVParams),
    "e3dtv": (E3DTV, E3DTVParams),
}


def build_model(name: str, **params: Any) -> VariationalModel:
    """The model ``name`` with ``params`` (validated; unspecified ones take their defaults)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    cls, params_cls = MODELS[name]
    return cls(parse_dataclass(params_cls, params, f"model {name}"))


def source_models() -> tuple[str, ...]:
    """The models usable as DLW source models (an ``unrolled_cost``), in registry order."""
    return tuple(name for name, (cls, _) in MODELS.items() if cls.unrolled_cost is not None)


def models_with_role(role: str) -> tuple[str, ...]:
    """The models whose ``role`` is ``role`` (one of :data:`~pipeline.models.base.ROLES`), in
    registry order."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return tuple(name for name, (cls, _) in MODELS.items() if cls.role == role)
