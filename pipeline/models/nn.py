r"""Weighted-fidelity nuclear norm (NN), the DLW source model "NN".

Each sample is unfolded to the matrix :math:`Y \in \mathbb{R}^{C \times HW}` (bands × pixels) and
scaled ×255, as the reference (Rui et al., arXiv 2301.06081, and their code ``net.py``):

.. math:: \min_L\ \tfrac{\lambda}{2} \sum_i w_i (Y_i - L_i)^2 + \|L\|_*,
          \qquad \mu_0 = \frac{2.5}{\sqrt{HW}\cdot 255},\quad \lambda = 10\,\mu_0 = \mu_0/0.1 .

**Here λ weighs the fidelity**: the regularisation strength is :math:`1/\lambda`, so *more*
smoothing means a *smaller* ``lam_factor``. In the [0, 1] scale (:math:`L = 255\,x`) the same
problem, divided by :math:`255^2 \lambda`, reads

.. math:: \min_x\ \tfrac12 \sum_i w_i (y_i - x_i)^2 + \frac{1}{255\,\lambda}\|x\|_*,
          \qquad \frac{1}{255\,\lambda} = \frac{\sqrt{HW}}{\texttt{lam\_factor}\cdot
          \texttt{mu0\_coef}},

which is what :meth:`NN.objective` reports (so objectives of all models share the
:math:`\tfrac12\sum w (y-x)^2` fidelity); with :math:`w = 1` its minimiser is
:math:`\operatorname{SVT}_{1/\lambda}(255\,Y)/255`. The reference's :math:`\sqrt{HW}` makes the
threshold follow the noise's largest singular value (≈ σ(√C + √HW)): the reference value
suits σ ≈ 10/255 only, and targets tune ``lam_factor`` (``docs/science.md``).

ADMM with the splitting :math:`L = Z` (Boyd et al. 2011), start :math:`L = Z = 255\,Y`,
:math:`\Lambda = 0`, :math:`\mu_0` growing ×1.03, 15 iterations, output :math:`Z/255`.
``converge=False`` (unrolled, the DLW source) follows the reference iteration exactly (the
authors' code, github.com/xyrui/DLWnet, ``net.py``, ``HWNUCLR.forward``, called with the cube
×255 and ``mp = 255``; ``G`` there is :math:`\Lambda` here, same sign): :math:`Z` first, from the
previous :math:`L` and :math:`\Lambda`, all with the :math:`\mu` of the iteration, which grows
after the multiplier update, and the output is the last :math:`Z` (the last :math:`L` and
:math:`\Lambda` updates do not reach it):

.. math::
    Z &\leftarrow \operatorname{SVT}_{1/\mu}(L + \Lambda/\mu)\\
    L &\leftarrow (\lambda\, w \odot Y + \mu Z - \Lambda) / (\lambda w + \mu)\\
    \Lambda &\leftarrow \Lambda + \mu (L - Z), \qquad \mu \leftarrow \rho\mu

(the reference's ``thres_mat`` is SVT through the eigendecomposition of :math:`MM^\top`, as
:mod:`pipeline.models.svt`). ``converge=True`` runs the standard order (:math:`L`, :math:`Z`,
:math:`\Lambda`), whose residuals the stopping rule reads:

.. math::
    L &\leftarrow (\lambda\, w \odot Y + \mu Z - \Lambda) / (\lambda w + \mu)\\
    Z &\leftarrow \operatorname{SVT}_{1/\mu}(L + \Lambda/\mu)\\
    \Lambda &\leftarrow \Lambda + \mu (L - Z), \qquad
    \mu \leftarrow \min(\rho\mu,\ \mu_{\max}\lambda).

In both, :math:`\mu \le \mu_{\max}\lambda`, a cap the reference's 15 iterations never reach.
with singular value thresholding (Cai, Candès, Shen 2010) from :mod:`pipeline.models.svt`, whose
gradient stays finite at the repeated and zero singular values of flat or low-rank cubes.

The iteration is equivariant under the ×255 scaling (every iterate is 255 × the iterate of the
unscaled problem with the same :math:`\mu/\lambda`), so the scale only fixes how
:math:`\mu_0` is written. The dimensionless penalty is :math:`\mu/\lambda` (penalty relative to
the fidelity weight, starting at ``1/lam_factor`` = 0.1 like TV's :math:`\mu_1`), and ``mu_max``
caps it. Residuals (see :mod:`pipeline.models.base`), in the [0, 1] scale: primal
:math:`\|L - Z\| / \max(\|L\|, \|Z\|)`; dual :math:`\mu\|Z_k - Z_{k-1}\| / \|\Lambda\|`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from pipeline.models.base import ADMMModel, State, check_admm_params, norm, penalty, relative
from pipeline.models.svt import svt
from pipeline.schema import require

__all__ = ["NN", "NNParams"]

SCALE = 255.0  # the reference works on the 0–255 scale


@dataclass(frozen=True)
class NNParams:
    """Settings of the NN ADMM; defaults are the DLW reference (Rui et al. 2023, ``net.py``)."""

    lam_factor: float = 10.0  # λ = lam_factor · μ₀ (reference λ = μ₀/0.1); strength is 1/λ
    mu0_coef: float = 2.5  # μ₀ = mu0_coef / (√(HW) · 255)
    rho: float = 1.03  # penalty growth per iteration
    iterations: int = 15  # unrolled iterations (converge=False)
    # converge=True: stop when both relative residuals < tol (after min_iterations), μ/λ ≤ mu_max.
    tol: float = 1e-6  # NN converges in tens of iterations: a tighter default is cheap
    min_iterations: int = 15
    max_iterations: int = 3000
    mu_max: float = 10.0

    def check(self, where: str) -> None:
        require(self.lam_factor > 0, f"{where}.lam_factor", self.lam_factor, "must be positive")
        require(self.mu0_coef > 0, f"{where}.mu0_coef", self.mu0_coef, "must be positive")
        check_admm_params(self, where)


@dataclass
class _Context:
    shape: torch.Size
    y: Tensor  # (B, C, HW), scaled
    w: Tensor  # (B, C, HW)
    lam: float
    mu0: float
    n: int


class NN(ADMMModel):
    r"""Nuclear norm of the band × pixel unfolding, :math:`R = \|X\|_* / (255\lambda)`."""

    name: ClassVar[str] = "nn"
    Params: ClassVar[type] = NNParams
    role: ClassVar[str] = "target"
    # λ = lam_factor·μ₀ weighs the *fidelity* (module docstring): the regularisation strength is
    # 1/λ, so a strength multiplier divides lam_factor (Rui et al. 2023).
    strength_fields: ClassVar[tuple[str, ...]] = ("lam_factor",)
    strength_inverse: ClassVar[bool] = True
    unrolled_cost: ClassVar[float | None] = 0.45

    def mu0(self, hw: int) -> float:
        r""":math:`\mu_0 = \texttt{mu0\_coef} / (\sqrt{HW}\cdot 255)`."""
        return self.params.mu0_coef / (math.sqrt(hw) * SCALE)

    def lam(self, hw: int) -> float:
        r"""The fidelity weight :math:`\lambda = \texttt{lam\_factor}\cdot\mu_0` (0–255 scale)."""
        return self.params.lam_factor * self.mu0(hw)

    def strength(self, hw: int) -> float:
        r"""Regularisation strength in the [0, 1] scale, :math:`1/(255\lambda)`."""
        return 1.0 / (SCALE * self.lam(hw))

    def regularizer(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return self.strength(h * w) * torch.linalg.svdvals(x.reshape(b, c, h * w)).sum(-1)

    def _prepare(self, y: Tensor, w: Tensor) -> _Context:
        b, c, h, wd = y.shape
        hw = h * wd
        return _Context(
            shape=y.shape,
            y=SCALE * y.reshape(b, c, hw),
            w=w.reshape(b, c, hw),
            lam=self.lam(hw),
            mu0=self.mu0(hw),
            n=y[0].numel(),
        )

    def _init(self, ctx: _Context) -> State:
        return {"l": ctx.y, "z": ctx.y, "m": torch.zeros_like(ctx.y)}

    def _mu(self, ctx: _Context, k: int) -> float:
        return penalty(ctx.mu0, self.params.rho, k, self.params.mu_max * ctx.lam)

    def _step(self, ctx: _Context, s: State, mu: Any) -> State:
        lw = ctx.lam * ctx.w
        l = (lw * ctx.y + mu * s["z"] - s["m"]) / (lw + mu)  # noqa: E741 (the paper's L)
        z = svt(l + s["m"] / mu, 1.0 / mu)
        return {"l": l, "z": z, "m": s["m"] + mu * (l - z)}

    def _unrolled_step(self, ctx: _Context, s: State, mu: Any) -> State:
        # The reference's order (module docstring): Z from the previous L and Λ, then L, then Λ.
        lw = ctx.lam * ctx.w
        z = svt(s["l"] + s["m"] / mu, 1.0 / mu)
        l = (lw * ctx.y + mu * z - s["m"]) / (lw + mu)  # noqa: E741 (the paper's L)
        return {"l": l, "z": z, "m": s["m"] + mu * (l - z)}

    def _residuals(self, ctx: _Context, new: State, old: State, mu: Any) -> tuple[Tensor, Tensor]:
        l, z = new["l"], new["z"]  # noqa: E741
        primal = relative(norm(l - z) / SCALE, torch.maximum(norm(l), norm(z)) / SCALE, ctx.n)
        unit = ctx.lam * SCALE  # multipliers are λ·255 × (w · x) in the [0, 1] scale
        dual = relative(mu * norm(z - old["z"]) / unit, norm(new["m"]) / unit, ctx.n)
        return primal, dual

    def _output(self, ctx: _Context, s: State) -> Tensor:
        return (s["z"] / SCALE).reshape(ctx.shape)
