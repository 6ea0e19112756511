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

With a forward operator (``solve(y, w, converge=True, A=A)``, TV and TVS), the model is

.. math:: \min_Z\ \tfrac12 \sum_i w_i (y - AZ)_i^2 + \lambda \|DZ\|_1,

:math:`y, w` on the grid of :math:`AZ` (for ``Downsampling(f)`` the :math:`(H/f, W/f)` grid; for
``Inpainting`` the full grid, where :math:`y` at a missing pixel only adds a constant), the
output :math:`Z` on the full grid. :math:`A = S K` (:mod:`pipeline.models.operator_solve`):
:math:`K` a convolution (``Blur``, the anti-aliasing filter of ``Downsampling``, or none) and
:math:`S` a selection with diagonal :math:`S^\top S` (the identity, the inpainting mask,
decimation by :math:`f`). ADMM with the splitting :math:`X = KZ`, :math:`U = DZ` (:math:`X` on
the full grid), the augmented Lagrangian above with :math:`\tfrac12 \sum w (y - SX)^2` and
:math:`X - KZ` in place of :math:`X - Z` — the variable splitting of SALSA (Afonso,
Bioucas-Dias, Figueiredo, "Fast image recovery using variable splitting and constrained
optimization", IEEE TIP 19(9), 2010) and C-SALSA ("An augmented Lagrangian approach to the
constrained optimization formulation of imaging inverse problems", IEEE TIP 20(3), 2011), which
split off :math:`KZ` so that the fidelity step stays cheap:

.. math::
    X &\leftarrow \big(S^\top(w \odot y) + \mu_1 KZ - \Lambda_1\big) / (S^\top w + \mu_1)
        \qquad\text{(pointwise; } S^\top \text{ zero-fills)}\\
    U &\leftarrow \operatorname{soft}(DZ + \Lambda_2/\mu_2,\ \lambda/\mu_2)\\
    Z &\leftarrow (\mu_1 K^\top K + \mu_2 D^\top D)^{-1}
        \big(K^\top(\mu_1 X + \Lambda_1) + D^\top(\mu_2 U - \Lambda_2)\big)\\
    \Lambda_1 &\leftarrow \Lambda_1 + \mu_1 (X - KZ), \qquad
    \Lambda_2 \leftarrow \Lambda_2 + \mu_2 (DZ - U),

with :math:`S^\top w` the diagonal of :math:`S^\top \operatorname{diag}(w) S` (for
:math:`A = I`, exactly the updates above). The :math:`Z`-solve is one of three
(:func:`~pipeline.models.operator_solve.operator_solver`):

* no :math:`K` (inpainting, plain decimation): the exact solve of the denoising model;
* a circular :math:`K` and a :math:`D` periodic along the spatial axes it differences (TV
  periodic; TVS with either boundary, its :math:`D` being along the bands): exact, by the 2-D
  DFT (:math:`K^\top K` has the symbol :math:`|\hat k|^2`) and, for TVS, the DFT or DCT-II
  along the bands (a Kronecker sum of commuting diagonalisable operators);
* otherwise (a zero-boundary blur; TV with Neumann boundaries and any blur): conjugate
  gradients warm-started from the previous :math:`Z`, preconditioned by the exact Fourier solve
  of the periodic problem, to a residual ``cg_tol`` times the warm start's, at most
  ``cg_max_iterations`` (``operator_solve = "cg"``: plain conjugate gradients for every
  :math:`K`).

The start is :math:`Z_0 = A^\top y / A^\top 1` where :math:`A^\top 1 > 10^{-6} \max A^\top 1`
(the pixels :math:`y` sees, normalised by how much), else 0; :math:`X = KZ_0`,
:math:`U = DZ_0`, zero multipliers. Residuals as above with :math:`KZ` for :math:`Z`:
:math:`r = (X - KZ,\ U - DZ)`, :math:`s = (\mu_1 K\Delta Z,\ \mu_2 D\Delta Z)`. ``A = None`` or
``Identity()`` runs the denoising solve exactly; ``converge=False`` with another operator is
``NotImplementedError`` (the unrolled solve is the DLW denoising reference); TV-L1 is not
operator-aware.

The fidelity-variable update (:meth:`_TVFamily._x_update`) and :math:`D` are the only things
:mod:`~pipeline.models.tvs` (spectral TV) and :mod:`~pipeline.models.tv_l1` (ℓ1 fidelity) change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.degrade.operators import LinearOperator
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
from pipeline.models.operator_solve import OperatorSolve, factorise, operator_solver
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
    # With a forward operator whose convolution K has no exact Z-solve (module docstring):
    # conjugate gradients warm-started at the previous Z and preconditioned by the periodic
    # problem's Fourier solve, until the residual has dropped by cg_tol from the warm start's,
    # or cg_max_iterations; operator_solve = "cg": plain conjugate gradients for every K (a
    # check of the exact and preconditioned solves).
    # 1e-1, 1e-2 and 1e-3 gave the same outer iterations and errors (TV, Neumann, blurs and
    # ×2 downsampling, tol 1e-5 and 1e-9); 1e-1 took half the time of 1e-3 (32×32×31).
    cg_tol: float = 1e-2
    cg_max_iterations: int = 100
    operator_solve: Literal["auto", "cg"] = "auto"

    def check(self, where: str) -> None:
        require(self.lam >= 0, f"{where}.lam", self.lam, "must be ≥ 0")
        require(self.mu1 > 0, f"{where}.mu1", self.mu1, "must be positive")
        require(self.mu2 > 0, f"{where}.mu2", self.mu2, "must be positive")
        check_admm_params(self, where)
        require(0 < self.cg_tol < 1, f"{where}.cg_tol", self.cg_tol, "must be in (0, 1)")
        require(
            self.cg_max_iterations >= 1,
            f"{where}.cg_max_iterations",
            self.cg_max_iterations,
            "must be ≥ 1",
        )
        require(
            self.operator_solve in ("auto", "cg"),
            f"{where}.operator_solve",
            self.operator_solve,
            "must be 'auto' or 'cg'",
        )


@dataclass
class _Context:
    # With a forward operator A = S K, y, w and wy are zero-filled onto the full grid: Sᵀy,
    # Sᵀw (the diagonal of SᵀWS) and Sᵀ(w ⊙ y).
    y: Tensor
    w: Tensor
    wy: Tensor  # w ⊙ y, used by every X-update
    D: FiniteDifference
    # (μ₁ I + μ₂ DᵀD)⁻¹: dense DCT for Neumann boundaries (≈ 10× the mirror FFT); with a K,
    # (μ₁ KᵀK + μ₂ DᵀD)⁻¹ (operator_solve), which also takes the warm start.
    solve: Solve | OperatorSolve
    n: int
    K: LinearOperator | None = None  # the convolution of A = S K (None: the identity)
    z0: Tensor | None = None  # the start Z with an operator (None: today's start Z = y)


class _TVFamily(ADMMModel):
    """ADMM for ``fidelity(X) + λ‖DZ‖₁`` s.t. ``X = Z``; see the module docstring."""

    Params: ClassVar[type] = TVParams
    # λ weighs the TV term: a strength multiplier multiplies it.
    strength_fields: ClassVar[tuple[str, ...]] = ("lam",)
    strength_inverse: ClassVar[bool] = False
    penalty_fields: ClassVar[tuple[str, ...]] = ("mu1", "mu2", "mu_max")
    # The unrolled solve's gradient in w by the hand-written adjoint of pipeline.models.
    # tv_adjoint, which assumes this class's X-update (TV-L1 has its own: False there).
    adjoint_unrolled: ClassVar[bool] = True

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

    def _prepare_operator(self, y: Tensor, w: Tensor, A: LinearOperator) -> _Context:
        p = self.params
        factors = factorise(A)
        S, K = factors.S, factors.K
        fill = (lambda t: t) if S is None else S.A_adjoint  # Sᵀ: zero filling
        # The start: Z = Aᵀy / Aᵀ1 where Aᵀ1 > 1e-6 max Aᵀ1 (the pixels y sees), else 0.
        aty, at1 = A.A_adjoint(y), A.A_adjoint(torch.ones_like(y))
        seen = at1 > 1e-6 * at1.flatten(1).amax(1).view(-1, *([1] * (y.ndim - 1)))
        z0 = torch.where(seen, aty / torch.where(seen, at1, 1), 0)
        D = self.difference()
        solve = operator_solver(
            D,
            K,
            z0.shape,
            y.dtype,
            y.device,
            method=p.operator_solve,
            cg_tol=p.cg_tol,
            cg_max_iterations=p.cg_max_iterations,
        )
        return _Context(fill(y), fill(w), fill(w * y), D, solve, z0[0].numel(), K, z0)

    def _init(self, ctx: _Context) -> State:
        if ctx.z0 is not None:
            return self._operator_init(ctx)
        dy = ctx.D(ctx.y)
        zero = torch.zeros_like(ctx.y)
        return {"x": ctx.y, "z": ctx.y, "u": dy, "dz": dy, "l1": zero, "l2": torch.zeros_like(dy)}

    @staticmethod
    def _operator_init(ctx: _Context) -> State:
        """With an operator: :math:`Z = Z_0`, :math:`X = KZ`, :math:`U = DZ`, zero multipliers
        (the state carries :math:`KZ` as ``kz`` when there is a :math:`K`)."""
        z = ctx.z0
        kz = z if ctx.K is None else ctx.K.A(z)
        dz = ctx.D(z)
        state = {"x": kz, "z": z, "u": dz, "dz": dz, "l1": torch.zeros_like(kz)}
        state["l2"] = torch.zeros_like(dz)
        if ctx.K is not None:
            state["kz"] = kz
        return state

    def _mu(self, ctx: _Context, k: int) -> tuple[float, float]:
        p = self.params
        return penalty(p.mu1, p.rho, k, p.mu_max), penalty(p.mu2, p.rho, k, p.mu_max)

    def _step(self, ctx: _Context, s: State, mu: Any) -> State:
        # The converged mode's order (module docstring): X and U from the previous Z, then Z.
        mu1, mu2 = mu
        if ctx.K is not None:
            return self._operator_step(ctx, s, mu1, mu2)
        x = self._x_update(ctx, s["z"], s["l1"], mu1)
        u = self._u_update(s, mu2)
        z, dz = self._z_update(ctx, s, x, u, mu1, mu2)
        return self._with_multipliers(s, x, z, u, dz, mu1, mu2)

    def _operator_step(self, ctx: _Context, s: State, mu1: float, mu2: float) -> State:
        r"""The converged order with a convolution :math:`K` (module docstring): :math:`X` from
        the previous :math:`KZ`, :math:`U`, then :math:`Z` from
        :math:`(\mu_1 K^\top K + \mu_2 D^\top D) Z = K^\top(\mu_1 X + \Lambda_1)
        + D^\top(\mu_2 U - \Lambda_2)`, warm-started at the previous :math:`Z`."""
        K = ctx.K
        x = self._x_update(ctx, s["kz"], s["l1"], mu1)
        u = self._u_update(s, mu2)
        rhs = torch.add(
            K.A_adjoint(torch.add(s["l1"], x, alpha=mu1)),
            ctx.D.adjoint(torch.sub(u, s["l2"], alpha=1.0 / mu2)),
            alpha=mu2,
        )
        z = ctx.solve(rhs, mu1, mu2, s["z"])
        return self._with_multipliers(s, x, z, u, ctx.D(z), mu1, mu2, K.A(z))

    def _unrolled_iterations(self, y: Tensor, w: Tensor) -> tuple[Any, State, State, Any]:
        """With a gradient wanted for ``w`` alone (DLW's hypergradient), the iterations run
        through their hand-written adjoint (:mod:`pipeline.models.tv_adjoint`): the same
        iterates, the gradient equal to autograd's up to summation order, a fraction of the
        time and memory. Otherwise autograd records them as for every model."""
        wanted = torch.is_grad_enabled() and w.requires_grad and not y.requires_grad
        if not (self.adjoint_unrolled and wanted):
            return super()._unrolled_iterations(y, w)
        from pipeline.models.tv_adjoint import unrolled_tv

        ctx, side = unrolled_tv(self, y, w)
        return ctx, side["state"], side["old"], side["mu"]

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
        s: State,
        x: Tensor,
        z: Tensor,
        u: Tensor,
        dz: Tensor,
        mu1: float,
        mu2: float,
        kz: Tensor | None = None,
    ) -> State:
        r"""The new iterate, with :math:`\Lambda_1 += \mu_1(X - KZ)` (:math:`K = I` when ``kz``
        is ``None``), :math:`\Lambda_2 += \mu_2(DZ - U)`."""
        new = {
            "x": x,
            "z": z,
            "u": u,
            "dz": dz,
            "l1": torch.add(s["l1"], x - (z if kz is None else kz), alpha=mu1),
            "l2": torch.add(s["l2"], dz - u, alpha=mu2),
        }
        if kz is not None:
            new["kz"] = kz
        return new

    def _residuals(self, ctx: _Context, new: State, old: State, mu: Any) -> tuple[Tensor, Tensor]:
        mu1, mu2 = mu
        # KZ in place of Z with an operator's convolution K (module docstring).
        key = "z" if ctx.K is None else "kz"
        x, z, u, dz = new["x"], new[key], new["u"], new["dz"]
        primal = relative(
            stacked_norm(x - z, u - dz),
            torch.maximum(stacked_norm(x, u), stacked_norm(z, dz)),
            ctx.n,
        )
        dual = relative(
            stacked_norm(mu1 * (z - old[key]), mu2 * (dz - old["dz"])),
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
    operators: ClassVar[tuple[str, ...]] = ("identity", "blur", "downsample", "inpaint")

    def difference(self) -> FiniteDifference:
        return spatial_difference(self.params.boundary)
