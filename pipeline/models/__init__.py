r"""Variational models with a weighted data fidelity, differentiable in the weight map.

Every model minimises :math:`\tfrac12 \sum_i w_i (y_i - x_i)^2 + R(x)` (``tv_l1``:
:math:`\sum_i w_i |y_i - x_i| + R(x)`) over images ``(B, C, H, W)`` by ADMM, and exposes
``solve(y, w=None, *, converge=False) -> Solution``: the DLW reference's unrolled iterations
(differentiable in ``w``, for bilevel training) or a run to convergence with residual-based
stopping (for target models). See :mod:`pipeline.models.base`.

========  ============================================================  ==========================
name      regulariser :math:`R(x)`                                      module
========  ============================================================  ==========================
``tv``    :math:`\lambda(\|D_h x\|_1 + \|D_v x\|_1)`, per band          :mod:`.tv`
``tvs``   :math:`\lambda \|D_b x\|_1`, along the bands                  :mod:`.tvs`
``nn``    :math:`\|X\|_*/(255\lambda)`, X the C × HW unfolding          :mod:`.nn`
``tv_l1`` as ``tv``, with an ℓ1 fidelity                                :mod:`.tv_l1`
========  ============================================================  ==========================

Build one by name with :func:`build_model` (``MODELS`` is the explicit registry). Importing this
package imports torch; :mod:`pipeline` itself never imports it.
"""

from pipeline.models.base import ADMMModel, Solution, VariationalModel
from pipeline.models.nn import NN, NNParams
from pipeline.models.registry import MODELS, build_model
from pipeline.models.svt import svt
from pipeline.models.tv import TV, TVParams
from pipeline.models.tv_l1 import TVL1, TVL1Params
from pipeline.models.tvs import TVS, TVSParams

__all__ = [
    "MODELS",
    "NN",
    "TV",
    "TVL1",
    "TVS",
    "ADMMModel",
    "NNParams",
    "Solution",
    "TVL1Params",
    "TVParams",
    "TVSParams",
    "VariationalModel",
    "build_model",
    "svt",
]
