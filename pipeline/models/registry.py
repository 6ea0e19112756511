"""The explicit registry of variational models.

Adding a model is one file in :mod:`pipeline.models` (a :class:`~pipeline.models.base.
VariationalModel` with a frozen params dataclass) plus one line in ``MODELS``; it is then
buildable from ``params.yaml`` by name.
"""

from __future__ import annotations

from typing import Any

from pipeline.models.base import VariationalModel
from pipeline.models.e3dtv import E3DTV, E3DTVParams
from pipeline.models.lrtv import LRTV, LRTVParams
from pipeline.models.nn import NN, NNParams
from pipeline.models.tv import TV, TVParams
from pipeline.models.tv_l1 import TVL1, TVL1Params
from pipeline.models.tvs import TVS, TVSParams
from pipeline.schema import parse_dataclass

__all__ = ["MODELS", "build_model"]

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
