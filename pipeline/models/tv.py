r"""Weighted-fidelity anisotropic total variation (TV), the DLW source model "TV".

.. math:: \min_X\ \tfrac12 \sum_i w_i (y_i - x_i)^2
          + \lambda \big(\|D_h X\|_1 + \|D_v X\|_1\big),

per band, with forward differences :math:`D = (D_v, D_h)` (periodic as the reference, or
Neumann; :mod:`pipeline.models.differences`). Reference settings (Rui et al., arXiv 2301.06081,
and their code ``net.py``): :math:`\lambda = 0.1`, :math:`\mu_1 = \mu_2 = 0.1` growing ×1.05 per
iteration, 20 iterations, start :math:`X = Z = Y`, :math:`U = DY`, zero multipliers, output
:math:`Z`.

ADMM with the splitting :math:`X = Z`, :math:`U = DZ` (Goldstein & Osher, "The split Bregman
method for L1-regularized problems", SIAM J. Imaging Sci. 2(2), 2009; Boyd et al. 2011) on the
augmented Lagrangian

.. math:: \mathcal L = \tfrac12 \textstyle\sum w (y - X)^2 + \lambda \|U\|_1
          + \langle \Lambda_1, X - Z\rangle + \tfrac{\mu_1}2 \|X - Z\|^2
          + \langle \Lambda_2, DZ - U\rangle + \tfrac{\mu_2}2 \|DZ - U\|^2 .

Two orders of the same updates are used.

``converge=False`` (unrolled, the DLW source) follows the reference iteration exactly: the
authors' code (Rui, Cao, Zhao, Meng, Ng, arXiv 2301.06081; github.com/xyrui/DLWnet, ``net.py``,
``HWTV.forward`` and ``HWTV_S.forward``, with ``Shrink``, ``TV_solver`` and the periodic
``diff_*`` of ``methods.py``) updates :math:`U`, then :math:`Z`, then :math:`X`, then the
multipliers, all with the penalties of iteration :math:`k`, which grow only after the
multiplier updates:

.. math::
    U &\leftarrow \operatorname{soft}(DZ + \Lambda_2/\mu_2,\ \lambda/\mu_2)
        \qquad (DZ \text{ of the previous } Z;\ DY \text{ at } k = 0)\\
    Z &\leftarrow (\mu_1 I + \mu_2 D^\top D)^{-1}
        \big(\mu_1 X + \Lambda_1 + \mu_2 D^\top(U - \Lambda_2/\mu_2)\big)
        \qquad (X, \Lambda_1 \text{ of the previous iteration})\\
    X &\leftarrow (w \odot y + \mu_1 Z - \Lambda_1) / (w + \mu_1)
        \qquad\text{(the new } Z\text{, the previous } \Lambda_1)\\
    \Lambda_1 &\leftarrow \Lambda_1 + \mu_1 (X - Z), \qquad
    \Lambda_2 \leftarrow \Lambda_2 + \mu_2 (D Z - U)
        \qquad (DZ \text{ of the new } Z),\\
    \mu_{1,2} &\leftarrow \rho\,\mu_{1,2}.

The reference's multiplier of :math:`U = DZ`, ``G2``, enters its Lagrangian as
:math:`\langle G_2, U - DZ\rangle`; ours is :math:`\Lambda_2 = -G_2` (an exact negation, so the
iterates are the reference's): its ``Shrink(DZ - G2/mu2, lam/mu2)`` is the :math:`U` above, and
``TV_solver(X + G1/mu1, U + G2/mu2, ...)`` solves
:math:`(\mu_1/\mu_2 + D^\top D) Z = D^\top(U + G_2/\mu_2) + (\mu_1/\mu_2)(X + G_1/\mu_1)`, the
:math:`Z` above. The differences are periodic in both spatial axes (``torch.roll``), and for
spectral TV the reference permutes the cube to put the bands last and rolls along them, so it is
periodic along the bands too (band :math:`C-1` is differenced with band 0); its FFT solve along
(width, bands) has a symbol constant along the width, i.e. a periodic solve along the bands. The
output is :math:`Z`. The only departure: :math:`\mu` is capped at ``mu_max``, which the
reference's 20 iterations never reach (:math:`0.1\cdot 1.05^{19} \approx 0.25`).

``converge=True`` (the target solve) runs a standard two-block ADMM — :math:`(X, U)`, separable
given :math:`Z`, then :math:`Z`, then the multipliers — whose convergence theory (Boyd et al.
§3.2) covers the stopping rule:

.. math::
    X &\leftarrow (w \odot y + \mu_1 Z - \Lambda_1) / (w + \mu_1)
        \qquad\text{(pointwise)}\\
    U &\leftarrow \operatorname{soft}(DZ + \Lambda_2/\mu_2,\ \lambda/\mu_2)\\
    Z &\leftarrow (\mu_1 I + \mu_2 D^\top D)^{-1}
        \big(\mu_1 X + \Lambda_1 + D^\top(\mu_2 U - \Lambda_2)\big)
        \qquad\text{(exact, FFT / DCT)}\\
    \Lambda_1 &\leftarrow \Lambda_1 + \mu_1 (X - Z), \qquad
    \Lambda_2 \leftarrow \Lambda_2 + \mu_2 (DZ - U),\\
    \mu_{1,2} &\leftarrow \min(\rho\,\mu_{1,2},\ \mu_{\max}).

Both orders have the same fixed points (the minimiser).

Residuals (see :mod:`pipeline.models.base`): :math:`a = (X, U)`, :math:`A = I`,
:math:`B z = -(Z, DZ)`, so :math:`r = (X - Z,\ U - DZ)`, primal
:math:`\|r\| / \max(\|(X, U)\|, \|(Z, DZ)\|)`; :math:`s = (\mu_1 \Delta Z,\ \mu_2 D\Delta Z)`,
dual :math:`\|s\| / \|(\Lambda_1, \Lambda_2)\|`.

The fidelity-variable update (:meth:`_TVFamily._x_update`) and :math:`D` are the only things
:mod:`~pipeline.models.tvs` (spectral TV) and :mod:`~pipeline.models.tv_l1` (ℓ1 fidelity) change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.models.base import (
    ADMMModel,
    State,
    check_admm_params,
    penalty,
    relative,
    stacked_norm,
)
from pipeline.models.differences import FiniteDifference, spatial_difference
from pipeline.models.neumann_solve import Solve, linear_solver
from pipeline.schema import require

__all__ = ["TV", "TVParams"]


@dataclass(frozen=True)
class TVParams:
    """Settings of the TV-family ADMM; defaults are the DLW reference (Rui et al. 2023)."""

    lam: float = 0.1  # λ, weight of the TV term (fidelity weight w, mean ≈ 1)
    mu1: float = 0.1  # initial penalty of X = Z
    mu2: float = 0.1  # initial penalty of U = DZ
    rho: float = 1.05  # penalty growth per iteration
    iterations: int = 20  # unrolled iterations (converge=False)
    boundary: Literal["periodic", "neumann"] = "periodic"
    # converge=True: stop when both relative residuals < tol (after min_iterations), μ ≤ mu_max.
    tol: float = 1e-5  # converged TV/TVS came within ≈ 1e-6–1e-4 RMS of the minimiser
    min_iterations: int = 20
    max_iterations: int = 3000
    # A larger cap drives the primal residual down while the dual one lags (Boyd et al.
    # §3.4.1): 3 needed the fewest iterations in a sweep over 1–10 (31-band cubes, w = 1,
    # oracle and log-normal weights); 10 took 1.7–3× more, 1e3 did not converge in 3000.
    mu_max: float = 3.0

    def check(self, where: str) -> None:
        require(self.lam >= 0, f"{where}.lam", self.lam, "must be ≥ 0")
        require(self.mu1 > 0, f"{where}.mu1", self.mu1, "must be positive")
        require(self.mu2 > 0, f"{where}.mu2", self.mu2, "must be positive")
        check_admm_params(self, where)


@dataclass
class _Context:
    y: Tensor
    w: Tensor
    wy: Tensor  # w ⊙ y, used by every X-update
    D: FiniteDifference
    solve: Solve  # (μ₁ I + μ₂ DᵀD)⁻¹: dense DCT for Neumann boundaries (≈ 10× the mirror FFT)
    n: int


class _TVFamily(ADMMModel):
    """ADMM for ``fidelity(X) + λ‖DZ‖₁`` s.t. ``X = Z``; see the module docstring."""

    Params: ClassVar[type] = TVParams
    # λ weighs the TV term: a strength multiplier multiplies it.
    strength_fields: ClassVar[tuple[str, ...]] = ("lam",)
    strength_inverse: ClassVar[bool] = False

    def difference(self) -> FiniteDifference:
        raise NotImplementedError

    def regularizer(self, x: Tensor) -> Tensor:
        return self.params.lam * self.difference()(x).abs().flatten(1).sum(1)

    def _x_update(self, ctx: _Context, z: Tensor, l1: Tensor, mu1: float) -> Tensor:
        r""":math:`\operatorname{argmin}_X \tfrac12 \sum w (y - X)^2
        + \tfrac{\mu_1}2 \|X - Z + \Lambda_1/\mu_1\|^2`, pointwise."""
        return torch.sub(torch.add(ctx.wy, z, alpha=mu1), l1) / (ctx.w + mu1)

    def _prepare(self, y: Tensor, w: Tensor) -> _Context:
        D = self.difference()
        solve = linear_solver(D, y.shape, y.dtype, y.device)
        return _Context(y, w, w * y, D, solve, y[0].numel())

    def _init(self, ctx: _Context) -> State:
        dy = ctx.D(ctx.y)
        zero = torch.zeros_like(ctx.y)
        return {"x": ctx.y, "z": ctx.y, "u": dy, "dz": dy, "l1": zero, "l2": torch.zeros_like(dy)}

    def _mu(self, ctx: _Context, k: int) -> tuple[float, float]:
        p = self.params
        return penalty(p.mu1, p.rho, k, p.mu_max), penalty(p.mu2, p.rho, k, p.mu_max)

    def _step(self, ctx: _Context, s: State, mu: Any) -> State:
        # The converged mode's order (module docstring): X and U from the previous Z, then Z.
        mu1, mu2 = mu
        x = self._x_update(ctx, s["z"], s["l1"], mu1)
        u = self._u_update(s, mu2)
        z, dz = self._z_update(ctx, s, x, u, mu1, mu2)
        return self._with_multipliers(s, x, z, u, dz, mu1, mu2)

    def _unrolled_step(self, ctx: _Context, s: State, mu: Any) -> State:
        # The reference's order (module docstring): U from the previous DZ, Z from the previous
        # X, then X from the new Z, then both multipliers with the new Z.
        mu1, mu2 = mu
        u = self._u_update(s, mu2)
        z, dz = self._z_update(ctx, s, s["x"], u, mu1, mu2)
        x = self._x_update(ctx, z, s["l1"], mu1)
        return self._with_multipliers(s, x, z, u, dz, mu1, mu2)

    # Fused ``add(a, b, alpha)`` forms below: at 256×256×31 every full pass over the cube costs
    # milliseconds, and autograd saves less.
    def _u_update(self, s: State, mu2: float) -> Tensor:
        r""":math:`\operatorname{soft}(DZ + \Lambda_2/\mu_2,\ \lambda/\mu_2)`, DZ of ``s``."""
        return F.softshrink(torch.add(s["dz"], s["l2"], alpha=1.0 / mu2), self.params.lam / mu2)

    def _z_update(
        self, ctx: _Context, s: State, x: Tensor, u: Tensor, mu1: float, mu2: float
    ) -> tuple[Tensor, Tensor]:
        r""":math:`Z = (\mu_1 I + \mu_2 D^\top D)^{-1}(\mu_1 X + \Lambda_1
        + D^\top(\mu_2 U - \Lambda_2))` and :math:`DZ`, with the multipliers of ``s``."""
        # μ₁X + Λ₁ + Dᵀ(μ₂U − Λ₂) = (Λ₁ + μ₁X) + μ₂ Dᵀ(U − Λ₂/μ₂)
        rhs = torch.add(
            torch.add(s["l1"], x, alpha=mu1),
            ctx.D.adjoint(torch.sub(u, s["l2"], alpha=1.0 / mu2)),
            alpha=mu2,
        )
        z = ctx.solve(rhs, mu1, mu2)
        return z, ctx.D(z)

    @staticmethod
    def _with_multipliers(
        s: State, x: Tensor, z: Tensor, u: Tensor, dz: Tensor, mu1: float, mu2: float
    ) -> State:
        r"""The new iterate, with :math:`\Lambda_1 += \mu_1(X - Z)`, :math:`\Lambda_2 +=
        \mu_2(DZ - U)`."""
        return {
            "x": x,
            "z": z,
            "u": u,
            "dz": dz,
            "l1": torch.add(s["l1"], x - z, alpha=mu1),
            "l2": torch.add(s["l2"], dz - u, alpha=mu2),
        }

    def _residuals(self, ctx: _Context, new: State, old: State, mu: Any) -> tuple[Tensor, Tensor]:
        mu1, mu2 = mu
        x, z, u, dz = new["x"], new["z"], new["u"], new["dz"]
        primal = relative(
            stacked_norm(x - z, u - dz),
            torch.maximum(stacked_norm(x, u), stacked_norm(z, dz)),
            ctx.n,
        )
        dual = relative(
            stacked_norm(mu1 * (z - old["z"]), mu2 * (dz - old["dz"])),
            stacked_norm(new["l1"], new["l2"]),
            ctx.n,
        )
        return primal, dual

    def _output(self, ctx: _Context, s: State) -> Tensor:
        return s["z"]


class TV(_TVFamily):
    r"""Spatial anisotropic TV per band, :math:`R = \lambda(\|D_h X\|_1 + \|D_v X\|_1)`."""

    name: ClassVar[str] = "tv"
    Params: ClassVar[type] = TVParams
    role: ClassVar[str] = "target"
    unrolled_cost: ClassVar[float | None] = 1.0  # the unit (VariationalModel.unrolled_cost)

    def difference(self) -> FiniteDifference:
        return spatial_difference(self.params.boundary)
