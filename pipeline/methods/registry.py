"""The explicit registry of learned methods (docs/adding-a-method.md).

Adding a method is one package under :mod:`pipeline.methods` plus one line in ``METHODS``: its
params section ``train.<name>`` is then parsed and validated, ``train.methods`` may list it (one
DVC stage ``train@<name>``), and ``evaluate.weightings`` / ``evaluate.restorers`` may name what it
provides. Importing this module imports no torch (the methods import it where they need it).
"""

from __future__ import annotations

from pipeline.methods.alr import ALR
from pipeline.methods.base import Method
from pipeline.methods.dlw import DLW
from pipeline.methods.guidance import Guidance
from pipeline.methods.rg import RG

__all__ = ["METHODS", "get_method", "providing"]

METHODS: dict[str, type[Method]] = {
    "dlw": DLW,
    "guidance": Guidance,
    "alr": ALR,
    "rg": RG,
}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; an unknown name is a :class:`ValueError`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (registered: {', '.join(METHODS)})")
    return METHODS[name]


def providing(what: str) -> list[str]:
    """Names of the registered methods that provide a ``"weighting"`` or a ``"restorer"``."""
    if what == "weighting":
        return [n for n, m in METHODS.items() if m.provides_weighting]
    if what == "restorer":
        return [n for n, m in METHODS.items() if m.restorer_role is not None]
    raise ValueError(f"what = {what!r}: 'weighting' or 'restorer'")
