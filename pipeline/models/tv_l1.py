r"""Weighted-ℓ1-fidelity total variation (TV-L1), a classical robust baseline.

.. math:: \min_X\ \sum_i w_i |y_i - x_i| + \lambda \big(\|D_h X\|_1 + \|D_v X\|_1\big)

(Nikolova, "A variational approach to remove outliers and impulse noise", JMIV 20, 2004;
Chan & Esedoglu, "Aspects of total variation regularized L1 function approximation", SIAM J.
Appl. Math. 65(5), 2005). Same interface, ADMM structure, penalty schedule and residuals as
:mod:`pipeline.models.tv`; only the fidelity changes, so the :math:`X`-update is the proximal
map of the weighted ℓ1 term,

.. math:: X \leftarrow y + \operatorname{soft}\big(Z - \Lambda_1/\mu_1 - y,\ w/\mu_1\big).

``objective`` here is :math:`\sum w |y - x| + R(x)` (not the squared fidelity of the other
models). Default :math:`\lambda = 0.5`: with ℓ1 fidelity a single-pixel outlier is removed
exactly when :math:`4\lambda > w` (anisotropic TV of a spike of height :math:`h` is
:math:`4\lambda h`), so the ℓ2 models' :math:`\lambda = 0.1` would keep every impulse; like every
target's, λ is tuned per case on ``val`` (``docs/science.md``).

Unrolled (``converge=False``), it runs the DLW reference order of :mod:`pipeline.models.tv`
(:math:`U`, :math:`Z`, :math:`X`, multipliers), like the TV sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from pipeline.models.differences import FiniteDifference, spatial_difference
from pipeline.models.tv import TVParams, _Context, _TVFamily

__all__ = ["TVL1", "TVL1Params"]


@dataclass(frozen=True)
class TVL1Params(TVParams):
    """TV-L1: the TV settings, with λ = 0.5 (see the module docstring) and ``mu_max = 10``
    (the non-smooth fidelity needs a larger penalty than TV's 3 to converge quickly)."""

    lam: float = 0.5
    mu_max: float = 10.0


class TVL1(_TVFamily):
    r"""Spatial anisotropic TV with a weighted ℓ1 fidelity."""

    name: ClassVar[str] = "tv_l1"
    adjoint_unrolled: ClassVar[bool] = False  # its own X-update (pipeline.models.tv_adjoint)
    Params: ClassVar[type] = TVL1Params
    # A classical robust baseline (ℓ1 fidelity): evaluated unweighted, beside the weighted
    # targets, not with every weighting map.
    role: ClassVar[str] = "peer"
    unrolled_cost: ClassVar[float | None] = 1.0

    def difference(self) -> FiniteDifference:
        return spatial_difference(self.params.boundary)

    def fidelity(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r""":math:`\sum_i w_i |y_i - x_i|` per sample."""
        return (w * (y - x).abs()).flatten(1).sum(1)

    def _x_update(self, ctx: _Context, z: Tensor, l1: Tensor, mu1: float) -> Tensor:
        # y + soft(a − y, t) with a = Z − Λ₁/μ₁, t = w/μ₁, written as a − clamp(a − y, −t, t):
        # a soft threshold with a tensor threshold, differentiable in w.
        a = torch.sub(z, l1, alpha=1.0 / mu1)
        t = ctx.w / mu1
        return a - torch.clamp(a - ctx.y, -t, t)
