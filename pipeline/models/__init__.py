r"""Variational models with a weighted data fidelity, differentiable in the weight map.

Every model minimises :math:`\tfrac12 \sum_i w_i (y_i - x_i)^2 + R(x)` (``tv_l1``:
:math:`\sum_i w_i |y_i - x_i| + R(x)`; ``lrtv``, ``e3dtv``: a Huber fidelity, the Gaussian
fidelity with a sparse term) over images ``(B, C, H, W)`` by ADMM, and exposes
``solve(y, w=None, *, converge=False, A=None) -> Solution``: the DLW reference's unrolled
iterations (differentiable in ``w``, for bilevel training) or a run to convergence with
residual-based stopping (for target models), with a forward operator ``A`` for the models whose
``operators`` take it (TV: blur, down-sampling, inpainting; TVS: inpainting; the fidelity is then
:math:`\tfrac12 \sum_i w_i (y - Ax)_i^2`). See :mod:`pipeline.models.base`.

=========  ===========================================================  ======  ==============
name       regulariser :math:`R(x)`                                     role    module
=========  ===========================================================  ======  ==============
``tv``     :math:`\lambda(\|D_h x\|_1 + \|D_v x\|_1)`, per band         target  :mod:`.tv`
``tvs``    :math:`\lambda \|D_b x\|_1`, along the bands                 target  :mod:`.tvs`
``nn``     :math:`\|X\|_*/(255\lambda)`, X the C × HW unfolding         target  :mod:`.nn`
``tv_l1``  as ``tv``, with an ℓ1 fidelity                               peer    :mod:`.tv_l1`
``lrtv``   :math:`\alpha\|X\|_* + \tau(\|D_h x\|_1 + \|D_v x\|_1)`      target  :mod:`.lrtv`
``e3dtv``  :math:`\tau\sum_j \|U_j\|_1`, :math:`D_j x = U_j V_j^\top`   target  :mod:`.e3dtv`
=========  ===========================================================  ======  ==============

Build one by name with :func:`build_model` (``MODELS`` is the explicit registry). Each class
states its facts (``role``, ``strength_fields``, ``strength_inverse``, ``unrolled_cost``;
:class:`~pipeline.models.base.VariationalModel`); :func:`source_models` and
:func:`models_with_role` list names by them. Importing this package imports torch;
:mod:`pipeline` itself never imports it.
"""

from pipeline.models.base import ADMMModel, Solution, VariationalModel
from pipeline.models.e3dtv import E3DTV, E3DTVParams
from pipeline.models.lrtv import LRTV, LRTVParams
from pipeline.models.nn import NN, NNParams
from pipeline.models.registry import MODELS, build_model, models_with_role, source_models
from pipeline.models.svt import svt
from pipeline.models.tv import TV, TVParams
from pipeline.models.tv_l1 import TVL1, TVL1Params
from pipeline.models.tvs import TVS, TVSParams

__all__ = [
    "E3DTV",
    "LRTV",
    "MODELS",
    "NN",
    "TV",
    "TVL1",
    "TVS",
    "ADMMModel",
    "E3DTVParams",
    "LRTVParams",
    "NNParams",
    "Solution",
    "TVL1Params",
    "TVParams",
    "TVSParams",
    "VariationalModel",
    "build_model",
    "models_with_role",
    "source_models",
    "svt",
]
