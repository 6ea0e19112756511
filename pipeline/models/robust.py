r"""The ADMM shared by the robust target models LRTV and E3DTV.

Both minimise a weighted Gaussian + sparse fidelity plus a regulariser of the finite
differences :math:`DX`,

.. math:: \min_X\ F_{w,\lambda}(X) + R(X), \qquad
          F_{w,\lambda}(x) = \min_S\ \tfrac12 \sum_i w_i (y_i - x_i - s_i)^2
          + \lambda \|S\|_1

(the Huber fidelity of :mod:`pipeline.models.sparse_fidelity`), by ADMM (Boyd et al. 2011) with
the splitting :math:`X = Z` of the fidelity and one or more splittings of :math:`R` (LRTV:
:math:`L = Z`, :math:`U = DZ`; E3DTV: :math:`D_j Z = U_j V_j^\top`). What they share, here:

* the settings :class:`RobustParams`: the outlier threshold ``lam``, the boundaries of
  :math:`D` (Neumann by default: targets never couple the first and last bands), one penalty
  :math:`\mu_k = \min(\mu_0\rho^k, \mu_{\max})` for *every* splitting, 40 unrolled iterations
  (the published codes' 40) and the ``converge=True`` stopping rule
  (:mod:`pipeline.models.base`);
* the precomputed context :class:`RobustContext`: :math:`y`, :math:`w`, :math:`D` and the exact
  solve of :math:`(\mu_1 I + \mu_2 D^\top D) z = b` (:mod:`pipeline.models.neumann_solve`);
* the start :math:`X = Z = Y`, :math:`DZ = DY`, :math:`\Lambda_1 = 0` (each model adds its own
  variables), the exact pointwise :math:`X`-update

  .. math:: X \leftarrow \operatorname{argmin}_X \min_S \tfrac12 \textstyle\sum w (y - X - S)^2
            + \lambda\|S\|_1 + \tfrac\mu2 \|X - Z + \Lambda_1/\mu\|^2

  (:func:`~pipeline.models.sparse_fidelity.fidelity_step`), and the output :math:`Z`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from pipeline.models.base import ADMMModel, State, check_admm_params, penalty
from pipeline.models.differences import FiniteDifference
from pipeline.models.neumann_solve import Solve, linear_solver
from pipeline.models.sparse_fidelity import fidelity_step, huber_fidelity, sparse_component
from pipeline.schema import require

__all__ = ["RobustADMMModel", "RobustContext", "RobustParams"]


@dataclass(frozen=True)
class RobustParams:
    """Settings LRTV and E3DTV share, in fidelity units (images in [0, 1], mean weight ≈ 1).
    Each model adds its regulariser's weights and sets its own ``mu_max`` (and ``tol``)."""

    lam: float = 0.2  # weight of ‖S‖₁: the outlier threshold for w = 1
    boundary: Literal["periodic", "neumann"] = "neumann"
    mu0: float = 0.1  # initial penalty of every splitting
    rho: float = 1.05  # penalty growth per iteration
    iterations: int = 40  # unrolled iterations (converge=False; the published codes' 40)
    # converge=True: stop when both relative residuals < tol (after min_iterations), μ ≤ mu_max.
    tol: float = 1e-5
    min_iterations: int = 20
    max_iterations: int = 3000
    mu_max: float = 3.0

    def check(self, where: str) -> None:
        require(self.lam > 0, f"{where}.lam", self.lam, "must be positive")
        require(self.mu0 > 0, f"{where}.mu0", self.mu0, "must be positive")
        check_admm_params(self, where)


@dataclass
class RobustContext:
    y: Tensor
    w: Tensor
    D: FiniteDifference
    solve: Solve  # (μ₁ I + μ₂ DᵀD)⁻¹
    n: int  # entries of one sample, C·H·W (the residuals' floor)


class RobustADMMModel(ADMMModel):
    """A model with the robust fidelity, the splitting ``X = Z`` and one penalty for every
    splitting (module docstring); subclasses give :meth:`difference`, the regulariser and the
    rest of the iteration."""

    def difference(self) -> FiniteDifference:
        """The differences :math:`D` the regulariser is taken of."""
        raise NotImplementedError

    def fidelity(self, x: Tensor, y: Tensor, w: Tensor) -> Tensor:
        r""":math:`\min_S \tfrac12\sum w (y - x - S)^2 + \lambda\|S\|_1` (Huber), per sample."""
        return huber_fidelity(x, y, w, self.params.lam)

    def sparse(self, x: Tensor, y: Tensor, w: Tensor | None = None) -> Tensor:
        """The sparse component :math:`S^\\star` the model attributes to outliers at ``x``."""
        y, w = self._inputs(y, w)
        return sparse_component(x, y, w, self.params.lam)

    def _prepare(self, y: Tensor, w: Tensor) -> RobustContext:
        D = self.difference()
        solve = linear_solver(D, y.shape, y.dtype, y.device)
        return RobustContext(y=y, w=w, D=D, solve=solve, n=y[0].numel())

    def _init(self, ctx: RobustContext) -> State:
        """The shared part of the start: ``X = Z = Y``, ``DZ = DY``, ``Λ₁ = 0``."""
        dy = ctx.D(ctx.y)
        return {"x": ctx.y, "z": ctx.y, "dz": dy, "l1": torch.zeros_like(ctx.y)}

    def _mu(self, ctx: RobustContext, k: int) -> float:
        p = self.params
        return penalty(p.mu0, p.rho, k, p.mu_max)

    def _x_update(self, ctx: RobustContext, s: State, mu: Any) -> Tensor:
        """The exact joint minimisation over ``(X, S)`` (module docstring), from ``s``'s Z, Λ₁."""
        return fidelity_step(ctx.y, ctx.w, s["z"] - s["l1"] / mu, mu, self.params.lam)

    def _output(self, ctx: RobustContext, s: State) -> Tensor:
        return s["z"]
