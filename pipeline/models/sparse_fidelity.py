r"""The weighted Gaussian + sparse fidelity of the low-rank target models (LRTV, E3DTV).

LRTV (He et al. 2016) and E3DTV (Peng et al. 2020) model the noisy cube as
:math:`Y = X + S + N`: a clean cube :math:`X`, a sparse corruption :math:`S` (impulses, dead lines,
stripes) and Gaussian noise :math:`N`. With DLW's weight map on the squared Gaussian residual
(Rui et al., arXiv 2301.06081, eq. (2.1)) and the published ℓ1 term on :math:`S`,
the fidelity of :math:`X` is

.. math:: F_{w,\lambda}(x) = \min_S\ \tfrac12 \sum_i w_i (y_i - x_i - s_i)^2 + \lambda \|S\|_1
          = \sum_i h_{w_i,\lambda}(y_i - x_i),

the Huber function (Huber, "Robust estimation of a location parameter", Ann. Math. Statist.
35(1), 1964) with a per-pixel threshold :math:`\lambda / w_i`:

.. math:: h_{w,\lambda}(r) = \begin{cases} \tfrac12 w r^2 & w|r| \le \lambda\\
          \lambda |r| - \lambda^2/(2w) & \text{otherwise,}\end{cases}
          \qquad s^\star = \operatorname{soft}(r, \lambda / w).

So a residual larger than :math:`\lambda/w_i` is explained by :math:`S` and costs only
:math:`\lambda|r|`; a pixel with :math:`w_i = 0` costs nothing (:math:`h = 0`, :math:`s^\star = 0`):
the weight map can switch a pixel off, as in every other model. :math:`\lambda` is in the units
of the fidelity (images in [0, 1], mean weight ≈ 1): with :math:`w = 1` it is the residual above
which a pixel is treated as an outlier.

ADMM step (the splitting :math:`X = Z` of every target, multiplier :math:`\Lambda`, penalty
:math:`\mu`): the joint minimisation over :math:`(X, S)` of
:math:`\tfrac12 w (y - X - S)^2 + \lambda|S| + \tfrac\mu2 (X - v)^2`, :math:`v = Z - \Lambda/\mu`,
is pointwise and exact. Eliminating :math:`X` leaves :math:`\tfrac12 k (y - v - S)^2 + \lambda|S|`
with :math:`k = w\mu/(w + \mu)`, so :math:`S = \operatorname{soft}(y - v, \lambda/k)` and

.. math:: X = \frac{w y + \mu v}{w + \mu} - \frac{1}{\mu}\,
          \operatorname{sign}(r)\,\big(k|r| - \lambda\big)_+, \qquad r = y - v,

written without dividing by :math:`k` so that :math:`w = 0` needs no special case (and autograd
stays finite there).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fidelity_step", "huber_fidelity", "sparse_component"]


def huber_fidelity(x: Tensor, y: Tensor, w: Tensor, lam: float) -> Tensor:
    r""":math:`F_{w,\lambda}(x) = \sum_i h_{w_i,\lambda}(y_i - x_i)` per sample, ``(B,)``."""
    r = (y - x).abs()
    quadratic = w * r <= lam
    # The linear branch is only taken where w > 0; the placeholder keeps its gradient finite.
    w_safe = torch.where(quadratic, torch.ones_like(w), w)
    h = torch.where(quadratic, 0.5 * w * r**2, lam * r - lam**2 / (2.0 * w_safe))
    return h.flatten(1).sum(1)


def sparse_component(x: Tensor, y: Tensor, w: Tensor, lam: float) -> Tensor:
    r"""The optimal sparse part :math:`S^\star = \operatorname{soft}(y - x, \lambda/w)` for a
    given :math:`x` (0 where :math:`w = 0`): what the model attributes to impulses and lines."""
    r = y - x
    excess = torch.relu(w * r.abs() - lam)
    return torch.where(w > 0, torch.sign(r) * excess / w.clamp_min(1e-300), torch.zeros_like(r))


def fidelity_step(y: Tensor, w: Tensor, v: Tensor, mu: float, lam: float) -> Tensor:
    r"""The :math:`X` of :math:`\operatorname{argmin}_{X,S} \tfrac12 \sum w (y - X - S)^2
    + \lambda\|S\|_1 + \tfrac\mu2 \|X - v\|^2` (pointwise, exact; see the module docstring)."""
    r = y - v
    k = w * mu / (w + mu)
    return (w * y + mu * v) / (w + mu) - torch.sign(r) * torch.relu(k * r.abs() - lam) / mu
